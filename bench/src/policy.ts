// Benchmark of the policy agent on the real kernel (bench/policyRunner.ts inside a namespace
// host). Change latency against a baseline taken sample by sample in the same run: an etcd put
// seen by a watcher in the same namespace, which then makes the one-entry `ipset restore`
// (member change) or the one-chain `iptables-restore --noflush` (rule change). Also the kernel
// work per membership change and the rule count (absolute counts), and a full resync of a large
// synthetic keyspace against the bare read of the same keys. Prints figures; asserts nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus as cpuList, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import { encodeRule, groupMemberKey, groupRuleKey } from '@calico/keyspace';
import { Etcd, Fabric } from '@calico/testkit';
import { PolicyModel, policyFixtures } from '@calico/policy';
import { clusterKeys, distinctAddrs, eid, load, v4 } from './cluster.js';
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

/** What policyRunner's baseline watcher watches. */
const BASE_PREFIX = '/bench/base/';
type Line = Record<string, unknown> & { type: string };

class Runner {
  readonly lines: Line[] = [];
  private waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  readonly proc: ChildProcess;
  constructor(netns: string, etcd: string, host: string, mode: string) {
    // BENCH_NODE_ARGS: flags for the agent's Node (e.g. --cpu-prof), which NODE_OPTIONS refuses.
    const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    this.proc = spawn(
      'ip',
      ['netns', 'exec', netns, process.execPath, ...nodeArgs, join(here, 'policyRunner.js'), etcd, host, mode],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
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
      for (const w of [...this.waiters])
        if (w.pred(l)) {
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
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.stdin!.end();
    await exited;
  }
}

type Dist = { p50: number; p99: number };
const dist = (xs: number[]): Dist => ({ p50: median(xs), p99: percentile(xs, 99) });

async function main(): Promise<void> {
  const fabric = await Fabric.create();
  // Interrupted: still take down what we started.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say(`${sig}: cleaning up`);
      void Promise.allSettled([etcd?.stop()])
        .then(() => fabric.destroy())
        .finally(() => process.exit(130));
    });
  }
  let etcd: Etcd | undefined;
  let ds: Datastore | undefined;
  const results: Record<string, unknown> = {};
  const machine = {
    cpus: availableParallelism(),
    cpu_model: cpuList()[0]?.model ?? '?',
    memory_gb: Math.round(totalmem() / 2 ** 30),
    load_at_start: loadavg().map((x) => +x.toFixed(2)),
  };
  const out = [
    `machine: ${machine.cpus} x ${machine.cpu_model}, ${machine.memory_gb} GB; ` +
      `load averages at start ${machine.load_at_start.join(' ')}`,
  ];
  try {
    const rootIp = await fabric.linkRoot();
    etcd = await Etcd.start({ listenIp: rootIp });
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    const h1 = await fabric.addHost('h1');
    const phases = (process.env.BENCH_PHASES ?? 'latency,growth,scale').split(',');

    if (phases.includes('latency')) {
      // ---- Latency: LOCAL endpoints on host0 in GROUPS groups, plus remote endpoints to add. ----
      say(`writing ${LOCAL} local endpoints in ${GROUPS} groups and ${CHANGES} remote endpoints`);
      const kvs = clusterKeys(1, LOCAL, GROUPS);
      for (let i = 0; i < CHANGES; i++) {
        kvs.push(...policyFixtures.endpoint({ host: 'remote', endpointId: eid(9, i), addrs: [v4(LOCAL + i)] }));
      }
      const addrs = distinctAddrs(kvs, 'host0');
      await load(ds, kvs);

      say('starting the agent and the baseline watcher in the namespace host');
      const runner = new Runner(h1.netns, etcd.endpoints, 'host0', 'latency');
      const ready = await runner.next((l) => l.type === 'ready', 120_000);
      say(`agent ready: ${JSON.stringify(ready)}`);

      /** One baseline sample: put → the watcher in the namespace sees it → its one kernel write done. */
      const baseline = async (kind: 'ipset' | 'iptables', i: number): Promise<number> => {
        const t0 = now();
        await ds!.put(`${BASE_PREFIX}${kind}`, String(i));
        const l = await runner.next((l) => l.type.startsWith('base') && l.kind === kind && l.i === i);
        if (l.type === 'base-error') throw new Error(`baseline ${kind} ${i}: ${String(l.error)}`);
        return (l.t as number) - t0;
      };
      const memberMs: number[] = [];
      const ruleMs: number[] = [];
      const baseMemberMs: number[] = [];
      const baseRuleMs: number[] = [];
      const perMember: { calls: number; entries: number; iptables: number }[] = [];
      // Baseline and agent samples alternate, so both meet the same load on a shared machine.
      for (let i = 0; i < CHANGES; i++) {
        if (i % 2 === 0) {
          baseMemberMs.push(await baseline('ipset', i));
          const from = runner.lines.length;
          const addr = v4(LOCAL + i);
          const t0 = now();
          await ds.put(groupMemberKey(`group${i % GROUPS}`, eid(9, i)), '');
          const added = (l: Line) => String(l.text).includes('add cali4g-') && String(l.text).includes(` ${addr}\n`);
          const w = await runner.next((l) => l.type === 'write' && l.kind === 'ipset' && added(l));
          memberMs.push((w.t as number) - t0);
          await new Promise((r) => setTimeout(r, 20));
          const writes = runner.lines.slice(from).filter((l) => l.type === 'write');
          perMember.push({
            calls: writes.length,
            entries: writes.reduce((n, l) => n + ((l.entries as number | undefined) ?? 0), 0),
            iptables: writes.filter((l) => l.kind === 'iptables').length,
          });
        } else {
          baseRuleMs.push(await baseline('iptables', i));
          const port = 20_000 + i;
          const t0 = now();
          const rule = encodeRule({ cidr: '10.0.0.0/8', protocol: 'tcp', port });
          await ds.put(groupRuleKey(`group${i % GROUPS}`, 'inbound', 10 + i), rule);
          const written = (l: Line) => String(l.text).includes(`--dport ${port} `);
          const w = await runner.next((l) => l.type === 'write' && l.kind === 'iptables' && written(l));
          ruleMs.push((w.t as number) - t0);
        }
      }
      const iptSave = await h1.execOk(['iptables-save']);
      await runner.stop();
      const against = (xs: number[], base: number[]) => ({
        ...dist(xs),
        baseline: dist(base),
        ratio_p99: percentile(xs, 99) / percentile(base, 99),
      });
      const member = against(memberMs, baseMemberMs);
      const rule = against(ruleMs, baseRuleMs);
      const perChange = {
        kernel_calls_max: Math.max(...perMember.map((p) => p.calls)),
        ipset_entries_max: Math.max(...perMember.map((p) => p.entries)),
        iptables_calls_total: perMember.reduce((n, p) => n + p.iptables, 0),
      };
      const rulesOnHost = iptSave.split('\n').filter((l) => l.startsWith('-A cali')).length;
      results.latency = {
        local_endpoints: LOCAL,
        groups: GROUPS,
        distinct_addresses: addrs.all,
        member_changes: memberMs.length,
        rule_changes: ruleMs.length,
        // Baselines: per sample, etcd put → watcher in the namespace → its one kernel write done.
        member,
        rule,
        per_member_change: perChange,
        iptables_rules_on_host: rulesOnHost,
      };
      const line = (what: string, n: number, x: typeof member, base: string) =>
        `${what} (${n}): p50 ${fmtMs(x.p50)} p99 ${fmtMs(x.p99)}; ` +
        `baseline (${base}, ${n} samples) p50 ${fmtMs(x.baseline.p50)} p99 ${fmtMs(x.baseline.p99)}; ` +
        `p99 ratio ${x.ratio_p99.toFixed(2)}x (target <= 1.5x)`;
      out.push(line('member add', memberMs.length, member, 'etcd put -> watcher -> one-entry ipset restore'));
      out.push(line('rule add  ', ruleMs.length, rule, 'etcd put -> watcher -> one-chain iptables-restore --noflush'));
      out.push(
        `kernel work per membership change (absolute counts over ${perMember.length} changes): ` +
          `at most ${perChange.kernel_calls_max} kernel call(s) with ${perChange.ipset_entries_max} ipset entr(ies); ` +
          `${perChange.iptables_calls_total} iptables calls in all`,
      );
      out.push(`rules on the latency host (absolute count): ${rulesOnHost} for ${LOCAL} local endpoints`);
    }

    if (phases.includes('growth')) {
      // ---- Rule count: grows with local endpoints, not with the cluster. ----
      say('rule count against local endpoints and cluster size (pure render)');
      const { renderDataplane } = await import(pathToNodeAgent());
      const { endpointPolicy, endpointsOnHost } = await import('@calico/policy');
      const growth: { local: number; cluster: number; rules: number }[] = [];
      for (const [local, cluster] of [
        [100, 10_000],
        [100, 100_000],
        [1000, 10_000],
        [1000, 100_000],
      ] as const) {
        const m = new PolicyModel();
        const kvs = clusterKeys(cluster / local, local, 100);
        distinctAddrs(kvs, 'host0');
        m.applyAll(policyFixtures.puts(kvs));
        const eps = endpointsOnHost(m, 'host0').map((e) => ({
          endpointId: e.endpointId,
          hostIf: `cali${e.endpointId.replace(/-/g, '').slice(0, 11)}`,
          mac: e.mac,
          v4: e.addrs.v4,
          v6: e.addrs.v6,
          policy: endpointPolicy(m, e.endpointId),
        }));
        const d = renderDataplane(eps, (g: string, f: 4 | 6) => m.groupAddrs(g, f), 'drop');
        let rules = 0;
        for (const f of [4, 6] as const)
          for (const lines of d.tables[f].filter.values()) rules += (lines as string[]).length;
        growth.push({ local, cluster, rules });
      }
      results.rule_growth = growth;
      const counts = growth.map((g) => `${g.local} local / ${g.cluster} cluster -> ${g.rules}`);
      out.push(`rule growth (absolute counts of rendered rules): ${counts.join('; ')}`);
    }

    if (phases.includes('scale')) {
      // ---- Full resync of a large synthetic keyspace. ----
      say(`loading ${SCALE_HOSTS} hosts x ${SCALE_EPS} endpoints, ${SCALE_GROUPS} groups into a fresh etcd`);
      ds.close();
      await etcd.stop();
      etcd = await Etcd.start({ listenIp: rootIp });
      ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
      const tLoad = performance.now();
      const big = clusterKeys(SCALE_HOSTS, SCALE_EPS, SCALE_GROUPS);
      const addrs = distinctAddrs(big, 'host0');
      await load(ds, big);
      const loadS = ((performance.now() - tLoad) / 1000).toFixed(1);
      say(`loaded ${big.length} keys (${addrs.all} distinct addresses) in ${loadS} s`);
      const FIGURES = [
        ...[
          'read_ms',
          'read_rss_mb',
          'snapshot_and_model_ms',
          'to_kernel_ms',
          'after_sync_ms',
          'kernel_ms',
          'rss_peak_mb',
        ],
        ...['agent_cpu_ms', 'etcd_cpu_ms', 'tools_cpu_ms', 'other_cpu_ms', 'machine_busy_pct'],
        ...['ipset_lines', 'ipset_entries', 'ipset_restores', 'iptables_lines', 'iptables_restores'],
      ] as const;
      type Run = Record<(typeof FIGURES)[number], number>;
      const runs: Run[] = [];
      let writes: Line[] = [];
      let t0 = 0;
      // Each run is a fresh namespace host (an empty kernel) against the same etcd: first the bare
      // read of the keys, then a fresh agent.
      for (let i = 0; i < SCALE_RUNS; i++) {
        // Never h1: the latency phase leaves its chains and sets there.
        const host = await fabric.addHost(`s${i}`);
        // The namespace's first iptables call sets up its tables: not the agent's work.
        await host.exec(['sh', '-c', 'iptables-save | grep -c cali']);
        const reader = new Runner(host.netns, etcd.endpoints, 'host0', 'read');

        const read = await reader.next((l) => l.type === 'read', 300_000);
        await reader.stop();
        if (read.keys !== big.length) throw new Error(`the bare read saw ${String(read.keys)} keys, not ${big.length}`);
        const etcdCpu0 = etcdCpuMs(etcd.pids);
        const machineCpu0 = machineCpuMs();
        const wall0 = performance.now();
        const scale = new Runner(host.netns, etcd.endpoints, 'host0', 'scale');
        const sReady = await scale.next((l) => l.type === 'ready', 300_000);
        const etcdCpu = etcdCpuMs(etcd.pids) - etcdCpu0;
        const machineCpu = machineCpuMs() - machineCpu0;
        const wall = performance.now() - wall0;
        await scale.stop();
        // The first write: everything the agent wrote until it was idle after its first sync.
        writes = scale.lines.filter((l) => l.type === 'write' && (l.t as number) <= (sReady.t as number));
        const of = (kind: string) => writes.filter((l) => l.kind === kind);
        const sum = (ls: Line[], k: string) => ls.reduce((n, l) => n + ((l[k] as number | undefined) ?? 0), 0);
        runs.push({
          read_ms: Math.round(read.ms as number),
          read_rss_mb: Math.round(Number(read.rssHwm) / 1e6),
          snapshot_and_model_ms: Math.round(sReady.syncMs as number),
          to_kernel_ms: Math.round(sReady.totalMs as number),
          after_sync_ms: Math.round(Number(sReady.totalMs) - Number(sReady.syncMs)),
          rss_peak_mb: Math.round(Number(sReady.rssHwm) / 1e6),
          agent_cpu_ms: Math.round(sReady.cpuMs as number),
          etcd_cpu_ms: etcdCpu,
          // The machine is shared: CPU of everything else from the agent's launch to its report (its Node
          // starting, this process, the kernel's own work, other work), and how busy the machine was.
          tools_cpu_ms: sReady.toolsCpuMs as number,
          other_cpu_ms: Math.max(
            0,
            machineCpu - etcdCpu - Math.round(Number(sReady.cpuMs) + Number(sReady.toolsCpuMs)),
          ),
          machine_busy_pct: Math.round((100 * machineCpu) / (cpus * wall)),
          kernel_ms: Math.round(
            Math.max(...writes.map((l) => Number(l.t))) - Math.min(...writes.map((l) => Number(l.start))),
          ),
          ipset_lines: sum(of('ipset'), 'lines'),
          ipset_entries: sum(of('ipset'), 'entries'),
          ipset_restores: of('ipset').length,
          iptables_lines: sum(of('iptables'), 'lines'),
          iptables_restores: of('iptables').length,
        });
        say(`full resync run ${i + 1}/${SCALE_RUNS}: ${JSON.stringify(runs.at(-1))}`);
        t0 = sReady.t0 as number;
      }
      const mid = (k: keyof Run) => median(runs.map((r) => r[k]));
      const span = (k: keyof Run) => [Math.min(...runs.map((r) => r[k])), Math.max(...runs.map((r) => r[k]))];
      const last = runs.at(-1)!;
      results.full_resync = {
        keys: big.length,
        hosts: SCALE_HOSTS,
        endpoints: SCALE_HOSTS * SCALE_EPS,
        distinct_addresses: addrs.all,
        distinct_remote_addresses: addrs.remote,
        groups: SCALE_GROUPS,
        runs: runs.length,
        // Medians over the runs, with their ranges. read_*: the floor, the bare read of the same keys.
        read_ms: mid('read_ms'),
        read_rss_mb: mid('read_rss_mb'),
        snapshot_and_model_ms: mid('snapshot_and_model_ms'),
        to_kernel_ms: mid('to_kernel_ms'),
        after_sync_ms: mid('after_sync_ms'),
        kernel_ms: mid('kernel_ms'),
        rss_peak_mb: mid('rss_peak_mb'),
        agent_cpu_ms: mid('agent_cpu_ms'),
        etcd_cpu_ms: mid('etcd_cpu_ms'),
        tools_cpu_ms: mid('tools_cpu_ms'),
        other_cpu_ms: mid('other_cpu_ms'),
        machine_busy_pct: mid('machine_busy_pct'),
        ranges: Object.fromEntries(FIGURES.slice(0, 7).map((k) => [k, span(k)])),
        first_write_same_in_every_run: runs.every(
          (x) => x.ipset_lines === last.ipset_lines && x.iptables_lines === last.iptables_lines,
        ),
        // The last run's.
        first_write: {
          ipset_lines: last.ipset_lines,
          ipset_entries: last.ipset_entries,
          ipset_restores: last.ipset_restores,
          iptables_lines: last.iptables_lines,
          iptables_restores: last.iptables_restores,
        },
        per_run: runs,
        // The last run's writes, in ms from its start.
        kernel_writes: writes.map((l) => ({
          kind: l.kind,
          family: l.family,
          lines: l.lines,
          from_ms: Math.round(Number(l.start) - t0),
          at_ms: Math.round(Number(l.t) - t0),
        })),
      };
      const r = (k: keyof Run, unit: (x: number) => string) => `${unit(mid(k))} (${span(k).map(unit).join('-')})`;
      const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
      const mb = (x: number) => `${x} MB`;
      const ms = (x: number) => `${x} ms`;
      out.push(
        `full resync: ${big.length} keys, ${SCALE_HOSTS * SCALE_EPS} endpoints with ${addrs.all} distinct addresses ` +
          `(${addrs.remote} on other hosts), ${SCALE_GROUPS} groups; medians (ranges) over ${runs.length} runs`,
      );
      out.push(`  agent start -> model in sync: ${r('snapshot_and_model_ms', s)}`);
      out.push(`    floor: a bare read of the same keys from the same namespace ${r('read_ms', s)}`);
      out.push(`  agent start -> kernel programmed: ${r('to_kernel_ms', s)} (absolute; target <= 2 s)`);
      out.push(`    of it, in sync -> kernel programmed (render and write): ${r('after_sync_ms', ms)} (absolute)`);
      out.push(`    and the first kernel write started -> the last one done: ${r('kernel_ms', ms)} (absolute)`);
      out.push(`  peak RSS: ${r('rss_peak_mb', mb)} (absolute; target <= 300 MB)`);
      out.push(`    the bare read's: ${r('read_rss_mb', mb)}`);
      out.push(
        `  first write (absolute counts): ${last.ipset_lines} ipset lines (${last.ipset_entries} entries) ` +
          `in ${last.ipset_restores} restores, ` +
          `${last.iptables_lines} iptables lines in ${last.iptables_restores} restores`,
      );
      out.push(
        `  CPU (absolute): agent ${r('agent_cpu_ms', ms)}, etcd ${r('etcd_cpu_ms', ms)}, ` +
          `restore tools ${r('tools_cpu_ms', ms)}; ` +
          `everything else ${r('other_cpu_ms', ms)}; machine busy ${r('machine_busy_pct', (x) => `${x}%`)}`,
      );
    }

    out.push(
      `load averages at the end: ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    for (const l of out) console.log(l);
    console.log(JSON.stringify({ bench: 'policy', when: new Date().toISOString(), machine, results }));
  } finally {
    ds?.close();
    await etcd?.stop();
    await fabric.destroy();
  }
}

const cpus = availableParallelism();

/** User + system CPU of the whole machine so far, from /proc/stat (clock ticks of 10 ms). */
function machineCpuMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0)) * 10;
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
