/** The fabric between namespace test hosts; nothing of it is routed in the root namespace. */
export const FABRIC_CIDR = '198.18.0.0/24';
/** Container addresses in tests (IPv4 and IPv6). */
export const CONTAINER_V4_CIDR = '198.19.0.0/16';
export const CONTAINER_V6_CIDR = 'fd00:198:19::/48';

/** Fabric address of the n-th host (n from 1): 198.18.0.(10+n). */
export function fabricIp(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 240) throw new Error(`fabric host index out of range: ${n}`);
  return `198.18.0.${10 + n}`;
}

/** A test container address: 198.19.<a>.<b>. */
export function containerV4(a: number, b: number): string {
  if (a < 0 || a > 255 || b < 1 || b > 254) throw new Error(`container address out of range: ${a}.${b}`);
  return `198.19.${a}.${b}`;
}

/** A test container IPv6 address: fd00:198:19:<a>::<b> (hex parts). */
export function containerV6(a: number, b: number): string {
  return `fd00:198:19:${a.toString(16)}::${b.toString(16)}`;
}
