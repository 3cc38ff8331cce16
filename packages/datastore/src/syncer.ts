import type { Watcher } from 'etcd3';
import type { Datastore } from './datastore.js';
import type { Logger } from './logger.js';

export type SyncUpdate =
  | { type: 'put'; key: string; value: string; revision: number }
  | { type: 'delete'; key: string; revision: number };

/**
 * snapshot: the first full view. watch: changes in revision order. resync: the difference
 * between what was delivered and a fresh snapshot (after a compaction, a lost connection, or
 * the periodic safety net).
 */
export interface SyncBatch {
  kind: 'snapshot' | 'watch' | 'resync';
  revision: number;
  updates: SyncUpdate[];
}

/** wait-for-datastore: etcd not reachable; resyncing: taking a snapshot; in-sync: watching. */
export type SyncStatus = 'wait-for-datastore' | 'resyncing' | 'in-sync' | 'stopped';

export interface SyncHandler {
  onUpdates(batch: SyncBatch): void | Promise<void>;
  onStatus?(status: SyncStatus, reason: string): void;
}

export interface SyncerOptions {
  logger?: Logger;
  /** Safety-net full resync period; 0 turns it off. Default 5 minutes. */
  resyncIntervalMs?: number;
  /** First retry delay after a failure; doubles up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
  /**
   * Continue from a state the caller already holds (e.g. kept across a restart): the first
   * watch starts at revision + 1 without a snapshot. If that revision was compacted, the
   * syncer falls back to a resync against this state.
   */
  resume?: { revision: number; state: ReadonlyMap<string, string> };
  /**
   * Keys the consumer cares about; others under the prefix are neither kept nor delivered
   * (bgp-config needs /calico/host/<name>/bird_ip, not every workload under it).
   */
  filter?: (key: string) => boolean;
  /**
   * Keep every value (default) so that `state` can be read and repeated values are not
   * delivered again. Consumers that keep their own copy (the policy agent, over a keyspace
   * of hundreds of thousands of keys) turn this off: the syncer then remembers only each key's
   * modification revision, which is enough to compute a resync's difference.
   */
  keepValues?: boolean;
}

export interface SyncerStats {
  snapshots: number;
  resyncs: number;
  watchBatches: number;
  watchErrors: number;
  handlerErrors: number;
}

/**
 * Keeps a consumer equal to a prefix of etcd: snapshot at revision R, watch from R + 1, and a
 * fresh snapshot whenever the watch cannot be trusted. Delivery is serial and in order; a
 * handler that throws is logged and counted, never allowed to stop the syncer or the process.
 */
export class Syncer {
  /** key → value, or key → modification revision when values are not kept. */
  private cache = new Map<string, string | number>();
  private rev = 0;
  private gen = 0;
  private watcher: Watcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private st: SyncStatus = 'resyncing';
  private delivered = false;
  private failures = 0;
  private stopped = false;
  private waiters: (() => void)[] = [];
  private readonly opts: Required<Omit<SyncerOptions, 'resume' | 'filter'>> & Pick<SyncerOptions, 'resume' | 'filter'>;
  private readonly keepValues: boolean;
  readonly stats: SyncerStats = { snapshots: 0, resyncs: 0, watchBatches: 0, watchErrors: 0, handlerErrors: 0 };

  constructor(
    private readonly ds: Datastore,
    readonly prefix: string,
    private readonly handler: SyncHandler,
    opts: SyncerOptions = {},
  ) {
    this.opts = {
      logger: opts.logger ?? ds.logger,
      resyncIntervalMs: opts.resyncIntervalMs ?? 5 * 60_000,
      retryMs: opts.retryMs ?? 250,
      maxRetryMs: opts.maxRetryMs ?? 5_000,
      resume: opts.resume,
      filter: opts.filter,
      keepValues: opts.keepValues ?? true,
    };
    this.keepValues = this.opts.keepValues;
  }

  get status(): SyncStatus {
    return this.st;
  }

  get inSync(): boolean {
    return this.st === 'in-sync';
  }

