/**
 * The master's view of host lifecycle, the decision half: pure. Given its synced copy of
 * /calico/, the clock and what it saw before, it says which hosts are up or down and since when,
 * and, only when --gc-dead-hosts-after is set, which hosts have been down long enough to remove.
 * A host that is down keeps everything: its lease expiring deletes nothing, and neither does a
 * membership whose endpoint exists nowhere (both are reported instead). A removal is decided
 * only on an absence observed continuously, while in sync, for the whole duration.
 */
import { indexHosts, knownHosts, membersWithoutEndpoint, type IndexedKey } from '@calico/client';
import { hostAliveKey } from '@calico/keyspace';

/** A host's state as the master last saw it in sync. */
export interface HostSeen {
  up: boolean;
  /** When the master saw it change to this state (ms); null when it was already so when first seen. */
  since: number | null;
}

export interface GcTracker {
  /** The sync epoch the removal timers were started in; it changes whenever etcd was out of sync. */
  epoch: number;
  /** "host:<name>" → when its absence was first observed in this epoch (ms); timed only with deadHostsAfterMs. */
  since: ReadonlyMap<string, number>;
  /** Every known host, as last seen in sync. A blip freezes this, never resets it: it is a report, not a timer. */
  hosts: ReadonlyMap<string, HostSeen>;
  /** Keys of the memberships whose endpoint existed on no host when last seen in sync. */
  orphans: ReadonlySet<string>;
}

export interface GcInput {
  /** The master's copy of every key under /calico/ (its syncer's state). */
  kvs: ReadonlyMap<string, string>;
  inSync: boolean;
  /** Changes whenever etcd was out of sync or the watch failed, so a blip between two rounds is not missed. */
  epoch: number;
  now: number;
  /** --gc-dead-hosts-after; null (the default) never removes anything. */
  deadHostsAfterMs: number | null;
}

/** Remove this host as `calicoctl node remove --remove-endpoints` does. */
export interface GcAction {
  kind: 'host';
  host: string;
  reason: string;
}

export interface GcDecision {
  tracker: GcTracker;
  actions: GcAction[];
  /** Removal timers started this round, for the log. */
  started: { subject: string; reason: string; dueAt: number }[];
  /** Removal timers that ended before they ran out (the host came back). */
  ended: string[];
  /** Hosts first seen, or seen to change state, this round. */
  changed: ({ host: string; first: boolean } & HostSeen)[];
  /** Memberships first seen this round naming an endpoint that exists on no host: kept, and reported. */
  orphansFound: { key: string; groupId: string; endpointId: string }[];
}

export function emptyTracker(epoch = 0): GcTracker {
  return { epoch, since: new Map(), hosts: new Map(), orphans: new Set() };
}

function* entries(kvs: ReadonlyMap<string, string>): Iterable<IndexedKey> {
  for (const [key, value] of kvs) yield { key, value };
}

/**
 * One round. Out of sync nothing is decided and the host states stay as they were; out of sync,
 * or after an epoch change, every removal timer starts over. A removal that falls due drops its
 * timer: observed again next round, it starts over, so a removal is never repeated in a loop.
 */
export function decideGc(input: GcInput, tracker: GcTracker): GcDecision {
  if (!input.inSync) {
    const frozen = { ...tracker, epoch: input.epoch, since: new Map<string, number>() };
    return { tracker: frozen, actions: [], started: [], ended: [], changed: [], orphansFound: [] };
  }
  const ix = indexHosts(entries(input.kvs));
  const hosts = new Map<string, HostSeen>();
  const changed: GcDecision['changed'] = [];
  for (const host of [...new Set([...knownHosts(ix), ...ix.alive])].sort()) {
    const up = ix.alive.has(host);
    const was = tracker.hosts.get(host);
    const seen = was === undefined ? { up, since: null } : was.up === up ? was : { up, since: input.now };
    hosts.set(host, seen);
    if (seen !== was) changed.push({ host, first: was === undefined, ...seen });
  }

  const prev = tracker.epoch === input.epoch ? tracker.since : new Map<string, number>();
  const since = new Map<string, number>();
  const started: GcDecision['started'] = [];
  const actions: GcAction[] = [];
  const after = input.deadHostsAfterMs;
  if (after !== null) {
    for (const [host, seen] of hosts) {
      if (seen.up) continue;
      const subject = `host:${host}`;
      const reason = `host ${host} has no liveness key ${hostAliveKey(host)}`;
      const t = prev.get(subject) ?? input.now;
      if (!prev.has(subject)) started.push({ subject, reason, dueAt: t + after });
      const seconds = ((input.now - t) / 1000).toFixed(1);
      if (input.now - t < after) since.set(subject, t);
      else
        actions.push({
          kind: 'host',
          host,
          reason: `${reason}, continuously for ${seconds} s in sync (--gc-dead-hosts-after)`,
        });
    }
  }
  const ended = [...prev.keys()].filter((s) => hosts.get(s.slice('host:'.length))?.up !== false);
  const orphaned = membersWithoutEndpoint(ix);
  const orphansFound = orphaned
    .filter((m) => !tracker.orphans.has(m.key))
    .map(({ key, groupId, endpointId }) => ({ key, groupId, endpointId }));
  const orphans = new Set(orphaned.map((m) => m.key));
  return { tracker: { epoch: input.epoch, since, hosts, orphans }, actions, started, ended, changed, orphansFound };
}
