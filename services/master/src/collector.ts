/**
 * Host lifecycle, the acting half: runs decideGc every interval, logs hosts going down and
 * coming back, and, with --gc-dead-hosts-after, removes the hosts it says are due through
 * CalicoClient.removeHost (the same removal as `calicoctl node remove --remove-endpoints`,
 * guarded in etcd on the liveness key being absent).
 */
import { ClientError, type CalicoClient, type HostRemoval } from '@calico/client';
import { hostAliveKey } from '@calico/keyspace';
import type { Logger } from '@calico/log';
import { formatDuration } from './config.js';
import { decideGc, emptyTracker, type GcAction, type GcTracker } from './gc.js';

export interface CollectorOptions {
  client: Pick<CalicoClient, 'removeHost'>;
  logger: Logger;
  /** --gc-dead-hosts-after; null never removes a host. */
  deadHostsAfterMs: number | null;
  intervalMs: number;
  /** The master's synced copy of /calico/ and whether it can be trusted right now. */
  source: () => { kvs: ReadonlyMap<string, string>; inSync: boolean; epoch: number };
  /** Told about every host removed. */
  onRemoved?: (removal: HostRemoval, action: GcAction) => void;
  now?: () => number;
}

export class GarbageCollector {
  private tracker: GcTracker = emptyTracker();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<HostRemoval[]> | undefined;
  private stopped = false;

  constructor(private readonly opts: CollectorOptions) {}

  /** Hosts whose removal is being timed now. */
  get pending(): number {
    return this.tracker.since.size;
  }

  /** Down hosts → since when (ms), null when they were already down when the master first saw them. */
  get hostsDown(): ReadonlyMap<string, number | null> {
    return new Map([...this.tracker.hosts].filter(([, s]) => !s.up).map(([h, s]) => [h, s.since]));
  }

  start(): this {
    this.timer = setInterval(() => void this.runOnce().catch(() => undefined), this.opts.intervalMs);
    this.timer.unref();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** One round; a round still running is joined rather than overlapped. Resolves with the hosts removed. */
  runOnce(): Promise<HostRemoval[]> {
    this.running ??= this.round().finally(() => (this.running = undefined));
    return this.running;
  }

  private async round(): Promise<HostRemoval[]> {
    const { logger, deadHostsAfterMs: after } = this.opts;
    const src = this.opts.source();
    const d = decideGc({ ...src, now: (this.opts.now ?? Date.now)(), deadHostsAfterMs: after }, this.tracker);
    this.tracker = d.tracker;
    const next =
      after === null
        ? 'they stay until it is back or removed (calicoctl node remove)'
        : `it is removed if still down after --gc-dead-hosts-after=${formatDuration(after)}`;
    for (const c of d.changed) {
      if (c.up && c.first) continue;
      const since = c.since === null ? null : new Date(c.since).toISOString();
      if (c.up) {
        logger.info({ host: c.host, since }, `host ${c.host} is up again (its liveness key is back)`);
        continue;
      }
      const when = c.first
        ? 'already down when the master first looked'
        : `its liveness key ${hostAliveKey(c.host)} is gone`;
      const keeping = 'keeping its workloads, memberships and address reservations';
      const msg = `host ${c.host} is down (${when}); ${keeping}: ${next}`;
      logger.warn({ host: c.host, since }, msg);
    }
    for (const m of d.orphansFound) {
      const msg =
        `membership of endpoint ${m.endpointId} in group ${m.groupId}: the endpoint exists on no host; ` +
        'keeping it (it may not have been created yet; it goes when its container is removed)';
      logger.info({ etcdKey: m.key, group: m.groupId, endpoint: m.endpointId }, msg);
    }
    for (const s of d.started) {
      const dueAt = new Date(s.dueAt).toISOString();
      const msg = `${s.reason}; removing it and all it holds at ${dueAt} unless it comes back or etcd goes out of sync`;
      logger.info({ subject: s.subject, reason: s.reason, dueAt }, msg);
    }
    for (const s of d.ended) {
      logger.info({ subject: s }, 'host is back (or gone) before --gc-dead-hosts-after ran out; it is not removed');
    }
    const done: HostRemoval[] = [];
    for (const a of d.actions) {
      if (this.stopped) break;
      try {
        const r = await this.opts.client.removeHost(a.host, { removeEndpoints: true });
        done.push(r);
        this.opts.onRemoved?.(r, a);
        const n = r.removed;
        const what =
          `${n.workloads} workload(s) with ${n.endpoints} endpoint(s), ${n.memberships} membership(s), ` +
          `${n.reservations} address reservation(s), ${n.keys} key(s)`;
        const msg = `removed host ${a.host}: ${a.reason}; removed ${what}`;
        logger.warn({ host: a.host, reason: a.reason, removed: n }, msg);
      } catch (e) {
        if (e instanceof ClientError && e.code === 'CONFLICT') {
          const msg = `host ${a.host} is alive again (or changed while being removed); keeping it`;
          logger.info({ host: a.host, err: e.message }, msg);
        } else if (e instanceof ClientError && e.code === 'NOT_FOUND') {
          logger.debug({ host: a.host }, 'host already removed by someone else');
        } else {
          const msg = 'host removal failed (etcd away?); ending this round; it is timed again from the next round';
          logger.warn({ host: a.host, err: (e as Error).message }, msg);
          break;
        }
      }
    }
    return done;
  }
}
