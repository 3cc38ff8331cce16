import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Etcd, requireRoot, waitFor } from '@calico/testkit';
import { Datastore, LeaseConflictError, resolveDatastoreConfig, type SyncBatch, type SyncStatus } from './index.js';
import { RangeReader } from './rangeReader.js';

function connect(endpoints: string): Datastore {
  return new Datastore(resolveDatastoreConfig({ etcd: endpoints, env: {} }), { callTimeoutMs: 2_000 });
}

/** A syncer consumer that records everything it is handed. */
function recorder() {
  const batches: SyncBatch[] = [];
  const statuses: SyncStatus[] = [];
  const state = new Map<string, string>();
  return {
    batches,
    statuses,
    state,
    handler: {
      onUpdates(b: SyncBatch) {
        batches.push(b);
        for (const u of b.updates) {
          if (u.type === 'put') state.set(u.key, u.value);
          else state.delete(u.key);
        }
      },
      onStatus(s: SyncStatus) {
        statuses.push(s);
      },
    },
  };
}

async function etcdState(ds: Datastore, prefix: string): Promise<Map<string, string>> {
  const snap = await ds.getPrefix(prefix);
  return new Map(snap.kvs.map((kv) => [kv.key, kv.value]));
}

const open: { close(): void }[] = [];
const stoppers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stoppers.splice(0)) await s();
  for (const c of open.splice(0)) c.close();
});

