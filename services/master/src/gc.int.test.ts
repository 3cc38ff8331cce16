import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Etcd, requireRoot, waitFor } from '@calico/testkit';
import { Datastore, resolveDatastoreConfig, type LeaseKeeper } from '@calico/datastore';
import {
  birdIpKey,
  encodeBirdIp,
  encodeHostAlive,
  encodeIpAssignment,
  encodeWorkloadName,
  groupMemberKey,
  hostAliveKey,
  ipAssignmentKey,
  workloadNameKey,
  workloadPrefix,
} from '@calico/keyspace';
import { createLogger } from '@calico/log';
import { policyFixtures } from '@calico/policy';
import { loadMasterConfig } from './config.js';
import { startMaster, type RunningMaster } from './master.js';

const GRACE_S = 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('calico-master garbage collection on a real etcd', () => {
  let etcd: Etcd;
  let ds: Datastore;
  let master: RunningMaster | undefined;
  const keepers: LeaseKeeper[] = [];
  const logLines: { msg: string; etcdKey?: string; reason?: string }[] = [];

  async function start(graceS = GRACE_S, safetyResyncMs?: number): Promise<RunningMaster> {
    const cfg = loadMasterConfig(['--ip=127.0.0.1', '--listen=127.0.0.1:0', `--etcd=${etcd.endpoints}`, `--gc-grace=${graceS}`, '--gc-interval=0.2'], {});
    if (!cfg.ok) throw new Error(cfg.errors.join('\n'));
    const logger = createLogger({ name: 'calico-master', level: 'info', destination: { write: (s: string) => void logLines.push(JSON.parse(s)) } });
    master = await startMaster(cfg.value, { logger, ...(safetyResyncMs ? { safetyResyncMs } : {}) });
    await master.syncer.waitInSync();
    return master;
  }

  /** A host the way calico-node registers it: liveness bound to a lease, bird_ip, one workload with a reservation. */
  async function host(name: string, endpointId: string, addr: string, ttlSeconds = 2): Promise<LeaseKeeper> {
    const keeper = ds.leaseKeeper({ ttlSeconds });
    keepers.push(keeper);
    await keeper.start();
    await keeper.put(hostAliveKey(name), encodeHostAlive({ since: new Date().toISOString() }));
    const containerId = `c-${endpointId}`;
    await ds.batch([
      { put: birdIpKey(name), value: encodeBirdIp(addr.replace(/^198\.19\./, '198.18.')) },
      ...policyFixtures.endpoint({ host: name, containerId, endpointId, addrs: [addr] }).map((kv) => ({ put: kv.key, value: kv.value })),
      { put: workloadNameKey(name, containerId), value: encodeWorkloadName(`n-${endpointId}`) },
      { put: ipAssignmentKey(addr), value: encodeIpAssignment({ host: name, containerId, endpointId }) },
    ]);
    return keeper;
  }

  const exists = async (key: string) => (await ds.get(key)) !== undefined;
  const underPrefix = async (prefix: string) => (await ds.getPrefix(prefix)).kvs.length;
  const metric = async (m: RunningMaster, kind: string) => Number(new RegExp(`^calico_master_gc_deleted_total\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(await m.metrics.registry.metrics())?.[1]);

  beforeAll(async () => {
    requireRoot();
    etcd = await Etcd.start();
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
  });
  afterEach(async () => {
    await master?.stop();
    master = undefined;
    for (const k of keepers.splice(0)) await k.stop();
    await ds.deleteDir('/calico/');
    logLines.length = 0;
  });
  afterAll(async () => {
    ds?.close();
    await etcd?.stop();
  });

  it('removes a membership of an endpoint that exists nowhere, only after the grace period', async () => {
    await host('h1', 'ep-live', '198.19.0.1', 30);
    await ds.put(groupMemberKey('g1', 'ep-live'), '');
    const m = await start();
    const written = Date.now();
    await ds.put(groupMemberKey('g1', 'ep-ghost'), '');
    await sleep(GRACE_S * 1000 * 0.6);
    expect(await exists(groupMemberKey('g1', 'ep-ghost'))).toBe(true);
    await waitFor('the ghost membership to be collected', async () => !(await exists(groupMemberKey('g1', 'ep-ghost'))), 10_000);
    expect(Date.now() - written).toBeGreaterThanOrEqual(GRACE_S * 1000);
    expect(await exists(groupMemberKey('g1', 'ep-live'))).toBe(true);
    expect(await metric(m, 'membership')).toBe(1);
    const line = logLines.find((l) => l.msg.startsWith('garbage-collected membership'));
    expect(line).toMatchObject({ etcdKey: groupMemberKey('g1', 'ep-ghost'), reason: expect.stringMatching(/^endpoint ep-ghost exists on no host, continuously for/) });
  });

  it("the master's own periodic resyncs are no blip: timers keep running through them", async () => {
    // Resyncing every 150 ms, far more often than the grace period: were a resync taken for a
    // blip, the membership would never be collected.
    const m = await start(GRACE_S, 150);
    await ds.put(groupMemberKey('g1', 'ep-ghost'), '');
    await waitFor('the ghost membership to be collected', async () => !(await exists(groupMemberKey('g1', 'ep-ghost'))), 10_000);
    expect(m.syncer.stats.resyncs).toBeGreaterThan(3);
    expect(logLines.filter((l) => l.msg.startsWith('not in sync'))).toEqual([]);
  });

  it('a membership whose endpoint appears within the grace period stays', async () => {
    await start(2);
    await ds.put(groupMemberKey('g1', 'ep-late'), '');
    await sleep(500);
    await host('h1', 'ep-late', '198.19.0.5', 30);
    await sleep(2_500);
    expect(await exists(groupMemberKey('g1', 'ep-late'))).toBe(true);
  });

  it('a host whose liveness lease expires loses its workloads, reservations and memberships; bird_ip stays', async () => {
    await host('h1', 'ep-a', '198.19.0.1', 30);
    const h2 = await host('h2', 'ep-b', '198.19.0.2', 2);
    await ds.put(groupMemberKey('g1', 'ep-a'), '');
    await ds.put(groupMemberKey('g1', 'ep-b'), '');
    const m = await start();
    // The node dies: its keepalives stop, and etcd expires the lease after its TTL.
    await h2.stop({ keepKeys: true });
    await waitFor('h2 liveness to expire', async () => !(await exists(hostAliveKey('h2'))), 10_000);
    const expired = Date.now();
    await waitFor('h2 workloads to be collected', async () => (await underPrefix(workloadPrefix('h2', 'c-ep-b'))) === 0, 10_000);
    expect(Date.now() - expired).toBeGreaterThanOrEqual(GRACE_S * 1000 - 250); // the master saw the expiry a moment before we did
    await waitFor('h2 reservation to be collected', async () => !(await exists(ipAssignmentKey('198.19.0.2'))), 5_000);
    expect(await exists(groupMemberKey('g1', 'ep-b'))).toBe(false);
    expect(await ds.get(birdIpKey('h2'))).toBe('198.18.0.2');
    // The live host is untouched.
    expect(await underPrefix(workloadPrefix('h1', 'c-ep-a'))).toBe(3);
    expect(await exists(ipAssignmentKey('198.19.0.1'))).toBe(true);
    expect(await exists(groupMemberKey('g1', 'ep-a'))).toBe(true);
    expect([await metric(m, 'endpoint'), await metric(m, 'assignment'), await metric(m, 'membership')]).toEqual([1, 1, 1]);
    expect(logLines.filter((l) => l.msg.startsWith('garbage-collected')).map((l) => l.etcdKey)).toEqual([
      groupMemberKey('g1', 'ep-b'),
      workloadPrefix('h2', 'c-ep-b'),
      ipAssignmentKey('198.19.0.2'),
    ]);
  });

  it('an etcd outage restarts every pending timer: nothing is deleted until a full grace period in sync after it', async () => {
    const grace = 2_000;
    await host('h1', 'ep-a', '198.19.0.1', 30);
    const m = await start(grace / 1000);
    await ds.put(groupMemberKey('g1', 'ep-ghost'), '');
    await sleep(800);
    await etcd.stopMember();
    // Down for longer than the rest of the grace period: a collector counting wall time would delete at once.
    await waitFor('the master to notice', async () => !m.syncer.inSync, 10_000);
    await sleep(grace);
    await etcd.startMember();
    await m.syncer.waitInSync(30_000);
    const back = Date.now();
    await sleep(grace / 2);
    expect(await exists(groupMemberKey('g1', 'ep-ghost'))).toBe(true);
    expect(await metric(m, 'membership')).toBe(0);
    // The live host kept its lease through the outage (etcd renews leases on restart) and everything it has.
    expect(await exists(hostAliveKey('h1'))).toBe(true);
    expect(await underPrefix(workloadPrefix('h1', 'c-ep-a'))).toBe(3);
    // And the collector still works after the outage: a full grace period after being back.
    await waitFor('the ghost membership to be collected after the outage', async () => !(await exists(groupMemberKey('g1', 'ep-ghost'))), 10_000);
    expect(Date.now() - back).toBeGreaterThanOrEqual(grace - 250);
    expect(logLines.some((l) => l.msg.startsWith('not in sync with etcd; GC paused'))).toBe(true);
  });
});
