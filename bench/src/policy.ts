// Benchmark of the policy agent on the real kernel (bench/policyRunner.ts inside a namespace
// host), against a baseline measured in the same run: an etcd put seen by a watcher plus one
// `ipset restore` (member change) or one `iptables-restore --noflush` (rule change). Also the
// kernel work per membership change, a full resync of a large synthetic keyspace, and how the
// rule count grows. Prints figures; asserts nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import { encodeRule, groupMemberKey, groupRuleKey } from '@calico/keyspace';
import { Etcd, Fabric } from '@calico/testkit';
import { PolicyModel, policyFixtures } from '@calico/policy';
import { fmtMs, median, percentile } from './stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const CHANGES = Number(process.env.BENCH_CHANGES ?? 200);
const LOCAL = Number(process.env.BENCH_LOCAL ?? 1000);
const GROUPS = Number(process.env.BENCH_GROUPS ?? 100);
const SCALE_HOSTS = Number(process.env.BENCH_SCALE_HOSTS ?? 100);
const SCALE_EPS = Number(process.env.BENCH_SCALE_EPS ?? 1000);
const SCALE_GROUPS = Number(process.env.BENCH_SCALE_GROUPS ?? 1000);
/** Fresh agents started one after another for the full resync; medians are reported. */
const SCALE_RUNS = Number(process.env.BENCH_SCALE_RUNS ?? 5);
const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const now = () => performance.timeOrigin + performance.now();