  /** The revision everything delivered so far reflects. */
  get revision(): number {
    return this.rev;
  }

  /** What has been delivered: key → value (only with keepValues, the default). */
  get state(): ReadonlyMap<string, string> {
    if (!this.keepValues) throw new Error('this syncer keeps no values (keepValues: false)');
    return this.cache as Map<string, string>;
  }

  start(): this {
    const r = this.opts.resume;
    if (r) {
      this.cache = new Map(r.state);
      this.rev = r.revision;
      this.delivered = true;
      void this.watchFrom(++this.gen, 'resume');
    } else {
      void this.cycle('start');
    }
    this.armPeriodicResync();
    return this;
  }

  /** Resolves once in sync (after the first snapshot is delivered and the watch is up). */
  waitInSync(timeoutMs = 30_000): Promise<void> {
    if (this.inSync) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`syncer for ${this.prefix} not in sync after ${timeoutMs} ms (${this.st})`)), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Forces a fresh snapshot now; deliveries are the difference from what was delivered. */
  resync(reason = 'requested'): Promise<void> {
    return this.cycle(reason);
  }

  /** Waits until every batch handed to the handler so far has been handled. */
  drain(): Promise<void> {
    return this.queue;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.gen++;
    if (this.timer) clearTimeout(this.timer);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    await this.dropWatcher();
    await this.queue;
    this.setStatus('stopped', 'stopped');
  }

  private armPeriodicResync(): void {
    if (this.opts.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => void this.cycle('periodic resync'), this.opts.resyncIntervalMs);
      this.resyncTimer.unref();
    }
  }

  private setStatus(s: SyncStatus, reason: string): void {
    if (s === this.st) return;
    this.st = s;
    try {
      this.handler.onStatus?.(s, reason);
    } catch (e) {
      this.stats.handlerErrors++;
      this.opts.logger.error({ prefix: this.prefix, err: String(e) }, 'sync status handler threw; carrying on');
    }
    if (s === 'in-sync') for (const w of this.waiters.splice(0)) w();
  }

  private async dropWatcher(): Promise<void> {
    const w = this.watcher;
    this.watcher = undefined;
    if (!w) return;
    w.removeAllListeners();
    // A watcher whose stream is gone may never answer a cancel; do not wait on it for long.
    w.on('error', () => undefined);
    await Promise.race([w.cancel().catch(() => undefined), new Promise((r) => setTimeout(r, 1_000).unref())]);
  }

  private retryIn(gen: number, reason: string, err: unknown): void {
    if (this.stopped || gen !== this.gen) return;
    const delay = Math.min(this.opts.retryMs * 2 ** this.failures, this.opts.maxRetryMs);
    this.failures++;
    this.opts.logger.warn(
      { prefix: this.prefix, reason, err: errText(err), retryInMs: delay, revision: this.rev },
      `etcd not usable (${reason}); keeping what was delivered, retrying in ${delay} ms`,
    );
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.cycle(`retry after ${reason}`), delay);
  }

  /** Snapshot, deliver the difference, then watch from the snapshot's revision + 1. */
  private async cycle(reason: string): Promise<void> {
    if (this.stopped) return;
    const gen = ++this.gen;
    if (this.timer) clearTimeout(this.timer);
    await this.dropWatcher();
    if (gen !== this.gen) return;
    this.setStatus(this.st === 'wait-for-datastore' ? 'wait-for-datastore' : 'resyncing', reason);
    let snap;
    try {
      snap = await this.ds.getPrefix(this.prefix);
    } catch (e) {
      this.setStatus('wait-for-datastore', `snapshot failed: ${errText(e)}`);
      this.retryIn(gen, 'snapshot failed', e);
      return;
    }
    if (gen !== this.gen) return;
    const first = !this.delivered;
    const updates: SyncUpdate[] = [];
    const seen = new Set<string>();
    const keep = this.opts.filter;
    for (const kv of snap.kvs) {
      if (keep && !keep(kv.key)) continue;
      seen.add(kv.key);
      const mark = this.keepValues ? kv.value : kv.modRevision;
      if (this.cache.get(kv.key) !== mark) {
        updates.push({ type: 'put', key: kv.key, value: kv.value, revision: kv.modRevision });
        this.cache.set(kv.key, mark);
      }
    }
    for (const key of [...this.cache.keys()]) {
      if (!seen.has(key)) {
        updates.push({ type: 'delete', key, revision: snap.revision });
        this.cache.delete(key);
      }
    }
    this.rev = snap.revision;
    this.delivered = true;
    if (first) this.stats.snapshots++;
    else this.stats.resyncs++;
    if (first || updates.length) {
      this.opts.logger.info(
        { prefix: this.prefix, revision: snap.revision, keys: snap.kvs.length, changes: updates.length, reason },
        first ? 'snapshot taken; watching from the next revision' : 'resynced; delivering the difference and watching again',
      );
      this.enqueue({ kind: first ? 'snapshot' : 'resync', revision: snap.revision, updates });
    }
    await this.watchFrom(gen, reason);
  }

  private async watchFrom(gen: number, reason: string): Promise<void> {
    let w: Watcher;
    try {
      w = await this.ds.client.watch().prefix(this.prefix).startRevision(String(this.rev + 1)).create();
    } catch (e) {
      this.stats.watchErrors++;
      this.retryIn(gen, `watch from ${this.rev + 1} failed`, e);
      return;
    }
    if (gen !== this.gen || this.stopped) {
      void w.cancel().catch(() => undefined);
      return;
    }
    this.watcher = w;
    w.on('data', (res) => {
      if (gen !== this.gen) return;
      try {
        this.onWatchData(res.events);
      } catch (e) {
        // Never let an exception escape into the etcd3 client (it would rethrow it globally).
        this.opts.logger.error({ prefix: this.prefix, err: errText(e) }, 'watch event handling failed; resyncing');
        void this.cycle('watch event handling failed');
      }
    });
    const lost = (why: string) => (err: unknown) => {
      if (gen !== this.gen) return;
      this.stats.watchErrors++;
      this.setStatus('resyncing', `${why}: ${errText(err)}`);
      this.retryIn(gen, why, err);
    };
    w.on('error', lost('watch cancelled (compacted or failed)'));
    w.on('disconnected', lost('watch disconnected'));
    this.failures = 0;
    // In sync once everything before the watch has been handed over.
    this.queue = this.queue.then(() => {
      if (gen === this.gen && !this.stopped) this.setStatus('in-sync', reason);
    });
  }

  private onWatchData(events: { type: string; kv: { key: Buffer; value: Buffer; mod_revision: string } }[]): void {
    const updates: SyncUpdate[] = [];
    let rev = this.rev;
    for (const ev of events) {
      const key = ev.kv.key.toString();
      const revision = Number(ev.kv.mod_revision);
      if (revision <= this.rev) continue;
      rev = Math.max(rev, revision);
      if (this.opts.filter && !this.opts.filter(key)) continue;
      if (ev.type === 'Delete') {
        if (this.cache.delete(key)) updates.push({ type: 'delete', key, revision });
      } else {
        const value = ev.kv.value.toString();
        const mark = this.keepValues ? value : revision;
        if (this.cache.get(key) !== mark) {
          this.cache.set(key, mark);
          updates.push({ type: 'put', key, value, revision });
        }
      }
    }
    this.rev = rev;
    if (updates.length) {
      this.stats.watchBatches++;
      this.enqueue({ kind: 'watch', revision: rev, updates });
    }
  }

  private enqueue(batch: SyncBatch): void {
    this.queue = this.queue.then(async () => {
      try {
        await this.handler.onUpdates(batch);
      } catch (e) {
        this.stats.handlerErrors++;
        this.opts.logger.error(
          { prefix: this.prefix, kind: batch.kind, revision: batch.revision, updates: batch.updates.length, err: errText(e) },
          'sync handler threw; the batch is counted as delivered and syncing carries on',
        );
      }
    });
  }
}

function errText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
