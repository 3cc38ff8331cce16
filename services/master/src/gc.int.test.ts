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

/** A line of the master's log, as pino writes it (its own clock, ISO time). */
interface LogLine {
  msg: string;
  time: string;
  etcdKey?: string;
  reason?: string;
  /** On "started timing an absence" lines: what is absent, and when it falls due. */
  subject?: string;
  dueAt?: string;
}
const at = (l: LogLine) => Date.parse(l.time);

describe('calico-master garbage collection on a real etcd', () => {
  let etcd: Etcd;
  let ds: Datastore;
  let master: RunningMaster | undefined;
  const keepers: LeaseKeeper[] = [];
  const logLines: LogLine[] = [];
  const watchers = new Set<(l: LogLine) => void>();

  async function start(graceS = GRACE_S, safetyResyncMs?: number): Promise<RunningMaster> {
    const cfg = loadMasterConfig(['--ip=127.0.0.1', '--listen=127.0.0.1:0', `--etcd=${etcd.endpoints}`, `--gc-grace=${graceS}`, '--gc-interval=0.2'], {});
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
  /** The line that starts the timer of an absence (it names the subject and its due time). */
  const timing = (subject: string) => (l: LogLine) => l.subject === subject && l.dueAt !== undefined;
  const collectedLine = (etcdKey: string) => (l: LogLine) =>
    l.msg.startsWith('garbage-collected') && l.etcdKey === etcdKey;
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
    watchers.clear();
  });
  afterAll(async () => {
    ds?.close();
    await etcd?.stop();
  });

  it('removes a membership of an endpoint that exists nowhere, only after the grace period', async () => {
    await host('h1', 'ep-live', '198.19.0.1', 30);
    await ds.put(groupMemberKey('g1', 'ep-live'), '');
    const m = await start();
    const ghost = groupMemberKey('g1', 'ep-ghost');
    await ds.put(ghost, '');
    const timed = await line('the master to start timing the ghost membership', timing(`membership:${ghost}`));
    // Control: a whole round with the absence known, before it is due, deletes nothing.
    expect(await m.gc.runOnce()).toEqual([]);
    expect(await exists(ghost)).toBe(true);
    const collected = await line('the ghost membership to be collected', collectedLine(ghost));
    expect(await exists(ghost)).toBe(false);
    // By the master's own clock: deleted no earlier than the due time it announced, after a whole grace period.
    expect(at(collected)).toBeGreaterThanOrEqual(Date.parse(timed.dueAt!));
    expect(collected.reason).toMatch(/^endpoint ep-ghost exists on no host, continuously for/);
    expect(absentFor(collected)).toBeGreaterThanOrEqual(GRACE_S);
    expect(await exists(groupMemberKey('g1', 'ep-live'))).toBe(true);
    expect(await metric(m, 'membership')).toBe(1);
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
    const late = groupMemberKey('g1', 'ep-late');
    const control = groupMemberKey('g1', 'ep-never');
    await ds.put(late, '');
    const timedLate = await line('the master to start timing ep-late', timing(`membership:${late}`));
    // The control is timed after ep-late, so once it is collected ep-late's due time has passed too.
    await ds.put(control, '');
    await line('the master to start timing the control', timing(`membership:${control}`));
    await host('h1', 'ep-late', '198.19.0.5', 30);
    const ended = (l: LogLine) => l.subject === `membership:${late}` && l.msg.startsWith('absence ended');
    await line('the absence of ep-late to end', ended);
    const collected = await line('the control membership to be collected', collectedLine(control));
    expect(at(collected)).toBeGreaterThanOrEqual(Date.parse(timedLate.dueAt!));
    expect(await exists(late)).toBe(true);
    expect(await exists(control)).toBe(false);
    expect(logLines.filter(collectedLine(late))).toEqual([]);
  });

  it('a host whose liveness lease expires loses its workloads, reservations and memberships; bird_ip stays', async () => {
    await host('h1', 'ep-a', '198.19.0.1', 30);
    const h2 = await host('h2', 'ep-b', '198.19.0.2', 2);
    await ds.put(groupMemberKey('g1', 'ep-a'), '');
    await ds.put(groupMemberKey('g1', 'ep-b'), '');
    const m = await start();
    // The node dies: its keepalives stop, and etcd expires the lease after its TTL.
    await h2.stop({ keepKeys: true });
    const timed = await line('the master to see h2 without liveness', timing('host:h2'));
    expect(await exists(hostAliveKey('h2'))).toBe(false);
    // Control: when the master first sees h2 dead, a round deletes nothing of it.
    expect(await m.gc.runOnce()).toEqual([]);
    expect(await underPrefix(workloadPrefix('h2', 'c-ep-b'))).toBe(3);
    const gone = [groupMemberKey('g1', 'ep-b'), workloadPrefix('h2', 'c-ep-b'), ipAssignmentKey('198.19.0.2')];
    const collected = await Promise.all(gone.map((k) => line(`${k} to be collected`, collectedLine(k))));
    // By the master's own clock: nothing went before the due time it announced.
    for (const l of collected) expect(at(l), l.etcdKey).toBeGreaterThanOrEqual(Date.parse(timed.dueAt!));
    expect(absentFor(collected[1]!)).toBeGreaterThanOrEqual(GRACE_S);
    expect(await underPrefix(workloadPrefix('h2', 'c-ep-b'))).toBe(0);
    expect(await exists(ipAssignmentKey('198.19.0.2'))).toBe(false);
    expect(await exists(groupMemberKey('g1', 'ep-b'))).toBe(false);
    expect(await ds.get(birdIpKey('h2'))).toBe('198.18.0.2');
    // The live host is untouched.
    expect(await underPrefix(workloadPrefix('h1', 'c-ep-a'))).toBe(3);
    expect(await exists(ipAssignmentKey('198.19.0.1'))).toBe(true);
    expect(await exists(groupMemberKey('g1', 'ep-a'))).toBe(true);
    expect([await metric(m, 'endpoint'), await metric(m, 'assignment'), await metric(m, 'membership')]).toEqual([1, 1, 1]);
    expect(logLines.filter((l) => l.msg.startsWith('garbage-collected')).map((l) => l.etcdKey)).toEqual(gone);
  });

  it('an etcd outage restarts every pending timer: nothing is deleted until a full grace period in sync after it', async () => {
    const grace = 2_000;
    await host('h1', 'ep-a', '198.19.0.1', 30);
    const m = await start(grace / 1000);
    const ghost = groupMemberKey('g1', 'ep-ghost');
    await ds.put(ghost, '');
    const first = await line('the master to start timing the ghost', timing(`membership:${ghost}`));
    await etcd.stopMember();
    const down = logLines.length;
    await line('the master to notice the outage', (l) => l.msg.startsWith('not in sync with etcd; GC paused'), down);
    // Down past the due time the master announced: a collector counting wall time would delete
    // as soon as it is back.
    const firstDue = Date.parse(first.dueAt!);
    await waitFor("the first timer's due time to pass during the outage", () => Date.now() > firstDue, 10_000);
    expect(m.syncer.inSync).toBe(false);
    await etcd.startMember();
    const back = await line('the master back in sync', (l) => l.msg.startsWith('in sync with etcd'), down);
    const again = await line('the ghost to be timed anew', timing(`membership:${ghost}`), logLines.indexOf(back));
    expect(at(back)).toBeGreaterThan(firstDue);
    // Control: back in sync after the first due time, a round deletes nothing.
    expect(await m.gc.runOnce()).toEqual([]);
    expect(await exists(ghost)).toBe(true);
    expect(await metric(m, 'membership')).toBe(0);
    // The live host kept its lease through the outage (etcd renews leases on restart) and everything it has.
    expect(await exists(hostAliveKey('h1'))).toBe(true);
    expect(await underPrefix(workloadPrefix('h1', 'c-ep-a'))).toBe(3);
    // And the collector still works after the outage: a full grace period after being back.
    const collected = await line('the ghost membership to be collected after the outage', collectedLine(ghost));
    expect(at(collected)).toBeGreaterThanOrEqual(Date.parse(again.dueAt!));
    expect(absentFor(collected)).toBeGreaterThanOrEqual(grace / 1000);
    expect(await exists(ghost)).toBe(false);
  });
});
