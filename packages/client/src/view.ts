import {
  calicoRoot,
  decodeBird6Ip,
  decodeBirdIp,
  decodeEntry,
  decodeHostAlive,
  decodeIpAssignment,
  decodeIpPool,
  decodeRefusal,
  decodeValue,
  decodeWorkloadName,
  hostAliveKey,
  hostSegmentError,
  networkPrefix,
  parseKey,
  type IpAssignment,
} from '@calico/keyspace';
import { ControlPlaneKeys, PolicyModel, type Problem } from '@calico/policy';
import { indexHosts, knownHosts, membersWithoutEndpoint } from './hosts.js';

export type HostState = 'up' | 'down';

export interface HostInfo {
  name: string;
  /** up while its liveness key exists; down otherwise, and everything it holds is kept until it is back or removed. */
  state: HostState;
  birdIp: string | null;
  bird6Ip: string | null;
  /** state === 'up', kept for clients that read it. */
  alive: boolean;
  /** Up since (from its liveness key); null while down. */
  since: string | null;
  endpoints: number;
  workloads: number;
  /** Address reservations that name it as their holder. */
  reservations: number;
}

/** Not wrong, but worth knowing: a host that is down, a membership whose endpoint exists nowhere. */
export type Notice =
  | { kind: 'host-down'; key: string; host: string; message: string }
  | { kind: 'member-without-endpoint'; key: string; groupId: string; endpointId: string; message: string };

export interface WorkloadInfo {
  host: string;
  containerId: string;
  name: string | null;
  endpoints: { endpointId: string; addrs: string[]; mac: string | null; state: string | null; groups: string[] }[];
}

/** One consistent picture of the cluster, read from one snapshot of /calico/. */
export interface ClusterView {
  revision: number;
  model: PolicyModel;
  hosts: HostInfo[];
  workloads: WorkloadInfo[];
  pools: { v4: string[]; v6: string[] };
  assignments: Map<string, IpAssignment>;
  masterIp: string | null;
  masterApiUrl: string | null;
  /** The keys that say where the control plane is (with the etcd endpoints: controlPlaneTargets). */
  controlPlane: ControlPlaneKeys;
  /** Everything that does not decode, whoever it belongs to, plus the policy model's own findings. */
  problems: Problem[];
  /** Hosts that are down, then memberships whose endpoint exists on no host; each kept, not deleted. */
  notices: Notice[];
}

const NOTHING_HELD = { endpoints: 0, workloads: 0, reservations: 0 } as const;

/** Kinds the policy model decodes, and reports itself. */
const MODEL_KINDS = new Set([
  'endpointAddrs',
  'endpointMac',
  'endpointState',
  'groupName',
  'groupMember',
  'groupRule',
  'groupDefault',
]);

function problemsOf(key: string, value: string): Problem[] {
  const d = decodeEntry(key, value);
  return d.ok ? [] : [{ key, errors: d.errors }];
}

/**
 * What is wrong with one key under /calico/ on its own, or undefined: its value does not decode,
 * its host segment is not a host name, or it has no layout. The same messages as the view's
 * problems (which add what only the whole keyspace shows, such as a rule naming a missing group).
 */
export function keyProblems(key: string, value: string): string[] | undefined {
  if (!key.startsWith(calicoRoot)) return undefined;
  // decodeEntry's steps with the key parsed once: the master runs this on every key it syncs.
  const k = parseKey(key);
  if (k.kind === 'unknown') return [unknownKeyProblem(key)];
  const badHost = hostSegmentError(k);
  if (badHost !== undefined) return [`${key}: ${badHost}`];
  const d = decodeValue(k, key, value);
  return d.ok ? undefined : d.errors;
}

/** The model's words under /calico/network/ (a mistyped group key); elsewhere no service reads the key at all. */
function unknownKeyProblem(key: string): string {
  const what = `${key}: not a key of the calico keyspace`;
  return key.startsWith(networkPrefix) ? what : `${what}; nothing reads it`;
}

/** One entry per key, sorted by key: a key found wrong twice (a refusal that does not decode) is one problem. */
function onePerKey(problems: readonly Problem[]): Problem[] {
  const byKey = new Map<string, string[]>();
  for (const p of problems) {
    const errors = byKey.get(p.key);
    if (errors === undefined) byKey.set(p.key, [...p.errors]);
    else for (const e of p.errors) if (!errors.includes(e)) errors.push(e);
  }
  return [...byKey].sort(([a], [b]) => a.localeCompare(b)).map(([key, errors]) => ({ key, errors }));
}

