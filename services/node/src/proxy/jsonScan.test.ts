import { describe, expect, it } from 'vitest';
import { stringify } from 'lossless-json';
import { policyFixtures } from '@calico/policy';
import { foldKey, MAX_DEPTH, scanJson, toJson } from './jsonScan.js';

/** The project's seeded generator (mulberry32), so a failure names its seed. */
const rng = policyFixtures.random;

const KEY_CHARS = ['a', 'B', 'k', 's', '\u017f', '\u212a', '"', '\\', '\n', '\u00e9', '\ud83d\ude00', '_', '0'];

function randomValue(r: () => number, depth: number): unknown {
  const pick = Math.floor(r() * (depth > 4 ? 5 : 7));
  const str = () =>
    Array.from({ length: Math.floor(r() * 6) }, () => KEY_CHARS[Math.floor(r() * KEY_CHARS.length)]).join('');
  switch (pick) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return [0, -1, 1.5, 2 ** 53, -2.5e-7, 1e300][Math.floor(r() * 6)];
    case 3:
    case 4:
      return str();
    case 5:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let n = Math.floor(r() * 5); n > 0; n--) o[str()] = randomValue(r, depth + 1);
      return o;
    }
  }
}

/** JSON text with random RFC 8259 whitespace between tokens (outside strings). */
function spaced(text: string, r: () => number): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    out += c;
    if (inString) {
      if (c === '\\') out += text[++i];
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    if (!inString && '{}[],:"'.includes(c) && r() < 0.3) out += [' ', '\t', '\n', '\r'][Math.floor(r() * 4)];
  }
  return out;
}

describe('scanJson', () => {
  it('reads what JSON.parse reads, for 2,000 random documents with random whitespace', () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const r = rng(seed);
      const text = spaced(JSON.stringify(randomValue(r, 0)), r);
      const s = scanJson(text);
      if (!s.ok) throw new Error(`seed ${seed}: ${s.message} in ${JSON.stringify(text)}`);
      expect(JSON.parse(stringify(toJson(s.value)) ?? ''), `seed ${seed}`).toEqual(JSON.parse(text));
    }
  });

  it('accepts a mutated document only when JSON.parse does, and then reads the same', () => {
    const noise = [
      '{',
      '}',
      '[',
      ']',
      ',',
      ':',
      '"',
      '\\',
      ' ',
      'x',
      '0',
      '-',
      '.',
      'e',
      'tru',
      'nul',
      '\u0001',
      '\ufeff',
    ];
    let refusedByBoth = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const r = rng(seed);
      const base = JSON.stringify(randomValue(r, 0));
      const at = Math.floor(r() * (base.length + 1));
      const cut = r() < 0.3 ? 1 : 0;
      const text = base.slice(0, at) + noise[Math.floor(r() * noise.length)] + base.slice(at + cut);
      let parsed: unknown;
      let parses = true;
      try {
        parsed = JSON.parse(text);
      } catch {
        parses = false;
      }
      const s = scanJson(text);
      if (!parses) {
        expect(s.ok, `seed ${seed}: ${JSON.stringify(text)}`).toBe(false);
        refusedByBoth++;
      } else if (s.ok) {
        expect(JSON.parse(stringify(toJson(s.value)) ?? ''), `seed ${seed}`).toEqual(parsed);
      } else {
        // JSON.parse keeps the last of two equal keys; the scanner refuses them.
        expect(s.duplicate, `seed ${seed}: ${s.message} in ${JSON.stringify(text)}`).toBeDefined();
      }
    }
    expect(refusedByBoth).toBeGreaterThan(1000);
  });

  it.each([
    ['{"a":1,"a":2}', 'the key a appears twice'],
    ['{"x":{"NetworkMode":"none","NetworkMode":"host"}}', 'the key x.NetworkMode appears twice'],
    ['{"a b":[{"c":1,"c":1}]}', 'the key "a b"[0].c appears twice'],
    ['{"\\u0041":1,"A":2}', 'the key A appears twice'],
  ])('finds the key sent twice in %s', (text, message) => {
    expect(scanJson(text)).toEqual({ ok: false, message, duplicate: expect.any(String) });
  });

  it.each([
    ['', /unexpected end of input/],
    ['{"a":1} x', /more data after the first JSON value/],
    ['{"a":1}{"a":2}', /more data after the first JSON value/],
    ['{"a":1}\u00a0', /more data after the first JSON value/],
    ['\ufeff{}', /unexpected character/],
    ['{"a":01}', /expected "," or "}"/],
    ['{"a":"\u0001"}', /control character/],
    ['{"a":"\\x"}', /invalid escape/],
    ['{"a":NaN}', /unexpected character/],
    ['{a:1}', /expected a key/],
    ['[1,]', /unexpected character/],
    ['{"a":1,}', /expected a key/],
  ])('refuses %j', (text, why) => {
    const s = scanJson(text);
    expect(s.ok).toBe(false);
    if (!s.ok) expect(s.message).toMatch(why);
  });

  it('keeps large numbers as written and "__proto__" as an own key', () => {
    const s = scanJson('{"Memory":9223372036854775807,"__proto__":{"x":1},"n":1.50e3}');
    if (!s.ok) throw new Error(s.message);
    const v = toJson(s.value) as Record<string, unknown>;
    expect(stringify(v)).toBe('{"Memory":9223372036854775807,"__proto__":{"x":1},"n":1.50e3}');
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
  });

  it(`refuses nesting deeper than ${MAX_DEPTH} without exhausting the stack`, () => {
    expect(scanJson('['.repeat(MAX_DEPTH) + ']'.repeat(MAX_DEPTH)).ok).toBe(true);
    const s = scanJson('['.repeat(100_000));
    expect(s.ok).toBe(false);
    if (!s.ok) expect(s.message).toMatch(/nesting deeper than 1000/);
  });
});

describe('foldKey: the field a key reaches in Go', () => {
  it.each([
    ['HostConfig', 'hostconfig'],
    ['HOSTCONFIG', 'hostconfig'],
    ['Ho\u017ftConfig', 'hostconfig'],
    ['Networ\u212aMode', 'networkmode'],
    ['Label\u017f', 'labels'],
    ['\u00c9nv', '\u00c9nv'],
  ])('%j folds to %j', (k, want) => {
    expect(foldKey(k)).toBe(want);
  });
});
