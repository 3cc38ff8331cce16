// Benchmark of the operations people and orchestrators run against a large cluster: calicoctl's
// group commands and the master API's reads, on the keyspace of the policy agent's full resync
// (100 hosts × 1,000 endpoints in 1,000 groups, about 406,000 keys). Each operation reads what it
// needs: a group given by id its group's keys, a name every group's, a container given by its
// full id on calicoctl's own host that host's workloads, any other container every host's.
// The baseline, measured in the same run, is what every one of them read before: all of /calico/
// and its view (CalicoClient.view()). The CLI's floor is `calicoctl version` (Node starting, no
// etcd). Prints p50/p99 and ratios; asserts nothing.
import { spawn } from 'node:child_process';
import { Agent } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CalicoClient } from '@calico/client';
import { Datastore, apiCall, readApiToken, resolveDatastoreConfig } from '@calico/datastore';
import { encodeRule, encodeWorkloadName, groupRuleKey, groupRuleListPrefix, workloadNameKey } from '@calico/keyspace';
import { Etcd, ManagedProcess, freePort, waitFor } from '@calico/testkit';
import { clusterKeys, containerId, eid, load } from './cluster.js';
import { fmtMs, median, percentile, ratio, row } from './stats.js';

const HOSTS = Number(process.env.BENCH_SCALE_HOSTS ?? 100);
const PER_HOST = Number(process.env.BENCH_SCALE_EPS ?? 1000);
const GROUPS = Number(process.env.BENCH_SCALE_GROUPS ?? 1000);
/** Samples per operation in the process (and through the master API). */
const CALLS = Number(process.env.BENCH_CALLS ?? 40);
/** Samples per calicoctl command (each a new process) and of the whole-keyspace baseline. */
const SLOW_CALLS = Number(process.env.BENCH_SLOW_CALLS ?? 10);
const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const require = createRequire(import.meta.url);
const binOf = (pkg: string) => join(dirname(require.resolve(`${pkg}/package.json`)), 'dist', 'main.js');

type Dist = { p50: number; p99: number; n: number };
const dist = (xs: number[]): Dist => ({ p50: median(xs), p99: percentile(xs, 99), n: xs.length });

async function timed(n: number, op: (i: number) => Promise<unknown>, after?: (i: number) => Promise<unknown>) {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await op(i);
    xs.push(Number(process.hrtime.bigint() - t) / 1e6);
    await after?.(i);
  }
  return dist(xs);
}

