// The syncer's bookkeeping against an in-memory store that serves pages and can fail between
// them; datastore.int.test.ts covers the same paths on a real etcd.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { Datastore, KeyValue, PrefixSnapshot } from './datastore.js';
import { silentLogger } from './logger.js';
import { Syncer, type SyncBatch, type SyncStatus } from './syncer.js';

class FakeStore {
  readonly kvs = new Map<string, { value: string; modRevision: number }>();
  revision = 1;
  /** Pages served before the next read fails (Infinity: never). */
  failAfterPages = Infinity;
  pagesServed = 0;
  /** Reads refused by failAfterPages: a test can show its fault was hit. */
  refused = 0;
  watcher: EventEmitter | undefined;

  /** A change the watch reports (the store changes too). */
  watched(type: 'Put' | 'Delete', key: string, value = ''): void {
    if (type === 'Put') this.put(key, value);
    else this.delete(key);
    const kv = { key: Buffer.from(key), value: Buffer.from(value), mod_revision: String(this.revision) };
    this.watcher?.emit('data', { events: [{ type, kv }] });
  }

  put(key: string, value: string): void {
    this.kvs.set(key, { value, modRevision: ++this.revision });
  }

  delete(key: string): void {
    this.kvs.delete(key);
    this.revision++;
  }

  asDatastore(): Datastore {
    const pages = async function* (this: FakeStore, prefix: string, pageSize = 3): AsyncGenerator<PrefixSnapshot> {
      const all: KeyValue[] = [...this.kvs]
        .filter(([k]) => k.startsWith(prefix))
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([key, v]) => ({ key, ...v }));
      const revision = this.revision;
      for (let i = 0; i === 0 || i < all.length; i += pageSize) {
        await Promise.resolve();
        if (this.pagesServed++ >= this.failAfterPages) {
          this.refused++;
          throw new Error('etcd went away');
        }
        yield { revision, kvs: all.slice(i, i + pageSize) };
      }
    }.bind(this);
    const watcher = () => (this.watcher = Object.assign(new EventEmitter(), { cancel: async () => undefined }));
    const client = { watch: () => ({ prefix: () => ({ startRevision: () => ({ create: async () => watcher() }) }) }) };
    return { logger: silentLogger, pages, client, revision: async () => this.revision } as unknown as Datastore;
  }
}

function consumer() {
  const batches: SyncBatch[] = [];
  const state = new Map<string, string>();
  const statuses: SyncStatus[] = [];
  const waiting = new Map<SyncStatus, () => void>();
  return {
    batches,
    state,
    statuses,
    /** Resolves when the syncer reports this status (at once if it already has). */
    reached(s: SyncStatus): Promise<void> {
      return statuses.includes(s) ? Promise.resolve() : new Promise((r) => waiting.set(s, r));
    },
    onStatus(s: SyncStatus) {
      statuses.push(s);
      waiting.get(s)?.();
    },
    onUpdates(b: SyncBatch) {
      batches.push(b);
      for (const u of b.updates) {
        if (u.type === 'put') state.set(u.key, u.value);
        else state.delete(u.key);
      }
    },
  };
}

const values = (store: FakeStore) => new Map([...store.kvs].map(([k, v]) => [k, v.value]));

function filled(n: number): FakeStore {
  const store = new FakeStore();
  for (let i = 0; i < n; i++) store.put(`/p/${String(i).padStart(2, '0')}`, `v${i}`);
  return store;
}

