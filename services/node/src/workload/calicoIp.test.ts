import { describe, expect, it } from 'vitest';
import { calicoIpFromEnv, parseCalicoIp, reservedAddressRefusal, type ReservedAddresses } from './calicoIp.js';

describe('CALICO_IP', () => {
  it.each([
    ['198.19.0.5', { kind: 'addr', addr: '198.19.0.5', family: 4 }],
    [' 198.19.0.5 ', { kind: 'addr', addr: '198.19.0.5', family: 4 }],
    ['FD00:198:19:0::0005', { kind: 'addr', addr: 'fd00:198:19::5', family: 6 }],
    ['auto', { kind: 'auto', family: 4 }],
    ['AUTO6', { kind: 'auto', family: 6 }],
  ])('%j is accepted', (raw, want) => {
    expect(parseCalicoIp(raw)).toEqual({ ok: true, value: want });
  });

  it.each([
    ['', 'CALICO_IP is empty: give an IPv4 or IPv6 address, or "auto"'],
    ['   ', 'CALICO_IP is empty: give an IPv4 or IPv6 address, or "auto"'],
    ['banana', 'CALICO_IP="banana" is not an IPv4 or IPv6 address, nor "auto"'],
    [
      '198.19.0.300',
      'CALICO_IP="198.19.0.300" is not a valid IPv4 address: each of the four numbers must be 0-255, without leading zeros',
    ],
    ['198.19.0', 'CALICO_IP="198.19.0" is not an IPv4 or IPv6 address, nor "auto"'],
    [
      '198.19.0.1/24',
      'CALICO_IP="198.19.0.1/24" is a network, not an address: give one address without a prefix length (the container gets it as /32)',
    ],
    [
      'fd00::1/64',
      'CALICO_IP="fd00::1/64" is a network, not an address: give one address without a prefix length (the container gets it as /128)',
    ],
    ['1.2.3.4/99', 'CALICO_IP="1.2.3.4/99" is not an IPv4 or IPv6 address, nor "auto"'],
    ['127.0.0.1', 'CALICO_IP="127.0.0.1" cannot be given to a container: it is a loopback address'],
    ['224.0.0.1', 'CALICO_IP="224.0.0.1" cannot be given to a container: it is a multicast address'],
    ['0.0.0.0', 'CALICO_IP="0.0.0.0" cannot be given to a container: addresses in 0.0.0.0/8 mean "this network"'],
    ['255.255.255.255', 'CALICO_IP="255.255.255.255" cannot be given to a container: it is the broadcast address'],
    ['169.254.1.1', 'CALICO_IP="169.254.1.1" cannot be given to a container: it is a link-local address'],
    ['::', 'CALICO_IP="::" cannot be given to a container: it is the unspecified address ::'],
    ['fe80::1', 'CALICO_IP="fe80::1" cannot be given to a container: it is a link-local address'],
    ['ff02::1', 'CALICO_IP="ff02::1" cannot be given to a container: it is a multicast address'],
  ])('%j is refused with a reason', (raw, message) => {
    expect(parseCalicoIp(raw)).toEqual({ ok: false, message });
  });

  it('reads Env lists', () => {
    expect(calicoIpFromEnv(undefined)).toEqual({ ok: true, value: { kind: 'none' } });
    expect(calicoIpFromEnv(['PATH=/bin', 'CALICO_IPX=1'])).toEqual({ ok: true, value: { kind: 'none' } });
    expect(calicoIpFromEnv(['A=1', 'CALICO_IP=198.19.0.9'])).toEqual({
      ok: true,
      value: { kind: 'addr', addr: '198.19.0.9', family: 4 },
    });
    expect(calicoIpFromEnv(['CALICO_IP=198.19.0.9', 'CALICO_IP=198.19.0.9'])).toMatchObject({ ok: true });
    expect(calicoIpFromEnv(['CALICO_IP'])).toEqual({
      ok: false,
      message: 'CALICO_IP is empty: give an IPv4 or IPv6 address, or "auto"',
    });
    expect(calicoIpFromEnv(['CALICO_IP=198.19.0.1', 'CALICO_IP=198.19.0.2'])).toEqual({
      ok: false,
      message: 'CALICO_IP is given 2 times with different values ("198.19.0.1", "198.19.0.2"): give it once',
    });
    expect(calicoIpFromEnv('CALICO_IP=1')).toEqual({
      ok: false,
      message: 'Env must be a list of "NAME=value" strings',
    });
  });

  describe('addresses of the cluster itself, and pools', () => {
    const cluster: ReservedAddresses = {
      hostAddrs: ['198.18.0.11', '10.0.0.5', 'fd00:198:18::b'],
      birdIps: new Map([
        ['198.18.0.11', 'h1'],
        ['198.18.0.12', 'h2'],
        ['fd00:198:18::c', 'h2'],
      ]),
      etcdAddrs: ['198.18.0.1'],
      masterAddrs: ['198.18.0.2'],
      pools: [],
    };
    const withPools = { ...cluster, pools: ['198.19.0.0/24', '198.19.9.0/30', 'fd00:198:19::/64'] };
    const why = (a: string, s: string) => `CALICO_IP=${a} cannot be given to a container: ${s}`;

    it.each([
      ['198.18.0.11', 4, cluster, why('198.18.0.11', 'it is an address of this host')],
      ['10.0.0.5', 4, cluster, why('10.0.0.5', 'it is an address of this host')],
      ['fd00:198:18::b', 6, cluster, why('fd00:198:18::b', 'it is an address of this host')],
      ['198.18.0.12', 4, cluster, why('198.18.0.12', 'it is the management address (bird_ip) of host "h2"')],
      ['fd00:198:18::c', 6, cluster, why('fd00:198:18::c', 'it is the management address (bird_ip) of host "h2"')],
      ['198.18.0.1', 4, cluster, why('198.18.0.1', 'it is the address of an etcd endpoint')],
      ['198.18.0.2', 4, cluster, why('198.18.0.2', 'it is the address of the Calico master')],
      // A management address is refused even inside a pool.
      [
        '198.18.0.12',
        4,
        { ...withPools, pools: ['198.18.0.0/24'] },
        why('198.18.0.12', 'it is the management address (bird_ip) of host "h2"'),
      ],
      [
        '198.19.1.1',
        4,
        withPools,
        why(
          '198.19.1.1',
          'it is outside every IPv4 pool (198.19.0.0/24, 198.19.9.0/30); choose an address in one of them',
        ),
      ],
      [
        'fd00:198:19:1::1',
        6,
        withPools,
        why('fd00:198:19:1::1', 'it is outside every IPv6 pool (fd00:198:19::/64); choose an address in one of them'),
      ],
    ] as const)('%s is refused', (addr, family, r, message) => {
      expect(reservedAddressRefusal(addr, family, r)).toBe(message);
    });

    it.each([
      // Without pools (the seed's way) any other unicast address is the orchestrator's to give.
      ['198.19.1.1', 4, cluster],
      ['198.18.0.13', 4, cluster],
      ['fd00:198:19::1', 6, cluster],
      ['198.19.0.7', 4, withPools],
      ['198.19.9.2', 4, withPools],
      ['fd00:198:19::9', 6, withPools],
      // Pools of one family do not restrict the other.
      ['fd00:198:20::1', 6, { ...cluster, pools: ['198.19.0.0/24'] }],
    ] as const)('%s is accepted', (addr, family, r) => {
      expect(reservedAddressRefusal(addr, family, r)).toBeUndefined();
    });
  });
});
