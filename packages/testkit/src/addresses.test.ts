import { describe, expect, it } from 'vitest';
import { containerV4, containerV6, fabricIp } from './addresses.js';
import { Cleanup } from './cleanup.js';

describe('test address plan', () => {
  it('puts hosts on the fabric range and containers on the container ranges', () => {
    expect(fabricIp(1)).toBe('198.18.0.11');
    expect(containerV4(1, 5)).toBe('198.19.1.5');
    expect(containerV6(1, 10)).toBe('fd00:198:19:1::a');
  });
  it('refuses addresses outside the plan', () => {
    expect(() => fabricIp(0)).toThrow('fabric host index out of range: 0');
    expect(() => containerV4(256, 1)).toThrow('container address out of range');
  });
});

describe('Cleanup', () => {
  it('runs steps in reverse order and keeps going past a failing one', async () => {
    const order: string[] = [];
    const c = new Cleanup();
    c.defer('a', () => order.push('a'));
    c.defer('b', () => {
      throw new Error('boom');
    });
    c.defer('c', async () => order.push('c'));
    await expect(c.run()).rejects.toThrow('teardown failed:\nb: boom');
    expect(order).toEqual(['c', 'a']);
  });
});
