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

/**
 * wait-for-datastore: etcd not reachable; resyncing: taking a snapshot; in-sync: watching;
 * retrying: the handler threw on a batch, which is offered again after a pause (nothing after
 * it is delivered meanwhile).
 */
export type SyncStatus = 'wait-for-datastore' | 'resyncing' | 'in-sync' | 'retrying' | 'stopped';

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
  /** Keys per snapshot page (default: the datastore's). */
  pageSize?: number;
  /** Keys that cut the prefix into ranges read side by side (see Datastore.pages). */
  splitAt?: readonly string[];
}

export interface SyncerStats {
  snapshots: number;
  resyncs: number;
  watchBatches: number;
  watchErrors: number;
  handlerErrors: number;
}

/** Last segments up to this long are what V8 copies rather than slices: cheap to keep alone. */
const SHORT_LEAF = 12;

/**
 * A list that grows by fixed-size blocks: a list of hundreds of thousands grown by copying
 * would leave its outgrown copies (several MB each) in the heap until the next full collection.
 */
class BlockList<T> {
  private static readonly BLOCK = 16_384;
  private readonly blocks: T[][] = [];
  length = 0;

  push(item: T): void {
    const at = this.length % BlockList.BLOCK;
    if (at === 0) this.blocks.push(new Array<T>(BlockList.BLOCK));
    (this.blocks[this.blocks.length - 1] as T[])[at] = item;
    this.length++;
  }

  get(i: number): T {
    return (this.blocks[Math.floor(i / BlockList.BLOCK)] as T[])[i % BlockList.BLOCK] as T;
  }
}

/**
 * What a syncer has delivered: key → value, or key → modification revision. A first snapshot of
 * revisions is only appended; the hash map is built when first needed (the next resync), so
 * taking it hashes none of its hundreds of thousands of keys. Until then, watch changes are
 * recorded over it, a deletion as revision 0.
 */
class Marks {
  private map = new Map<string, string | number>();
  /**
   * Keys in the order appended. A key in the same directory as the one before, with a short last
   * segment (".../addrs" then ".../state"), is kept as that segment, its revision negated: the
   * full key would be held by nothing else, and there are as many of them as endpoints.
   */
  private pendingKeys = new BlockList<string>();
  private pendingRevs = new BlockList<number>();
  /** The directory (up to its last "/") of the last key appended, when its segment was short; else "". */
  private lastDir = '';
  private lastLeaf = '';

  /** Appends a key known to be absent, unhashed for now. */
  append(key: string, revision: number): void {
    const cut = key.lastIndexOf('/') + 1;
    const leafLength = key.length - cut;
    if (cut > 0 && leafLength > 0 && leafLength <= SHORT_LEAF) {
      // Two directory strings compared, not a prefix search: this runs once per key of a snapshot.
      const dir = key.substring(0, cut);
      if (dir === this.lastDir) {
        let leaf = key.substring(cut);
        if (leaf === this.lastLeaf) leaf = this.lastLeaf;
        else this.lastLeaf = leaf;
        this.pendingKeys.push(leaf);
        this.pendingRevs.push(-revision);
        return;
      }
      this.lastDir = dir;
    } else this.lastDir = '';
    this.pendingKeys.push(key);
    this.pendingRevs.push(revision);
  }

  /** A watch change of a revisions-only syncer, recorded without reading anything back. */
  record(key: string, revision: number): void {
    if (revision === 0 && this.pendingKeys.length === 0) this.map.delete(key);
    else this.map.set(key, revision);
  }

  /** Whether a deletion could concern a delivered key: unknown while appended keys are unhashed. */
  mayHold(key: string): boolean {
    return this.pendingKeys.length > 0 || this.map.has(key);
  }

