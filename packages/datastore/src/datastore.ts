import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen } from 'cockatiel';
import { Etcd3, isRecoverableError, type IOptions } from 'etcd3';
import type { DatastoreConfig } from './config.js';
import { silentLogger, type Logger } from './logger.js';
import { Syncer, type SyncerOptions, type SyncHandler } from './syncer.js';
import { LeaseKeeper, type LeaseKeeperOptions } from './lease.js';
import { RangeReader } from './rangeReader.js';

export interface KeyValue {
  key: string;
  value: string;
  modRevision: number;
}

export interface PrefixSnapshot {
  revision: number;
  kvs: KeyValue[];
}

/** One page of a prefix read: its keys are decoded as they are iterated, once. */
export interface PrefixPage {
  revision: number;
  kvs: Iterable<KeyValue> & { readonly length: number };
}

export type CreateResult = { created: true; revision: number } | { created: false; existing: string };

export interface DatastoreOptions {
  logger?: Logger;
  /** Deadline of each unary call; streams (watches, keepalives) have none. */
  callTimeoutMs?: number;
}

/** Keys in the first page of a range read (the rest are read in the caller's page size). */
const FIRST_PAGE = 5_000;

/** etcd's range end for "every key starting with prefix": the prefix with its last byte + 1. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** The one place that talks to etcd: reads, writes, transactions, syncers and leases. */
export class Datastore {
  readonly client: Etcd3;
  readonly logger: Logger;
  private readonly reader: RangeReader;