const v4 = (n: number) => `198.19.${Math.floor(n / 250) % 256}.${(n % 250) + 1}`;
/** Endpoint ids whose first 11 hex digits differ (interface names are made of them). */
const eid = (host: number, i: number) => `${(host * 100_000 + i).toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;

type Line = Record<string, unknown> & { type: string };

class Runner {
  readonly lines: Line[] = [];
  private waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  readonly proc: ChildProcess;
  constructor(netns: string, etcd: string, host: string, mode: string) {
    // BENCH_NODE_ARGS: flags for the agent's Node (e.g. --cpu-prof), which NODE_OPTIONS refuses.
    const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    this.proc = spawn('ip', ['netns', 'exec', netns, process.execPath, ...nodeArgs, join(here, 'policyRunner.js'), etcd, host, mode], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.proc.stdout! }).on('line', (s) => {
      let l: Line;
      try {
        l = JSON.parse(s) as Line;
      } catch {
        // Not the runner's: what a flag like --trace-gc prints.
        process.stderr.write(`[agent] ${s}\n`);
        return;
      }
      this.lines.push(l);
      for (const w of [...this.waiters]) if (w.pred(l)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(l);
      }
    });
  }
  next(pred: (l: Line) => boolean, timeoutMs = 60_000): Promise<Line> {
    const found = this.lines.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('runner did not report in time')), timeoutMs);
      this.waiters.push({ pred, resolve: (l) => (clearTimeout(t), resolve(l)) });
    });
  }
  async stop(): Promise<void> {
    this.proc.stdin!.end();
    await new Promise((r) => this.proc.once('exit', r));
  }
}

async function load(ds: Datastore, kvs: { key: string; value: string }[]): Promise<void> {
  const ops = kvs.map((kv) => ({ put: kv.key, value: kv.value }));
  // etcd caps a transaction at 128 operations; several in flight keep the load quick.
  const chunks: (typeof ops)[] = [];
  for (let i = 0; i < ops.length; i += 128) chunks.push(ops.slice(i, i + 128));
  for (let i = 0; i < chunks.length; i += 8) await Promise.all(chunks.slice(i, i + 8).map((c) => ds.batch(c)));
}

function clusterKeys(hosts: number, perHost: number, groups: number, localHost: number): { key: string; value: string }[] {
  const kvs: { key: string; value: string }[] = [];
  const members: string[][] = Array.from({ length: groups }, () => []);
  for (let h = 0; h < hosts; h++) {
    for (let i = 0; i < perHost; i++) {
      const id = eid(h, i);
      kvs.push(...policyFixtures.endpoint({ host: `host${h}`, endpointId: id, addrs: [v4(h * perHost + i)], mac: '0e:00:00:00:00:01' }));
      members[(h * perHost + i) % groups]!.push(id);
    }
  }
  for (let g = 0; g < groups; g++) kvs.push(...policyFixtures.group({ ...policyFixtures.addgroup(`group${g}`, members[g]) }));
  void localHost;
  return kvs;
}

async function main(): Promise<void> {
  const fabric = await Fabric.create();
  // Interrupted: still take down what we started.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say(`${sig}: cleaning up`);
      void Promise.allSettled([etcd?.stop()]).then(() => fabric.destroy()).finally(() => process.exit(130));
    });
  }
  let etcd: Etcd | undefined;
  let ds: Datastore | undefined;
  const results: Record<string, unknown> = {};
  try {
    const rootIp = await fabric.linkRoot();
    etcd = await Etcd.start({ listenIp: rootIp });
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    const h1 = await fabric.addHost('h1');
    const phases = (process.env.BENCH_PHASES ?? 'latency,growth,scale').split(',');

    if (phases.includes('latency')) {
    // ---- Latency: LOCAL endpoints on host0 in GROUPS groups, plus remote endpoints to add. ----
    say(`writing ${LOCAL} local endpoints in ${GROUPS} groups and ${CHANGES} remote endpoints`);
    const kvs = clusterKeys(1, LOCAL, GROUPS, 0);
    for (let i = 0; i < CHANGES; i++) kvs.push(...policyFixtures.endpoint({ host: 'remote', endpointId: eid(9, i), addrs: [v4(60_000 + i)] }));
    await load(ds, kvs);

    say('baseline: etcd put seen by a watcher');
    const watchMs: number[] = [];
    {
      let resolveSeen: (() => void) | undefined;
      const w = await ds.client.watch().prefix('/bench/').create();
      w.on('put', () => resolveSeen?.());
      for (let i = 0; i < CHANGES; i++) {
        const seen = new Promise<void>((r) => (resolveSeen = r));
        const t = performance.now();
        await ds.put('/bench/k', String(i));
        await seen;
        watchMs.push(performance.now() - t);
      }
      await w.cancel();
    }

    say('starting the agent in the namespace host (it measures the restore baselines first)');
    const runner = new Runner(h1.netns, etcd.endpoints, 'host0', 'latency');
    const base = (await runner.next((l) => l.type === 'baseline', 120_000)) as unknown as { ipsetMs: number[]; iptMs: number[] };
    const ready = await runner.next((l) => l.type === 'ready', 120_000);
    say(`agent ready: ${JSON.stringify(ready)}`);

    const memberMs: number[] = [];
    const ruleMs: number[] = [];
    const perMember: { calls: number; entries: number; iptables: number }[] = [];
    for (let i = 0; i < CHANGES; i++) {
      const from = runner.lines.length;
      if (i % 2 === 0) {
        const addr = v4(60_000 + i);
        const t0 = now();
        await ds.put(groupMemberKey(`group${i % GROUPS}`, eid(9, i)), '');
        const w = await runner.next((l) => l.type === 'write' && l.kind === 'ipset' && String(l.text).includes(`add cali4g-`) && String(l.text).includes(` ${addr}\n`));
        memberMs.push((w.t as number) - t0);
        await new Promise((r) => setTimeout(r, 20));
        const writes = runner.lines.slice(from).filter((l) => l.type === 'write');
        perMember.push({
          calls: writes.length,
          entries: writes.reduce((n, l) => n + ((l.entries as number | undefined) ?? 0), 0),
          iptables: writes.filter((l) => l.kind === 'iptables').length,
        });
      } else {
        const port = 20_000 + i;
        const t0 = now();
        await ds.put(groupRuleKey(`group${i % GROUPS}`, 'inbound', 10 + i), encodeRule({ cidr: '10.0.0.0/8', protocol: 'tcp', port }));
        const w = await runner.next((l) => l.type === 'write' && l.kind === 'iptables' && String(l.text).includes(`--dport ${port} `));
        ruleMs.push((w.t as number) - t0);
      }
    }
    const iptSave = await h1.execOk(['iptables-save']);
    await runner.stop();
    const bMember = { p50: median(watchMs) + median(base.ipsetMs), p99: percentile(watchMs, 99) + percentile(base.ipsetMs, 99) };
    const bRule = { p50: median(watchMs) + median(base.iptMs), p99: percentile(watchMs, 99) + percentile(base.iptMs, 99) };
    results.latency = {
      local_endpoints: LOCAL,
      groups: GROUPS,
      changes: CHANGES,
      watch_ms: { p50: median(watchMs), p99: percentile(watchMs, 99) },
      ipset_restore_ms: { p50: median(base.ipsetMs), p99: percentile(base.ipsetMs, 99) },
      iptables_restore_ms: { p50: median(base.iptMs), p99: percentile(base.iptMs, 99) },
      member: { p50: median(memberMs), p99: percentile(memberMs, 99), baseline: bMember, ratio_p99: percentile(memberMs, 99) / bMember.p99 },
      rule: { p50: median(ruleMs), p99: percentile(ruleMs, 99), baseline: bRule, ratio_p99: percentile(ruleMs, 99) / bRule.p99 },
      per_member_change: {
        kernel_calls_max: Math.max(...perMember.map((p) => p.calls)),
        ipset_entries_max: Math.max(...perMember.map((p) => p.entries)),
        iptables_calls_total: perMember.reduce((n, p) => n + p.iptables, 0),
      },
      iptables_rules_on_host: iptSave.split('\n').filter((l) => l.startsWith('-A cali')).length,
    };

    }

    if (phases.includes('growth')) {
    // ---- Rule count: grows with local endpoints, not with the cluster. ----
    say('rule count against local endpoints and cluster size (pure render)');
    const { renderDataplane } = await import(pathToNodeAgent());
    const growth: { local: number; cluster: number; rules: number }[] = [];
    for (const [local, cluster] of [[100, 10_000], [100, 100_000], [1000, 10_000], [1000, 100_000]] as const) {
      const m = new PolicyModel();
      const perHost = local;
      const hosts = cluster / perHost;
      m.applyAll(policyFixtures.puts(clusterKeys(hosts, perHost, 100, 0)));
      const { endpointPolicy, endpointsOnHost } = await import('@calico/policy');
      const eps = endpointsOnHost(m, 'host0').map((e) => ({ endpointId: e.endpointId, hostIf: `cali${e.endpointId.replace(/-/g, '').slice(0, 11)}`, mac: e.mac, v4: e.addrs.v4, v6: e.addrs.v6, policy: endpointPolicy(m, e.endpointId) }));
      const d = renderDataplane(eps, (g: string, f: 4 | 6) => m.groupAddrs(g, f), 'drop');
      let rules = 0;
      for (const f of [4, 6] as const) for (const lines of d.tables[f].filter.values()) rules += (lines as string[]).length;
      growth.push({ local, cluster, rules });
    }
    results.rule_growth = growth;
    }

    if (phases.includes('scale')) {
    // ---- Full resync of a large synthetic keyspace. ----
    say(`loading ${SCALE_HOSTS} hosts x ${SCALE_EPS} endpoints, ${SCALE_GROUPS} groups into a fresh etcd`);
    ds.close();
    await etcd.stop();
    etcd = await Etcd.start({ listenIp: rootIp });
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    const tLoad = performance.now();
    const big = clusterKeys(SCALE_HOSTS, SCALE_EPS, SCALE_GROUPS, 0);
    await load(ds, big);
    say(`loaded ${big.length} keys in ${((performance.now() - tLoad) / 1000).toFixed(1)} s; starting the agent for host0`);
    // Each run is a fresh agent in a fresh namespace host (an empty kernel), against the same etcd.
    const runs: { snapshot_and_model_ms: number; to_kernel_ms: number; rss_peak_mb: number; agent_cpu_ms: number; etcd_cpu_ms: number }[] = [];
    let writes: Line[] = [];
    let t0 = 0;
    for (let i = 0; i < SCALE_RUNS; i++) {
      const host = i === 0 ? h1 : await fabric.addHost(`s${i}`);
      // The namespace's first iptables call sets up its tables: not the agent's work.
      await host.exec(['sh', '-c', 'iptables-save | grep -c cali']);
      const etcdCpu0 = etcdCpuMs(etcd.pids);
      const scale = new Runner(host.netns, etcd.endpoints, 'host0', 'scale');
      const sReady = await scale.next((l) => l.type === 'ready', 300_000);
      const etcdCpu = etcdCpuMs(etcd.pids) - etcdCpu0;
      await scale.stop();
      runs.push({ snapshot_and_model_ms: Math.round(sReady.syncMs as number), to_kernel_ms: Math.round(sReady.totalMs as number), rss_peak_mb: Math.round(Number(sReady.rssHwm) / 1e6), agent_cpu_ms: Math.round(sReady.cpuMs as number), etcd_cpu_ms: etcdCpu });
      say(`full resync run ${i + 1}/${SCALE_RUNS}: ${JSON.stringify(runs.at(-1))}`);
      writes = scale.lines.filter((l) => l.type === 'write');
      t0 = sReady.t0 as number;
    }
    const mid = (k: keyof (typeof runs)[number]) => median(runs.map((r) => r[k]));
    const span = (k: keyof (typeof runs)[number]) => [Math.min(...runs.map((r) => r[k])), Math.max(...runs.map((r) => r[k]))];
    results.full_resync = {
      keys: big.length,
      hosts: SCALE_HOSTS,
      endpoints: SCALE_HOSTS * SCALE_EPS,
      groups: SCALE_GROUPS,
      runs: runs.length,
      // Medians over the runs, with their ranges.
      snapshot_and_model_ms: mid('snapshot_and_model_ms'),
      to_kernel_ms: mid('to_kernel_ms'),
      rss_peak_mb: mid('rss_peak_mb'),
      agent_cpu_ms: mid('agent_cpu_ms'),
      etcd_cpu_ms: mid('etcd_cpu_ms'),
      ranges: { snapshot_and_model_ms: span('snapshot_and_model_ms'), to_kernel_ms: span('to_kernel_ms'), rss_peak_mb: span('rss_peak_mb') },
      // The last run's writes, in ms from its start.
      kernel_writes: writes.map((l) => ({ kind: l.kind, family: l.family, lines: l.lines, at_ms: Math.round((l.t as number) - t0) })),
    };
    }

    if (results.latency) {
    const L = results.latency as { member: { p50: number; p99: number; baseline: { p50: number; p99: number }; ratio_p99: number }; rule: { p50: number; p99: number; baseline: { p50: number; p99: number }; ratio_p99: number }; per_member_change: unknown };
    console.log(`member add (${CHANGES / 2}): p50 ${fmtMs(L.member.p50)}  p99 ${fmtMs(L.member.p99)}  baseline p50 ${fmtMs(L.member.baseline.p50)} p99 ${fmtMs(L.member.baseline.p99)}  p99 ratio ${L.member.ratio_p99.toFixed(2)}x`);
    console.log(`rule add   (${CHANGES / 2}): p50 ${fmtMs(L.rule.p50)}  p99 ${fmtMs(L.rule.p99)}  baseline p50 ${fmtMs(L.rule.baseline.p50)} p99 ${fmtMs(L.rule.baseline.p99)}  p99 ratio ${L.rule.ratio_p99.toFixed(2)}x`);
    console.log(`kernel work per membership change: ${JSON.stringify(L.per_member_change)}`);
    }
    const growth = (results.rule_growth ?? []) as { local: number; cluster: number; rules: number }[];
    console.log(`rule growth: ${growth.map((g) => `${g.local} local / ${g.cluster} cluster -> ${g.rules} rules`).join('; ')}`);
    console.log(`full resync: ${JSON.stringify(results.full_resync)}`);
    console.log(JSON.stringify({ bench: 'policy', when: new Date().toISOString(), results }));
  } finally {
    ds?.close();
    await etcd?.stop();
    await fabric.destroy();
  }
}

/** User + system CPU of processes so far, from /proc (clock ticks of 10 ms). */
function etcdCpuMs(pids: number[]): number {
  return pids.reduce((n, pid) => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return n + (Number(f[11]) + Number(f[12])) * 10;
  }, 0);
}

function pathToNodeAgent(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@calico/node/package.json')), 'dist', 'agent', 'desired.js');
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