describe('datastore on a real etcd', () => {
  let etcd: Etcd;
  beforeAll(async () => {
    requireRoot();
    etcd = await Etcd.start();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('delivers a snapshot, then every change in revision order', async () => {
    const ds = connect(etcd.endpoints);
    const writer = connect(etcd.endpoints);
    open.push(ds, writer);
    await writer.put('/order/pre', 'x');
    const rec = recorder();
    const syncer = ds.syncer('/order/', rec.handler).start();
    stoppers.push(() => syncer.stop());
    await syncer.waitInSync();
    for (let i = 0; i < 300; i++) {
      await writer.put('/order/counter', String(i));
      if (i % 3 === 0) await writer.put(`/order/k${i}`, String(i));
      if (i % 9 === 0) await writer.delete(`/order/k${i}`);
    }
    await writer.put('/outside/order', 'not ours');
    const last = await writer.put('/order/last', 'end');
    await waitFor('the last write to arrive', () => syncer.revision >= last, 10_000);
    await syncer.drain();

    expect(rec.batches[0]?.kind).toBe('snapshot');
    expect(rec.batches[0]?.updates).toEqual([
      { type: 'put', key: '/order/pre', value: 'x', revision: expect.any(Number) },
    ]);
    const revs = rec.batches.flatMap((b) => b.updates.map((u) => u.revision));
    expect(revs).toEqual([...revs].sort((a, b) => a - b));
    const counter = rec.batches.flatMap((b) =>
      b.updates.filter((u) => u.key === '/order/counter').map((u) => (u.type === 'put' ? u.value : 'DEL')),
    );
    expect(counter).toEqual(Array.from({ length: 300 }, (_, i) => String(i)));
    expect(rec.state).toEqual(await etcdState(writer, '/order/'));
    expect(rec.state.has('/outside/order')).toBe(false);
    expect(syncer.inSync).toBe(true);
  });

  it('a handler that throws is offered the batch again; delivery and the process go on', async () => {
    const ds = connect(etcd.endpoints);
    open.push(ds);
    const seen: string[] = [];
    let threw = 0;
    const syncer = ds
      .syncer('/throw/', {
        onUpdates(b) {
          for (const u of b.updates) seen.push(u.key);
          if (b.kind === 'watch' && threw++ === 0) throw new Error('consumer bug');
        },
        onStatus() {
          throw new Error('status consumer bug');
        },
      })
      .start();
    stoppers.push(() => syncer.stop());
    await syncer.waitInSync();
    await ds.put('/throw/a', '1');
    await waitFor('first key', () => seen.includes('/throw/a'), 5_000);
    await ds.put('/throw/b', '2');
    await waitFor('second key after the throw', () => seen.includes('/throw/b'), 5_000);
    // The batch it threw on came again (a retry, not a loss), then the next one.
    expect(seen.filter((k) => k === '/throw/a')).toHaveLength(2);
    expect(threw).toBe(3);
    expect(syncer.stats.handlerErrors).toBe(1);
    expect(syncer.inSync).toBe(true);
  });

  it('periodic resyncs deliver nothing when nothing was missed', async () => {
    const ds = connect(etcd.endpoints);
    open.push(ds);
    await ds.put('/periodic/a', '1');
    const rec = recorder();
    const syncer = ds.syncer('/periodic/', rec.handler, { resyncIntervalMs: 100 }).start();
    stoppers.push(() => syncer.stop());
    await syncer.waitInSync();
    await ds.put('/periodic/b', '2');
    await waitFor('three periodic resyncs', () => syncer.stats.resyncs >= 3, 10_000);
    await syncer.drain();
    expect(rec.batches.map((b) => b.kind)).toEqual(['snapshot', 'watch']);
    expect(rec.state).toEqual(
      new Map([
        ['/periodic/a', '1'],
        ['/periodic/b', '2'],
      ]),
    );
  });

  it('a filter keeps only the keys the consumer wants, in snapshots and watches', async () => {
    const ds = connect(etcd.endpoints);
    open.push(ds);
    await ds.put('/flt/h1/bird_ip', '1');
    await ds.put('/flt/h1/workload/x', 'w');
    const rec = recorder();
    const syncer = ds.syncer('/flt/', rec.handler, { filter: (k) => k.endsWith('/bird_ip') }).start();
    stoppers.push(() => syncer.stop());
    await syncer.waitInSync();
    await ds.put('/flt/h2/workload/y', 'w');
    const last = await ds.put('/flt/h2/bird_ip', '2');
    await waitFor('the last write', () => syncer.revision >= last, 5_000);
    await syncer.drain();
    expect(rec.state).toEqual(
      new Map([
        ['/flt/h1/bird_ip', '1'],
        ['/flt/h2/bird_ip', '2'],
      ]),
    );
    expect(syncer.state.size).toBe(2);
  });

  it('takes a 10,000-key snapshot in pages at one revision, with writes going on', async () => {
    const ds = connect(etcd.endpoints);
    open.push(ds);
    const ops = Array.from({ length: 10_000 }, (_, i) => ({
      put: `/big/${String(i).padStart(5, '0')}`,
      value: `v${i}`,
    }));
    await ds.batch(ops);
    const rec = recorder();
    const syncer = ds.syncer('/big/', rec.handler, { pageSize: 999, keepValues: false }).start();
    stoppers.push(() => syncer.stop());
    // Writes while the pages are read land after the snapshot's revision and come by the watch.
    const writes = Promise.all(
      Array.from({ length: 20 }, (_, i) => ds.put(`/big/${String(i * 500).padStart(5, '0')}`, `w${i}`)),
    );
    await syncer.waitInSync(30_000);
    const last = Math.max(...(await writes));
    await waitFor('the writes', () => syncer.revision >= last, 10_000);
    await syncer.drain();
    const snapshots = rec.batches.filter((b) => b.kind === 'snapshot');
    expect(snapshots.length).toBeGreaterThanOrEqual(11);
    expect(new Set(snapshots.map((b) => b.revision)).size).toBe(1);
    expect(snapshots.reduce((n, b) => n + b.updates.length, 0)).toBe(10_000);
    expect(rec.state).toEqual(await etcdState(ds, '/big/'));
    expect(rec.state.get('/big/09500')).toBe('w19');
    // Read in pages at one revision: the same as one big read.
    const paged = await ds.getPrefix('/big/', 999);
    const whole = await ds.getPrefix('/big/', 20_000);
    expect(paged.kvs).toHaveLength(10_000);
    expect(paged).toEqual(whole);
    expect(paged.kvs.map((kv) => kv.key)).toEqual(ops.map((o) => o.put));
  });

  it('a range with an empty end reads the one key (etcd reads a present empty end as "from here on")', async () => {
    const ds = connect(etcd.endpoints);
    open.push(ds);
    await ds.batch(['/one/a', '/one/ab', '/one/b'].map((k) => ({ put: k, value: k })));
    const reader = new RangeReader(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }), 5_000);
    try {
      const r = await reader.range({ key: Buffer.from('/one/a'), rangeEnd: Buffer.alloc(0), limit: 0, revision: 0 });
      expect([...r.kvs].map((kv) => kv.key)).toEqual(['/one/a']);
      expect(r.more).toBe(false);
    } finally {
      reader.close();
    }
  });

  it('resumes from a compacted revision by resyncing the difference', async () => {
    const ds = connect(etcd.endpoints);
    open.push(ds);
    await ds.put('/cmp/keep', 'old');
    await ds.put('/cmp/gone', 'x');
    const held = await etcdState(ds, '/cmp/');
    const heldRev = await ds.revision();
    // Changes the consumer never saw, then the history behind them is compacted away.
    await ds.put('/cmp/keep', 'new');
    await ds.delete('/cmp/gone');
    await ds.put('/cmp/added', 'y');
    const now = await ds.revision();
    await etcd.etcdctl(['compact', String(now)]);

    const rec = recorder();
    for (const [k, v] of held) rec.state.set(k, v);
    const syncer = ds.syncer('/cmp/', rec.handler, { retryMs: 50, resume: { revision: heldRev, state: held } }).start();
    stoppers.push(() => syncer.stop());
    await waitFor('resync after compaction', () => rec.batches.some((b) => b.kind === 'resync'), 10_000);
    await syncer.waitInSync();
    await syncer.drain();
    const resync = rec.batches.find((b) => b.kind === 'resync')!;
    expect(resync.updates.map((u) => `${u.type} ${u.key}`).sort()).toEqual([
      'delete /cmp/gone',
      'put /cmp/added',
      'put /cmp/keep',
    ]);
    expect(rec.state).toEqual(await etcdState(ds, '/cmp/'));
    expect(syncer.stats.watchErrors).toBeGreaterThanOrEqual(1);
  });

  it('keeps what it delivered while etcd is down, and converges when it returns', async () => {
    const ds = connect(etcd.endpoints);
    open.push(ds);
    await ds.put('/restart/a', '1');
    const rec = recorder();
    const syncer = ds.syncer('/restart/', rec.handler, { retryMs: 50, maxRetryMs: 500 }).start();
    stoppers.push(() => syncer.stop());
    await syncer.waitInSync();

    await etcd.stopMember();
    await waitFor('the syncer to notice', () => !syncer.inSync, 15_000);
    // It keeps trying while etcd is away, and says so.
    await waitFor('wait-for-datastore', () => syncer.status === 'wait-for-datastore', 15_000);
    expect(rec.state.get('/restart/a')).toBe('1');
    expect(rec.batches.flatMap((b) => b.updates).filter((u) => u.type === 'delete')).toEqual([]);

    await etcd.startMember();
    const writer = connect(etcd.endpoints);
    open.push(writer);
    await writer.put('/restart/b', '2');
    await writer.delete('/restart/a');
    await waitFor(
      'convergence after restart',
      () => rec.state.get('/restart/b') === '2' && !rec.state.has('/restart/a'),
      20_000,
    );
    await syncer.waitInSync(20_000);
    expect(rec.state).toEqual(await etcdState(writer, '/restart/'));
  });

  it('create-if-absent, delete-if-value and directory deletes that respect the trailing slash', async () => {
    const ds = connect(etcd.endpoints);
    open.push(ds);
    expect(await ds.createIfAbsent('/ipam/198.19.0.1', 'host1')).toMatchObject({ created: true });
    expect(await ds.createIfAbsent('/ipam/198.19.0.1', 'host2')).toEqual({ created: false, existing: 'host1' });
    expect(await ds.deleteIfValue('/ipam/198.19.0.1', 'host2')).toBe(false);
    expect(await ds.get('/ipam/198.19.0.1')).toBe('host1');
    expect(await ds.deleteIfValue('/ipam/198.19.0.1', 'host1')).toBe(true);
    expect(await ds.get('/ipam/198.19.0.1')).toBeUndefined();

    await ds.batch([
      { put: '/calico/network/group/ab/name', value: 'ab' },
      { put: '/calico/network/group/ab/member/e1', value: '' },
      { put: '/calico/network/group/abc/name', value: 'abc' },
    ]);
    expect(await ds.deleteDir('/calico/network/group/ab/')).toBe(2);
    expect(await ds.get('/calico/network/group/abc/name')).toBe('abc');
    await expect(ds.deleteDir('/calico/network/group/ab')).rejects.toThrow('prefix must end in "/"');

    const kv = await ds.getWithRevision('/calico/network/group/abc/name');
    expect(await ds.putIfModRevision('/calico/network/group/abc/name', 'x', kv!.modRevision + 100)).toBe(false);
    expect(await ds.putIfModRevision('/calico/network/group/abc/name', 'x', kv!.modRevision)).toBe(true);
  });

  it('leases: claims are exclusive, keys go with the lease, and a lost lease is re-granted with its keys', async () => {
    const ds = connect(etcd.endpoints);
    const other = connect(etcd.endpoints);
    open.push(ds, other);
    const held: boolean[] = [];
    const k1 = ds.leaseKeeper({ ttlSeconds: 5, retryMs: 50, onStatus: (h) => held.push(h) });
    stoppers.push(() => k1.stop());
    await k1.start();
    await k1.claim('/calico/host/h1/alive', 'pid-1');
    await k1.put('/calico/host/h1/info', 'i');

    const k2 = other.leaseKeeper({ ttlSeconds: 5 });
    stoppers.push(() => k2.stop());
    await k2.start();
    await expect(k2.claim('/calico/host/h1/alive', 'pid-2')).rejects.toBeInstanceOf(LeaseConflictError);

    // Someone revokes our lease behind our back: the keeper notices and puts the keys back.
    const id = BigInt(await k1.leaseId()).toString(16);
    await etcd.etcdctl(['lease', 'revoke', id]);
    await waitFor(
      'keys restored under a new lease',
      async () =>
        (await other.get('/calico/host/h1/alive')) === 'pid-1' &&
        k1.isHeld &&
        (await k1.leaseId()) !== String(BigInt(`0x${id}`)),
      20_000,
    );
    expect(await other.get('/calico/host/h1/info')).toBe('i');
    expect(held).toEqual([true, false, true]);

    await k1.stop();
    expect(await other.get('/calico/host/h1/alive')).toBeUndefined();
    await k2.claim('/calico/host/h1/alive', 'pid-2');
  });
});

