import { Etcd3, type IOptions } from 'etcd3';
import type { DatastoreConfig } from './config.js';
import { silentLogger, type Logger } from './logger.js';
import { Syncer, type SyncerOptions, type SyncHandler } from './syncer.js';
import { LeaseKeeper, type LeaseKeeperOptions } from './lease.js';

export interface KeyValue {
  key: string;
  value: string;
  modRevision: number;
}

export interface PrefixSnapshot {
  revision: number;
  kvs: KeyValue[];
}

export type CreateResult = { created: true; revision: number } | { created: false; existing: string };

export interface DatastoreOptions {
  logger?: Logger;
  /** Deadline of each unary call; streams (watches, keepalives) have none. */
  callTimeoutMs?: number;
}

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

  constructor(
    readonly config: DatastoreConfig,
    opts: DatastoreOptions = {},
  ) {
    this.logger = opts.logger ?? silentLogger;
    const timeout = opts.callTimeoutMs ?? 5_000;
    const o: IOptions = {
      hosts: config.endpoints,
      dialTimeout: 3_000,
      // Snapshots are read in large pages; gRPC's default 4 MB message cap would be too tight.
      grpcOptions: { 'grpc.max_receive_message_length': 64 * 1024 * 1024 },
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
  }

  async get(key: string): Promise<string | undefined> {
    const v = await this.client.get(key).string();
    return v ?? undefined;
  }

  async getWithRevision(key: string): Promise<KeyValue | undefined> {
    const r = await this.client.get(key).exec();
    const kv = r.kvs[0];
    return kv ? { key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) } : undefined;
  }

  /**
   * Every key under prefix at one revision, read in pages (a cluster's keyspace can be far
   * larger than one gRPC message should be); every page after the first reads the first page's
   * revision, so the result is one consistent snapshot. Each page costs etcd a round of work,
   * so pages are large.
   */
  async getPrefix(prefix: string, pageSize = 20_000): Promise<PrefixSnapshot> {
    const end = prefixEnd(Buffer.from(prefix));
    let start = Buffer.from(prefix);
    let revision: string | undefined;
    const kvs: KeyValue[] = [];
    for (;;) {
      const r = await this.client.kv.range({ key: start, range_end: end, limit: pageSize, revision: revision ?? '0' });
      revision ??= r.header.revision;
      for (const kv of r.kvs) kvs.push({ key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) });
      const last = r.kvs[r.kvs.length - 1];
      if (!r.more || !last) break;
      start = Buffer.concat([last.key, Buffer.from([0])]);
    }
    return { revision: Number(revision), kvs };
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
    const cmp = modRevision === 0 ? this.client.if(key, 'Create', '==', 0) : this.client.if(key, 'Mod', '==', modRevision);
    const r = await cmp.then(this.client.put(key).value(value)).commit();
    return r.succeeded;
  }

  /** Applies puts and deletes in one transaction (etcd caps a txn at 128 operations). */
  async batch(ops: ({ put: string; value: string } | { delete: string })[]): Promise<void> {
    for (let i = 0; i < ops.length; i += 128) {
      const success = ops.slice(i, i + 128).map((o) =>
        'put' in o
          ? { request_put: { key: Buffer.from(o.put), value: Buffer.from(o.value) } }
          : { request_delete_range: { key: Buffer.from(o.delete) } },
      );
      await this.client.kv.txn({ compare: [], success, failure: [] });
    }
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
  }
}
