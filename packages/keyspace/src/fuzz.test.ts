import { describe, expect, it } from 'vitest';
import { fuzzClasses, fuzzEntries, fuzzRandom } from './fuzz.js';
import { parseKey } from './keys.js';
import { isHostName } from './names.js';
import { decodeEntry } from './values.js';

describe('fuzzEntries', () => {
  const entries = fuzzEntries({ seed: 16, count: 10_000 });

  it('makes the entries asked for, with distinct keys, every one refused by decodeEntry', () => {
    expect(entries).toHaveLength(10_000);
    expect(new Set(entries.map((e) => e.key)).size).toBe(10_000);
    const accepted = entries.filter((e) => decodeEntry(e.key, e.value).ok);
    expect(accepted).toEqual([]);
  });

  it('is the same for the same seed and differs for another', () => {
    const again = fuzzEntries({ seed: 16, count: 200 });
    expect(again).toEqual(entries.slice(0, again.length));
    const other = fuzzEntries({ seed: 17, count: 200 });
    expect(other.map((e) => e.key)).not.toEqual(again.map((e) => e.key));
  });

  it('covers every class, and most entries are near misses of a real layout', () => {
    const byClass = new Map<string, number>();
    for (const e of entries) byClass.set(e.class, (byClass.get(e.class) ?? 0) + 1);
    for (const c of fuzzClasses) expect(byClass.get(c) ?? 0, c).toBeGreaterThan(0);
    // A key of a known layout whose value (or host segment) is wrong, rather than any key at all.
    const ofLayout = entries.filter((e) => parseKey(e.key).kind !== 'unknown').length;
    expect(ofLayout / entries.length).toBeGreaterThan(0.5);
    // Keys one level off carry a value that would decode at the layout they miss, so mostly only
    // the key is wrong (a misspelt host segment makes a bad host instead).
    const off = entries.filter((e) => e.class === 'one-level-off');
    expect(off.filter((e) => parseKey(e.key).kind === 'unknown').length / off.length).toBeGreaterThan(0.8);
  });

  it('has the shapes the classes promise', () => {
    const of = (c: string) => entries.filter((e) => e.class === c);
    expect(of('newline-in-segment').every((e) => /[\r\n]/.test(e.key))).toBe(true);
    expect(of('control').every((e) => /\p{Cc}/u.test(e.key + e.value.replace(/\\u0000/g, '\u0000')))).toBe(true);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: \x00 bounds the ASCII range; a character past it is the point.
    expect(of('unicode').every((e) => /[^\x00-\x7f]/.test(e.key + e.value))).toBe(true);
    const huge = of('huge');
    expect(huge.every((e) => e.value.length >= 64 * 1024 && e.value.length <= 1024 * 1024)).toBe(true);
    expect(huge.reduce((n, e) => n + e.value.length, 0)).toBeLessThanOrEqual(8 * 1024 * 1024);
    const hosts = of('bad-host').map((e) => parseKey(e.key));
    expect(hosts.every((k) => k.kind !== 'unknown' && 'host' in k)).toBe(true);
  });

  it('stays off the live cluster: fuzz names only, nothing under /calico/master/, text etcd keeps as written', () => {
    expect(entries.filter((e) => e.key.startsWith('/calico/master/'))).toEqual([]);
    for (const e of entries) {
      const k = parseKey(e.key);
      // A host segment that is a host name is one of the fuzzer's; any other is refused by every service.
      if ('host' in k && isHostName(k.host)) expect(k.host, e.key).toMatch(/^fz-/);
      if ('groupId' in k) expect(k.groupId.replace(/[\r\n]/g, ''), e.key).toMatch(/^fzg/);
    }
    // No lone surrogates: a key or value must come back from etcd (UTF-8) exactly as written.
    const roundTrips = (s: string) => Buffer.from(s, 'utf8').toString('utf8') === s;
    expect(entries.filter((e) => !roundTrips(e.key) || !roundTrips(e.value))).toEqual([]);
  });

  it('honours the huge byte budget', () => {
    expect(fuzzEntries({ seed: 1, count: 3000, hugeBytes: 0 }).filter((e) => e.class === 'huge')).toEqual([]);
  });

  it('fuzzRandom is deterministic and uniform enough', () => {
    const a = fuzzRandom(42);
    const b = fuzzRandom(42);
    const xs = Array.from({ length: 10_000 }, () => a());
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
  });
});
