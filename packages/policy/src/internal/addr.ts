import { ipToBigInt, parseIPv4, parseIPv6, type IPFamily } from '@calico/keyspace';

function value(addr: string): bigint {
  const bytes = parseIPv4(addr) ?? parseIPv6(addr);
  return bytes === null ? -1n : ipToBigInt(bytes);
}

/** Numeric order within a family (v4 before v6), so lists read the way people expect (…9 before …10). */
export function compareAddrs(a: string, b: string): number {
  const fa = familyOf(a);
  const fb = familyOf(b);
  if (fa !== fb) return fa - fb;
  const va = value(a);
  const vb = value(b);
  return va < vb ? -1 : va > vb ? 1 : 0;
}

export function familyOf(addr: string): IPFamily {
  return addr.includes(':') ? 6 : 4;
}

/** Plain code-unit order: stable across locales, which localeCompare is not. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