  settled(): Map<string, string | number> {
    if (this.pendingKeys.length > 0) {
      const m = new Map<string, string | number>();
      let prev = '';
      for (let i = 0; i < this.pendingKeys.length; i++) {
        let key = this.pendingKeys.get(i);
        let revision = this.pendingRevs.get(i);
        if (revision < 0) {
          key = prev.substring(0, prev.lastIndexOf('/') + 1) + key;
          revision = -revision;
        }
        m.set(key, revision);
        prev = key;
      }
      for (const [k, v] of this.map) {
        if (v === 0) m.delete(k);
        else m.set(k, v);
      }
      this.map = m;
      this.pendingKeys = new BlockList();
      this.pendingRevs = new BlockList();
      this.lastDir = '';
    }
    return this.map;
  }
}

/**
 * Keeps a consumer equal to a prefix of etcd: snapshot at revision R, watch from R + 1, and a
 * fresh snapshot whenever the watch cannot be trusted. Delivery is serial and in order; a
 * handler that throws is logged and counted, never allowed to stop the syncer or the process.
 */
export class Syncer {
  private marks = new Marks();
  private rev = 0;
  private gen = 0;
  private watcher: Watcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private cycling: Promise<void> = Promise.resolve();
  /** The syncer's own state; reported as 'retrying' instead while the handler is failing. */
  private st: SyncStatus = 'resyncing';
  private reported: SyncStatus = 'resyncing';
  private handlerFailing = false;
  private wakeRetry: (() => void) | undefined;
  private delivered = false;
  private failures = 0;
  private stopped = false;
  private waiters: (() => void)[] = [];
  private readonly opts: Required<Omit<SyncerOptions, 'resume' | 'filter' | 'pageSize' | 'splitAt'>> &
    Pick<SyncerOptions, 'resume' | 'filter' | 'pageSize' | 'splitAt'>;
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
      maxRetryMs: opts.maxRetryMs ?? 2_000,
      resume: opts.resume,
      filter: opts.filter,
      keepValues: opts.keepValues ?? true,
      pageSize: opts.pageSize,
      splitAt: opts.splitAt,
    };
    this.keepValues = this.opts.keepValues;
    // Without values the cache holds revisions, which a resumed state does not carry.
    if (opts.resume && !this.keepValues)
      throw new Error('Syncer: resume needs keepValues (the state it resumes is values)');
  }

  get status(): SyncStatus {
    return this.reported;
  }

  get inSync(): boolean {
    return this.reported === 'in-sync';
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

  /** key → value, or key → modification revision when values are not kept. */
  private get cache(): Map<string, string | number> {
    return this.marks.settled();
  }

  start(): this {
    const r = this.opts.resume;
    if (r) {
      for (const [k, v] of r.state) this.cache.set(k, v);
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
      const t = setTimeout(
        () => reject(new Error(`syncer for ${this.prefix} not in sync after ${timeoutMs} ms (${this.reported})`)),
        timeoutMs,
      );
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
    this.wakeRetry?.();
    this.gen++;
    if (this.timer) clearTimeout(this.timer);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    await this.dropWatcher();
    await this.cycling;
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
    this.st = s;
    this.report(reason);
  }

  /** Tells the handler the status it should see, when that changed. */
  private report(reason: string): void {
    const s = this.handlerFailing && this.st !== 'stopped' ? 'retrying' : this.st;
    if (s === this.reported) return;
    this.reported = s;
    try {
      this.handler.onStatus?.(s, reason);
    } catch (e) {
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

  /**
   * Snapshot, deliver the difference, then watch from the snapshot's revision + 1.
   *
   * Until a first snapshot has been delivered whole, nobody can trust the consumer's state, so
   * each page's changes are handed over as soon as the page is read (etcd reads the next page
   * meanwhile, and no whole snapshot is ever held). After that, a resync's difference is handed
   * over in one batch at the end, so a consumer never sees a mix of two revisions.
   */
  private cycle(reason: string): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const gen = ++this.gen;
    if (this.timer) clearTimeout(this.timer);
    // One cycle at a time: an outdated one stops at its next page and puts its marks back first.
    const run = this.cycling.then(() => this.runCycle(gen, reason));
    this.cycling = run.catch(() => undefined);
    return run;
  }

  private async runCycle(gen: number, reason: string): Promise<void> {
    if (gen !== this.gen || this.stopped) return;
    await this.dropWatcher();
    if (gen !== this.gen) return;
    this.setStatus(this.st === 'wait-for-datastore' ? 'wait-for-datastore' : 'resyncing', reason);
    const first = !this.delivered;
    const keep = this.opts.filter;
    // The watch goes over etcd3's connection: open it while the pages are read, so that watching
    // from the snapshot's revision does not wait for a connection at the end.
    if (first) this.ds.revision().catch(() => undefined);
    // Which cached keys this snapshot holds, so the rest can be deleted at the end. Numeric marks
    // (modification revisions, always >= 1) are negated in place instead: no second copy of
    // hundreds of thousands of keys.
    const trackDeletes = this.cache.size > 0;
    // Into an empty memory, revisions are appended unhashed (see Marks).
    const appendOnly = first && !trackDeletes && !this.keepValues;
    const seen = trackDeletes && this.keepValues ? new Set<string>() : undefined;
    const resyncUpdates: SyncUpdate[] = [];
    let revision = 0;
    let keys = 0;
    let delivered = 0;
    let complete = false;
    try {
      for await (const page of this.ds.pages(this.prefix, this.opts.pageSize, this.opts.splitAt)) {
        if (gen !== this.gen) return;
        revision = page.revision;
        keys += page.kvs.length;
        let updates: SyncUpdate[] = first ? [] : resyncUpdates;
        for (const kv of page.kvs) {
          if (keep && !keep(kv.key)) continue;
          if (appendOnly) {
            this.marks.append(kv.key, kv.modRevision);
            updates.push({ type: 'put', key: kv.key, value: kv.value, revision: kv.modRevision });
          } else {
            const mark = this.keepValues ? kv.value : kv.modRevision;
            // A snapshot holds each key once, so no mark read here has been negated yet.
            const had = this.cache.get(kv.key);
            const changed = had !== mark;
            if (changed) updates.push({ type: 'put', key: kv.key, value: kv.value, revision: kv.modRevision });
            if (first) {
              // Delivered now: the cache follows at once.
              if (changed || trackDeletes)
                this.cache.set(kv.key, trackDeletes && typeof mark === 'number' ? -mark : mark);
            } else if (typeof had === 'number') this.cache.set(kv.key, -had);
            seen?.add(kv.key);
          }
          if (first && updates.length >= SNAPSHOT_CHUNK) {
            // Handed over and handled before more is decoded: short-lived objects stay young.
            delivered += updates.length;
            this.enqueue({ kind: 'snapshot', revision, updates });
            updates = [];
            await this.queue;
            // A turn of the event loop: the next page's bytes are read off the socket meanwhile,
            // instead of waiting in etcd's send buffer until this page is done.
            await new Promise((resolve) => setImmediate(resolve));
            if (gen !== this.gen) return;
          }
        }
        if (first && updates.length) {
          delivered += updates.length;
          this.enqueue({ kind: 'snapshot', revision, updates });
        }
      }
      complete = gen === this.gen;
    } catch (e) {
      if (gen !== this.gen) return;
      this.setStatus('wait-for-datastore', `snapshot failed: ${errText(e)}`);
      this.retryIn(gen, 'snapshot failed', e);
      return;
    } finally {
      if (!complete) this.unmark();
    }
    if (!complete) return;
    const deletes: SyncUpdate[] = [];
    if (trackDeletes) {
      for (const [key, mark] of this.cache) {
        const inSnapshot = seen ? seen.has(key) : (mark as number) < 0;
        if (inSnapshot) {
          if (!seen) this.cache.set(key, -(mark as number));
        } else {
          deletes.push({ type: 'delete', key, revision });
          this.cache.delete(key);
        }
      }
    }
    for (const u of resyncUpdates) {
      if (u.type === 'put') this.cache.set(u.key, this.keepValues ? u.value : u.revision);
    }
    this.rev = revision;
    this.delivered = true;
    if (first) this.stats.snapshots++;
    else this.stats.resyncs++;
    const tail = first ? deletes : [...resyncUpdates, ...deletes];
    const changes = (first ? delivered : 0) + tail.length;
    if (first || changes) {
      this.opts.logger.info(
        { prefix: this.prefix, revision, keys, changes, reason },
        first
          ? 'snapshot taken; watching from the next revision'
          : 'resynced; delivering the difference and watching again',
      );
    }
    if (tail.length) this.enqueue({ kind: first ? 'snapshot' : 'resync', revision, updates: tail });
    await this.watchFrom(gen, reason);
  }

  /** After an interrupted snapshot: the numeric marks back to what was delivered. */
  private unmark(): void {
    for (const [key, mark] of this.cache) if (typeof mark === 'number' && mark < 0) this.cache.set(key, -mark);
  }

  private async watchFrom(gen: number, reason: string): Promise<void> {
    let w: Watcher;
    try {
      const creating = this.ds.client
        .watch()
        .prefix(this.prefix)
        .startRevision(String(this.rev + 1))
        .create();
      // etcd3 waits as long as it takes for the watch to be set up; a cycle must not.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the watch from revision ${this.rev + 1} was not set up within ${WATCH_SETUP_MS} ms`)),
          WATCH_SETUP_MS,
        );
      });
      try {
        w = await Promise.race([creating, late]);
      } catch (e) {
        creating.then(
          (lateWatcher) => void lateWatcher.cancel().catch(() => undefined),
          () => undefined,
        );
        throw e;
      } finally {
        clearTimeout(timer);
      }
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
      if (!this.keepValues) {
        // Revisions only: every put is news, and a deletion goes out unless surely unknown.
        if (ev.type === 'Delete') {
          if (this.marks.mayHold(key)) updates.push({ type: 'delete', key, revision });
          this.marks.record(key, 0);
        } else {
          this.marks.record(key, revision);
          updates.push({ type: 'put', key, value: ev.kv.value.toString(), revision });
        }
      } else if (ev.type === 'Delete') {
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

  /**
   * Hands a batch to the handler, after every batch before it. A batch the handler throws on
   * is not delivered: it is offered again after a growing pause (the same backoff as etcd
   * failures), nothing after it goes out meanwhile, and the status reads 'retrying'. Handlers
   * apply puts and deletes, so taking a batch again is harmless.
   */
  private enqueue(batch: SyncBatch): void {
    this.queue = this.queue.then(async () => {
      for (let failures = 0; !this.stopped; failures++) {
        try {
          await this.handler.onUpdates(batch);
        } catch (e) {
          this.stats.handlerErrors++;
          const delay = Math.min(this.opts.retryMs * 2 ** failures, this.opts.maxRetryMs);
          this.opts.logger.error(
            {
              prefix: this.prefix,
              kind: batch.kind,
              revision: batch.revision,
              updates: batch.updates.length,
              err: errText(e),
              retryInMs: delay,
            },
            `sync handler threw; the batch is not delivered, offering it again in ${delay} ms`,
          );
          this.handlerFailing = true;
          this.report(`handler failed: ${errText(e)}`);
          // stop() cuts the pause short.
          await new Promise<void>((r) => {
            const t = setTimeout(r, delay);
            this.wakeRetry = () => (clearTimeout(t), r());
          });
          this.wakeRetry = undefined;
          continue;
        }
        if (this.handlerFailing) {
          this.handlerFailing = false;
          this.opts.logger.info(
            { prefix: this.prefix, kind: batch.kind, revision: batch.revision, failures },
            'sync handler took the batch it had failed on; delivering again',
          );
          this.report('handler took the batch');
        }
        return;
      }
    });
  }
}

/** Updates per batch while a first snapshot streams in. */
const SNAPSHOT_CHUNK = 2_000;
/** How long setting up a watch may take before the cycle starts over. */
const WATCH_SETUP_MS = 10_000;

function errText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
