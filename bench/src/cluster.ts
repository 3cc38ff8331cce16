// The synthetic clusters the benchmarks load into etcd: hosts of endpoints, each with its own
// address in the benchmarking range, in groups made as the original `calicoctl addgroup` made them.
import type { Datastore } from '@calico/datastore';
import { decodeAddrs, parseKey } from '@calico/keyspace';
import { policyFixtures } from '@calico/policy';

/**
 * The n-th endpoint address: from 198.18.1.0 upward, in the benchmarking range 198.18.0.0/15
 * without the test fabric 198.18.0.0/24. Data only: nothing is routed or sent to them.
 */
const V4_FIRST = 198 * 2 ** 24 + 18 * 2 ** 16 + 1 * 2 ** 8;
const V4_COUNT = 2 ** 17 - 256;
export function v4(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n >= V4_COUNT) {
    throw new Error(`address ${n} is outside 198.18.1.0-198.19.255.255`);
  }
  const a = V4_FIRST + n;
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}
/** Endpoint ids whose first 11 hex digits differ (interface names are made of them). */
export const eid = (host: number, i: number) =>
  `${(host * 100_000 + i).toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;

export async function load(ds: Datastore, kvs: { key: string; value: string }[]): Promise<void> {
  const ops = kvs.map((kv) => ({ put: kv.key, value: kv.value }));
  // etcd caps a transaction at 128 operations; several in flight keep the load quick.
  const chunks: (typeof ops)[] = [];
  for (let i = 0; i < ops.length; i += 128) chunks.push(ops.slice(i, i + 128));
  for (let i = 0; i < chunks.length; i += 8) await Promise.all(chunks.slice(i, i + 8).map((c) => ds.batch(c)));
}

/** How the cluster's containers and groups are named. */
export interface ClusterNames {
  /** Container ids as dockerd makes them (64 hex digits) instead of the fixtures' short ones. */
  dockerIds?: boolean;
  /** Group names that differ from their ids (`group<N>` ids are kept, names become `name<N>`). */
  groupNames?: boolean;
}

/** The container id of endpoint `eid(host, i)` with dockerIds: 64 hex digits, distinct per endpoint. */
export const containerId = (host: number, i: number) => (host * 100_000 + i).toString(16).padStart(64, 'c');

/** `hosts` × `perHost` endpoints, each with its own address, spread over `groups` addgroups. */
export function clusterKeys(
  hosts: number,
  perHost: number,
  groups: number,
  names: ClusterNames = {},
): { key: string; value: string }[] {
  const kvs: { key: string; value: string }[] = [];
  const members: string[][] = Array.from({ length: groups }, () => []);
  for (let h = 0; h < hosts; h++) {
    for (let i = 0; i < perHost; i++) {
      const id = eid(h, i);
      kvs.push(
        ...policyFixtures.endpoint({
          host: `host${h}`,
          endpointId: id,
          ...(names.dockerIds ? { containerId: containerId(h, i) } : {}),
          addrs: [v4(h * perHost + i)],
          mac: '0e:00:00:00:00:01',
        }),
      );
      members[(h * perHost + i) % groups]!.push(id);
    }
  }
  for (let g = 0; g < groups; g++) {
    const fixture = policyFixtures.addgroup(`group${g}`, members[g], names.groupNames ? `name${g}` : `group${g}`);
    kvs.push(...policyFixtures.group(fixture));
  }
  return kvs;
}

/** Endpoint addresses in a keyspace: all, and those on hosts other than `host`. Throws if one repeats. */
export function distinctAddrs(
  kvs: readonly { key: string; value: string }[],
  host: string,
): { all: number; remote: number } {
  const owner = new Map<string, string>();
  let remote = 0;
  for (const { key, value } of kvs) {
    const k = parseKey(key);
    if (k.kind !== 'endpointAddrs') continue;
    const d = decodeAddrs(key, value);
    if (!d.ok) throw new Error(`${key}: ${d.errors.join('; ')}`);
    for (const { addr } of d.value) {
      const had = owner.get(addr);
      if (had !== undefined) throw new Error(`address ${addr} of ${key} is also the address of ${had}`);
      owner.set(addr, key);
      if (k.host !== host) remote++;
    }
  }
  return { all: owner.size, remote };
}
