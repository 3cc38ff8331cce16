import { createRequire } from 'node:module';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { hostname as osHostname, release } from 'node:os';
import { join, relative } from 'node:path';
import type { Datastore } from '@calico/datastore';
import { calicoRoot } from '@calico/keyspace';
import { isKeyFile, redactKeyspaceValue, type SecretSink } from './redact.js';
import { run } from './run.js';

const require = createRequire(import.meta.url);

/** Where a host's services keep their files (the same defaults as calicoctl's; each is a flag). */
export interface HostDirs {
  run: string;
  log: string;
  state: string;
}

export function defaultHostDirs(
  host: string,
  o: { runDir?: string | undefined; logDir?: string | undefined; stateDir?: string | undefined } = {},
): HostDirs {
  return {
    run: o.runDir ?? `/var/run/calico/${host}`,
    log: o.logDir ?? `/var/log/calico/${host}`,
    state: o.stateDir ?? `/var/lib/calico/${host}`,
  };
}

/** What every source may use. */
export interface SourceContext {
  host: string;
  dirs: HostDirs;
  /** dockerd (or the node's proxy) as `docker -H` takes it. */
  docker: string;
  /** etcd, opened only by the sources that need it, so a bad etcd config fails those alone. */
  datastore: (() => Datastore) | undefined;
  /** Secret values removed by structured redaction, scrubbed from every other file afterwards. */
  secrets: SecretSink;
  timeoutMs: number;
  /** A log file larger than this contributes only its tail. */
  maxLogBytes: number;
}

export interface OutputFile {
  /** Path inside the host's folder of the archive. */
  name: string;
  data: Buffer;
}

/** A source returns one file's content, or several files (logs). */
export type SourceOutput = string | Buffer | { files: OutputFile[]; notes?: string[] };

/** Thrown by a source whose input does not exist on this host: recorded as "absent", not as a failure. */
export class SourceAbsent extends Error {
  override name = 'SourceAbsent';
}

/** Thrown by a source that failed but has partial output worth keeping (a command's stdout before it failed). */
export class SourceFailed extends Error {
  override name = 'SourceFailed';
  constructor(
    message: string,
    readonly partial: Buffer,
  ) {
    super(message);
  }
}

export interface Source {
  name: string;
  /** The command or file it reads, for people reading summary.json. */
  how: string;
  /** Its output file inside the host's folder (a folder ending in "/" for several files). */
  file: string;
  /** text: pattern redaction; json: field-by-field; self: the source redacts its own output. */
  redact: 'text' | 'json' | 'self';
  collect: (c: SourceContext) => Promise<SourceOutput>;
}

/** A command's stdout; a non-zero exit fails the source but keeps what it printed. */
async function command(argv: readonly string[], c: SourceContext): Promise<Buffer> {
  const r = await run(argv, c.timeoutMs);
  if (r.code !== 0)
    throw new SourceFailed(
      `${argv.join(' ')} exited ${r.code}: ${r.stderr.trim().slice(0, 500) || '(no output)'}`,
      r.stdout,
    );
  return r.stdout;
}

/** An optional file: absent is not a failure (calico-node may not run here, or not write it yet). */
async function optionalFile(path: string, why: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new SourceAbsent(`${path} does not exist: ${why}`);
    throw e;
  }
}

const cmd = (name: string, file: string, argv: string[], redact: Source['redact'] = 'text'): Source => ({
  name,
  how: argv.join(' '),
  file,
  redact,
  collect: (c) => command(argv, c),
});

const birdc = (name: string, file: string, what: string): Source => ({
  name,
  how: `birdc -r -s <state-dir>/bird.ctl ${what}`,
  file,
  redact: 'text',
  // -r: restricted mode, so nothing we send can change BIRD.
  collect: (c) => command(['birdc', '-r', '-s', join(c.dirs.state, 'bird.ctl'), ...what.split(' ')], c),
});

const docker = (c: SourceContext, ...args: string[]) => command(['docker', '-H', c.docker, ...args], c);

/** The label calico-node stamps on every container it manages, valued with the host name. */
const HOST_LABEL = 'org.projectcalico.host';

/**
 * Every source, in archive order. Adding one is one line: a name, how, the output file and
 * its redaction. Commands run in the caller's network namespace.
 */
