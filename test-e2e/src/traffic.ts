import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DevCluster } from '@calico/devcluster';
import { exec, execOk, ManagedProcess, waitFor, type NamespaceHost } from '@calico/testkit';
import type { Workload } from './helpers.js';

/** Real traffic from and to workloads: probe/traffic.mjs run with node in their network namespaces. */
const PROBE = fileURLToPath(new URL('../probe/traffic.mjs', import.meta.url));

export interface Connection {
  dst: string;
  protocol: 'tcp' | 'udp' | 'icmp' | 'icmpv6';
  port: number | null;
}

/** The init pid of a workload's container: its network namespace is /proc/<pid>/ns/net. */
export async function workloadPid(cluster: DevCluster, w: Workload): Promise<number> {
  return Number((await cluster.dockerd.dockerOk(['inspect', '-f', '{{.State.Pid}}', w.id])).trim());
}

/** argv run inside a workload's network namespace (with the machine's own binaries). */
export async function inWorkload(cluster: DevCluster, w: Workload, argv: readonly string[]): Promise<string[]> {
  return ['nsenter', `--net=/proc/${await workloadPid(cluster, w)}/ns/net`, ...argv];
}

/**
 * A workload's eth0 MAC, as its own namespace has it (nsenter enters only the network namespace:
 * /sys there is still the caller's, so it cannot be read from /sys/class/net).
 */
export async function workloadMac(cluster: DevCluster, w: Workload): Promise<string> {
  const out = await execOk(await inWorkload(cluster, w, ['ip', '-o', 'link', 'show', 'dev', 'eth0']));
  const m = /link\/ether ([0-9a-f]{2}(?::[0-9a-f]{2}){5}) /.exec(out);
  if (!m) throw new Error(`no MAC for ${w.name}'s eth0 in: ${out}`);
  return m[1]!;
}

/** TCP and UDP servers on ports inside a workload; it records every UDP datagram's payload. */
export class Listener {
  private constructor(readonly proc: ManagedProcess) {}

  static async start(cluster: DevCluster, w: Workload, addr: string, ports: readonly number[]): Promise<Listener> {
    const argv = await inWorkload(cluster, w, [process.execPath, PROBE, 'listen', addr, ports.join(',')]);
    const proc = new ManagedProcess({
      name: `listen-${w.name}`,
      argv,
      logFile: join(cluster.fabric.dir, `listen-${w.name}-${Date.now()}.log`),
    });
    const l = new Listener(proc);
    try {
      await waitFor(
        `the listener in ${w.name}`,
        () => proc.log().includes('ready'),
        10_000,
        () => proc.log(),
      );
    } catch (e) {
      await proc.stop();
      throw e;
    }
    return l;
  }

  /** The UDP payloads heard so far. */
  heard(): Set<string> {
    return new Set([...this.proc.log().matchAll(/"udp":"([^"]+)"/g)].map((m) => m[1]!));
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }
}

/** A TCP echo server on addr:port inside a workload. */
export async function startEcho(cluster: DevCluster, w: Workload, addr: string, port: number): Promise<ManagedProcess> {
  const argv = await inWorkload(cluster, w, [process.execPath, PROBE, 'echo', addr, String(port)]);
  const proc = new ManagedProcess({
    name: `echo-${w.name}`,
    argv,
    logFile: join(cluster.fabric.dir, `echo-${w.name}-${Date.now()}.log`),
  });
  await waitFor(
    `the echo server in ${w.name}`,
    () => proc.log().includes('ready'),
    10_000,
    () => proc.log(),
  );
  return proc;
}

/** One long-lived TCP connection from a workload, driven line by line. */
export class Chat {
  readonly lines: string[] = [];
  connected = false;
  closed: string | null = null;
  private constructor(private readonly p: ReturnType<typeof spawn>) {
    let buf = '';
    p.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const o = JSON.parse(buf.slice(0, i)) as { line?: string; connected?: boolean; closed?: string };
        buf = buf.slice(i + 1);
        if (o.line !== undefined) this.lines.push(o.line);
        if (o.connected) this.connected = true;
        if (o.closed !== undefined) this.closed = o.closed;
      }
    });
    p.on('close', () => (this.closed ??= 'exited'));
  }

  static async open(
    cluster: DevCluster,
    from: Workload,
    src: string,
    dst: string,
    port: number,
    timeoutMs = 10_000,
  ): Promise<Chat> {
    const argv = await inWorkload(cluster, from, [process.execPath, PROBE, 'chat', src, dst, String(port)]);
    const c = new Chat(spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'ignore'] }));
    await waitFor(
      `a connection from ${src} to ${dst}:${port}`,
      () => c.connected || c.closed !== null,
      timeoutMs,
    ).catch(() => c.close());
    if (!c.connected) throw new Error(`no connection from ${src} to ${dst}:${port}: ${c.closed}`);
    return c;
  }

  send(line: string): void {
    this.p.stdin!.write(`${line}\n`);
  }

  /** Whether the line came back within timeoutMs. */
  async echoed(line: string, timeoutMs = 5_000): Promise<boolean> {
    return waitFor(`"${line}" echoed`, () => this.lines.includes(line), timeoutMs).then(
      () => true,
      () => false,
    );
  }

  close(): void {
    this.p.kill('SIGKILL');
  }
}

