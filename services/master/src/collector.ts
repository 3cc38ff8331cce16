/**
 * Garbage collection, the acting half: runs decideGc every interval and carries out its deletes.
 * Log fields name etcd keys `etcdKey`: @calico/log masks any field called `key` (TLS keys).
 */
import type { Datastore } from '@calico/datastore';
import { hostAliveKey } from '@calico/keyspace';
import type { Logger } from '@calico/log';
import { decideGc, emptyTracker, type GcAction, type GcTracker } from './gc.js';

export interface CollectorOptions {
  ds: Datastore;
  logger: Logger;
  graceMs: number;
  intervalMs: number;
  /** The master's synced copy of /calico/ and whether it can be trusted right now. */
  source: () => { kvs: ReadonlyMap<string, string>; inSync: boolean; epoch: number };
  /** Told about every key or directory actually deleted. */
  onDeleted?: (action: GcAction) => void;
  now?: () => number;
}

export class GarbageCollector {
  private tracker: GcTracker = emptyTracker();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<GcAction[]> | undefined;
  private stopped = false;

  constructor(private readonly opts: CollectorOptions) {}

  /** Absences being timed now. */
  get pending(): number {
    return this.tracker.since.size;
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

  /** One round; a round still running is joined rather than overlapped. Resolves with what was deleted. */
  runOnce(): Promise<GcAction[]> {
    this.running ??= this.round().finally(() => (this.running = undefined));
    return this.running;
  }

  private async round(): Promise<GcAction[]> {
    const { logger, graceMs } = this.opts;
    const src = this.opts.source();
    const d = decideGc({ ...src, now: (this.opts.now ?? Date.now)(), graceMs }, this.tracker);
    this.tracker = d.tracker;
    for (const s of d.started) {
      logger.info({ subject: s.subject, reason: s.reason, dueAt: new Date(s.dueAt).toISOString() }, `${s.reason}; collecting what it left in ${graceMs / 1000} s unless that changes or etcd goes out of sync`);
    }
    for (const s of d.ended) logger.info({ subject: s }, 'absence ended before the grace period ran out; nothing will be collected for it');
    const done: GcAction[] = [];
    const revived = new Map<string, boolean>();
    for (const a of d.actions) {
      if (this.stopped) break;
      const key = a.kind === 'endpoint' ? a.prefix : a.key;
      try {
        // The host may have come back since the decision: ask etcd itself before touching its keys.
        if (a.host !== null) {
          if (!revived.has(a.host)) revived.set(a.host, (await this.opts.ds.get(hostAliveKey(a.host))) !== undefined);
          if (revived.get(a.host)) {
            logger.info({ host: a.host, etcdKey: key }, 'host is alive again; keeping its keys');
            continue;
          }
        }
        const deleted = a.kind === 'endpoint' ? (await this.opts.ds.deleteDir(a.prefix)) > 0 : await this.opts.ds.deleteIfValue(a.key, a.value);
        if (!deleted) {
          logger.debug({ etcdKey: key, kind: a.kind }, 'already gone or changed since it was observed; left alone');
          continue;
        }
        done.push(a);
        this.opts.onDeleted?.(a);
        logger.info({ etcdKey: key, kind: a.kind, reason: a.reason, ...(a.kind === 'endpoint' ? { endpoints: a.endpointIds } : {}) }, `garbage-collected ${a.kind} ${key}: ${a.reason}`);
      } catch (e) {
        logger.warn({ etcdKey: key, err: (e as Error).message }, 'GC delete failed (etcd away?); ending this round; whatever is still there is timed again from the next round');
        break;
      }
    }
    return done;
  }
}