export function buildView(kvs: readonly { key: string; value: string }[], revision: number): ClusterView {
  const model = new PolicyModel();
  model.applyAll(kvs.map((kv) => ({ type: 'put' as const, key: kv.key, value: kv.value })));
  const hosts = new Map<string, HostInfo>();
  const host = (name: string) => {
    let h = hosts.get(name);
    if (!h) {
      h = { name, state: 'down', birdIp: null, bird6Ip: null, alive: false, since: null, ...NOTHING_HELD };
      hosts.set(name, h);
    }
    return h;
  };
  const names = new Map<string, string>();
  const pools = { v4: [] as string[], v6: [] as string[] };
  const assignments = new Map<string, IpAssignment>();
  const extraProblems: Problem[] = [];
  let masterIp: string | null = null;
  let masterApiUrl: string | null = null;
  const controlPlane = new ControlPlaneKeys();
  for (const { key, value } of kvs) {
    controlPlane.apply({ type: 'put', key, value });
    const k = parseKey(key);
    if (k.kind === 'unknown') {
      // Nothing reads such a key (a mistyped bird_ip leaves its host without BGP): a problem. The
      // model reports those under /calico/network/ itself.
      if (key.startsWith(calicoRoot) && !key.startsWith(networkPrefix)) {
        extraProblems.push({ key, errors: [unknownKeyProblem(key)] });
      }
      continue;
    }
    // Reported below; a host segment that is not a host name makes no host.
    if (hostSegmentError(k) !== undefined) {
      if (!MODEL_KINDS.has(k.kind)) extraProblems.push(...problemsOf(key, value));
      continue;
    }
    switch (k.kind) {
      case 'birdIp': {
        const d = decodeBirdIp(key, value);
        const h = host(k.host);
        if (d.ok) h.birdIp = d.value;
        break;
      }
      case 'bird6Ip': {
        const d = decodeBird6Ip(key, value);
        if (d.ok) host(k.host).bird6Ip = d.value;
        break;
      }
      case 'hostAlive': {
        const d = decodeHostAlive(key, value);
        const h = host(k.host);
        h.alive = true;
        h.state = 'up';
        if (d.ok) h.since = d.value.since;
        break;
      }
      case 'workloadName': {
        const d = decodeWorkloadName(key, value);
        if (d.ok) names.set(`${k.host}/${k.containerId}`, d.value);
        break;
      }
      case 'ipPool': {
        const d = decodeIpPool(key, value);
        if (d.ok) (k.family === 4 ? pools.v4 : pools.v6).push(d.value.cidr);
        break;
      }
      case 'ipAssignment': {
        const d = decodeIpAssignment(key, value);
        if (d.ok) assignments.set(k.addr, d.value);
        break;
      }
      case 'refusedWorkload': {
        // A node refused to network a container that carries Calico labels: a problem to look at.
        // A reason that does not decode is reported as such below, never quoted whole.
        const d = decodeRefusal(key, value);
        if (d.ok) {
          const why = `container ${k.containerId.slice(0, 12)} on host ${k.host} is not networked: ${d.value}`;
          extraProblems.push({ key, errors: [why] });
        }
        break;
      }
      case 'masterIp':
        masterIp = value.trim();
        break;
      case 'masterApiUrl':
        masterApiUrl = value.trim();
        break;
      default:
        break;
    }
    // Keys outside the policy model (hosts, BGP, IPAM…) are still validated for `status`.
    if (!MODEL_KINDS.has(k.kind)) extraProblems.push(...problemsOf(key, value));
  }
  const ix = indexHosts(kvs);
  for (const name of knownHosts(ix)) host(name);
  for (const [name, byContainer] of ix.workloads) host(name).workloads = byContainer.size;
  for (const a of ix.assignments) host(a.host).reservations++;
  const workloads = new Map<string, WorkloadInfo>();
  for (const ep of model.endpoints()) {
    host(ep.host).endpoints++;
    const id = `${ep.host}/${ep.containerId}`;
    let w = workloads.get(id);
    if (!w)
      workloads.set(
        id,
        (w = { host: ep.host, containerId: ep.containerId, name: names.get(id) ?? null, endpoints: [] }),
      );
    w.endpoints.push({
      endpointId: ep.endpointId,
      addrs: [...ep.addrs.v4, ...ep.addrs.v6],
      mac: ep.mac,
      state: ep.state,
      groups: model.groupIdsOf(ep.endpointId),
    });
  }
  const hostList = [...hosts.values()].sort((a, b) => a.name.localeCompare(b.name));
  const notices: Notice[] = [
    ...hostList
      .filter((h) => h.state === 'down')
      .map((h): Notice => ({ kind: 'host-down', key: hostAliveKey(h.name), host: h.name, message: downMessage(h) })),
    ...membersWithoutEndpoint(ix)
      .map(({ key, groupId, endpointId }): Notice => {
        return { kind: 'member-without-endpoint', key, groupId, endpointId, message: memberMessage(endpointId) };
      })
      .sort((a, b) => a.key.localeCompare(b.key)),
  ];
  return {
    revision,
    model,
    hosts: hostList,
    workloads: [...workloads.values()].sort(
      (a, b) => a.host.localeCompare(b.host) || a.containerId.localeCompare(b.containerId),
    ),
    pools: { v4: pools.v4.sort(), v6: pools.v6.sort() },
    assignments,
    masterIp,
    masterApiUrl,
    controlPlane,
    problems: onePerKey([...model.problems(), ...extraProblems]),
    notices,
  };
}

function downMessage(h: HostInfo): string {
  const holds =
    h.workloads || h.reservations
      ? `its ${h.workloads} workload(s), their memberships and its ${h.reservations} address reservation(s) are kept`
      : 'its keys are kept';
  return (
    `host ${h.name} is down: no liveness key ${hostAliveKey(h.name)} ` +
    '(its calico-node is stopped or cannot reach etcd); ' +
    `${holds} until it is back or removed (calicoctl node remove ${h.name} --remove-endpoints)`
  );
}

function memberMessage(endpointId: string): string {
  return (
    `endpoint ${endpointId} exists on no host; the membership is kept ` +
    '(an orchestrator may write it before the container exists; it goes when the container is removed)'
  );
}
