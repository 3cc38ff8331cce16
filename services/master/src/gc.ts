/**
 * Garbage collection, the decision half: pure, given the master's synced copy of /calico/, the
 * clock and what was seen before, it says what to delete. Nothing is deleted on a single look:
 * an absence must have been observed continuously, while in sync, for the whole grace period.
 */
import { decodeIpAssignment, hostAliveKey, hostsPrefix, parseKey, workloadPrefix } from '@calico/keyspace';

export interface GcTracker {
  /** The sync epoch these timers were started in; the epoch changes whenever etcd was out of sync. */
  epoch: number;
  /** Subject ("membership:<key>" or "host:<name>") → when its absence was first observed (ms). */
  since: ReadonlyMap<string, number>;
}

export interface GcInput {
  /** The master's copy of every key under /calico/ (its syncer's state). */
  kvs: ReadonlyMap<string, string>;
  inSync: boolean;
  /** Changes whenever etcd was out of sync or the watch failed, so a blip between two rounds is not missed. */
  epoch: number;
  now: number;
  graceMs: number;
}

export type GcAction =
  /** host: the dead host whose endpoint it was, or null when the endpoint exists nowhere. */
  | { kind: 'membership'; key: string; value: string; groupId: string; endpointId: string; host: string | null; reason: string }
  | { kind: 'endpoint'; host: string; containerId: string; prefix: string; endpointIds: string[]; reason: string }
  | { kind: 'assignment'; key: string; value: string; host: string; reason: string };

export interface GcDecision {
  tracker: GcTracker;
  /** Memberships first, then workloads, then reservations (an address is freed last). */
  actions: GcAction[];
  /** Absences first observed this round, for the log. */
  started: { subject: string; reason: string; dueAt: number }[];
  /** Absences that ended before their grace ran out (the endpoint appeared, the host came back). */
  ended: string[];
}

export function emptyTracker(epoch = 0): GcTracker {
  return { epoch, since: new Map() };
}

const WORKLOAD_KEY = /^([^/]+)\/workload\/docker\/([^/]+)\/(?:endpoint\/([^/]+)\/)?/;

interface Index {
  alive: Set<string>;
  /** endpoint id → hosts holding a copy of it (any key under its endpoint directory). */
  endpointHosts: Map<string, Set<string>>;
  /** host → container id → endpoint ids */
  workloads: Map<string, Map<string, Set<string>>>;
  members: { key: string; value: string; groupId: string; endpointId: string }[];
  assignments: { key: string; value: string; host: string }[];
}

function index(kvs: ReadonlyMap<string, string>): Index {
  const ix: Index = { alive: new Set(), endpointHosts: new Map(), workloads: new Map(), members: [], assignments: [] };
  for (const [key, value] of kvs) {
    // Any key under an endpoint's directory makes it exist, even one that does not decode:
    // a bad value is a problem to report, never a reason to delete.
    const w = key.startsWith(hostsPrefix) ? WORKLOAD_KEY.exec(key.slice(hostsPrefix.length)) : null;
    if (w) {
      const [, host = '', containerId = '', endpointId] = w;
      const byContainer = ix.workloads.get(host) ?? ix.workloads.set(host, new Map()).get(host)!;
      const eps = byContainer.get(containerId) ?? byContainer.set(containerId, new Set()).get(containerId)!;
      if (endpointId !== undefined) {
        eps.add(endpointId);
        (ix.endpointHosts.get(endpointId) ?? ix.endpointHosts.set(endpointId, new Set()).get(endpointId)!).add(host);
      }
      continue;
    }
    const k = parseKey(key);
    if (k.kind === 'hostAlive') ix.alive.add(k.host); // present is alive, whatever its value
    else if (k.kind === 'groupMember') ix.members.push({ key, value, groupId: k.groupId, endpointId: k.endpointId });
    else if (k.kind === 'ipAssignment') {
      // A reservation whose holder cannot be read is left alone (it is listed under problems).
      const d = decodeIpAssignment(key, value);
      if (d.ok) ix.assignments.push({ key, value, host: d.value.host });
    }
  }
  return ix;
}

/**
 * One GC round. Subjects:
 * - a membership whose endpoint exists on no host;
 * - a host without its liveness key that still has workloads or address reservations.
 * When a subject has been absent for graceMs, its actions are returned and its timer is dropped
 * (observed again next round, it starts over, so a delete is never repeated in a tight loop).
 * Out of sync, or after an epoch change, every timer starts over.
 */
export function decideGc(input: GcInput, tracker: GcTracker): GcDecision {
  if (!input.inSync) return { tracker: emptyTracker(input.epoch), actions: [], started: [], ended: [] };
  const prev = tracker.epoch === input.epoch ? tracker.since : new Map<string, number>();
  const ix = index(input.kvs);
  const absent = new Map<string, string>(); // subject → what is missing
  for (const m of ix.members) {
    if (!ix.endpointHosts.has(m.endpointId)) absent.set(`membership:${m.key}`, `endpoint ${m.endpointId} exists on no host`);
  }
  const hosts = new Set([...ix.workloads.keys(), ...ix.assignments.map((a) => a.host)]);
  for (const h of hosts) {
    if (!ix.alive.has(h)) absent.set(`host:${h}`, `host ${h} has no liveness key ${hostAliveKey(h)} (lease expired)`);
  }

  const since = new Map<string, number>();
  const started: GcDecision['started'] = [];
  const due = new Map<string, string>();
  for (const [subject, reason] of absent) {
    const t = prev.get(subject) ?? input.now;
    if (!prev.has(subject)) started.push({ subject, reason, dueAt: t + input.graceMs });
    if (input.now - t >= input.graceMs) due.set(subject, `${reason}, continuously for ${((input.now - t) / 1000).toFixed(1)} s in sync`);
    else since.set(subject, t);
  }
  const ended = [...prev.keys()].filter((s) => !absent.has(s));

  const memberships: GcAction[] = [];
  const endpoints: GcAction[] = [];
  const assignments: GcAction[] = [];
  for (const m of ix.members) {
    const why = due.get(`membership:${m.key}`);
    if (why) memberships.push({ kind: 'membership', ...m, host: null, reason: why });
  }
  const deadHosts = new Map([...due].filter(([s]) => s.startsWith('host:')).map(([s, why]) => [s.slice('host:'.length), why]));
  for (const [host, why] of deadHosts) {
    for (const [containerId, eps] of ix.workloads.get(host) ?? []) {
      endpoints.push({ kind: 'endpoint', host, containerId, prefix: workloadPrefix(host, containerId), endpointIds: [...eps].sort(), reason: `workload of dead host: ${why}` });
    }
    for (const a of ix.assignments) if (a.host === host) assignments.push({ kind: 'assignment', ...a, reason: `reserved by dead host: ${why}` });
  }
  // Memberships of a dead host's endpoints go with it, unless a copy of the endpoint lives on elsewhere.
  for (const m of ix.members) {
    const where = ix.endpointHosts.get(m.endpointId);
    if (!where || ![...where].every((h) => deadHosts.has(h))) continue;
    const host = [...where][0]!;
    memberships.push({ kind: 'membership', ...m, host, reason: `endpoint ${m.endpointId} is on dead host: ${deadHosts.get(host)}` });
  }
  return { tracker: { epoch: input.epoch, since }, actions: [...memberships, ...endpoints, ...assignments], started, ended };
}