describe('datastore on a 3-member etcd cluster', () => {
  let etcd: Etcd;
  beforeAll(async () => {
    requireRoot();
    etcd = await Etcd.start({ members: 3 });
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('catches up on changes made while its member was away, then compacted', async () => {
    const member0 = etcd.clientUrls[0]!.replace('http://', '');
    const rest = etcd.clientUrls
      .slice(1)
      .map((u) => u.replace('http://', ''))
      .join(',');
    const ds = connect(member0);
    const writer = connect(rest);
    open.push(ds, writer);
    await writer.put('/gap/a', '1');
    await writer.put('/gap/b', '1');
    const rec = recorder();
    const syncer = ds.syncer('/gap/', rec.handler, { retryMs: 50, maxRetryMs: 500 }).start();
    stoppers.push(() => syncer.stop());
    await syncer.waitInSync();

    await etcd.stopMember(0);
    await writer.put('/gap/a', '2');
    await writer.delete('/gap/b');
    await writer.put('/gap/c', '3');
    await writer.compact(await writer.revision());
    await etcd.startMember(0);

    await waitFor(
      'catch-up',
      () => rec.state.get('/gap/a') === '2' && rec.state.get('/gap/c') === '3' && !rec.state.has('/gap/b'),
      30_000,
    );
    await syncer.waitInSync(20_000);
    expect(rec.statuses).toContain('resyncing');
    expect(rec.state).toEqual(await etcdState(writer, '/gap/'));
  });
});