let sends = 0;

/**
 * Opens every connection at once from `src` (an address of the sender, which is a workload or a
 * namespace host). For tcp and icmp: whether it was answered; udp is sent and reads true here,
 * its listener tells whether it arrived. The ids are the UDP payloads, unique per call.
 */
export async function sendFrom(
  cluster: DevCluster,
  from: Workload | NamespaceHost,
  src: string,
  conns: readonly Connection[],
): Promise<{ id: string; ok: boolean }[]> {
  const call = sends++;
  const cases = conns.map((c, i) => ({ id: `s${call}c${i}`, ...c }));
  const file = join(cluster.fabric.dir, `send-${call}.json`);
  await writeFile(file, JSON.stringify(cases));
  const argv = [process.execPath, PROBE, 'send', src, file];
  const r = 'endpointId' in from ? await exec(await inWorkload(cluster, from, argv)) : await from.exec(argv);
  if (r.code !== 0) throw new Error(`sending from ${src}: exit ${r.code}: ${r.stderr}`);
  const got = JSON.parse(r.stdout) as Record<string, boolean>;
  return cases.map((c) => ({ id: c.id, ok: got[c.id] === true }));
}

/**
 * UDP datagrams "<tag>-<n>" from a workload to dst:port, about one a millisecond, each from a
 * new socket (a new flow, so each meets the rules rather than conntrack), until stop(); stop()
 * resolves with how many were sent. A listener on dst tells which arrived.
 */
export async function startFlood(
  cluster: DevCluster,
  from: Workload,
  src: string,
  dst: string,
  port: number,
  tag: string,
): Promise<{ stop(): Promise<number> }> {
  const argv = await inWorkload(cluster, from, [
    process.execPath,
    PROBE,
    'flood',
    src,
    dst,
    String(port),
    tag,
    '600000',
  ]);
  const p = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (c: Buffer) => (out += c.toString()));
  p.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const done = new Promise<number>((resolve, reject) =>
    p.on('close', (code) =>
      code === 0
        ? resolve((JSON.parse(out) as { sent: number }).sent)
        : reject(new Error(`flood from ${src}: exit ${code}: ${err}`)),
    ),
  );
  return {
    stop: () => {
      p.stdin.end();
      return done;
    },
  };
}

/** The packet counter of the first rule in a chain that matches `pattern` (iptables-save -c). */
export async function ruleCounter(
  host: NamespaceHost,
  family: 4 | 6,
  table: 'filter' | 'raw',
  pattern: RegExp,
): Promise<number> {
  const text = await host.execOk([family === 4 ? 'iptables-save' : 'ip6tables-save', '-c', '-t', table]);
  const line = text.split('\n').find((l) => pattern.test(l));
  if (line === undefined) throw new Error(`no rule matches ${pattern} in IPv${family} ${table}`);
  return Number(/^\[(\d+):/.exec(line)?.[1]);
}

/** A counter of the host's kernel, from /proc/net/netstat (e.g. TcpExt IPReversePathFilter). */
export async function netstat(host: NamespaceHost, group: string, name: string): Promise<number> {
  const lines = (await host.execOk(['cat', '/proc/net/netstat'])).split('\n').filter((l) => l.startsWith(`${group}:`));
  const [names, values] = lines.map((l) => l.split(/\s+/).slice(1));
  const i = names?.indexOf(name) ?? -1;
  if (i < 0 || values === undefined) throw new Error(`no ${group} ${name} in /proc/net/netstat`);
  return Number(values[i]);
}
