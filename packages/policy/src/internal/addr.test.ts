import { describe, expect, it } from 'vitest';
import { compareAddrs, sortAddrs } from './addr.js';

describe('sortAddrs', () => {
  it('orders like sorting with compareAddrs, IPv4, IPv6 and odd texts mixed', () => {
    let seed = 5;
    // xorshift32: small, seeded, and random in its low bits.
    const rnd = (n: number) => ((seed ^= seed << 13), (seed ^= seed >>> 17), (seed ^= seed << 5), (seed >>> 0) % n);
    const odd = [
      '010.0.0.1',
      '1.2.3',
      'not an address',
      '::',
      '::ffff:10.0.0.1',
      'fd00:198:19::1',
      'fd00:198:19::a',
      '255.255.255.255',
      '0.0.0.0',
    ];
    for (let round = 0; round < 200; round++) {
      const set = new Set<string>();
      for (let i = rnd(60); i > 0; i--) {
        const pick = rnd(4);
        if (pick === 0) set.add(odd[rnd(odd.length)] as string);
        else if (pick === 1) set.add(`fd00:198:19::${rnd(0xffff).toString(16)}`);
        else set.add(`198.19.${rnd(256)}.${rnd(256)}`);
      }
      expect(sortAddrs(set)).toEqual([...set].sort(compareAddrs));
    }
  });
});
