// Runs inside a namespace host for bench/policy. Modes:
// - latency: a real PolicyAgent against the real kernel, reporting every kernel write (with its
//   time) as JSON lines on stdout; beside it, the baseline: a watcher of /bench/base/ that answers
//   each put with the one kernel write a change needs at least (one ipset entry, one chain).
// - scale: the agent alone, for a full resync.
// - read: the floor of a full resync's read: the same pages as the agent's syncer, counted, kept nowhere.
import { readFileSync } from 'node:fs';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import { calicoRoot, hostsPrefix, networkPrefix } from '@calico/keyspace';
import { PolicyAgent, RealKernel, type KernelBackend } from '@calico/node';
import { createLogger } from '@calico/log';

const [etcd, host, mode] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const emit = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
/** CPU of this process's children that have exited (the restore tools), from /proc (clock ticks of 10 ms). */
const childCpuMs = () => {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) * 10;
};
const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;

/** Also spelt in policy.ts. */
const BASE_PREFIX = '/bench/base/';
const BASE_SET = 'bench-base';
const BASE_CHAIN = 'bench-base';
const baseChain = (port: number) =>
  [
    '*filter',
    `:${BASE_CHAIN} - [0:0]`,
    `-A ${BASE_CHAIN} -p tcp -m tcp --dport ${port} -j RETURN`,
    `-A ${BASE_CHAIN} -j DROP`,
    'COMMIT',
    '',
  ].join('\n');

/**
 * The baseline of a change: a put under /bench/base/ (`ipset` or `iptables`, the value a sample
 * number) seen by a watcher here, which then makes the least kernel write such a change needs,
 * through the same tool calls as the agent's kernel. Reports the time the write completed.
 */
async function startBaseline(ds: Datastore): Promise<() => Promise<void>> {
  const kernel = new RealKernel();
  await kernel.ipsetRestore(`create ${BASE_SET} hash:ip family inet\n`);
  await kernel.iptablesRestore(4, baseChain(1));
  const w = await ds.client.watch().prefix(BASE_PREFIX).create();
  w.on('put', (kv) => {
    const kind = kv.key.toString().slice(BASE_PREFIX.length);
    const i = Number(kv.value.toString());
    // One new entry per sample, as a member add is; one chain rewritten, as a rule add is.
    const write =
      kind === 'ipset'
        ? kernel.ipsetRestore(`add ${BASE_SET} 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}\n`)
        : kernel.iptablesRestore(4, baseChain(1000 + i));
    // Caught here: an exception in a watch listener would be rethrown by etcd3 as uncaught.
    write.then(
      () => emit({ type: 'base', kind, i, t: now() }),
      (e: unknown) => emit({ type: 'base-error', kind, i, error: String(e) }),
    );
  });
  return async () => {
    await w.cancel();
    await kernel.iptablesRestore(4, `*filter\n:${BASE_CHAIN} - [0:0]\n-X ${BASE_CHAIN}\nCOMMIT\n`);
    await kernel.ipsetRestore(`destroy ${BASE_SET}\n`);
  };
}

/** The agent's snapshot read without the agent: the same pages, side by side, counted and dropped. */
async function readFloor(ds: Datastore): Promise<void> {
  const t0 = now();
  let keys = 0;
  for await (const page of ds.pages(calicoRoot, undefined, [hostsPrefix, networkPrefix])) keys += page.kvs.length;
  emit({ type: 'read', keys, ms: now() - t0, rssHwm: hwm() });
}

/** Lines, and ipset entry lines (add/del), counted without splitting: this process's memory is measured. */
function countLines(text: string): { lines: number; entries: number } {
  let lines = 0;
  let entries = 0;
  for (let at = 0; at < text.length; ) {
    const end = text.indexOf('\n', at);
    const stop = end === -1 ? text.length : end;
    if (stop > at) {
      lines++;
      if (text.startsWith('add ', at) || text.startsWith('del ', at)) entries++;
    }
    at = stop + 1;
  }
  return { lines, entries };
}

