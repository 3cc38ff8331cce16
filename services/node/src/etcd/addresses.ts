import {
  canonicalIP,
  cidrContains,
  decodeIpAssignment,
  decodeIpPool,
  encodeIpAssignment,
  ipAssignmentKey,
  ipAssignmentsPrefix,
  ipPoolsPrefix,
  parseCidr,
  parseKey,
  ipToBigInt,
  parseIPv4,
  parseIPv6,
  formatIPv4,
  formatIPv6,
  type IpAssignment,
} from '@calico/keyspace';
import type { Datastore } from '@calico/datastore';

/** Until dockerd has given the container its id, a reservation names the endpoint and this. */
export const PENDING_CONTAINER = 'pending';

export type ReserveResult = { ok: true; value: string } | { ok: false; holder: IpAssignment | null };

/**
 * Cluster-wide address reservations: one key per address, created only if absent, so two
 * hosts asking for the same CALICO_IP at once cannot both get it.
 */
export class AddressRegistry {
  constructor(private readonly ds: Datastore) {}

  async reserve(addr: string, holder: IpAssignment): Promise<ReserveResult> {
    const value = encodeIpAssignment(holder);
    const r = await this.ds.createIfAbsent(ipAssignmentKey(addr), value);
    if (r.created) return { ok: true, value };
    const d = decodeIpAssignment(ipAssignmentKey(addr), r.existing);
    // The same endpoint asking again (a retried create) keeps its address.
    if (
      d.ok &&
      d.value.endpointId !== undefined &&
      d.value.endpointId === holder.endpointId &&
      d.value.host === holder.host
    ) {
      return { ok: true, value: r.existing };
    }
    return { ok: false, holder: d.ok ? d.value : null };
  }

  /** Moves a reservation from one holder to another only if it is still held as expected. */
  async transfer(addr: string, from: string, to: IpAssignment): Promise<boolean> {
    const key = ipAssignmentKey(addr);
    const cur = await this.ds.getWithRevision(key);
    if (!cur || cur.value !== from) return false;
    return this.ds.putIfModRevision(key, encodeIpAssignment(to), cur.modRevision);
  }

  /** Releases addr only if the holder is still the one given (never someone else's). */
  async release(addr: string, holder: string | ((a: IpAssignment) => boolean)): Promise<boolean> {
    const key = ipAssignmentKey(addr);
    if (typeof holder === 'string') return this.ds.deleteIfValue(key, holder);
    const cur = await this.ds.get(key);
    if (cur === undefined) return false;
    const d = decodeIpAssignment(key, cur);
    if (!d.ok || !holder(d.value)) return false;
    return this.ds.deleteIfValue(key, cur);
  }

  async holder(addr: string): Promise<IpAssignment | null> {
    const key = ipAssignmentKey(addr);
    const cur = await this.ds.get(key);
    if (cur === undefined) return null;
    const d = decodeIpAssignment(key, cur);
    return d.ok ? d.value : null;
  }

  /** Every reservation of one family: address → holder (malformed keys and values are skipped). */
  async list(family: 4 | 6): Promise<Map<string, IpAssignment>> {
    return reservationsIn((await this.ds.getPrefix(ipAssignmentsPrefix(family))).kvs, family);
  }

  async pools(family: 4 | 6): Promise<string[]> {
    return poolsIn((await this.ds.getPrefix(ipPoolsPrefix(family))).kvs, family);
  }

  /**
   * Reserves the lowest free address of the family's pools (network and, for IPv4,
   * broadcast addresses excluded). Throws with a clear message when there is no pool or
   * every pool is full.
   */
  async reserveNext(family: 4 | 6, holder: IpAssignment): Promise<{ addr: string; value: string }> {
    const pools = await this.pools(family);
    if (pools.length === 0) {
      throw new Error(
        `CALICO_IP=auto needs an IPv${family} address pool, and there is none: add one with "calicoctl pool add <cidr>"`,
      );
    }
    for (let attempt = 0; attempt < 5; attempt++) {
      const taken = await this.list(family);
      for (const pool of pools) {
        for (const addr of poolAddresses(pool, taken, 4096)) {
          const r = await this.reserve(addr, holder);
          if (r.ok) return { addr, value: r.value };
        }
      }
    }
    throw new Error(`CALICO_IP=auto: every IPv${family} pool is full (${pools.join(', ')})`);
  }
}

/**
 * The pools among keys read under a family's pool prefix. Only keys of the pool layout count: a
 * prefix read also returns keys one level off (`…/pool/203.0.113.0-26/x`, `…/pool/203.0.113.1-24`),
 * whose value the pool decoder cannot check against the key, and a pool taken from one would
 * refuse every CALICO_IP outside it.
 */
export function poolsIn(kvs: readonly { key: string; value: string }[], family: 4 | 6): string[] {
  return kvs.flatMap((kv) => {
    const k = parseKey(kv.key);
    if (k.kind !== 'ipPool' || k.family !== family) return [];
    const d = decodeIpPool(kv.key, kv.value);
    return d.ok ? [d.value.cidr] : [];
  });
}

/** The reservations among keys read under a family's assignment prefix: address → holder, assignment keys only. */
export function reservationsIn(
  kvs: readonly { key: string; value: string }[],
  family: 4 | 6,
): Map<string, IpAssignment> {
  const out = new Map<string, IpAssignment>();
  for (const kv of kvs) {
    const k = parseKey(kv.key);
    if (k.kind !== 'ipAssignment' || k.family !== family) continue;
    const d = decodeIpAssignment(kv.key, kv.value);
    if (d.ok) out.set(k.addr, d.value);
  }
  return out;
}

/** Up to `limit` free addresses of a pool in ascending order. */
export function* poolAddresses(pool: string, taken: ReadonlyMap<string, unknown>, limit: number): Generator<string> {
  const c = parseCidr(pool);
  if (!c) return;
  const bits = c.family === 4 ? 32 : 128;
  const base = ipToBigInt(c.family === 4 ? parseIPv4(c.network)! : parseIPv6(c.network)!);
  const size = 1n << BigInt(bits - c.prefixLen);
  const first = c.family === 4 && size > 2n ? 1n : c.family === 6 && size > 1n ? 1n : 0n;
  const last = c.family === 4 && size > 2n ? size - 2n : size - 1n;
  let yielded = 0;
  for (let i = first; i <= last && yielded < limit; i++) {
    const addr = fromBigInt(base + i, c.family);
    if (!cidrContains(pool, addr) || taken.has(addr)) continue;
    yielded++;
    yield addr;
  }
}

function fromBigInt(n: bigint, family: 4 | 6): string {
  const len = family === 4 ? 4 : 16;
  const bytes = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    bytes[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return canonicalIP(family === 4 ? formatIPv4(bytes) : formatIPv6(bytes))!;
}
