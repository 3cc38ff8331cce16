// Address parsing that explains itself: the public helpers in ../ip.ts collapse these to null,
// the value decoders quote the reason so an operator sees what is wrong with what they wrote.

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

export interface ParsedAddress {
  family: 4 | 6;
  bytes: Uint8Array;
}

export interface ParsedCidr {
  family: 4 | 6;
  /** Network bytes with host bits cleared. */
  bytes: Uint8Array;
  prefixLen: number;
  hostBitsSet: boolean;
}

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

const DECIMAL_OCTET = /^[0-9]{1,3}$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * Whether text is a dotted quad exactly as it would be printed (no leading zeros, each octet at
 * most 255): the usual case, answered without building anything.
 */
export function isCanonicalIPv4(text: string): boolean {
  const n = text.length;
  if (n < 7 || n > 15) return false;
  let octets = 0;
  let digits = 0;
  let value = 0;
  let first = 0;
  for (let i = 0; i <= n; i++) {
    const c = i === n ? 46 : text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || (digits > 1 && first === 48) || value > 255) return false;
      octets++;
      digits = 0;
      value = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 0) first = c;
      value = value * 10 + (c - 48);
      if (++digits > 3) return false;
    } else return false;
  }
  return octets === 4;
}

export function readIPv4(text: string): Parsed<Uint8Array> {
  const parts = text.split('.');
  if (parts.length !== 4) return fail('expected four dot-separated decimal octets');
  const bytes = new Uint8Array(4);
  for (const [i, part] of parts.entries()) {
    if (!DECIMAL_OCTET.test(part)) return fail(`octet "${part}" is not a decimal number from 0 to 255`);
    // Leading zeros are refused because some tools read them as octal.
    if (part.length > 1 && part.startsWith('0')) return fail(`octet "${part}" has a leading zero`);
    const n = Number(part);
    if (n > 255) return fail(`octet "${part}" is greater than 255`);
    bytes[i] = n;
  }
  return { ok: true, value: bytes };
}

function readGroups(side: string, allowTrailingIPv4: boolean): Parsed<number[]> {
  if (side === '') return { ok: true, value: [] };
  const parts = side.split(':');
  const groups: number[] = [];
  for (const [i, part] of parts.entries()) {
    const last = i === parts.length - 1;
    if (last && allowTrailingIPv4 && part.includes('.')) {
      const v4 = readIPv4(part);
      if (!v4.ok) return fail(`embedded IPv4 address "${part}": ${v4.reason}`);
      const b = v4.value;
      groups.push(((b[0] ?? 0) << 8) | (b[1] ?? 0), ((b[2] ?? 0) << 8) | (b[3] ?? 0));
      continue;
    }
    if (part === '') return fail('empty group (a single ":" where "::" or a group was expected)');
    if (!HEX_GROUP.test(part)) return fail(`group "${part}" is not 1 to 4 hex digits`);
    groups.push(parseInt(part, 16));
  }
  return { ok: true, value: groups };
}

export function readIPv6(text: string): Parsed<Uint8Array> {
  if (text.includes('%')) return fail('a zone index ("%…") is not allowed');
  const halves = text.split('::');
  if (halves.length > 2) return fail('"::" may appear only once');
  let groups: number[];
  if (halves.length === 2) {
    const head = readGroups(halves[0] ?? '', false);
    if (!head.ok) return head;
    const tail = readGroups(halves[1] ?? '', true);
    if (!tail.ok) return tail;
    const explicit = head.value.length + tail.value.length;
    // "::" must stand for at least one zero group (RFC 4291 section 2.2).
    if (explicit > 7) return fail(`too many groups (${explicit}) to use "::"`);
    groups = [...head.value, ...new Array<number>(8 - explicit).fill(0), ...tail.value];
  } else {
    const all = readGroups(text, true);
    if (!all.ok) return all;
    if (all.value.length !== 8) return fail(`expected 8 groups, found ${all.value.length}`);
    groups = all.value;
  }
  const bytes = new Uint8Array(16);
  for (const [i, g] of groups.entries()) {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  }
  return { ok: true, value: bytes };
}

/** Any ":" means the writer meant IPv6, so the reason given is the IPv6 one. */
export function readIP(text: string): Parsed<ParsedAddress> {
  if (text.includes(':')) {
    const r = readIPv6(text);
    return r.ok ? { ok: true, value: { family: 6, bytes: r.value } } : r;
  }
  const r = readIPv4(text);
  return r.ok ? { ok: true, value: { family: 4, bytes: r.value } } : r;
}

const PREFIX_LEN = /^(0|[1-9][0-9]{0,2})$/;

export function readCidr(text: string): Parsed<ParsedCidr> {
  const parts = text.split('/');
  if (parts.length === 1) return fail('missing prefix length (expected address/length)');
  if (parts.length > 2) return fail('more than one "/"');
  const [addrText = '', lenText = ''] = parts;
  const addr = readIP(addrText);
  if (!addr.ok) return addr;
  const { family, bytes } = addr.value;
  if (!PREFIX_LEN.test(lenText)) return fail(`prefix length "${lenText}" is not a decimal integer`);
  const prefixLen = Number(lenText);
  const maxLen = family === 4 ? 32 : 128;
  if (prefixLen > maxLen) return fail(`prefix length ${prefixLen} is greater than ${maxLen} for IPv${family}`);
  const masked = maskBytes(bytes, prefixLen);
  const hostBitsSet = masked.some((b, i) => b !== bytes[i]);
  return { ok: true, value: { family, bytes: masked, prefixLen, hostBitsSet } };
}

export function maskBytes(bytes: Uint8Array, prefixLen: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLen - 8 * i));
    out[i] = (bytes[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}