/** The real kernel, with every write reported (when it started and when it completed). */
class Reporting implements KernelBackend {
  private readonly k = new RealKernel();
  iptablesSave = this.k.iptablesSave.bind(this.k);
  ipsetSave = this.k.ipsetSave.bind(this.k);
  conntrackFlush = this.k.conntrackFlush.bind(this.k);
  async iptablesRestore(family: 4 | 6, text: string): Promise<void> {
    const start = now();
    await this.k.iptablesRestore(family, text);
    const { lines } = countLines(text);
    emit({ type: 'write', kind: 'iptables', family, start, t: now(), lines, text: text.length < 20_000 ? text : '' });
  }
  async ipsetRestore(text: string): Promise<void> {
    const start = now();
    await this.k.ipsetRestore(text);
    const { lines, entries } = countLines(text);
    emit({ type: 'write', kind: 'ipset', start, t: now(), lines, entries, text: text.length < 20_000 ? text : '' });
  }
}

async function main(): Promise<void> {
  if (mode === 'read') {
    const ds = new Datastore(resolveDatastoreConfig({ etcd, env: {} }));
    await readFloor(ds);
    ds.close();
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));
    return;
  }
  const baseDs = mode === 'latency' ? new Datastore(resolveDatastoreConfig({ etcd, env: {} })) : undefined;
  const stopBaseline = baseDs ? await startBaseline(baseDs) : undefined;
  const ds = new Datastore(resolveDatastoreConfig({ etcd, env: {} }));
  const t0 = now();
  const cpu0 = process.cpuUsage();
  const childCpu0 = childCpuMs();
  // BENCH_TRACE=1: memory every 50 ms, to see where the peak comes from.
  const trace: number[][] = [];
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024;
  const tracer = process.env.BENCH_TRACE
    ? setInterval(() => {
        const m = process.memoryUsage();
        trace.push([
          Math.round(now() - t0),
          Math.round(rss()),
          Math.round(m.heapUsed / 1e6),
          Math.round(m.heapTotal / 1e6),
          Math.round(m.arrayBuffers / 1e6),
        ]);
      }, 50)
    : undefined;
  // BENCH_TRACE also notes when each snapshot page reaches the agent.
  const marks: [string, number][] = [];
  if (tracer) {
    const pages = ds.pages.bind(ds);
    ds.pages = async function* (...args: Parameters<typeof pages>) {
      for await (const page of pages(...args)) {
        marks.push([`page of ${page.kvs.length}`, Math.round(now() - t0)]);
        yield page;
      }
    };
  }
  const logger = createLogger({ name: 'bench-agent', level: 'warn' });
  const agent = new PolicyAgent({ host: host!, ds, kernel: new Reporting(), logger, dataplaneResyncMs: 0 });
  // In sync = the model holds the whole first snapshot (the agent renders and writes from then on).
  let tSynced = 0;
  const handleStatus = agent.handleStatus.bind(agent);
  agent.handleStatus = (status, reason) => {
    if (status === 'in-sync' && tSynced === 0) tSynced = now();
    handleStatus(status, reason);
  };
  agent.start();
  // Ready = the first snapshot has reached the kernel.
  while (!agent.hasSynced) await new Promise((r) => setTimeout(r, 5));
  await agent.idle();
  const cpu = process.cpuUsage(cpu0);
  if (tracer) {
    clearInterval(tracer);
    process.stderr.write(
      `[runner] memory (ms, rss, heapUsed, heapTotal, arrayBuffers MB): ${trace.map((r) => r.join(':')).join(' ')}\n`,
    );
    const pages = marks.map(([what, t]) => `${what} at ${t}`).join(', ');
    process.stderr.write(`[runner] pages (ms): ${pages}; in sync at ${Math.round(tSynced - t0)}\n`);
  }
  const t = now();
  emit({
    type: 'ready',
    t0,
    t,
    syncMs: tSynced - t0,
    totalMs: t - t0,
    cpuMs: (cpu.user + cpu.system) / 1000,
    toolsCpuMs: childCpuMs() - childCpu0,
    rssHwm: hwm(),
    status: { ...agent.status(), problems: agent.status().problems.length },
  });
  process.stdin.resume();
  process.stdin.on('end', () => {
    void Promise.allSettled([stopBaseline?.(), agent.stop()]).finally(() => {
      baseDs?.close();
      ds.close();
      process.exit(0);
    });
  });
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
