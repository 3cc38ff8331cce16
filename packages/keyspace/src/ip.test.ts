import { describe, expect, it } from 'vitest';

import { KeyspaceError, KeyspaceErrorCode } from './errors.js';
import { readCidr, readIP } from './internal/ipText.js';
import {
  canonicalCidr,
  canonicalIP,
  cidrContains,
  formatCidr,
  formatIPv4,
  formatIPv6,
  ipToBigInt,
  isIP,
  parseCidr,
  parseIPv4,
  parseIPv6,
} from './ip.js';

describe('parseIPv4', () => {
  it('reads a dotted quad into four bytes', () => {
    expect(parseIPv4('198.19.0.1')).toEqual(new Uint8Array([198, 19, 0, 1]));
    expect(parseIPv4('0.0.0.0')).toEqual(new Uint8Array(4));
    expect(parseIPv4('255.255.255.255')).toEqual(new Uint8Array([255, 255, 255, 255]));
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.0.0.1',
    '01.2.3.4',
    '1.2.3.-4',
    '1.2.3.4 ',
    'a.b.c.d',
    '1..3.4',
    '0x1.2.3.4',
  ])('refuses %j', (text) => expect(parseIPv4(text)).toBeNull());
});

describe('parseIPv6', () => {
  it('expands "::" and an embedded IPv4 tail', () => {
    const bytes = parseIPv6('::ffff:198.19.0.1');
    expect(bytes).toEqual(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 19, 0, 1]));
    expect(parseIPv6('1:2:3:4:5:6:7:8')?.[15]).toBe(8);
    expect(parseIPv6('::')).toEqual(new Uint8Array(16));
  });

  it.each([
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '1::2::3',
    ':::',
    ':1::',
    '1::2:',
    '12345::',
    'g::1',
    '1.2.3.4::',
    '::1.2.3',
    '::1.2.3.4:5',
    '1:2:3:4:5:6:7:8::',
    'fe80::1%eth0',
    '',
  ])('refuses %j', (text) => expect(parseIPv6(text)).toBeNull());

  it('accepts seven groups beside "::" (it stands for one zero group)', () => {
    expect(canonicalIP('1:2:3:4:5:6:7::')).toBe('1:2:3:4:5:6:7:0');
  });
});

describe('why an address is refused', () => {
  it.each([
    ['1.2.3', 'expected four dot-separated decimal octets'],
    ['1.2.3.256', 'octet "256" is greater than 255'],
    ['1.2.03.4', 'octet "03" has a leading zero'],
    ['1.2.x.4', 'octet "x" is not a decimal number from 0 to 255'],
    ['1::2::3', '"::" may appear only once'],
    ['fe80::1%eth0', 'a zone index ("%…") is not allowed'],
    ['1:2:3:4:5:6:7:8:9', 'expected 8 groups, found 9'],
    ['1:2:3:4:5:6:7:8::', 'too many groups (8) to use "::"'],
    ['12345::1', 'group "12345" is not 1 to 4 hex digits'],
    [':1::', 'empty group (a single ":" where "::" or a group was expected)'],
    ['::1.2.3', 'embedded IPv4 address "1.2.3": expected four dot-separated decimal octets'],
  ])('%j: %s', (text, reason) => {
    expect(readIP(text)).toEqual({ ok: false, reason });
  });

  it.each([
    ['10.0.0.0', 'missing prefix length (expected address/length)'],
    ['10.0.0.0/8/8', 'more than one "/"'],
    ['10.0.0.0/', 'prefix length "" is not a decimal integer'],
    ['10.0.0.0/08', 'prefix length "08" is not a decimal integer'],
    ['10.0.0.0/-1', 'prefix length "-1" is not a decimal integer'],
    ['10.0.0.0/33', 'prefix length 33 is greater than 32 for IPv4'],
    ['::/129', 'prefix length 129 is greater than 128 for IPv6'],
    ['10.0.0/8', 'expected four dot-separated decimal octets'],
  ])('cidr %j: %s', (text, reason) => {
    expect(readCidr(text)).toEqual({ ok: false, reason });
  });
});

describe('isIP', () => {
  it.each([
    ['198.19.0.1', 4],
    ['::', 6],
    ['::1', 6],
    ['fd00:198:19::1', 6],
    ['::ffff:1.2.3.4', 6],
    ['FD00::A', 6],
    ['1.2.3', 0],
    ['10.0.0.0/8', 0],
    ['', 0],
    ['localhost', 0],
  ] as const)('%j is %i', (text, family) => expect(isIP(text)).toBe(family));
});