export const SOURCES: readonly Source[] = [
  {
    name: 'date',
    how: 'date -u; uptime',
    file: 'system/date.txt',
    redact: 'text',
    collect: async (c) =>
      `${new Date().toISOString()}\n${(await command(['date', '-u'], c)).toString()}${(await run(['uptime'], c.timeoutMs)).stdout.toString()}`,
  },
  {
    name: 'hostname',
    how: 'Calico host name; uname -n',
    file: 'system/hostname.txt',
    redact: 'text',
    collect: async (c) => `calico: ${c.host}\nmachine: ${osHostname()}\n`,
  },
  {
    name: 'versions',
    how: 'package.json of each service; bird, etcd, docker, iptables, ipset, kernel',
    file: 'system/versions.json',
    redact: 'json',
    collect: async (c) => JSON.stringify(await versions(c)),
  },
  {
    name: 'processes',
    how: 'ps -eo pid,ppid,etimes,rss,args (Calico, BIRD, etcd, docker)',
    file: 'system/processes.txt',
    redact: 'text',
    collect: processes,
  },
  cmd('ip4-addr', 'network/ip4-addr.txt', ['ip', '-4', 'addr']),
  cmd('ip6-addr', 'network/ip6-addr.txt', ['ip', '-6', 'addr']),
  cmd('link', 'network/link.txt', ['ip', '-d', '-s', 'link']),
  cmd('ip4-route', 'network/ip4-route.txt', ['ip', '-4', 'route', 'show', 'table', 'all']),
  cmd('ip6-route', 'network/ip6-route.txt', ['ip', '-6', 'route', 'show', 'table', 'all']),
  cmd('ip4-neigh', 'network/ip4-neigh.txt', ['ip', '-4', 'neigh']),
  cmd('ip6-neigh', 'network/ip6-neigh.txt', ['ip', '-6', 'neigh']),
  cmd('iptables', 'iptables/iptables-save.txt', ['iptables-save', '-c']),
  cmd('ip6tables', 'iptables/ip6tables-save.txt', ['ip6tables-save', '-c']),
  cmd('ipset', 'iptables/ipset-list.txt', ['ipset', 'list']),
  birdc('bird-status', 'bird/status.txt', 'show status'),
  birdc('bird-protocols', 'bird/protocols.txt', 'show protocols all'),
  birdc('bird-routes', 'bird/routes.txt', 'show route'),
  {
    name: 'bird-conf',
    how: '<state-dir>/bird.conf',
    file: 'bird/bird.conf',
    redact: 'text',
    collect: (c) => optionalFile(join(c.dirs.state, 'bird.conf'), 'bgp-config has not rendered it (not running here?)'),
  },
  {
    name: 'node-state',
    how: '<run-dir>/node.state.json',
    file: 'node/node.state.json',
    redact: 'json',
    collect: (c) =>
      optionalFile(join(c.dirs.run, 'node.state.json'), 'calico-node was not started by "calicoctl node" here'),
  },
  {
    name: 'agent-status',
    how: '<run-dir>/agent-status.json',
    file: 'node/agent-status.json',
    redact: 'json',
    collect: (c) =>
      optionalFile(
        join(c.dirs.run, 'agent-status.json'),
        'absent: calico-node writes it only when started with --status-file (calicoctl node does)',
      ),
  },
  {
    name: 'keyspace',
    how: 'etcd get --prefix /calico/ (secret values redacted)',
    file: 'etcd/calico.json',
    redact: 'self',
    collect: keyspace,
  },
  {
    name: 'docker-ps',
    how: 'docker ps -a --no-trunc',
    file: 'docker/ps.txt',
    redact: 'text',
    collect: (c) => docker(c, 'ps', '-a', '--no-trunc'),
  },
  {
    name: 'docker-inspect',
    how: `docker inspect of containers labelled ${HOST_LABEL}=<host>`,
    file: 'docker/inspect.json',
    redact: 'json',
    collect: dockerInspect,
  },
  { name: 'logs', how: 'every file under <log-dir>', file: 'logs/', redact: 'text', collect: logs },
];