describe.each([true, false])('syncer (keepValues: %s)', (keepValues) => {
  it('hands a first snapshot over page by page, and is in sync only after the last', async () => {
    const store = filled(8);
    const c = consumer();
    const inSyncAt: number[] = [];
    const syncer = new Syncer(
      store.asDatastore(),
      '/p/',
      { onUpdates: (b) => c.onUpdates(b), onStatus: (s) => s === 'in-sync' && inSyncAt.push(c.batches.length) },
      { keepValues, pageSize: 3, resyncIntervalMs: 0 },
    );
    syncer.start();
    await syncer.waitInSync(10_000);
    expect(c.batches.map((b) => [b.kind, b.updates.length])).toEqual([
      ['snapshot', 3],
      ['snapshot', 3],
      ['snapshot', 2],
    ]);
    expect(inSyncAt).toEqual([3]);
    expect(c.state).toEqual(values(store));
    await syncer.stop();
  });

  it('a first snapshot cut short is finished on retry, with what changed meanwhile', async () => {
    const store = filled(8);
    store.failAfterPages = 2;
    const c = consumer();
    const syncer = new Syncer(store.asDatastore(), '/p/', c, {
      keepValues,
      pageSize: 3,
      resyncIntervalMs: 0,
      retryMs: 5,
    });
    syncer.start();
    await c.reached('wait-for-datastore');
    await syncer.drain();
    expect(store.refused).toBeGreaterThanOrEqual(1);
    expect(syncer.status).toBe('wait-for-datastore');
    expect(c.state.size).toBe(6);
    store.delete('/p/01'); // handed over, now gone
    store.put('/p/02', 'changed');
    store.put('/p/09', 'new');
    store.failAfterPages = Infinity;
    await syncer.waitInSync(10_000);
    await syncer.drain();
    expect(c.state).toEqual(values(store));
    // Unchanged keys are not handed over twice.
    const puts = c.batches.flatMap((b) => b.updates).filter((u) => u.type === 'put' && u.key === '/p/00');
    expect(puts).toHaveLength(1);
    await syncer.stop();
  });

  it('a resync hands over only the difference, in one batch, even when an earlier resync was cut short', async () => {
    const store = filled(8);
    const c = consumer();
    const syncer = new Syncer(store.asDatastore(), '/p/', c, {
      keepValues,
      pageSize: 3,
      resyncIntervalMs: 0,
      retryMs: 5,
    });
    syncer.start();
    await syncer.waitInSync(10_000);
    // Changes the watch never reported.
    store.delete('/p/03');
    store.put('/p/05', 'changed');
    store.put('/p/10', 'new');
    store.pagesServed = 0;
    store.failAfterPages = 2;
    await syncer.resync('test');
    expect(store.refused).toBeGreaterThanOrEqual(1);
    expect(syncer.status).toBe('wait-for-datastore');
    await syncer.drain();
    expect(c.batches.map((b) => b.kind)).toEqual(['snapshot', 'snapshot', 'snapshot']);
    store.failAfterPages = Infinity;
    await syncer.waitInSync(10_000);
    await syncer.drain();
    const resyncs = c.batches.filter((b) => b.kind === 'resync');
    expect(resyncs).toHaveLength(1);
    expect(resyncs[0]!.updates.map((u) => `${u.type} ${u.key}`).sort()).toEqual([
      'delete /p/03',
      'put /p/05',
      'put /p/10',
    ]);
    expect(c.state).toEqual(values(store));
    // Nothing missed: nothing handed over.
    await syncer.resync('again');
    await syncer.drain();
    expect(c.batches.filter((b) => b.kind === 'resync')).toHaveLength(1);
    await syncer.stop();
  });
});

it('revisions only: watch changes over a first snapshot are kept, and a resync hands over only what was missed', async () => {
  const store = filled(8);
  const c = consumer();
  const syncer = new Syncer(store.asDatastore(), '/p/', c, { keepValues: false, pageSize: 3, resyncIntervalMs: 0 });
  syncer.start();
  await syncer.waitInSync(10_000);
  store.watched('Put', '/p/01', 'watched');
  store.watched('Delete', '/p/02');
  store.watched('Put', '/p/20', 'new');
  store.watched('Delete', '/p/20');
  await syncer.drain();
  expect(c.state).toEqual(values(store));
  // Missed by the watch: only these come with the resync.
  store.delete('/p/03');
  store.put('/p/04', 'missed');
  await syncer.resync('test');
  await syncer.drain();
  const resync = c.batches.filter((b) => b.kind === 'resync');
  expect(resync.map((b) => b.updates.map((u) => `${u.type} ${u.key}`).sort())).toEqual([['delete /p/03', 'put /p/04']]);
  expect(c.state).toEqual(values(store));
  // Once the memory is hashed, a deletion of a key never delivered is not passed on.
  store.watched('Delete', '/p/99');
  await syncer.drain();
  expect(c.batches.flatMap((b) => b.updates).some((u) => u.key === '/p/99')).toBe(false);
  await syncer.stop();
});

it('revisions only: a first snapshot of 40,000 keys, most kept as their last segment, resyncs to exactly the difference', async () => {
  const store = new FakeStore();
  // Endpoint-like directories: "addrs" then "state" in each, so every second key is kept as its leaf.
  for (let i = 0; i < 20_000; i++) {
    const dir = `/p/h/${String(i).padStart(6, '0')}`;
    store.put(`${dir}/addrs`, `a${i}`);
    store.put(`${dir}/state`, 'active');
  }
  const c = consumer();
  const syncer = new Syncer(store.asDatastore(), '/p/', c, { keepValues: false, pageSize: 5_000, resyncIntervalMs: 0 });
  syncer.start();
  await syncer.waitInSync(20_000);
  await syncer.drain();
  expect(c.state.size).toBe(40_000);
  // Missed by the watch, at both ends and across the lists' 16,384-entry blocks.
  store.delete('/p/h/000000/addrs');
  store.delete('/p/h/008192/state');
  store.put('/p/h/016383/state', 'inactive');
  store.put('/p/h/019999/addrs', 'changed');
  await syncer.resync('test');
  await syncer.drain();
  const resync = c.batches.filter((b) => b.kind === 'resync');
  expect(resync.map((b) => b.updates.map((u) => `${u.type} ${u.key}`).sort())).toEqual([
    ['delete /p/h/000000/addrs', 'delete /p/h/008192/state', 'put /p/h/016383/state', 'put /p/h/019999/addrs'],
  ]);
  expect(c.state).toEqual(values(store));
  await syncer.stop();
});

