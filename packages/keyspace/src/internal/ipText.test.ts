import { describe, expect, it } from 'vitest';
import { canonicalIP } from '../ip.js';
import { isCanonicalIPv4, readIPv4 } from './ipText.js';

/** The slow answer the fast check must agree with. */
const slow = (s: string) => readIPv4(s).ok && canonicalIP(s) === s;

describe('isCanonicalIPv4', () => {
  it('agrees with parsing and printing on edge cases', () => {
    const cases = [
      '0.0.0.0',
      '255.255.255.255',
      '198.19.0.1',
      '256.1.1.1',
      '1.2.3',
      '1.2.3.4.5',
      '01.2.3.4',
      '1.2.3.00',
      '1.2.3.0',
      '1..3.4',
      '.1.2.3',
      '1.2.3.4.',
      '1.2.3.4 ',
      ' 1.2.3.4',
      '1.2.3.-4',
      '1234.1.1.1',
      '::1',
      '1.2.3.4/32',
      '',
      '999.999.999.999',
      '10.0.0.1x',
    ];
    for (const c of cases) expect(isCanonicalIPv4(c), c).toBe(slow(c));
  });

  it('agrees with parsing and printing on random dotted text', () => {
    let seed = 7;
    // xorshift32: small, seeded, and random in its low bits.
    const rnd = (n: number) => ((seed ^= seed << 13), (seed ^= seed >>> 17), (seed ^= seed << 5), (seed >>> 0) % n);
    const alphabet = '0123456789.0123456789.x';
    // Asserted once at the end: an expect per string costs more than the check.
    const differ: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const s = Array.from({ length: 1 + rnd(16) }, () => alphabet[rnd(alphabet.length)]).join('');
      if (isCanonicalIPv4(s) !== slow(s)) differ.push(s);
    }
    const octets = ['0', '00', '01', '1', '9', '10', '99', '100', '199', '249', '255', '256', '300', '012', '1000'];
    let valid = 0;
    for (let i = 0; i < 20_000; i++) {
      const s = Array.from({ length: 3 + rnd(3) }, () => octets[rnd(octets.length)]).join('.');
      if (isCanonicalIPv4(s) !== slow(s)) differ.push(s);
      if (slow(s)) valid++;
    }
    expect(differ.slice(0, 10)).toEqual([]);
    expect(valid).toBeGreaterThan(500);
  });
});
