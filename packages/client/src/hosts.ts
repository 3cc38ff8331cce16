/**
 * What each host holds, from one copy of /calico/: the facts behind "is this host down", "what
 * would removing it remove" and "which memberships name an endpoint that exists nowhere". Pure;
 * the master's GC, the cluster view and CalicoClient.removeHost all read the keyspace through it.
 */
import {
  bgpHostPrefix,
  bgpHostsPrefix,
  decodeIpAssignment,
  hostNameError,
  hostPrefix,
  hostsPrefix,
  parseKey,
  workloadPrefix,
} from '@calico/keyspace';

export interface IndexedKey {
  key: string;
  value: string;
  /** Present when read from etcd; removals compare on it. */
  modRevision?: number;
}

export interface HostIndex {
  /** Hosts whose liveness key is present, whatever its value. */
  alive: Set<string>;
  /** Hosts with any key under /calico/host/<h>/. */
  hostDirs: Set<string>;
  /** Hosts with any key under /calico/bgp/v1/host/<h>/. */
  bgpDirs: Set<string>;
  /** endpoint id → hosts holding a copy of it (any key under its endpoint directory). */
  endpointHosts: Map<string, Set<string>>;
  /** host → container id → endpoint ids */
  workloads: Map<string, Map<string, Set<string>>>;
  members: (IndexedKey & { groupId: string; endpointId: string })[];
  /** Reservations whose holder decodes (one that does not is a problem, never anyone's). */
  assignments: (IndexedKey & { addr: string; host: string })[];
}

const WORKLOAD_KEY = /^([^/]+)\/workload\/docker\/([^/]+)\/(?:endpoint\/([^/]+)\/)?/;

function add<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (s) s.add(v);
  else m.set(k, new Set([v]));
}

/**
 * Whether a host segment is a host name, remembering the last good one: keys come sorted by
 * host, so nearly every key is answered by one comparison.
 */
function hostNameCheck(): (name: string) => boolean {
  let lastGood = '';
  return (name) => {
    if (name === lastGood) return true;
    if (hostNameError(name) !== undefined) return false;
    lastGood = name;
    return true;
  };
}

/**
 * Keys whose host segment is not a host name are problems (the view lists them) and hold
 * nothing: no host, workload or endpoint is made of them, so nothing counts them as a host to
 * report down or to remove.
 */
export function indexHosts(kvs: Iterable<IndexedKey>): HostIndex {
  const isName = hostNameCheck();
  const ix: HostIndex = {
    alive: new Set(),
    hostDirs: new Set(),
    bgpDirs: new Set(),
    endpointHosts: new Map(),
    workloads: new Map(),
    members: [],
    assignments: [],
  };
  for (const kv of kvs) {
    const { key } = kv;
    if (key.startsWith(hostsPrefix)) {
      const rest = key.slice(hostsPrefix.length);
      const slash = rest.indexOf('/');
      if (slash <= 0 || !isName(rest.slice(0, slash))) continue;
      ix.hostDirs.add(rest.slice(0, slash));
      // Any key under an endpoint's directory makes it exist, even one that does not decode:
      // a bad value is a problem to report, never a reason to delete.
      const w = WORKLOAD_KEY.exec(rest);
      if (w) {
        const [, host = '', containerId = '', endpointId] = w;
        const byContainer = ix.workloads.get(host) ?? ix.workloads.set(host, new Map()).get(host)!;
        const eps = byContainer.get(containerId) ?? byContainer.set(containerId, new Set()).get(containerId)!;
        if (endpointId !== undefined) {
          eps.add(endpointId);
          add(ix.endpointHosts, endpointId, host);
        }
        continue;
      }
    } else if (key.startsWith(bgpHostsPrefix)) {
      const rest = key.slice(bgpHostsPrefix.length);
      const slash = rest.indexOf('/');
      if (slash > 0 && isName(rest.slice(0, slash))) ix.bgpDirs.add(rest.slice(0, slash));
      continue;
    }
    const k = parseKey(key);
    if (k.kind === 'hostAlive') ix.alive.add(k.host);
    else if (k.kind === 'groupMember') ix.members.push({ ...kv, groupId: k.groupId, endpointId: k.endpointId });
    else if (k.kind === 'ipAssignment') {
      const d = decodeIpAssignment(key, kv.value);
      // A holder that is not a host name is no host's: nothing is removed or reported down for it.
      if (d.ok && isName(d.value.host)) ix.assignments.push({ ...kv, addr: k.addr, host: d.value.host });
    }
  }
  return ix;
}

/** Hosts that hold something cluster-wide: keys under their directory, or address reservations. */
export function knownHosts(ix: HostIndex): Set<string> {
  return new Set([...ix.hostDirs, ...ix.assignments.map((a) => a.host)]);
}

/** Memberships whose endpoint exists on no host (an orchestrator may write them first). */
export function membersWithoutEndpoint(ix: HostIndex): HostIndex['members'] {
  return ix.members.filter((m) => !ix.endpointHosts.has(m.endpointId));
}

export interface HostRemovalPlan {
  host: string;
  alive: boolean;
  /** Anything of it in etcd at all. */
  known: boolean;
  workloads: { containerId: string; prefix: string; endpointIds: string[] }[];
  /** Memberships of its endpoints; an endpoint with a copy on another host keeps its memberships. */
  memberships: HostIndex['members'];
  assignments: HostIndex['assignments'];
  /** /calico/host/<h>/ (bird_ip, bird6_ip, diags_url, its workloads) and /calico/bgp/v1/host/<h>/. */
  dirs: string[];
}

/** What removing `host` removes, in the order it goes: memberships, workloads, its directories, reservations. */
export function planHostRemoval(ix: HostIndex, host: string): HostRemovalPlan {
  const workloads = [...(ix.workloads.get(host) ?? [])]
    .map(([containerId, eps]) => ({
      containerId,
      prefix: workloadPrefix(host, containerId),
      endpointIds: [...eps].sort(),
    }))
    .sort((a, b) => a.containerId.localeCompare(b.containerId));
  const memberships = ix.members.filter((m) => {
    const where = ix.endpointHosts.get(m.endpointId);
    return where?.has(host) && where.size === 1;
  });
  const assignments = ix.assignments.filter((a) => a.host === host);
  const dirs = [
    ...(ix.hostDirs.has(host) ? [hostPrefix(host)] : []),
    ...(ix.bgpDirs.has(host) ? [bgpHostPrefix(host)] : []),
  ];
  const known = dirs.length > 0 || assignments.length > 0;
  return { host, alive: ix.alive.has(host), known, workloads, memberships, assignments, dirs };
}
