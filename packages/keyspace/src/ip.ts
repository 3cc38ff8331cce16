import { KeyspaceError, KeyspaceErrorCode } from './errors.js';
import { isCanonicalIPv4, readCidr, readIP, readIPv4, readIPv6 } from './internal/ipText.js';

export { isCanonicalIPv4 };

export type IPFamily = 4 | 6;

export interface Cidr {
  family: IPFamily;
  /** The network address in canonical text, host bits cleared. */
  network: string;
  prefixLen: number;
  /** True when the text had bits set below the prefix (they were cleared in `network`). */
  hostBitsSet: boolean;
}

/** Strict dotted quad: four decimal octets, no leading zeros. Returns 4 bytes or null. */
export function parseIPv4(text: string): Uint8Array | null {
  const r = readIPv4(text);
  return r.ok ? r.value : null;
}

/** RFC 4291 text (with "::" and a trailing embedded IPv4); no zone index. Returns 16 bytes or null. */
export function parseIPv6(text: string): Uint8Array | null {
  const r = readIPv6(text);
  return r.ok ? r.value : null;
}

/** Big-endian bytes of an address as one integer, for range arithmetic. */
export function ipToBigInt(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

export function isIP(text: string): 0 | 4 | 6 {
  const r = readIP(text);
  return r.ok ? r.value.family : 0;
}

export function formatIPv4(bytes: Uint8Array): string {
  if (bytes.length !== 4)
    throw new KeyspaceError(KeyspaceErrorCode.INVALID_ADDRESS, `an IPv4 address has 4 bytes, got ${bytes.length}`);
  return Array.from(bytes).join('.');
}

/**
 * RFC 5952 text: lowercase hex, no leading zeros, the longest run of two or more zero groups
 * (the first one on a tie) written as "::". IPv4-mapped addresses (::ffff:0:0/96) keep their
 * dotted tail, as section 5 of the RFC recommends.
 */
export function formatIPv6(bytes: Uint8Array): string {
  if (bytes.length !== 16)
    throw new KeyspaceError(KeyspaceErrorCode.INVALID_ADDRESS, `an IPv6 address has 16 bytes, got ${bytes.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));

  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) return `::ffff:${formatIPv4(bytes.subarray(12))}`;

  let bestStart = -1;
  let bestLen = 1; // a lone zero group is never compressed
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

function formatBytes(bytes: Uint8Array): string {
  return bytes.length === 4 ? formatIPv4(bytes) : formatIPv6(bytes);
}

/** The one spelling this project stores for an address (IPv4 unchanged, IPv6 per RFC 5952), or null. */
export function canonicalIP(text: string): string | null {
  const r = readIP(text);
  return r.ok ? formatBytes(r.value.bytes) : null;
}

/** Parses "address/length". Host bits are cleared, never an error; `hostBitsSet` tells whether any were. */
export function parseCidr(text: string): Cidr | null {
  const r = readCidr(text);
  if (!r.ok) return null;
  const { family, bytes, prefixLen, hostBitsSet } = r.value;
  return { family, network: formatBytes(bytes), prefixLen, hostBitsSet };
}

export function formatCidr(cidr: Pick<Cidr, 'network' | 'prefixLen'>): string {
  return `${cidr.network}/${cidr.prefixLen}`;
}

/** Canonical "network/length" for any valid CIDR text, or null. */
export function canonicalCidr(text: string): string | null {
  const c = parseCidr(text);
  return c === null ? null : formatCidr(c);
}

/**
 * Whether `addr` lies inside `cidr`. Families never mix: an IPv4-mapped IPv6 address is not
 * inside an IPv4 network. Throws KeyspaceError when either argument does not parse, because
 * that is a caller bug rather than a "no".
 */
export function cidrContains(cidr: string, addr: string): boolean {
  const net = readCidr(cidr);
  if (!net.ok) throw new KeyspaceError(KeyspaceErrorCode.INVALID_CIDR, `cidr "${cidr}" is not valid: ${net.reason}`);
  const ip = readIP(addr);
  if (!ip.ok)
    throw new KeyspaceError(KeyspaceErrorCode.INVALID_ADDRESS, `address "${addr}" is not valid: ${ip.reason}`);
  if (net.value.family !== ip.value.family) return false;
  const bits = BigInt(net.value.family === 4 ? 32 : 128);
  const hostBits = bits - BigInt(net.value.prefixLen);
  return ipToBigInt(net.value.bytes) >> hostBits === ipToBigInt(ip.value.bytes) >> hostBits;
}
