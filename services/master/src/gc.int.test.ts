import { join } from 'node:path';
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

/** --gc-dead-hosts-after in the tests that turn it on (seconds). */
const AFTER_S = 1;

/** A line of the master's log, as pino writes it (its own clock, ISO time). */
interface LogLine {
  msg: string;
  time: string;
  etcdKey?: string;
  host?: string;
  reason?: string;
  removed?: { workloads: number; endpoints: number; memberships: number; reservations: number; keys: number };
  /** On lines that start a removal timer: what is timed ("host:<name>"), and when it falls due. */
  subject?: string;
  dueAt?: string;
}
const at = (l: LogLine) => Date.parse(l.time);

describe('calico-master: hosts down, kept, and removed only by --gc-dead-hosts-after, on a real etcd', () => {
  let etcd: Etcd;
  let ds: Datastore;
  let master: RunningMaster | undefined;
  const keepers: LeaseKeeper[] = [];
  const logLines: LogLine[] = [];
  const watchers = new Set<(l: LogLine) => void>();

  /** A master whose GC looks every 0.2 s; afterS turns --gc-dead-hosts-after on. */
  async function start(afterS: number | null = null, safetyResyncMs?: number): Promise<RunningMaster> {
    const dead = afterS === null ? [] : [`--gc-dead-hosts-after=${afterS * 1000}ms`];
    const cfg = loadMasterConfig(
      [
        '--ip=127.0.0.1',
        '--listen=127.0.0.1:0',
        `--etcd=${etcd.endpoints}`,
        `--api-token-file=${join(etcd.dir, 'api-token')}`,
        ...dead,
        '--gc-interval=0.2',
      ],
      {},
    );
    if (!cfg.ok) throw new Error(cfg.errors.join('\n'));
    const write = (s: string) => {
      const l = JSON.parse(s) as LogLine;
      logLines.push(l);
      for (const w of watchers) w(l);
    };
    const logger = createLogger({ name: 'calico-master', level: 'info', destination: { write } });
    master = await startMaster(cfg.value, { logger, ...(safetyResyncMs ? { safetyResyncMs } : {}) });
    await master.syncer.waitInSync();
    return master;
  }

  /**
   * The first line from index `from` on that matches, as soon as the master writes it (the test
   * acts at that moment, not a polling interval later).
   */
  function line(what: string, match: (l: LogLine) => boolean, from = 0, timeoutMs = 20_000): Promise<LogLine> {
    const found = logLines.slice(from).find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const watch = (l: LogLine) => {
        if (!match(l)) return;
        clearTimeout(timer);
        watchers.delete(watch);
        resolve(l);
      };
      const timer = setTimeout(() => {
        watchers.delete(watch);
        const logged = logLines.map((l) => JSON.stringify(l)).join('\n');
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; the master logged:\n${logged}`));
      }, timeoutMs);
      watchers.add(watch);
    });
  }
  /** The line that starts the removal timer of a down host (it names the subject and its due time). */
  const timing = (host: string) => (l: LogLine) => l.subject === `host:${host}` && l.dueAt !== undefined;
  const removedLine = (host: string) => (l: LogLine) => l.msg.startsWith(`removed host ${host}:`);
  const downLine = (host: string) => (l: LogLine) => l.msg.startsWith(`host ${host} is down`);
  /** "…, continuously for 1.0 s in sync": how long the master itself saw the absence. */
  const absentFor = (l: LogLine) => Number(/continuously for ([\d.]+) s in sync/.exec(l.reason ?? '')?.[1]);

  /** A host the way calico-node registers it: liveness bound to a lease, bird_ip, one workload with a reservation. */
  async function host(name: string, endpointId: string, addr: string, ttlSeconds = 2): Promise<LeaseKeeper> {
    const keeper = ds.leaseKeeper({ ttlSeconds });
    keepers.push(keeper);
    await keeper.start();
    await keeper.put(hostAliveKey(name), encodeHostAlive({ since: new Date().toISOString() }));
    const containerId = `c-${endpointId}`;
    await ds.batch([
      { put: birdIpKey(name), value: encodeBirdIp(addr.replace(/^198\.19\./, '198.18.')) },
      ...policyFixtures
        .endpoint({ host: name, containerId, endpointId, addrs: [addr] })
        .map((kv) => ({ put: kv.key, value: kv.value })),
      { put: workloadNameKey(name, containerId), value: encodeWorkloadName(`n-${endpointId}`) },
      { put: ipAssignmentKey(addr), value: encodeIpAssignment({ host: name, containerId, endpointId }) },
    ]);
    return keeper;
  }

  const exists = async (key: string) => (await ds.get(key)) !== undefined;
  const underPrefix = async (prefix: string) => (await ds.getPrefix(prefix)).kvs.length;
  const metric = async (m: RunningMaster, kind: string) =>
    Number(
      new RegExp(`^calico_master_gc_deleted_total\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(
        await m.metrics.registry.metrics(),
      )?.[1],
    );

  /** Every key under /calico/ and its value. */
  const keyspace = async () => new Map((await ds.getPrefix('/calico/')).kvs.map((kv) => [kv.key, kv.value]));
  /** The keys of `before` gone from `after`, after checking that nothing else changed. */
  const removedKeys = (before: Map<string, string>, after: Map<string, string>) => {
    for (const [k, v] of after) expect(before.get(k), k).toBe(v);
    return [...before.keys()].filter((k) => !after.has(k)).sort();
  };
  /** What removing `name` must take: its directory, its reservations, the memberships of its endpoints. */
  const dataOf = (kvs: Map<string, string>, name: string, endpointIds: string[]) =>
    [...kvs]
      .filter(
        ([k, v]) =>
          k.startsWith(`/calico/host/${name}/`) ||
          (k.startsWith('/calico/ipam/') && v.includes(`"host":"${name}"`)) ||
          endpointIds.some((e) => k.endsWith(`/member/${e}`)),
      )
      .map(([k]) => k)
      .sort();

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
    watchers.clear();
  });
  afterAll(async () => {
    ds?.close();
    await etcd?.stop();
  });

  it('a host whose lease expires is reported down and keeps its workloads, memberships and reservations', async () => {
    await host('h1', 'ep-a', '198.19.0.1', 30);
    const h2 = await host('h2', 'ep-b', '198.19.0.2', 2);
    await ds.put(groupMemberKey('g1', 'ep-a'), '');
    await ds.put(groupMemberKey('g1', 'ep-b'), '');
    const m = await start();
    // The node dies: its keepalives stop, and etcd expires the lease after its TTL.
    await h2.stop({ keepKeys: true });
    const down = await line('the master to see h2 down', downLine('h2'));
    expect(await exists(hostAliveKey('h2'))).toBe(false);
    expect(down.msg).toBe(
      'host h2 is down (its liveness key /calico/host/h2/alive is gone); keeping its workloads, memberships and address reservations: they stay until it is back or removed (calicoctl node remove)',
    );
    const before = await keyspace();
    // Rounds after the host went down decide nothing and delete nothing.
    for (let i = 0; i < 5; i++) expect(await m.gc.runOnce()).toEqual([]);
    expect(await keyspace()).toEqual(before);
    expect(await underPrefix(workloadPrefix('h2', 'c-ep-b'))).toBe(3);
    expect(await exists(ipAssignmentKey('198.19.0.2'))).toBe(true);
    expect(await exists(groupMemberKey('g1', 'ep-b'))).toBe(true);
    expect(m.gc.pending).toBe(0);
    // It was up when the master started, so the master knows since when it is down.
    expect(m.gc.hostsDown.get('h2')).toEqual(expect.any(Number));
    expect(m.gc.hostsDown.get('h2')).toBeLessThanOrEqual(at(down));
    const text = await m.metrics.registry.metrics();
    expect(text).toMatch(/^calico_master_hosts\{state="down"\} 1$/m);
    expect(text).toMatch(/^calico_master_host_up\{host="h2"\} 0$/m);
    expect(text).toMatch(/^calico_master_host_up\{host="h1"\} 1$/m);
    expect(text).toMatch(/^calico_master_host_down_since_seconds\{host="h2"\} \d/m);
    expect(text).toMatch(/^calico_master_gc_deleted_total\{kind="host"\} 0$/m);
    // Control: a master with --gc-dead-hosts-after removes this very host.
    await m.stop();
    await start(AFTER_S);
    await line('h2 to be removed by a master with --gc-dead-hosts-after', removedLine('h2'));
    expect(await underPrefix('/calico/host/h2/')).toBe(0);
  });

  it('a membership whose endpoint exists nowhere is kept and logged, not collected', async () => {
    await host('h1', 'ep-live', '198.19.0.1', 30);
    const m = await start(AFTER_S);
    const ghost = groupMemberKey('g1', 'ep-ghost');
    await ds.put(ghost, '');
    const logged = await line('the master to notice the ghost membership', (l) => l.etcdKey === ghost);
    expect(logged.msg).toBe(
      'membership of endpoint ep-ghost in group g1: the endpoint exists on no host; keeping it (it may not have been created yet; it goes when its container is removed)',
    );
    // Control for "long enough": a host that goes down meanwhile is removed after the same option's duration.
    await ds.batch([{ put: birdIpKey('h9'), value: encodeBirdIp('198.18.0.9') }]);
    await line('h9 to be removed', removedLine('h9'));
    for (let i = 0; i < 3; i++) await m.gc.runOnce();
    expect(await exists(ghost)).toBe(true);
    expect(logLines.filter((l) => l.etcdKey === ghost)).toHaveLength(1);
    expect(await m.metrics.registry.metrics()).toMatch(/^calico_master_members_without_endpoint 1$/m);
  });

  it('--gc-dead-hosts-after removes a host down that long, not before, and nothing but its data', async () => {
    await host('h1', 'ep-a', '198.19.0.1', 30);
    const h2 = await host('h2', 'ep-b', '198.19.0.2', 2);
    await ds.put(groupMemberKey('g1', 'ep-a'), '');
    await ds.put(groupMemberKey('g1', 'ep-b'), '');
    await ds.put(groupMemberKey('g2', 'ep-b'), '');
    await ds.put('/calico/bgp/v1/host/h2/as_num', '65002');
    const m = await start(AFTER_S);
    await h2.stop({ keepKeys: true });
    const timed = await line('the master to time h2', timing('h2'));
    const before = await keyspace();
    // Control: a round with h2 known down, before it is due, removes nothing.
    expect(await m.gc.runOnce()).toEqual([]);
    expect(await keyspace()).toEqual(before);
    const removed = await line('h2 to be removed', removedLine('h2'));
    // By the master's own clock: no earlier than the due time it announced, after the whole duration.
    expect(at(removed)).toBeGreaterThanOrEqual(Date.parse(timed.dueAt!));
    expect(absentFor(removed)).toBeGreaterThanOrEqual(AFTER_S);
    const gone = removedKeys(before, await keyspace());
    expect(gone).toEqual([...dataOf(before, 'h2', ['ep-b']), '/calico/bgp/v1/host/h2/as_num'].sort());
    expect(removed.removed).toEqual({ workloads: 1, endpoints: 1, memberships: 2, reservations: 1, keys: gone.length });
    // h1 is untouched (removedKeys checked every key that is left).
    expect(await underPrefix(workloadPrefix('h1', 'c-ep-a'))).toBe(3);
    expect([
      await metric(m, 'host'),
      await metric(m, 'endpoint'),
      await metric(m, 'membership'),
      await metric(m, 'assignment'),
    ]).toEqual([1, 1, 2, 1]);
  });

  it('a host that comes back before --gc-dead-hosts-after keeps everything', async () => {
    const after = 6;
    const h2 = await host('h2', 'ep-b', '198.19.0.2', 2);
    const h3 = await host('h3', 'ep-c', '198.19.0.3', 2);
    const m = await start(after);
    // Both nodes die; h3 a moment after h2, so the control h3 falls due no earlier than h2.
    await h2.stop({ keepKeys: true });
    await h3.stop({ keepKeys: true });
    const timedH2 = await line('the master to time h2', timing('h2'));
    const timedH3 = await line('the master to time h3', timing('h3'));
    expect(Date.parse(timedH3.dueAt!)).toBeGreaterThanOrEqual(Date.parse(timedH2.dueAt!));
    await host('h2', 'ep-b', '198.19.0.2', 30);
    const back = await line(
      'h2 back before its removal',
      (l) => l.subject === 'host:h2' && l.msg.startsWith('host is back'),
    );
    expect(at(back)).toBeLessThan(Date.parse(timedH2.dueAt!));
    await line('the master to see h2 up again', (l) => l.msg === 'host h2 is up again (its liveness key is back)');
    expect([...m.gc.hostsDown.keys()]).toEqual(['h3']);
    const removed = await line('the control host h3 to be removed', removedLine('h3'));
    expect(at(removed)).toBeGreaterThanOrEqual(Date.parse(timedH2.dueAt!));
    expect(await underPrefix(workloadPrefix('h2', 'c-ep-b'))).toBe(3);
    expect(await exists(ipAssignmentKey('198.19.0.2'))).toBe(true);
    expect(await underPrefix('/calico/host/h3/')).toBe(0);
    expect(logLines.filter(removedLine('h2'))).toEqual([]);
    expect(await m.metrics.registry.metrics()).toMatch(/^calico_master_gc_deleted_total\{kind="host"\} 1$/m);
  });

  it("the master's own periodic resyncs are no blip: timers keep running through them", async () => {
    // Resyncing every 150 ms, far more often than the duration: were a resync taken for a blip,
    // the host would never be removed.
    const m = await start(AFTER_S, 150);
    await ds.put(birdIpKey('h9'), encodeBirdIp('198.18.0.9'));
    await line('h9 to be removed', removedLine('h9'), 0, 10_000);
    expect(m.syncer.stats.resyncs).toBeGreaterThan(3);
    expect(logLines.filter((l) => l.msg.startsWith('not in sync'))).toEqual([]);
  });

  it('an etcd outage restarts the removal timer: nothing goes until the whole duration in sync after it', async () => {
    const after = 2;
    await host('h1', 'ep-a', '198.19.0.1', 30);
    await ds.put(birdIpKey('h9'), encodeBirdIp('198.18.0.9'));
    const m = await start(after);
    const first = await line('the master to time h9', timing('h9'));
    // Counted before the stop: the master may notice the dropped connection before it returns.
    const down = logLines.length;
    await etcd.stopMember();
    await line('the master to notice the outage', (l) => l.msg.startsWith('not in sync with etcd; GC paused'), down);
    // Down past the due time the master announced: a collector counting wall time would remove
    // h9 as soon as etcd is back.
    const firstDue = Date.parse(first.dueAt!);
    await waitFor("the first timer's due time to pass during the outage", () => Date.now() > firstDue, 10_000);
    expect(m.syncer.inSync).toBe(false);
    await etcd.startMember();
    const back = await line('the master back in sync', (l) => l.msg.startsWith('in sync with etcd'), down);
    const again = await line('h9 to be timed anew', timing('h9'), logLines.indexOf(back));
    expect(at(back)).toBeGreaterThan(firstDue);
    // Control: back in sync after the first due time, a round removes nothing.
    expect(await m.gc.runOnce()).toEqual([]);
    expect(await exists(birdIpKey('h9'))).toBe(true);
    // The live host kept its lease through the outage (etcd renews leases on restart) and everything it has.
    expect(await exists(hostAliveKey('h1'))).toBe(true);
    expect(await underPrefix(workloadPrefix('h1', 'c-ep-a'))).toBe(3);
    const removed = await line('h9 to be removed after the outage', removedLine('h9'));
    expect(at(removed)).toBeGreaterThanOrEqual(Date.parse(again.dueAt!));
    expect(absentFor(removed)).toBeGreaterThanOrEqual(after);
    expect(await exists(birdIpKey('h9'))).toBe(false);
  });
});
