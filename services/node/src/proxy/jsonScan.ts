import { LosslessNumber } from 'lossless-json';
import type { Json } from '../workload/createRequest.js';

/**
 * A strict JSON reader that keeps what JSON.parse hides: every key as sent, in order, so that
 * duplicates can be refused. Exactly one value (RFC 8259 whitespace around it); numbers stay
 * as written (LosslessNumber) so that large integers reach dockerd intact.
 */
export type JsonNode =
  | { t: 'object'; entries: [string, JsonNode][] }
  | { t: 'array'; items: JsonNode[] }
  | { t: 'string'; v: string }
  | { t: 'number'; raw: string }
  | { t: 'bool'; v: boolean }
  | { t: 'null' };

/** `duplicate` is the path of a key sent twice in one object, when that is what is wrong. */
export type ScanResult = { ok: true; value: JsonNode } | { ok: false; message: string; duplicate?: string };

/** Deeper than any request a Docker client sends (Go's own limit is 10,000). */
export const MAX_DEPTH = 1000;

class ScanError extends Error {}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/** Where a key sits, for messages: HostConfig.NetworkMode, Env[2]. */
export function keyPath(parent: string, key: string): string {
  const k = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : JSON.stringify(key);
  return parent === '' ? k : `${parent}.${k}`;
}

export function scanJson(text: string): ScanResult {
  let i = 0;
  const fail = (what: string): never => {
    throw new ScanError(`${what} at offset ${i}`);
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else return;
    }
  };
  const str = (): string => {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in a string');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      const e = text[i + 1];
      const simple: Record<string, string> = {
        '"': '"',
        '\\': '\\',
        '/': '/',
        b: '\b',
        f: '\f',
        n: '\n',
        r: '\r',
        t: '\t',
      };
      if (e !== undefined && e in simple) {
        out += simple[e];
        i += 2;
      } else if (e === 'u' && /^[0-9A-Fa-f]{4}$/.test(text.slice(i + 2, i + 6))) {
        out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
        i += 6;
      } else fail('invalid escape in a string');
      start = i;
    }
  };
  const value = (path: string, depth: number): JsonNode => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const entries: [string, JsonNode][] = [];
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return { t: 'object', entries };
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const k = str();
        if (seen.has(k)) throw new DuplicateKeyError(keyPath(path, k));
        seen.add(k);
        ws();
        if (text[i] !== ':') fail('expected ":"');
        i++;
        entries.push([k, value(keyPath(path, k), depth + 1)]);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return { t: 'object', entries };
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const items: JsonNode[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return { t: 'array', items };
      }
      for (;;) {
        items.push(value(`${path}[${items.length}]`, depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return { t: 'array', items };
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return { t: 'string', v: str() };
    if (text.startsWith('true', i)) return ((i += 4), { t: 'bool', v: true });
    if (text.startsWith('false', i)) return ((i += 5), { t: 'bool', v: false });
    if (text.startsWith('null', i)) return ((i += 4), { t: 'null' });
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m) {
      i += m[0].length;
      return { t: 'number', raw: m[0] };
    }
    return fail(i >= text.length ? 'unexpected end of input' : `unexpected character ${JSON.stringify(text[i])}`);
  };
  try {
    const v = value('', 0);
    ws();
    if (i < text.length) fail('more data after the first JSON value');
    return { ok: true, value: v };
  } catch (e) {
    if (e instanceof DuplicateKeyError)
      return { ok: false, message: `the key ${e.path} appears twice`, duplicate: e.path };
    if (e instanceof ScanError) return { ok: false, message: `invalid JSON: ${e.message}` };
    throw e;
  }
}

class DuplicateKeyError extends Error {
  constructor(readonly path: string) {
    super(path);
  }
}

/** The value, as lossless-json would give it (own properties even for "__proto__"). */
export function toJson(n: JsonNode): Json {
  switch (n.t) {
    case 'object':
      return Object.fromEntries(n.entries.map(([k, v]) => [k, toJson(v)]));
    case 'array':
      return n.items.map(toJson);
    case 'string':
      return n.v;
    case 'number':
      return new LosslessNumber(n.raw);
    case 'bool':
      return n.v;
    case 'null':
      return null;
  }
}

/**
 * Go's encoding/json matches a key to a struct field by Unicode simple case folding: besides
 * ASCII case, "ſ" (U+017F) is an "s" and the Kelvin sign (U+212A) a "k".
 */
export function foldKey(k: string): string {
  return k
    .replace(/\u017f/g, 's')
    .replace(/\u212a/g, 'k')
    .replace(/[A-Z]/g, (c) => c.toLowerCase());
}
