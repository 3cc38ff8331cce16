// Field-level checks shared by decoders and encoders. Messages here carry no key: decoders
// prefix the key they were given, encoders prefix what they were encoding.
import { canonicalIP } from '../ip.js';
import { isCanonicalIPv4, readCidr, readIP } from './ipText.js';

export type Check<T> = { ok: true; value: T } | { ok: false; errors: string[] };

export const good = <T>(value: T): Check<T> => ({ ok: true, value });
export const bad = <T = never>(...errors: string[]): Check<T> => ({ ok: false, errors });

/** A JSON-ish name for what was found, for "must be X, got Y" messages. */
export function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** Longest text a message quotes: a huge value must not make a huge message in every log and report. */
const MAX_SHOWN = 80;

/** Text as a JSON string, cut to MAX_SHOWN characters (code points, so no surrogate is split). */
export function showText(text: string): string {
  if (text.length <= MAX_SHOWN) return JSON.stringify(text);
  let cut = '';
  let n = 0;
  for (const ch of text) {
    if (n++ === MAX_SHOWN - 3) break;
    cut += ch;
  }
  return JSON.stringify(`${cut}...`);
}

/**
 * Shows a found value the way it was written in JSON (strings quoted, numbers bare). Arrays and
 * objects by their kind only: String() of them is as long as they are, and recurses as deep as
 * they nest (a value of 100,000 nested arrays overflows the stack).
 */
export function show(value: unknown): string {
  if (typeof value === 'string') return showText(value);
  return typeof value === 'object' && value !== null ? kindOf(value) : String(value);
}

export function parseJson(raw: string): Check<unknown> {
  try {
    return good(JSON.parse(raw) as unknown);
  } catch {
    // The engine's own message varies between Node versions; the raw text is what helps.
    return bad(`value is not valid JSON: ${showText(raw)}`);
  }
}

export type JsonObject = Record<string, unknown>;

export function asObject(value: unknown, label: string): Check<JsonObject> {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return good(value as JsonObject);
  return bad(`${label} must be a JSON object, got ${kindOf(value)}`);
}

/** Own property or undefined: JSON.parse objects inherit from Object.prototype. */
export function field(obj: JsonObject, name: string): unknown {
  return Object.hasOwn(obj, name) ? obj[name] : undefined;
}

export function unknownFields(obj: JsonObject, allowed: readonly string[], label = ''): string[] {
  const at = label === '' ? '' : `${label}: `;
  return Object.keys(obj)
    .filter((k) => !allowed.includes(k))
    .map((k) => `${at}unknown field ${showText(k)}`);
}

/** An id that will become a key segment elsewhere (group, host, container, endpoint). */
export function checkSegmentString(label: string, value: unknown): Check<string> {
  if (value === undefined) return bad(`${label} is missing`);
  if (typeof value !== 'string') return bad(`${label} must be a string, got ${kindOf(value)}`);
  if (value === '') return bad(`${label} must not be empty`);
  if (value.includes('/')) return bad(`${label} ${show(value)} must not contain "/"`);
  return good(value);
}

export function checkAddress(label: string, value: unknown, want?: 4 | 6): Check<{ addr: string; family: 4 | 6 }> {
  const what = want === undefined ? 'an IPv4 or IPv6 address' : `an IPv${want} address`;
  if (value === undefined) return bad(`${label} is missing`);
  if (typeof value !== 'string') return bad(`${label} must be ${what} string, got ${kindOf(value)}`);
  if (want !== 6 && isCanonicalIPv4(value)) return good({ addr: value, family: 4 });
  if (value.includes('/') && readCidr(value).ok)
    return bad(`${label} ${show(value)} must be an address without a prefix length`);
  const r = readIP(value);
  if (!r.ok) return bad(`${label} ${show(value)} is not ${what}: ${r.reason}`);
  if (want !== undefined && r.value.family !== want)
    return bad(`${label} ${show(value)} is not ${what}: it is IPv${r.value.family}`);
  return good({ addr: canonicalIP(value) ?? value, family: r.value.family });
}

const DIGITS = /^[0-9]+$/;

/** An integer given as a JSON number or as a string of digits (the seed writes ports as "80"). */
export function checkIntegerish(label: string, value: unknown, min: number, max: number): Check<number> {
  let n: number;
  if (value === undefined) return bad(`${label} is missing`);
  if (typeof value === 'number') {
    n = value;
  } else if (typeof value === 'string') {
    if (!DIGITS.test(value)) return bad(`${label} ${show(value)} is not a decimal integer`);
    n = Number(value);
  } else {
    return bad(`${label} must be a number or a numeric string, got ${kindOf(value)}`);
  }
  if (!Number.isInteger(n)) return bad(`${label} ${show(value)} is not an integer`);
  if (n < min || n > max) return bad(`${label} ${show(value)} is out of range ${min} to ${max}`);
  return good(n);
}

export const MAX_AS_NUMBER = 4_294_967_295;

export function checkAsNumber(label: string, value: unknown): Check<number> {
  return checkIntegerish(label, value, 1, MAX_AS_NUMBER);
}

/** Most messages one value gets: a list of 100,000 bad items is one problem, not 100,000 lines. */
export const MAX_ERRORS = 10;

/** Applies a prefix to every error (at most MAX_ERRORS of them, then a count), leaving successes alone. */
export function prefixed<T>(prefix: string, check: Check<T>): Check<T> {
  if (check.ok) return check;
  const shown = check.errors.slice(0, MAX_ERRORS).map((e) => `${prefix}: ${e}`);
  const more = check.errors.length - MAX_ERRORS;
  if (more > 0) shown.push(`${prefix}: and ${more} more problem${more === 1 ? '' : 's'} in this value`);
  return { ok: false, errors: shown };
}