  constructor(
    readonly config: DatastoreConfig,
    opts: DatastoreOptions = {},
  ) {
    this.logger = opts.logger ?? silentLogger;
    const timeout = opts.callTimeoutMs ?? 5_000;
    const o: IOptions = {
      hosts: config.endpoints,
      dialTimeout: 3_000,
      grpcOptions: {
        // Snapshots are read in large pages; gRPC's default 4 MB message cap would be too tight.
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        // After an outage, dial again within seconds of etcd's return, not minutes.
        'grpc.initial_reconnect_backoff_ms': 250,
        'grpc.max_reconnect_backoff_ms': 2_000,
      },
      faultHandling: {
        // etcd3's defaults: a host's breaker stays open 5 s after 3 failures, and a lost watch
        // stream is set up again after up to 30 s. Both cap how soon a sync resumes after etcd returns.
        host: () =>
          circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) }),
        // etcd3's type says a backoff; it calls next() on it, as on the factory it makes itself.
        watchBackoff: new ExponentialBackoff({ initialDelay: 250, maxDelay: 2_000 }) as unknown as NonNullable<
          IOptions['faultHandling']
        >['watchBackoff'],
      },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    };
    if (config.tls) {
      o.credentials = {
        rootCertificate: config.tls.ca ?? Buffer.alloc(0),
        ...(config.tls.key ? { privateKey: config.tls.key } : {}),
        ...(config.tls.cert ? { certChain: config.tls.cert } : {}),
      };
    }
    this.client = new Etcd3(o);
    this.reader = new RangeReader(config, timeout);
  }

  async get(key: string): Promise<string | undefined> {
    const v = await this.client.get(key).string();
    return v ?? undefined;
  }

  async getWithRevision(key: string): Promise<KeyValue | undefined> {
    const r = await this.client.get(key).exec();
    const kv = r.kvs[0];
    return kv
      ? { key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) }
      : undefined;
  }

  /**
   * Every key under prefix at one revision, read in pages (a cluster's keyspace can be far
   * larger than one gRPC message should be); every page after the first reads the first page's
   * revision, so the result is one consistent snapshot.
   */
  async getPrefix(prefix: string, pageSize?: number): Promise<PrefixSnapshot> {
    let revision = 0;
    const kvs: KeyValue[] = [];
    for await (const page of this.pages(prefix, pageSize)) {
      revision = page.revision;
      for (const kv of page.kvs) kvs.push(kv);
    }
    return { revision, kvs };
  }

  /**
   * The pages of getPrefix as they arrive, all at one revision. The next page is requested
   * before this one is handed over, so etcd reads while the caller works. etcd 3.4 walks its
   * index from a page's start to the end of the range for every page, so pages are large.
   *
   * etcd serves each range request on one core. With `splitAt` (keys inside the prefix), the
   * sub-ranges between them are read side by side and their pages come in the order they arrive:
   * in key order within a sub-range only.
   */
  async *pages(prefix: string, pageSize = 50_000, splitAt: readonly string[] = []): AsyncGenerator<PrefixPage> {
    const start = Buffer.from(prefix);
    const end = prefixEnd(start);
    const cuts = splitAt
      .map((k) => Buffer.from(k))
      .filter((b) => Buffer.compare(b, start) > 0 && Buffer.compare(b, end) < 0)
      .sort(Buffer.compare);
    if (cuts.length === 0) {
      yield* this.rangePages(start, end, pageSize, 0);
      return;
    }
    // One revision for every sub-range: read it first (a single-key read costs etcd nothing).
    const { revision } = await this.reader.range({ key: start, rangeEnd: Buffer.alloc(0), limit: 1, revision: 0 });
    const bounds = [start, ...cuts, end];
    const streams = bounds.slice(1).map((b, i) => this.rangePages(bounds[i] as Buffer, b, pageSize, revision));
    const next = (i: number) => {
      const p = (streams[i] as AsyncGenerator<PrefixPage>).next().then((r) => ({ i, r }));
      p.catch(() => undefined); // raced below; must not count as unhandled while a page is being handled
      return p;
    };
    const pending = new Map(streams.map((_, i) => [i, next(i)]));
    try {
      while (pending.size > 0) {
        const { i, r } = await Promise.race(pending.values());
        pending.delete(i);
        if (r.done) continue;
        yield r.value;
        pending.set(i, next(i));
      }
    } finally {
      await Promise.allSettled(streams.map((s) => s.return(undefined)));
    }
  }

  /** The pages of [start, end) at revision (0: the newest, then kept for the later pages). */
  private async *rangePages(
    start: Buffer,
    rangeEnd: Buffer,
    pageSize: number,
    atRevision: number,
  ): AsyncGenerator<PrefixPage> {
    // A small first page: the caller starts working while etcd reads the rest in full pages.
    let limit = Math.min(pageSize, FIRST_PAGE);
    const read = (key: Buffer, revision: number) => {
      // Pages at a fixed revision need no quorum round (see RangeRequest.serializable).
      const p = this.reader.range({ key, rangeEnd, limit, revision, serializable: revision > 0 });
      limit = pageSize;
      p.catch(() => undefined); // awaited below; a consumer that stops early must not leave it unhandled
      return p;
    };
    let next = read(start, atRevision);
    let revision = atRevision;
    for (;;) {
      const r = await next;
      revision ||= r.revision;
      const more = r.more && r.lastKey !== undefined;
      if (more) next = read(Buffer.concat([r.lastKey as Buffer, Buffer.from([0])]), revision);
      yield { revision, kvs: r.kvs };
      if (!more) return;
    }
  }

  async put(key: string, value: string): Promise<number> {
    const r = await this.client.put(key).value(value).exec();
    return Number(r.header.revision);
  }

  /** Deleting what is absent is not an error. Returns how many keys went. */
  async delete(key: string): Promise<number> {
    const r = await this.client.delete().key(key).exec();
    return Number(r.deleted);
  }

  /**
   * Deletes a "directory": every key under a prefix that must end in "/", so that removing
   * group "ab" never takes "abc" with it.
   */
  async deleteDir(prefix: string): Promise<number> {
    if (!prefix.endsWith('/')) throw new Error(`deleteDir: prefix must end in "/": ${prefix}`);
    const r = await this.client.delete().prefix(prefix).exec();
    return Number(r.deleted);
  }

  /** Writes key only if it does not exist (create revision 0); otherwise returns what is there. */
  async createIfAbsent(key: string, value: string, lease?: string): Promise<CreateResult> {
    const put = this.client.put(key).value(value);
    if (lease) put.lease(lease);
    const r = await this.client.if(key, 'Create', '==', 0).then(put).else(this.client.get(key)).commit();
    if (r.succeeded) return { created: true, revision: Number(r.header.revision) };
    const existing = r.responses[0]?.response_range?.kvs[0]?.value.toString() ?? '';
    return { created: false, existing };
  }

  /** Deletes key only if its value is still `expected` (release what we own, nothing else). */
  async deleteIfValue(key: string, expected: string): Promise<boolean> {
    const r = await this.client.if(key, 'Value', '==', expected).then(this.client.delete().key(key)).commit();
    return r.succeeded;
  }

  /** Writes key only if it was last modified at modRevision (0: only if absent). */
  async putIfModRevision(key: string, value: string, modRevision: number): Promise<boolean> {
    const cmp =
      modRevision === 0 ? this.client.if(key, 'Create', '==', 0) : this.client.if(key, 'Mod', '==', modRevision);
    const r = await cmp.then(this.client.put(key).value(value)).commit();
    return r.succeeded;
  }

  /** Applies puts and deletes in one transaction (etcd caps a txn at 128 operations). */
  async batch(ops: ({ put: string; value: string } | { delete: string })[]): Promise<void> {
    for (let i = 0; i < ops.length; i += 128) {
      const success = ops
        .slice(i, i + 128)
        .map((o) =>
          'put' in o
            ? { request_put: { key: Buffer.from(o.put), value: Buffer.from(o.value) } }
            : { request_delete_range: { key: Buffer.from(o.delete) } },
        );
      await this.client.kv.txn({ compare: [], success, failure: [] });
    }
  }

  /**
   * The revision a linearizable read of key sees: every write acknowledged before this call is at
   * or below it. One single-key range, confirmed by the quorum (what the member's status, read by
   * revision(), is not).
   */
  async readRevision(key: string): Promise<number> {
    const r = await this.reader.range({ key: Buffer.from(key), rangeEnd: Buffer.alloc(0), limit: 1, revision: 0 });
    return r.revision;
  }

  /** Current cluster revision, and a cheap liveness check. */
  async revision(): Promise<number> {
    const r = await this.client.maintenance.status({});
    return Number(r.header.revision);
  }

  async compact(revision: number): Promise<void> {
    await this.client.kv.compact({ revision: String(revision), physical: true });
  }

  syncer(prefix: string, handler: SyncHandler, opts: Omit<SyncerOptions, 'logger'> = {}): Syncer {
    return new Syncer(this, prefix, handler, { logger: this.logger, ...opts });
  }

  leaseKeeper(opts: Omit<LeaseKeeperOptions, 'logger'>): LeaseKeeper {
    return new LeaseKeeper(this, { logger: this.logger, ...opts });
  }

  close(): void {
    this.client.close();
    this.reader.close();
  }
}