async function versions(c: SourceContext): Promise<Record<string, unknown>> {
  const pkg = (name: string) => {
    try {
      return (require(`${name}/package.json`) as { version: string }).version;
    } catch {
      return 'not installed';
    }
  };
  const out = async (argv: string[]) => {
    const r = await run(argv, c.timeoutMs);
    return r.code === 0 ? (r.stdout.toString() + r.stderr).trim() : `unavailable: ${r.stderr.trim().slice(0, 200)}`;
  };
  const etcd = async () => {
    if (!c.datastore) return 'unavailable: no etcd configured';
    try {
      return (await c.datastore().client.maintenance.status({})).version;
    } catch (e) {
      return `unavailable: ${(e as Error).message}`;
    }
  };
  const dockerVersion = async () => {
    const r = await run(['docker', '-H', c.docker, 'version', '--format', '{{json .}}'], c.timeoutMs);
    try {
      const v = JSON.parse(r.stdout.toString()) as {
        Client?: { Version?: string };
        Server?: { Version?: string } | null;
      };
      return {
        client: v.Client?.Version ?? null,
        server: v.Server?.Version ?? `unavailable: ${r.stderr.trim().slice(0, 200)}`,
      };
    } catch {
      return `unavailable: ${r.stderr.trim().slice(0, 200)}`;
    }
  };
  const [bird, birdRunning, etcdServer, dockerV, iptables, ipset] = await Promise.all([
    out(['bird', '--version']),
    out(['birdc', '-r', '-s', join(c.dirs.state, 'bird.ctl'), 'show', 'status']).then(
      (s) => /^BIRD [^\n]*/m.exec(s)?.[0] ?? s,
    ),
    etcd(),
    dockerVersion(),
    out(['iptables', '--version']),
    out(['ipset', '--version']),
  ]);
  return {
    calico: Object.fromEntries(
      ['@calico/diags', '@calico/node', '@calico/bgp-config', '@calico/master'].map((n) => [
        n.slice('@calico/'.length),
        pkg(n),
      ]),
    ),
    nodejs: process.version,
    kernel: release(),
    bird: { installed: bird, running: birdRunning },
    etcd: etcdServer,
    docker: dockerV,
    iptables,
    ipset,
  };
}

async function processes(c: SourceContext): Promise<string> {
  const all = (await command(['ps', '-eo', 'pid,ppid,etimes,rss,args'], c)).toString().split('\n');
  return `${[all[0], ...all.slice(1).filter((l) => /calico|bird|etcd|dockerd|containerd/.test(l) && !/\bps -eo\b/.test(l))].join('\n')}\n`;
}

async function keyspace(c: SourceContext): Promise<string> {
  if (!c.datastore) throw new Error('no etcd configured');
  const ds = c.datastore();
  let snap;
  try {
    snap = await ds.getPrefix(calicoRoot);
  } catch (e) {
    // The etcd3 client's own message ("circuit breaker is open") does not say which etcd.
    throw new Error(`reading /calico/ from etcd at ${ds.config.endpoints.join(',')}: ${(e as Error).message}`);
  }
  const keys: Record<string, string> = {};
  for (const kv of snap.kvs) keys[kv.key] = redactKeyspaceValue(kv.key, kv.value, c.secrets);
  return `${JSON.stringify({ revision: snap.revision, count: snap.kvs.length, keys }, null, 2)}\n`;
}

async function dockerInspect(c: SourceContext): Promise<Buffer | string> {
  const ids = (await docker(c, 'ps', '-aq', '--no-trunc', '--filter', `label=${HOST_LABEL}=${c.host}`))
    .toString()
    .split('\n')
    .filter(Boolean);
  if (ids.length === 0) return '[]\n';
  // One call per 100 containers keeps the argv short on a host with thousands.
  const parts: unknown[] = [];
  for (let i = 0; i < ids.length; i += 100)
    parts.push(...(JSON.parse((await docker(c, 'inspect', ...ids.slice(i, i + 100))).toString()) as unknown[]));
  return JSON.stringify(parts);
}

async function logs(c: SourceContext): Promise<SourceOutput> {
  const files: OutputFile[] = [];
  const notes: string[] = [];
  try {
    await stat(c.dirs.log);
  } catch {
    throw new SourceAbsent(`log dir ${c.dirs.log} does not exist`);
  }
  const walk = async (dir: string, depth: number): Promise<void> => {
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, d.name);
      const rel = relative(c.dirs.log, path);
      if (d.isDirectory()) {
        if (depth < 4) await walk(path, depth + 1);
        continue;
      }
      // Sockets, pipes and devices are not logs; symlinks could lead anywhere.
      if (!d.isFile()) continue;
      const { data, truncated, size } = await tail(path, c.maxLogBytes);
      if (isKeyFile(rel, data.subarray(0, 64 * 1024).toString('latin1'))) {
        notes.push(`${rel}: left out (looks like a key file)`);
        continue;
      }
      // Compressed rotations and other binaries cannot be redacted as text, so they stay out.
      if (data.subarray(0, 8192).includes(0)) {
        notes.push(`${rel}: left out (binary)`);
        continue;
      }
      if (truncated) notes.push(`${rel}: only the last ${data.length} of ${size} bytes`);
      files.push({ name: rel, data });
    }
  };
  await walk(c.dirs.log, 0);
  return { files, notes };
}

async function tail(path: string, max: number): Promise<{ data: Buffer; truncated: boolean; size: number }> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, max);
    const data = Buffer.alloc(len);
    await fh.read(data, 0, len, size - len);
    return { data, truncated: len < size, size };
  } finally {
    await fh.close();
  }
}