it('revisions only: segments of different lengths in one directory, next to look-alike directories, resync to exactly the difference', async () => {
  const store = new FakeStore();
  // "mac" is shorter than "addrs"; neighbouring directories differ only in their last digits, and
  // a long last segment and a directory that is also a key's prefix sit between them.
  for (let i = 0; i < 3_000; i++) {
    const dir = `/p/h/${String(i).padStart(6, '0')}`;
    store.put(`${dir}/addrs`, `a${i}`);
    store.put(`${dir}/mac`, `m${i}`);
    store.put(`${dir}/state`, 'active');
    if (i % 100 === 0) store.put(`${dir}/${'x'.repeat(40)}`, 'long');
    if (i % 100 === 1) store.put(`${dir}/sub/mac`, 'deeper');
  }
  const c = consumer();
  const syncer = new Syncer(store.asDatastore(), '/p/', c, { keepValues: false, pageSize: 1_000, resyncIntervalMs: 0 });
  syncer.start();
  await syncer.waitInSync(5_000);
  await syncer.drain();
  expect(c.state).toEqual(values(store));
  // Missed by the watch: a short segment after a long one, one after a deeper directory, a middle one.
  store.delete('/p/h/000100/mac');
  store.put('/p/h/000101/addrs', 'changed');
  store.delete('/p/h/000101/sub/mac');
  store.put('/p/h/002999/mac', 'changed');
  await syncer.resync('test');
  await syncer.drain();
  const resync = c.batches.filter((b) => b.kind === 'resync');
  expect(resync.map((b) => b.updates.map((u) => `${u.type} ${u.key}`).sort())).toEqual([
    ['delete /p/h/000100/mac', 'delete /p/h/000101/sub/mac', 'put /p/h/000101/addrs', 'put /p/h/002999/mac'],
  ]);
  expect(c.state).toEqual(values(store));
  await syncer.stop();
});

it('refuses to resume without values', () => {
  const store = new FakeStore();
  expect(
    () =>
      new Syncer(store.asDatastore(), '/p/', consumer(), {
        keepValues: false,
        resume: { revision: 1, state: new Map() },
      }),
  ).toThrow(/resume needs keepValues/);
});

describe('a handler that throws', () => {
  it('gets the same batch again after a pause, nothing after it meanwhile, and the status says retrying', async () => {
    const store = filled(2);
    const c = consumer();
    let fail = 0;
    const offered: string[] = [];
    const syncer = new Syncer(
      store.asDatastore(),
      '/p/',
      {
        onStatus: (s) => c.onStatus(s),
        onUpdates: (b) => {
          offered.push(b.updates.map((u) => u.key).join(','));
          if (b.kind === 'watch' && b.updates.some((u) => u.key === '/p/bad') && fail++ < 2)
            throw new Error('handler broke');
          c.onUpdates(b);
        },
      },
      { pageSize: 10, resyncIntervalMs: 0, retryMs: 20 },
    );
    syncer.start();
    await syncer.waitInSync(10_000);
    store.watched('Put', '/p/bad', 'x');
    store.watched('Put', '/p/after', 'y');
    await c.reached('retrying');
    // The failed batch is not delivered, and the one after it waits behind it.
    expect(c.state.has('/p/bad')).toBe(false);
    expect(c.state.has('/p/after')).toBe(false);
    expect(syncer.inSync).toBe(false);
    await syncer.drain();
    // Offered three times (two failures), then the next batch, in order.
    expect(offered.slice(-4)).toEqual(['/p/bad', '/p/bad', '/p/bad', '/p/after']);
    expect(syncer.stats.handlerErrors).toBe(2);
    expect(c.state).toEqual(values(store));
    expect(c.statuses.slice(-2)).toEqual(['retrying', 'in-sync']);
    expect(syncer.inSync).toBe(true);
    await syncer.stop();
  });

  it('stops at once while waiting to offer a failed batch again', async () => {
    const store = filled(1);
    const c = consumer();
    const syncer = new Syncer(
      store.asDatastore(),
      '/p/',
      {
        onStatus: (s) => c.onStatus(s),
        onUpdates: () => {
          throw new Error('always');
        },
      },
      { resyncIntervalMs: 0, retryMs: 60_000, maxRetryMs: 60_000 },
    );
    syncer.start();
    await c.reached('retrying');
    // The pause is 60 s, the test's own timeout 5 s: stop() must not wait it out.
    await syncer.stop();
    expect(syncer.status).toBe('stopped');
    expect(syncer.stats.handlerErrors).toBe(1);
  });
});