describe('formatIPv6 (RFC 5952)', () => {
  it.each([
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:0db8::0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // tie: the first run is compressed
    ['2001:db8:0:0:1:0:0:0', '2001:db8:0:0:1::'], // the longer run wins
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group stays
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['fd00:198:19:0:0:0:0:0', 'fd00:198:19::'],
    ['::ffff:c613:1', '::ffff:198.19.0.1'], // IPv4-mapped keeps a dotted tail
    ['::FFFF:198.19.0.1', '::ffff:198.19.0.1'],
    ['::198.19.0.1', '::c613:1'], // only the mapped prefix is written dotted
    ['64:ff9b::198.19.0.1', '64:ff9b::c613:1'],
  ])('%s -> %s', (text, canonical) => {
    const bytes = parseIPv6(text);
    expect(bytes).not.toBeNull();
    expect(formatIPv6(bytes ?? new Uint8Array(16))).toBe(canonical);
    expect(canonicalIP(text)).toBe(canonical);
    expect(canonicalIP(canonical)).toBe(canonical);
  });

  it('refuses byte arrays of the wrong length', () => {
    expect(() => formatIPv6(new Uint8Array(4))).toThrow('an IPv6 address has 16 bytes, got 4');
    expect(() => formatIPv4(new Uint8Array(16))).toThrow('an IPv4 address has 4 bytes, got 16');
  });
});

describe('ipToBigInt', () => {
  it('reads bytes big-endian', () => {
    expect(ipToBigInt(parseIPv4('1.2.3.4') ?? new Uint8Array())).toBe(0x01020304n);
    expect(ipToBigInt(parseIPv6('::1') ?? new Uint8Array())).toBe(1n);
    expect(ipToBigInt(parseIPv6('8000::') ?? new Uint8Array())).toBe(1n << 127n);
  });
});

describe('parseCidr', () => {
  it.each([
    ['10.65.0.0/24', { family: 4, network: '10.65.0.0', prefixLen: 24, hostBitsSet: false }],
    ['10.65.0.7/24', { family: 4, network: '10.65.0.0', prefixLen: 24, hostBitsSet: true }],
    ['0.0.0.0/0', { family: 4, network: '0.0.0.0', prefixLen: 0, hostBitsSet: false }],
    ['198.19.0.1/32', { family: 4, network: '198.19.0.1', prefixLen: 32, hostBitsSet: false }],
    ['10.255.255.255/9', { family: 4, network: '10.128.0.0', prefixLen: 9, hostBitsSet: true }],
    ['::/0', { family: 6, network: '::', prefixLen: 0, hostBitsSet: false }],
    ['FD00:198:19::1/48', { family: 6, network: 'fd00:198:19::', prefixLen: 48, hostBitsSet: true }],
    ['fd00::ff/121', { family: 6, network: 'fd00::80', prefixLen: 121, hostBitsSet: true }],
    ['::ffff:10.0.0.0/104', { family: 6, network: '::ffff:10.0.0.0', prefixLen: 104, hostBitsSet: false }],
  ] as const)('%s', (text, cidr) => {
    expect(parseCidr(text)).toEqual(cidr);
    expect(canonicalCidr(text)).toBe(formatCidr(cidr));
  });

  it.each(['10.0.0.0', '10.0.0.0/33', '::/129', '10.0.0.0/ 8', 'x/8', '/8'])('refuses %j', (text) => {
    expect(parseCidr(text)).toBeNull();
    expect(canonicalCidr(text)).toBeNull();
  });
});

describe('cidrContains', () => {
  it.each([
    ['10.65.0.0/24', '10.65.0.1', true],
    ['10.65.0.0/24', '10.65.0.255', true],
    ['10.65.0.0/24', '10.65.1.0', false],
    ['10.65.0.9/24', '10.65.0.1', true], // host bits in the network are ignored
    ['0.0.0.0/0', '203.0.113.9', true],
    ['198.19.0.1/32', '198.19.0.1', true],
    ['198.19.0.1/32', '198.19.0.2', false],
    ['::/0', 'fd00::1', true],
    ['::/0', '10.0.0.1', false], // families never mix
    ['0.0.0.0/0', '::ffff:10.0.0.1', false],
    ['fd00:198:19::/48', 'fd00:198:19:ffff::1', true],
    ['fd00:198:19::/48', 'fd00:198:1a::1', false],
    ['fd00::/128', 'fd00::', true],
  ])('%s contains %s: %s', (cidr, addr, inside) => {
    expect(cidrContains(cidr, addr)).toBe(inside);
  });

  it('throws on input that does not parse', () => {
    const bad = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e;
      }
      return undefined;
    };
    const e1 = bad(() => cidrContains('10.0.0.0', '10.0.0.1'));
    expect(e1).toBeInstanceOf(KeyspaceError);
    expect(e1).toMatchObject({
      code: KeyspaceErrorCode.INVALID_CIDR,
      message: 'cidr "10.0.0.0" is not valid: missing prefix length (expected address/length)',
    });
    expect(bad(() => cidrContains('10.0.0.0/8', '10.0.0.256'))).toMatchObject({
      code: KeyspaceErrorCode.INVALID_ADDRESS,
      message: 'address "10.0.0.256" is not valid: octet "256" is greater than 255',
    });
  });
});
