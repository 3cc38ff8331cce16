/**
 * The API's reads from the master's synced copy of /calico/, so that a read of one group on a
 * cluster of hundreds of thousands of keys costs what that group holds. The copy answers only
 * when it holds everything etcd had when the read began: etcd's revision is read (one
 * linearizable single-key read), the syncer's watch must have reached it (after a short wait)
 * and every batch it took in since must have been applied here. Otherwise (out of sync, a slow
 * watch, writes outside /calico/ moving the revision), and for prefixes that are not indexed,
 * etcd is read, as without a copy.
 */
import type { ClusterReads } from '@calico/client';
import type { Datastore, KeyValue, PrefixSnapshot, SyncBatch, Syncer } from '@calico/datastore';
import { decodeGroupName, groupsPrefix, masterIpKey } from '@calico/keyspace';

/** How long a read waits for the watch to bring the copy up to etcd's revision. */
const CATCH_UP_MS = 50;

export class SyncedReads implements ClusterReads {
  /** groupId (the raw key segment, as a prefix read of it sees it) → its keys. */
  private readonly groups = new Map<string, Map<string, KeyValue>>();
  /** groupId → its name, where the name key decodes. */
  private readonly names = new Map<string, string>();
  /** The revision of the last batch applied. */
  private revision = 0;
  /**
   * etcd's revision when the copy last failed to reach it: while etcd stays there (a write
   * outside /calico/ moved it, which no watch event of ours will carry), reads go to etcd at once.
   */
  private behind = 0;
  /** Reads answered from the copy, and from etcd (metrics, tests). */
  readonly served = { copy: 0, etcd: 0 };

  constructor(
    private readonly ds: Datastore,
    /** The syncer whose batches apply() takes: how far its watch has read, and its queue. */
    private readonly syncer: Pick<Syncer, 'inSync' | 'revision' | 'drain'>,
  ) {}

  /** Takes one of the syncer's batches (called from its onUpdates, in order). */
  apply(batch: SyncBatch): void {
    for (const u of batch.updates) {
      if (!u.key.startsWith(groupsPrefix)) continue;
      const rest = u.key.slice(groupsPrefix.length);
      const cut = rest.indexOf('/');
      if (cut <= 0) continue; // in no group's directory
      const id = rest.slice(0, cut);
      const isName = rest.length === cut + 5 && rest.endsWith('/name');
      let keys = this.groups.get(id);
      if (u.type === 'put') {
        if (!keys) this.groups.set(id, (keys = new Map()));
        keys.set(u.key, { key: u.key, value: u.value, modRevision: u.revision });
        if (isName) {
          const d = decodeGroupName(u.key, u.value);
          if (d.ok) this.names.set(id, d.value);
          else this.names.delete(id);
        }
      } else if (keys) {
        keys.delete(u.key);
        if (keys.size === 0) this.groups.delete(id);
        if (isName) this.names.delete(id);
      }
    }
    this.revision = Math.max(this.revision, batch.revision);
  }

  async getPrefix(prefix: string): Promise<PrefixSnapshot> {
    const id = groupIdOf(prefix);
    if ((id !== undefined || prefix === groupsPrefix) && (await this.fresh())) {
      this.served.copy++;
      const kvs: KeyValue[] = [];
      const take = (keys: Map<string, KeyValue> | undefined) => {
        for (const kv of keys?.values() ?? []) kvs.push(kv);
      };
      if (id !== undefined) take(this.groups.get(id));
      else for (const keys of this.groups.values()) take(keys);
      // In key order, as etcd answers.
      kvs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      return { revision: this.revision, kvs };
    }
    this.served.etcd++;
    return this.ds.getPrefix(prefix);
  }

  async groupIdsNamed(name: string): Promise<string[] | undefined> {
    if (!(await this.fresh())) return undefined;
    this.served.copy++;
    const ids: string[] = [];
    for (const [id, n] of this.names) if (n === name) ids.push(id);
    return ids.sort();
  }

  /** Whether the copy holds every write etcd had acknowledged when this was called. */
  private async fresh(): Promise<boolean> {
    if (!this.syncer.inSync) return false;
    let want: number;
    try {
      want = await this.ds.readRevision(masterIpKey());
    } catch {
      return false; // etcd is away: the read that follows says so
    }
    // The watch's revision moves with every event, also those that change nothing here (a put
    // of the same value), which make no batch.
    if (this.syncer.revision < want && want === this.behind) return false;
    const deadline = Date.now() + CATCH_UP_MS;
    while (this.syncer.revision < want) {
      if (Date.now() >= deadline || !this.syncer.inSync) {
        this.behind = want;
        return false;
      }
      await sleep(2);
    }
    // What the watch read is handed over in order; once the queue is through, it is applied here.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), Math.max(0, deadline - Date.now()))));
    const drained = await Promise.race([this.syncer.drain().then(() => true), late]);
    clearTimeout(timer);
    return drained && this.syncer.inSync;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The group id of a prefix that is exactly one group's directory. */
function groupIdOf(prefix: string): string | undefined {
  if (!prefix.startsWith(groupsPrefix) || !prefix.endsWith('/')) return undefined;
  const id = prefix.slice(groupsPrefix.length, -1);
  return id !== '' && !id.includes('/') ? id : undefined;
}
