// Runs inside a namespace host for bench/policy: a real PolicyAgent against the real kernel,
// reporting every kernel write (with its time) as JSON lines on stdout. First it measures the
// baseline: one-entry `ipset restore` and one-chain `iptables-restore --noflush`, from here.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import { PolicyAgent, RealKernel, type KernelBackend } from '@calico/node';
import { createLogger } from '@calico/log';

const [etcd, host, mode] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const emit = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;

function run(argv: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: ${err}`))));
    p.stdin.end(input);
  });
}

async function baseline(n: number): Promise<void> {
  const ipsetMs: number[] = [];
  const iptMs: number[] = [];
  await run(['ipset', 'restore'], 'create bench-base hash:ip family inet\n');
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await run(['ipset', '-exist', 'restore'], `${i % 2 ? 'del' : 'add'} bench-base 10.0.0.1\n`);
    ipsetMs.push(performance.now() - t);
    const t2 = performance.now();
    await run(['iptables-restore', '--noflush', '-w', '5'], `*filter\n:bench-base - [0:0]\n-A bench-base -p tcp -m tcp --dport ${1000 + i} -j RETURN\n-A bench-base -j DROP\nCOMMIT\n`);
    iptMs.push(performance.now() - t2);
  }
  await run(['iptables-restore', '--noflush'], '*filter\n:bench-base - [0:0]\n-X bench-base\nCOMMIT\n');
  await run(['ipset', 'restore'], 'destroy bench-base\n');
  emit({ type: 'baseline', ipsetMs, iptMs });
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

/** The real kernel, with every write reported. */
class Reporting implements KernelBackend {
  private readonly k = new RealKernel();
  iptablesSave = this.k.iptablesSave.bind(this.k);
  ipsetSave = this.k.ipsetSave.bind(this.k);
  conntrackFlush = this.k.conntrackFlush.bind(this.k);
  async iptablesRestore(family: 4 | 6, text: string): Promise<void> {
    await this.k.iptablesRestore(family, text);
    emit({ type: 'write', kind: 'iptables', family, t: now(), lines: countLines(text).lines, text: text.length < 20_000 ? text : '' });
  }
  async ipsetRestore(text: string): Promise<void> {
    await this.k.ipsetRestore(text);
    const { lines, entries } = countLines(text);
    emit({ type: 'write', kind: 'ipset', t: now(), lines, entries, text: text.length < 20_000 ? text : '' });
  }
}

async function main(): Promise<void> {
  if (mode !== 'scale') await baseline(200);
  const ds = new Datastore(resolveDatastoreConfig({ etcd, env: {} }));
  const t0 = now();
  const cpu0 = process.cpuUsage();
  // BENCH_TRACE=1: memory every 50 ms, to see where the peak comes from.
  const trace: number[][] = [];
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024;
  const tracer = process.env.BENCH_TRACE
    ? setInterval(() => {
        const m = process.memoryUsage();
        trace.push([Math.round(now() - t0), Math.round(rss()), Math.round(m.heapUsed / 1e6), Math.round(m.heapTotal / 1e6), Math.round(m.arrayBuffers / 1e6)]);
      }, 50)
    : undefined;
  const agent = new PolicyAgent({ host: host!, ds, kernel: new Reporting(), logger: createLogger({ name: 'bench-agent', level: 'warn' }), dataplaneResyncMs: 0 }).start();
  // Ready = the first snapshot has reached the kernel.
  while (!agent.hasSynced) await new Promise((r) => setTimeout(r, 5));
  const tSynced = now();
  await agent.idle();
  const cpu = process.cpuUsage(cpu0);
  if (tracer) {
    clearInterval(tracer);
    process.stderr.write(`[runner] memory (ms, rss, heapUsed, heapTotal, arrayBuffers MB): ${trace.map((r) => r.join(':')).join(' ')}\n`);
  }
  emit({ type: 'ready', t0, syncMs: tSynced - t0, totalMs: now() - t0, cpuMs: (cpu.user + cpu.system) / 1000, rssHwm: hwm(), status: { ...agent.status(), problems: agent.status().problems.length } });
  process.stdin.resume();
  process.stdin.on('end', () => {
    void agent.stop().finally(() => {
      ds.close();
      process.exit(0);
    });
  });
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