/** One calicoctl command, as a person runs it; throws with its output unless it exits 0. */
function calicoctl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [binOf('@calico/calicoctl'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b));
    p.stderr.on('data', (b: Buffer) => (out += b));
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`calicoctl ${args.join(' ')}: ${code}\n${out}`)),
    );
  });
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'calico-bench-ops-'));
  let etcd: Etcd | undefined;
  let ds: Datastore | undefined;
  let master: ManagedProcess | undefined;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const stop = async () => {
    agent.destroy();
    await master?.stop();
    ds?.close();
    await etcd?.stop();
    await rm(work, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => void stop().finally(() => process.exit(130)));
  const load0 = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  try {
    etcd = await Etcd.start({ dir: join(work, 'etcd') });
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    const kvs = clusterKeys(HOSTS, PER_HOST, GROUPS, { dockerIds: true, groupNames: true });
    say(`loading ${HOSTS} hosts x ${PER_HOST} endpoints in ${GROUPS} groups (${kvs.length} keys) into a fresh etcd`);
    await load(ds, kvs);

    const tokenFile = join(work, 'api-token');
    const port = await freePort('127.0.0.1');
    const base = `http://127.0.0.1:${port}/`;
    master = new ManagedProcess({
      name: 'master',
      argv: [
        process.execPath,
        binOf('@calico/master'),
        '--ip=127.0.0.1',
        `--listen=127.0.0.1:${port}`,
        `--etcd=${etcd.endpoints}`,
        `--api-token-file=${tokenFile}`,
        '--gc-interval=3600',
        '--log-level=warn',
      ],
      logFile: join(work, 'master.log'),
    });
    const healthy = async () =>
      (await apiCall(new URL('healthz', base), {}).catch(() => ({ status: 0 }))).status === 200;
    await waitFor('the master in sync', healthy, 120_000, () => master!.log().slice(-2000));
    const token = readApiToken(tokenFile);
    const get = async (path: string) => {
      const r = await apiCall(new URL(path, base), { token, agent });
      if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body}`);
    };

    // The host calicoctl runs on holds the container; group 8 is not the container's.
    const host = 7;
    const cid = containerId(host, 5);
    const [gid, gname] = ['group8', 'name8'];
    const client = new CalicoClient(ds, { host: `host${host}` });
    const elsewhere = new CalicoClient(ds, { host: 'host0' });
    const cidr = (i: number) => `198.19.${i >> 8}.${i & 255}/32`;
    // Back to the group's one inbound rule after each addrule, so every sample finds the same group.
    const restoreRule = async () => {
      await ds!.deleteDir(groupRuleListPrefix(gid, 'inbound'));
      await ds!.put(groupRuleKey(gid, 'inbound', 1), encodeRule({ group: gid }));
    };
    const leave = () => client.removeFromGroup(cid, gid);
    // The one container with a name, as calico-node writes it, to be found by name.
    const cname = 'web-bench';
    await ds.put(workloadNameKey(`host${host}`, cid), encodeWorkloadName(cname));

    say(`baseline: the whole keyspace read and viewed, ${SLOW_CALLS} times`);
    const whole = await timed(SLOW_CALLS, () => client.view());
    const figures: [string, Dist][] = [];
    const add = async (name: string, d: Promise<Dist>) => {
      say(name);
      figures.push([name, await d]);
    };
    await add(
      'addrule, group by id',
      timed(CALLS, (i) => client.addRule(gid, 'inbound', { cidr: cidr(i) }), restoreRule),
    );
    await add(
      'addrule, group by name',
      timed(CALLS, (i) => client.addRule(gname, 'inbound', { cidr: cidr(i) }), restoreRule),
    );
    await add(
      'addtogroup, container on this host, group by id',
      timed(CALLS, () => client.addToGroup(cid, gid), leave),
    );
    await add(
      'addtogroup, container on this host, group by name',
      timed(CALLS, () => client.addToGroup(cid, gname), leave),
    );
    await add(
      'addtogroup, container on another host, group by id',
      timed(SLOW_CALLS, () => elsewhere.addToGroup(cid, gid), leave),
    );
    await add(
      'addtogroup, container by name, group by id',
      timed(SLOW_CALLS, () => client.addToGroup(cname, gid), leave),
    );
    await add(
      'master GET /v1/groups/{id}',
      timed(CALLS, () => get(`v1/groups/${gid}`)),
    );
    await add(
      'master GET /v1/groups/{name}',
      timed(CALLS, () => get(`v1/groups/${gname}`)),
    );
    const cli = [`--etcd=${etcd.endpoints}`, `--hostname=host${host}`];
    await add(
      'calicoctl version (the CLI floor)',
      timed(SLOW_CALLS, () => calicoctl(['version'])),
    );
    await add(
      'calicoctl rule add, group by id',
      timed(SLOW_CALLS, (i) => calicoctl([...cli, 'rule', 'add', gid, 'inbound', `--cidr=${cidr(i)}`]), restoreRule),
    );
    await add(
      'calicoctl addtogroup, full container id, group by id',
      timed(SLOW_CALLS, () => calicoctl([...cli, 'addtogroup', cid, gid]), leave),
    );
    await add(
      'calicoctl addtogroup, full container id, group by name',
      timed(SLOW_CALLS, () => calicoctl([...cli, 'addtogroup', cid, gname]), leave),
    );
    // What the rest of the cluster sees is what it was: no rule or membership is left behind.
    const g = await client.findGroup(gid);
    if (g.inbound.length !== 1 || g.members.includes(eid(host, 5)))
      throw new Error('the bench left a rule or a member');

    const widths = [52, 12, 12, 14];
    const lines = [
      `cluster operations on ${kvs.length} keys (${HOSTS} hosts x ${PER_HOST} endpoints, ${GROUPS} groups); ` +
        `load ${load0} -> ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}`,
      `baseline, what each operation read before: all of /calico/ and its view, p50 ${fmtMs(whole.p50)}, ` +
        `p99 ${fmtMs(whole.p99)} (${whole.n} reads)`,
      row(['operation', 'p50', 'p99', 'p50 / baseline'], widths),
      ...figures.map(([name, d]) =>
        row([`${name} (${d.n})`, fmtMs(d.p50), fmtMs(d.p99), ratio(d.p50, whole.p50)], widths),
      ),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
