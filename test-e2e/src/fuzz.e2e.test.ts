import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readApiToken } from '@calico/datastore';
import { DevCluster } from '@calico/devcluster';
import {
  birdIpKey,
  diagsUrlKey,
  encodeBirdIp,
  encodeRule,
  fuzzEntries,
  groupRuleKey,
  type FuzzEntry,
} from '@calico/keyspace';
import { groupSetName } from '@calico/node';
import { policyFixtures } from '@calico/policy';
import { processExists } from '@calico/proc';
import { requireRoot, waitFor, type ManagedProcess } from '@calico/testkit';
import { connects, nodeMetrics, startNodeProgrammed, startWorkload, type Workload } from './helpers.js';

const require = createRequire(import.meta.url);
const diagsJs = join(
  dirname(createRequire(require.resolve('@calico/calicoctl/package.json')).resolve('@calico/diags/package.json')),
  'dist',
  'main.js',
);
const DIAGS_PORT = 9099;
const COUNT = 10_000;
/** A new seed each run, printed; CALICO_FUZZ_SEED=<seed> replays one. */
const SEED = Number(process.env.CALICO_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** The master's words for a bad key (services/master/src/problems.ts). */
const BAD_KEY = 'key ignored by every service';
/** A host that runs nothing: its bird_ip alone must make every bird.conf peer with it. */
const NEW_HOST = { name: 'h3', ip: '198.18.0.99' };
const GROUP = 'g-fuzz';

/** etcd takes at most 128 operations and 1.5 MiB a request: chunks of at most 128 and 1 MiB, a huge value alone. */
function chunks(entries: readonly FuzzEntry[]): FuzzEntry[][] {
  const out: FuzzEntry[][] = [];
  let cur: FuzzEntry[] = [];
  let bytes = 0;
  for (const e of entries) {
    const size = Buffer.byteLength(e.key) + Buffer.byteLength(e.value);
    if (cur.length === 128 || (cur.length > 0 && bytes + size > 1024 * 1024)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(e);
    bytes += size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** GET on a unix socket (the node's Docker API proxy): status and body, or the error. */
function getUnix(socketPath: string, path: string): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(`${res.statusCode} ${body}`));
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 10 s')));
    req.on('error', (e) => resolve(`error ${e.message}`));
    req.end();
  });
}

/**
 * 10,000 hostile keys and values under /calico/ (fuzzEntries: wrong shapes, bad JSON, wrong
 * types, huge values, unicode, control characters, newlines in key segments, keys one level
 * off, host segments that are not host names) written while two hosts run calico-node (agent,
 * proxy, BIRD through bgp-config), calico-master and diags, interleaved with valid changes: a
 * container started through the proxy, a group with members and rules, a new host's bird_ip.
 * Nothing crashes or stalls, the master reports each bad key once, and every valid change
 * takes effect, each shown to be its own doing.
 */
describe(`fuzzing /calico/ (seed ${SEED})`, () => {
  let cluster: DevCluster;
  let A: Workload;
  let B: Workload;
  let diags: ManagedProcess;
  let dir: string;
  let failed = false;
  const entries = fuzzEntries({ seed: SEED, count: COUNT });
  const pingFailures: string[] = [];
  let pinging = false;

  const h1 = () => cluster.host('h1');
  const h2 = () => cluster.host('h2');
  const conf = (h: string) => cluster.host(h).ns.execOk(['cat', cluster.host(h).bird.config]);
  const routeToB = async () =>
    (await h1().ns.execOk(['ip', '-4', 'route', 'show', `${B.addr}/32`, 'proto', 'bird'])).trim();
  const masterLog = () => cluster.master!.log();
  /** Lines of the master's log saying a key is bad, by key. */
  const badKeyLines = (): Map<string, number> => {
    const perKey = new Map<string, number>();
    for (const line of masterLog().split('\n')) {
      if (!line.includes(BAD_KEY)) continue;
      let etcdKey: string;
      try {
        ({ etcdKey } = JSON.parse(line) as { etcdKey: string });
      } catch {
        continue; // the last line, half written
      }
      perKey.set(etcdKey, (perKey.get(etcdKey) ?? 0) + 1);
    }
    return perKey;
  };
  const valid: { key: string; value: string }[] = [];

  beforeAll(async () => {
    requireRoot();
    console.log(`fuzz seed ${SEED}: CALICO_FUZZ_SEED=${SEED} replays this run`);
    dir = await mkdtemp(join(tmpdir(), 'calico-fuzz-'));
    cluster = await DevCluster.start({ hosts: ['h1', 'h2'], bgp: true, master: true });
    diags = h1().ns.spawn('calico-diags', [
      process.execPath,
      diagsJs,
      'serve',
      '--hostname=h1',
      `--listen=${h1().ns.ip}:${DIAGS_PORT}`,
      `--etcd=${cluster.etcd.endpoints}`,
      `--docker=${cluster.dockerd.host}`,
      `--api-token-file=${cluster.apiTokenFile}`,
      `--run-dir=${join(dir, 'run')}`,
      `--log-dir=${join(dir, 'log')}`,
      `--state-dir=${join(dir, 'state')}`,
    ]);
    const registered = async () => (await cluster.ds.get(diagsUrlKey('h1'))) !== undefined;
    await waitFor('diags to register', registered, 20_000, () => diags.log().slice(-2000));
    A = await startWorkload(cluster, h1(), 'A', '198.19.60.1');
    const session = async () => (await h1().birdc('show protocols')).stdout.includes('Established');
    await waitFor('h1 and h2 in BGP session', session, 30_000);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    pinging = false;
    if (failed && cluster) {
      // Not cluster.dump(): its copy of /calico/ would be the 10,000 keys, megabytes of them.
      console.error(`fuzz seed ${SEED} failed: CALICO_FUZZ_SEED=${SEED} replays it`);
      console.error(await cluster.fabric.dump());
      console.error(`--- calico-master log (tail)\n${masterLog().slice(-8000)}`);
      console.error(`--- calico-diags log (tail)\n${diags?.log().slice(-4000)}`);
    }
    await diags?.stop();
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('10,000 bad keys with valid changes among them: nothing crashes or stalls, every valid change takes effect', async () => {
    // Controls, before anything is written: no peer for the new host, no set for the group.
    for (const h of ['h1', 'h2']) expect(await conf(h)).not.toContain(NEW_HOST.ip);
    expect((await h2().ns.exec(['ipset', 'list', groupSetName(GROUP, 4)])).code).not.toBe(0);
    const procs = () => [
      ...['h1', 'h2'].flatMap((h) => [cluster.host(h).node!, cluster.host(h).bgpConfig!]),
      cluster.master!,
      diags,
    ];
    const pids = procs().map((p) => [p.opts.name, p.pid] as const);
    const birdPids = [await cluster.birdPid('h1'), await cluster.birdPid('h2')];

    // Both proxies answer throughout: a ping without an answer in 10 s is a stall.
    pinging = true;
    const pinger = (async () => {
      while (pinging) {
        for (const h of [h1(), h2()]) {
          const r = await getUnix(h.proxySocket, '/_ping');
          if (r !== '200 OK') pingFailures.push(`${h.name}: ${r}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    })();

    const queue = chunks(entries);
    const total = queue.length;
    let written = 0;
    const writer = async () => {
      for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
        await cluster.ds.batch(c.map((e) => ({ put: e.key, value: e.value })));
        written += c.length;
      }
    };
    const until = (share: number) =>
      waitFor(`${share * 100}% of the bad keys written`, async () => written >= share * COUNT, 120_000);
    const putValid = async (kvs: { key: string; value: string }[]) => {
      valid.push(...kvs);
      await cluster.ds.batch(kvs.map((kv) => ({ put: kv.key, value: kv.value })));
    };
    const changes = (async () => {
      await until(0.1);
      B = await startWorkload(cluster, h2(), 'B', '198.19.60.2');
      await until(0.3);
      const members = [A.endpointId, B.endpointId];
      await putValid(policyFixtures.group({ groupId: GROUP, name: 'fuzz', members, outbound: [{ group: GROUP }] }));
      await until(0.5);
      // Before the rule, with B routed: denied (the control that counts comes last: the rule deleted).
      await waitFor('h1 to learn the route to B', async () => (await routeToB()) !== '', 30_000);
      expect(await connects(A, B.addr, 80)).toBe(false);
      await putValid([
        { key: groupRuleKey(GROUP, 'inbound', 1), value: encodeRule({ group: GROUP, protocol: 'tcp', port: 80 }) },
      ]);
      await until(0.7);
      await putValid([{ key: birdIpKey(NEW_HOST.name), value: encodeBirdIp(NEW_HOST.ip) }]);
    })();
    const started = performance.now();
    await Promise.all([writer(), writer(), writer(), writer(), changes]);
    const ms = Math.round(performance.now() - started);
    console.log(
      `wrote ${entries.length} bad keys in ${total} requests, ${valid.length} valid keys among them, in ${ms} ms`,
    );

    // Every valid change took effect.
    await waitFor('A to reach B on port 80 (the rule)', () => connects(A, B.addr, 80), 60_000);
    expect(await connects(A, B.addr, 8080)).toBe(false);
    expect(await routeToB()).toContain(`via ${h2().ns.ip}`);
    const bSet = groupSetName(GROUP, 4);
    const filter = (await h2().ns.execOk(['iptables-save', '-t', 'filter'])).split('\n');
    const ruleLine = filter.find((l) => l.includes(bSet) && l.includes('--dport 80'));
    expect(ruleLine, `iptables on h2 has B's rule from ${bSet} to port 80`).toBeDefined();
    // The members: the group's ipset on h2 holds A's address (there was no such set before the group).
    expect((await h2().ns.execOk(['ipset', 'list', bSet])).split('\n')).toContain(A.addr);
    for (const h of ['h1', 'h2']) {
      const peers = async () => (await conf(h)).includes(NEW_HOST.ip);
      await waitFor(`bird.conf on ${h} to peer with ${NEW_HOST.name}`, peers, 60_000);
    }

    // Nothing crashed: every service is the process that was started, still running.
    pinging = false;
    await pinger;
    expect(procs().map((p) => [p.opts.name, p.pid] as const)).toEqual(pids);
    expect(
      procs()
        .filter((p) => !p.running || !processExists(p.pid))
        .map((p) => p.opts.name),
    ).toEqual([]);
    expect([await cluster.birdPid('h1'), await cluster.birdPid('h2')]).toEqual(birdPids);
    expect(birdPids.every((p) => p !== undefined && processExists(p))).toBe(true);
    // Nothing stalled: each answers, and the agents are in sync with etcd.
    expect(pingFailures).toEqual([]);
    for (const h of ['h1', 'h2']) {
      const inSync = async () => (await nodeMetrics(cluster, h)).get('calico_node_datastore_in_sync') === 1;
      await waitFor(`the agent on ${h} in sync`, inSync, 30_000);
      expect((await cluster.host(h).birdc('show status')).stdout).toContain('Daemon is up and running');
    }
    const health = await cluster.masterFetch('/healthz');
    expect(health.status).toBe(200);
    const diagsBase = `http://${h1().ns.ip}:${DIAGS_PORT}`;
    expect((await fetch(`${diagsBase}/healthz`)).status).toBe(200);
    const token = readApiToken(cluster.apiTokenFile);
    const archive = await fetch(`${diagsBase}/diags`, { headers: { authorization: `Bearer ${token}` } });
    expect(archive.status).toBe(200);
    expect((await archive.arrayBuffer()).byteLength).toBeGreaterThan(0);
    // What each service logged meanwhile, by level: no error (50) or fatal (60) line anywhere.
    const levels = procs().map((p) => {
      const count = new Map<number, number>();
      for (const line of p.log().split('\n')) {
        const level = /^\{"level":(\d+)/.exec(line)?.[1];
        if (level !== undefined) count.set(Number(level), (count.get(Number(level)) ?? 0) + 1);
      }
      return [p.opts.name, Object.fromEntries(count)] as const;
    });
    console.log(`log lines by level: ${JSON.stringify(levels)}`);
    expect(levels.filter(([, c]) => (c[50] ?? 0) + (c[60] ?? 0) > 0)).toEqual([]);
  });

  it('the master reports each bad key exactly once, in its log and in GET /v1/problems, and no valid key', async () => {
    const fuzzKeys = new Set(entries.map((e) => e.key));
    let lines = new Map<string, number>();
    const classes = new Map<string, number>();
    for (const e of entries) classes.set(e.class, (classes.get(e.class) ?? 0) + 1);
    console.log(`bad keys by class: ${JSON.stringify(Object.fromEntries(classes))}`);
    const all = async () => (lines = badKeyLines()).size >= fuzzKeys.size;
    await waitFor('the master to report every bad key', all, 60_000, () => `${lines.size} reported`);
    const twice = [...lines].filter(([, n]) => n !== 1);
    expect(twice.slice(0, 10)).toEqual([]);
    expect([...lines.keys()].filter((k) => !fuzzKeys.has(k)).slice(0, 10)).toEqual([]);
    expect([...fuzzKeys].filter((k) => !lines.has(k)).slice(0, 10)).toEqual([]);

    const r = await cluster.masterFetch('/v1/problems');
    expect(r.status).toBe(200);
    const { problems } = (await r.json()) as { problems: { key: string; errors: string[] }[] };
    const listed = problems.map((p) => p.key);
    const listedSet = new Set(listed);
    expect(listed.length - listedSet.size).toBe(0);
    expect(listed.filter((k) => !fuzzKeys.has(k)).slice(0, 10)).toEqual([]);
    expect([...fuzzKeys].filter((k) => !listedSet.has(k)).slice(0, 10)).toEqual([]);
    expect(valid.filter((kv) => lines.has(kv.key) || listedSet.has(kv.key))).toEqual([]);
    // Short reports whatever the value: the largest problem is kilobytes, however huge its value.
    expect(Math.max(...problems.map((p) => JSON.stringify(p).length))).toBeLessThan(16 * 1024);
  });

  it('etcd away and back: the master resyncs and reports no bad key again, and a new one once', async () => {
    const before = badKeyLines();
    const healthz = async () => (await cluster.masterFetch('/healthz').catch(() => undefined))?.status;
    await cluster.etcd.stopMember();
    try {
      await waitFor('the master to see etcd gone', async () => (await healthz()) === 503, 30_000);
    } finally {
      await cluster.etcd.startMember();
    }
    await waitFor('the master back in sync', async () => (await healthz()) === 200, 30_000);
    // The control that the log still says what is new: one more bad key, reported once.
    const late = '/calico/host/h1/bird_ip/after-resync';
    await cluster.ds.put(late, '198.18.0.11');
    await waitFor('the new bad key reported', async () => badKeyLines().has(late), 15_000);
    expect(badKeyLines()).toEqual(new Map([...before, [late, 1]]));
    await cluster.ds.delete(late);
    const procs = ['h1', 'h2'].map((h) => cluster.host(h).node!);
    expect(procs.every((p) => p.running)).toBe(true);
  });

  it('services started over the fuzzed keyspace read it whole and come up; the master says nothing new', async () => {
    const before = badKeyLines();
    await cluster.stopBgpConfig('h2');
    await cluster.startBgpConfig('h2');
    const peers = async () => (await conf('h2')).includes(NEW_HOST.ip);
    await waitFor('bird.conf on h2 to peer with the new host again', peers, 30_000);
    await cluster.stopNode('h1');
    await startNodeProgrammed(cluster, 'h1');
    await waitFor('A to reach B on port 80 again', () => connects(A, B.addr, 80), 30_000);
    expect(badKeyLines()).toEqual(before);
    // The control for the rule: taken away, port 80 is denied again, with the route still there.
    await cluster.ds.delete(groupRuleKey(GROUP, 'inbound', 1));
    await waitFor('A to be denied port 80 without the rule', async () => !(await connects(A, B.addr, 80)), 30_000);
    expect(await routeToB()).toContain(`via ${h2().ns.ip}`);
  });
});
