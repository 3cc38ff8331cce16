import { describe, expect, it } from 'vitest';
import { decodeIpPool } from '@calico/keyspace';
import { poolsIn, reservationsIn } from './addresses.js';

describe('pools and reservations read under their prefixes', () => {
  it('only keys of the pool layout make pools: keys one level off do not, whatever their value', () => {
    const kvs = [
      { key: '/calico/ipam/v4/pool/198.19.0.0-16', value: '{"cidr":"198.19.0.0/16"}' },
      // One level off: a segment more, host bits in the key, a space, another family's value.
      { key: '/calico/ipam/v4/pool/203.0.113.0-26/x', value: '{"cidr":"203.0.113.0/26"}' },
      { key: '/calico/ipam/v4/pool/203.0.113.1-24', value: '{"cidr":"203.0.113.0/24"}' },
      { key: '/calico/ipam/v4/pool/198.51.100.0-26 ', value: '{"cidr":"198.51.100.0/26"}' },
      { key: '/calico/ipam/v4/pool/fd00:198:19::-48', value: '{"cidr":"fd00:198:19::/48"}' },
      // A pool key whose value names another network.
      { key: '/calico/ipam/v4/pool/203.0.113.64-26', value: '{"cidr":"198.51.100.0/26"}' },
    ];
    expect(poolsIn(kvs, 4)).toEqual(['198.19.0.0/16']);
    // The control: the value decoder alone accepts the keys one level off (it cannot check them against the key).
    expect(kvs.slice(1, 4).map((kv) => decodeIpPool(kv.key, kv.value).ok)).toEqual([true, true, true]);
  });

  it('only assignment keys make reservations, by their canonical address', () => {
    const holder = '{"host":"h1","containerId":"c1"}';
    const kvs = [
      { key: '/calico/ipam/v4/assignment/198.19.0.1', value: holder },
      { key: '/calico/ipam/v4/assignment/198.19.0.01', value: holder },
      { key: '/calico/ipam/v4/assignment/198.19.0.2/x', value: holder },
      { key: '/calico/ipam/v4/assignment/198.19.0.3', value: '{"host":5}' },
    ];
    expect([...reservationsIn(kvs, 4)]).toEqual([['198.19.0.1', { host: 'h1', containerId: 'c1' }]]);
  });
});
