import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { request, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { apiServerTls } from '@calico/datastore';
import { isIP, bgpHostAsNumKey, encodeAsNum, hostNameError } from '@calico/keyspace';
import { describeListen, listenConfig } from '@calico/node';
import { UsageError, type Context } from '../context.js';
import { calicoctlMain, hostDirs, serviceMain, type HostDirs } from '../paths.js';
import { checkProcess, recordProcess, runTool, signalIfOurs, toolTimeoutMs, waitNotAlive } from '@calico/proc';
import type { Liveness, ProcessRecord } from '@calico/proc';
import { cleanStale, readSupervisor, type SupervisorSpec, type SupervisorStatus } from '../supervisor.js';

export interface NodeFlags {
  ip?: string;
  ip6?: string;
  as?: string;
  runtime?: string;
  docker?: string;
  /** Where the node's proxy listens (repeatable); 127.0.0.1:2375 by default. */
  proxyListen?: string[];
  /** TLS on the proxy's TCP listeners, as dockerd's flags of the same names. */
  tlsverify?: boolean;
  tls?: boolean;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  insecureListen?: boolean;
  logDir?: string;
  runDir?: string;
  stateDir?: string;
  removeEndpoints?: boolean;
}

/** GET over HTTP (TCP or a unix socket); resolves with the status, or 0 when nothing answers. */
export function httpStatus(
  target: { socketPath: string } | { host: string; port: number },
  path: string,
  timeoutMs = 2_000,
): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ ...target, path, timeout: timeoutMs, headers: { host: 'calicoctl' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => {
      req.destroy();
      resolve(0);
    });
    req.end();
  });
}

/**
 * Whether the master we started answers GET /healthz with 200, over http or https. Its
 * certificate is not checked: this asks our own child whether it is up and sends nothing secret.
 */
export function healthzUp(url: URL, timeoutMs = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const u = new URL('healthz', url);
    const opts = { timeout: timeoutMs, rejectUnauthorized: false };
    const onRes = (res: IncomingMessage) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    };
    const req = u.protocol === 'https:' ? httpsRequest(u, opts, onRes) : request(u, { timeout: timeoutMs }, onRes);
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/**
 * --tls-cert/--tls-key/--tls-ca of an API server (the master's, or a host's diags service), checked
 * here as the service will check them, with paths made absolute; [] when none is given.
 */
export function apiTlsFlags(f: ApiTlsFlags): { args: string[]; files: string[] } {
  const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(p));
  const files = { tlsCert: abs(f.tlsCert), tlsKey: abs(f.tlsKey), tlsCa: abs(f.tlsCa) };
  const r = apiServerTls(files);
  if (!r.ok) throw new UsageError(r.errors.join('\n'));
  if (!r.value) return { args: [], files: [] };
  const given = [
    ['tls-cert', files.tlsCert],
    ['tls-key', files.tlsKey],
    ['tls-ca', files.tlsCa],
  ] as const;
  const args = given.flatMap(([k, v]) => (v === undefined ? [] : [`--${k}=${v}`]));
  return { args, files: given.flatMap(([, v]) => (v === undefined ? [] : [v])) };
}

/** calicoctl master's and node's TLS flags, passed to calico-master or calico-diags serve as they are. */
export interface ApiTlsFlags {
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  tlsCa?: string | undefined;
}

/**
 * The node's listen flags, checked here as calico-node will check them (files read, the
 * insecure-listen guard), so that a mistake stops calicoctl before anything starts. File
 * paths are made absolute: the services do not run in calicoctl's folder.
 */
export function proxyListenFlags(f: NodeFlags): {
  listen: string[];
  tlsArgs: string[];
  files: string[];
  dockerHost: string;
  tlsHint: string | null;
} {
  const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(p));
  const flags = {
    listen: f.proxyListen?.length ? f.proxyListen : ['127.0.0.1:2375'],
    tlsverify: f.tlsverify,
    tls: f.tls,
    tlscacert: abs(f.tlscacert),
    tlscert: abs(f.tlscert),
    tlskey: abs(f.tlskey),
    insecureListen: f.insecureListen,
  };
  const r = listenConfig(flags);
  if (!r.ok) throw new UsageError(r.errors.map((e) => e.replace(/^--listen=/, '--proxy-listen=')).join('\n'));
  const tlsArgs = [
    ...(flags.tlsverify ? ['--tlsverify'] : flags.tls ? ['--tls'] : []),
    ...(['tlscacert', 'tlscert', 'tlskey'] as const).flatMap((k) => (flags[k] ? [`--${k}=${flags[k]}`] : [])),
    ...(flags.insecureListen ? ['--insecure-listen'] : []),
  ];
  const files = [flags.tlscacert, flags.tlscert, flags.tlskey].filter((x): x is string => x !== undefined);
  const first = r.value.addresses.find((a) => a.kind === 'tcp') ?? r.value.addresses[0]!;
  const tlsHint = r.value.tls?.verify
    ? 'DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=<a folder with ca.pem, and cert.pem and key.pem of a client ' +
      'certificate of that CA>'
    : null;
  return { listen: flags.listen, tlsArgs, files, dockerHost: describeListen(first), tlsHint };
}

/**
 * etcd's TLS files for a container: mounted read-only where calicoctl has them, named by the
 * ETCD_* variables, which every service in the image reads (the node image runs two).
 */
function etcdTlsDocker(ctx: Context): string[] {
  const t = ctx.etcdTls;
  const env = { ca: 'ETCD_CA_CERT_FILE', cert: 'ETCD_CERT_FILE', key: 'ETCD_KEY_FILE' } as const;
  return (['ca', 'cert', 'key'] as const).flatMap((k) => {
    const file = t[k];
    return file ? ['-v', `${file}:${file}:ro`, '-e', `${env[k]}=${file}`] : [];
  });
}

function checkRuntime(runtime: string | undefined): 'process' | 'docker' {
  const r = runtime ?? 'process';
  if (r !== 'process' && r !== 'docker') throw new UsageError(`--runtime=${r}: docker or process`);
  return r;
}

/** The image tag the docker runtime uses (deploy/build-images.sh builds :dev). */
const imageTag = (env: NodeJS.ProcessEnv) => env.CALICO_IMAGE_TAG ?? 'dev';
export const nodeContainer = (host: string) => `calico-node-${host}`;
export const MASTER_CONTAINER = 'calico-master';

/** How long one docker CLI call of the docker runtime may take (CALICO_TOOL_TIMEOUT_MS overrides). */
const DOCKER_CLI_TIMEOUT_MS = 120_000;

/**
 * The docker CLI against the real dockerd (never the proxy), for the docker runtime, through the
 * tool runner: a dockerd that stops answering ends the call at the timeout, with the reason.
 */
export async function dockerCli(upstream: string | undefined, args: string[]): Promise<{ code: number; out: string }> {
  const r = await runTool(['docker', ...args], {
    env: { ...process.env, DOCKER_HOST: upstream ?? 'unix:///var/run/docker.sock' },
    timeoutMs: toolTimeoutMs(DOCKER_CLI_TIMEOUT_MS),
  });
  const out = `${r.stdout.toString('utf8')}${r.stderr}`;
  if (r.code !== null && !r.timedOut) return { code: r.code, out };
  return { code: r.code ?? 1, out: `${out}${r.error?.message ?? `docker ${args[0] ?? ''} failed`}` };
}

/** Whether a container of ours is running under the docker runtime. */
export async function containerRunning(upstream: string | undefined, name: string): Promise<boolean> {
  const r = await dockerCli(upstream, ['inspect', '-f', '{{.State.Running}}', name]);
  return r.code === 0 && r.out.trim() === 'true';
}

async function stopContainer(ctx: Context, upstream: string | undefined, name: string, label: string): Promise<number> {
  const r = await dockerCli(upstream, ['rm', '-f', name]);
  ctx.print(r.code === 0 ? `${label} stopped (container ${name} removed)` : `${label} is not running`);
  return 0;
}

/**
 * --runtime=docker: the same services from the images of deploy/, with host networking (and for
 * the node the host's pid namespace, privileges and the Docker socket); the restart policy
 * restarts a crashed one.
 */
async function nodeInDocker(ctx: Context, f: NodeFlags, host: string, dirs: HostDirs): Promise<number> {
  const upstream = f.docker ?? 'unix:///var/run/docker.sock';
  const name = nodeContainer(host);
  if (await containerRunning(upstream, name)) {
    ctx.print(
      `calico-node is already running on ${host} (container ${name}); "calicoctl node stop --runtime=docker" first to change it`,
    );
    return 0;
  }
  await dockerCli(upstream, ['rm', '-f', name]);
  const socket = upstream.startsWith('unix://') ? upstream.slice('unix://'.length) : '/var/run/docker.sock';
  const pl = proxyListenFlags(f);
  // A socket of its own in the state folder (mounted below): calicoctl waits for the proxy on
  // it whatever TLS the TCP listeners serve.
  const readySock = join(dirs.state, 'docker.sock');
  const args = [
    'run',
    '-d',
    '--name',
    name,
    '--net=host',
    '--pid=host',
    '--restart=unless-stopped',
    // The capabilities it uses and the host's /proc for sysctls, as in deploy/compose (not --privileged).
    '--cap-add=NET_ADMIN',
    '--cap-add=NET_RAW',
    '--cap-add=SYS_ADMIN',
    '--cap-add=SYS_PTRACE',
    '--security-opt=apparmor=unconfined',
    '--security-opt=seccomp=unconfined',
    '-v',
    '/proc:/host/proc',
    '-e',
    'CALICO_PROC_SYS=/host/proc/sys',
    '-v',
    `${socket}:/var/run/docker.sock`,
    // BIRD's files on the host, so that status (birdc) and reset reach them.
    '-v',
    `${dirs.state}:/var/lib/calico/${host}`,
    // The TLS files where the flags name them, read-only.
    ...pl.files.flatMap((file) => ['-v', `${file}:${file}:ro`]),
    ...etcdTlsDocker(ctx),
    '-e',
    `CALICO_HOSTNAME=${host}`,
    '-e',
    `CALICO_NODE_IP=${f.ip}`,
    '-e',
    `ETCD_ENDPOINTS=${ctx.etcdEndpoints}`,
    '-e',
    `CALICO_PROXY_LISTEN=${[...pl.listen, `unix:///var/lib/calico/${host}/docker.sock`].join(',')}`,
    `calico/node:${imageTag(ctx.env)}`,
    ...(f.ip6 ? [`--ip6=${f.ip6}`] : []),
    ...pl.tlsArgs,
  ];
  ctx.progress(`starting container ${name} from calico/node:${imageTag(ctx.env)}…`);
  const r = await dockerCli(upstream, args);
  if (r.code !== 0)
    throw new Error(`docker run ${name} failed: ${r.out.trim()} (build the images with deploy/build-images.sh)`);
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if ((await httpStatus({ socketPath: readySock }, '/_ping')) === 200) {
      if (ctx.flags.json)
        ctx.json({ host, container: name, docker: pl.dockerHost, dockerSocket: `unix://${readySock}` });
      else {
        ctx.print(`calico-node is running on ${host} in container ${name}`);
        ctx.print(`  Docker API: DOCKER_HOST=${pl.dockerHost} (or unix://${readySock})`);
        if (pl.tlsHint) ctx.print(`  with ${pl.tlsHint}`);
      }
      return 0;
    }
    if (!(await containerRunning(upstream, name)) && Date.now() > deadline - 80_000) {
      const logs = await dockerCli(upstream, ['logs', '--tail', '20', name]);
      throw new Error(`container ${name} stopped during start; its last log lines:\n${logs.out}`);
    }
    await new Promise((r2) => setTimeout(r2, 300));
  }
  throw new Error(`calico-node in ${name} did not answer on unix://${readySock} within 90 s; see: docker logs ${name}`);
}

const SERVICE_PACKAGES: Record<string, Parameters<typeof serviceMain>[0]> = {
  'calico-node': '@calico/node',
  'calico-bgp-config': '@calico/bgp-config',
  'calico-diags': '@calico/diags',
  'calico-master': '@calico/master',
};

/**
 * A role's supervisor and services as its pid and state files record them, each checked by
 * @calico/proc. A service entry of an older state file (a pid only) is taken for ours when its
 * command line runs that service's main script, for this host.
 */
export function inspectRole(dirs: HostDirs, role: 'node' | 'master', host: string | null): SupervisorStatus | null {
  return readSupervisor(dirs.run, role, {
    serviceMatches: (name, argv) => {
      const pkg = SERVICE_PACKAGES[name];
      return !!pkg && argv[1] === serviceMain(pkg) && (host === null || argv.includes(`--hostname=${host}`));
    },
  });
}

/** Why a process is not alive, for people: "pid 12 has exited (a zombie, not yet reaped)". */
export const whyNot = (l: Liveness): string => (l.alive ? `pid ${l.pid} is running` : l.detail);

/**
 * Before a start: the role's supervisor when it is alive and ours ("already running"), else
 * null. A recorded supervisor that is dead, a zombie or a reused pid is cleaned up first: what
 * it left running is stopped (only processes proven ours), its stale files go, one line says so.
 */
async function alreadyRunning(
  ctx: Context,
  dirs: HostDirs,
  role: 'node' | 'master',
  label: string,
  host: string | null,
): Promise<SupervisorStatus | null> {
  const sup = inspectRole(dirs, role, host);
  if (!sup) return null;
  if (sup.alive) return sup;
  const { stopped } = await cleanStale(sup, dirs.run, role);
  const left = stopped.length ? `; stopped what it left running: ${stopped.join(', ')}` : '';
  const line = `${label}: supervisor ${whyNot(sup.liveness)}; removed its stale pid and state files${left}`;
  if (ctx.flags.json) ctx.err.write(`${line}\n`);
  else ctx.print(line);
  return null;
}

/** Starts the supervisor, detached; returns its record (spawn returns once it has exec'd). */
function startSupervisor(spec: SupervisorSpec): ProcessRecord {
  mkdirSync(spec.runDir, { recursive: true });
  mkdirSync(spec.logDir, { recursive: true });
  const child = spawn(process.execPath, [calicoctlMain(), '_supervise', JSON.stringify(spec)], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return recordProcess(child.pid!) ?? { pid: child.pid! };
}

async function waitReady(
  ctx: Context,
  what: string,
  check: () => Promise<boolean>,
  supervisor: ProcessRecord,
  logFiles: string[],
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let dots = 0;
  while (Date.now() < deadline) {
    if (await check()) return;
    if (!checkProcess(supervisor).alive) break;
    if (++dots % 10 === 0) ctx.progress(`  still waiting for ${what}…`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const tails = logFiles.map((f) => {
    let t = '';
    try {
      t = readFileSync(f, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      t = '(no log)';
    }
    return `--- ${f} ---\n${t}`;
  });
  signalIfOurs(supervisor, 'SIGTERM');
  throw new Error(`${what} did not become ready; stopped it again. Last log lines:\n${tails.join('\n')}`);
}

async function stopRole(
  ctx: Context,
  dirs: HostDirs,
  role: 'node' | 'master',
  label: string,
  host: string | null,
): Promise<number> {
  const s = inspectRole(dirs, role, host);
  if (!s) {
    ctx.print(`${label} is not running`);
    return 0;
  }
  if (!s.alive) {
    // The supervisor died without stopping its services: stop them, and its daemons, here.
    const { stopped } = await cleanStale(s, dirs.run, role, { daemons: true });
    const left = stopped.length ? `; stopped what it left running: ${stopped.join(', ')}` : '';
    const why = whyNot(s.liveness);
    ctx.print(`${label} is not running (supervisor ${why}); removed its stale pid and state files${left}`);
    return 0;
  }
  signalIfOurs(s.record, 'SIGTERM');
  ctx.progress(`stopping ${label} (supervisor pid ${s.pid})…`);
  if (await waitNotAlive(s.record, 30_000)) {
    ctx.print(`${label} stopped`);
    return 0;
  }
  throw new Error(`${label} (pid ${s.pid}) did not stop within 30 s`);
}

/**
 * calicoctl node remove <HOSTNAME> [--remove-endpoints]: a host that is down goes for good
 * (CalicoClient.removeHost: refused while its liveness key exists).
 */
async function nodeRemove(ctx: Context, args: string[], removeEndpoints: boolean): Promise<number> {
  const [host] = args;
  if (host === undefined || args.length !== 1) {
    throw new UsageError('usage: calicoctl node remove <HOSTNAME> [--remove-endpoints]');
  }
  const bad = hostNameError(host);
  if (bad) throw new UsageError(bad);
  const r = await ctx.client.removeHost(host, { removeEndpoints });
  if (ctx.flags.json) ctx.json(r);
  else {
    const n = r.removed;
    const what = `${n.workloads} workload(s) with ${n.endpoints} endpoint(s), ${n.memberships} membership(s)`;
    ctx.print(`Removed host ${host}: ${what}, ${n.reservations} address reservation(s); ${n.keys} etcd key(s) in all`);
  }
  return 0;
}

/** calicoctl node --ip=… | calicoctl node stop | calicoctl node remove <HOSTNAME> */
export async function node(ctx: Context, args: string[], f: NodeFlags & ApiTlsFlags): Promise<number> {
  if (args[0] === 'remove') return nodeRemove(ctx, args.slice(1), f.removeEndpoints === true);
  const host = ctx.hostname;
  const dirs = hostDirs(host, { runDir: f.runDir, logDir: f.logDir, stateDir: f.stateDir });
  const runtime = checkRuntime(f.runtime);
  if (args[0] === 'stop') {
    const label = `calico-node on ${host}`;
    return runtime === 'docker'
      ? stopContainer(ctx, f.docker, nodeContainer(host), label)
      : stopRole(ctx, dirs, 'node', label, host);
  }
  if (args.length) {
    throw new UsageError(
      'usage: calicoctl node --ip=<IP> [--ip6=<IP6>] [--as=<AS>] … | calicoctl node stop | ' +
        'calicoctl node remove <HOSTNAME> [--remove-endpoints]',
    );
  }
  if (!f.ip || isIP(f.ip) !== 4)
    throw new UsageError("--ip=<IPv4> is required: this host's address on the management network");
  if (f.ip6 !== undefined && isIP(f.ip6) !== 6) throw new UsageError(`--ip6=${f.ip6}: not an IPv6 address`);
  if (f.as !== undefined && !/^\d+$/.test(f.as)) throw new UsageError(`--as=${f.as}: an AS number`);
  const pl = proxyListenFlags(f);
  // The diags service's https: the same flags as calicoctl master's API.
  if (runtime === 'docker' && (f.tlsCert ?? f.tlsKey ?? f.tlsCa) !== undefined) {
    throw new UsageError(
      '--tls-cert/--tls-key/--tls-ca are for the diags service, which --runtime=docker does not start',
    );
  }
  const diagsTls = apiTlsFlags(f);
  // etcd's configuration too (schemes, TLS files) stops calicoctl before anything starts.
  const etcdTlsFlags = ctx.etcdTlsFlags;
  const running = await alreadyRunning(ctx, dirs, 'node', `calico-node on ${host}`, host);
  if (running) {
    ctx.print(
      `calico-node is already running on ${host} (supervisor pid ${running.pid}); "calicoctl node stop" first to change it`,
    );
    return 0;
  }
  if (f.as !== undefined) await ctx.ds.put(bgpHostAsNumKey(host), encodeAsNum(Number(f.as)));
  if (runtime === 'docker') return nodeInDocker(ctx, f, host, dirs);
  const proxySock = join(dirs.run, 'docker.sock');
  const etcd = ctx.etcdEndpoints;
  const common = [`--hostname=${host}`, `--etcd=${etcd}`, ...etcdTlsFlags];
  const spec: SupervisorSpec = {
    role: 'node',
    runDir: dirs.run,
    logDir: dirs.log,
    services: [
      {
        name: 'calico-node',
        argv: [
          process.execPath,
          serviceMain('@calico/node'),
          ...common,
          `--ip=${f.ip}`,
          ...(f.ip6 ? [`--ip6=${f.ip6}`] : []),
          `--docker=${f.docker ?? 'unix:///var/run/docker.sock'}`,
          ...pl.listen.map((l) => `--listen=${l}`),
          `--listen=unix://${proxySock}`,
          ...pl.tlsArgs,
          `--status-file=${join(dirs.run, 'agent-status.json')}`,
        ],
      },
      {
        name: 'calico-bgp-config',
        argv: [
          process.execPath,
          serviceMain('@calico/bgp-config'),
          ...common,
          `--state-dir=${dirs.state}`,
          '--run-bird',
        ],
      },
      // Serves this host's diags to "calicoctl diags --cluster" run anywhere.
      {
        name: 'calico-diags',
        argv: [
          process.execPath,
          serviceMain('@calico/diags'),
          'serve',
          ...common,
          `--api-token-file=${ctx.apiTokenFile}`,
          `--listen=${f.ip}:7601`,
          `--run-dir=${dirs.run}`,
          `--log-dir=${dirs.log}`,
          `--state-dir=${dirs.state}`,
          `--docker=${f.docker ?? 'unix:///var/run/docker.sock'}`,
          ...diagsTls.args,
        ],
      },
    ],
    daemonPidFiles: [join(dirs.state, 'bird.pid')],
  };
  ctx.progress(`starting calico-node and bgp-config on ${host} (logs in ${dirs.log})…`);
  const sup = startSupervisor(spec);
  const proxyUp = async () => (await httpStatus({ socketPath: proxySock }, '/_ping')) === 200;
  await waitReady(ctx, 'the Docker API proxy', proxyUp, sup, [join(dirs.log, 'calico-node.log')]);
  ctx.progress('  Docker API proxy ready; waiting for BIRD…');
  const birdSock = join(dirs.state, 'bird.ctl');
  const birdUp = async () => (await runQuiet(['birdc', '-s', birdSock, 'show', 'status'])).includes('up and running');
  await waitReady(ctx, 'BIRD', birdUp, sup, [join(dirs.log, 'calico-bgp-config.log')]);
  if (ctx.flags.json) {
    const dockerSocket = `unix://${proxySock}`;
    ctx.json({ host, supervisorPid: sup.pid, docker: pl.dockerHost, dockerSocket, logs: dirs.log });
  } else {
    ctx.print(`calico-node is running on ${host}`);
    ctx.print(`  Docker API: DOCKER_HOST=${pl.dockerHost} (or unix://${proxySock})`);
    if (pl.tlsHint) ctx.print(`  with ${pl.tlsHint}`);
    ctx.print(`  logs: ${dirs.log}   stop: calicoctl node stop --hostname=${host}`);
  }
  return 0;
}

/** calicoctl master --ip=… [--gc-dead-hosts-after=<duration>] | calicoctl master stop */
export async function master(
  ctx: Context,
  args: string[],
  f: NodeFlags & ApiTlsFlags & { listen?: string; gcDeadHostsAfter?: string },
): Promise<number> {
  const dirs = hostDirs('master', { runDir: f.runDir, logDir: f.logDir, stateDir: f.stateDir });
  const runtime = checkRuntime(f.runtime);
  if (args[0] === 'stop') {
    return runtime === 'docker'
      ? stopContainer(ctx, f.docker, MASTER_CONTAINER, 'calico-master')
      : stopRole(ctx, dirs, 'master', 'calico-master', null);
  }
  if (args.length) {
    const usage = 'calicoctl master --ip=<IP> [--listen=<host:port>] [--gc-dead-hosts-after=<duration>] | master stop';
    throw new UsageError(`usage: ${usage}`);
  }
  if (!f.ip || isIP(f.ip) === 0) throw new UsageError("--ip=<IP> is required: the master's address");
  const gcFlags: string[] = [];
  if (f.gcDeadHostsAfter !== undefined) {
    // Checked here, so that a bad value is a usage error rather than a master that will not start.
    const { parseDuration, DURATION_RULE, MIN_DEAD_HOSTS_AFTER_MS } = await import('@calico/master');
    const ms = parseDuration(f.gcDeadHostsAfter);
    if (ms === undefined || (ms ?? Infinity) < MIN_DEAD_HOSTS_AFTER_MS) {
      throw new UsageError(`--gc-dead-hosts-after=${f.gcDeadHostsAfter}: ${DURATION_RULE}`);
    }
    gcFlags.push(`--gc-dead-hosts-after=${f.gcDeadHostsAfter}`);
  }
  const etcdTlsFlags = ctx.etcdTlsFlags;
  const listen = f.listen ?? (isIP(f.ip) === 6 ? `[${f.ip}]:7600` : `${f.ip}:7600`);
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(listen);
  if (!m) throw new UsageError(`--listen=${listen}: host:port`);
  const tls = apiTlsFlags(f);
  const api = `${tls.args.length ? 'https' : 'http'}://${listen}/`;
  const masterUp = () => healthzUp(new URL(api));
  const running = await alreadyRunning(ctx, dirs, 'master', 'calico-master', null);
  if (running) {
    ctx.print(`calico-master is already running (supervisor pid ${running.pid})`);
    return 0;
  }
  if (runtime === 'docker') {
    const up = f.docker;
    await dockerCli(up, ['rm', '-f', MASTER_CONTAINER]);
    const r = await dockerCli(up, [
      'run',
      '-d',
      '--name',
      MASTER_CONTAINER,
      '--net=host',
      '--restart=unless-stopped',
      // The token's folder, so that the master makes (or reads) the host's own token file.
      '-v',
      `${dirname(ctx.apiTokenFile)}:${dirname(ctx.apiTokenFile)}`,
      ...etcdTlsDocker(ctx),
      ...tls.files.flatMap((file) => ['-v', `${file}:${file}:ro`]),
      `calico/master:${imageTag(ctx.env)}`,
      `--ip=${f.ip}`,
      `--listen=${listen}`,
      `--etcd=${ctx.etcdEndpoints}`,
      `--api-token-file=${ctx.apiTokenFile}`,
      ...gcFlags,
      ...tls.args,
    ]);
    if (r.code !== 0)
      throw new Error(
        `docker run ${MASTER_CONTAINER} failed: ${r.out.trim()} (build the images with deploy/build-images.sh)`,
      );
    for (let i = 0; i < 300; i++) {
      if (await masterUp()) {
        ctx.print(`calico-master is running in container ${MASTER_CONTAINER}: API ${api}`);
        return 0;
      }
      await new Promise((r2) => setTimeout(r2, 200));
    }
    throw new Error(`calico-master did not answer on ${listen}; see: docker logs ${MASTER_CONTAINER}`);
  }
  const spec: SupervisorSpec = {
    role: 'master',
    runDir: dirs.run,
    logDir: dirs.log,
    services: [
      {
        name: 'calico-master',
        argv: [
          process.execPath,
          serviceMain('@calico/master'),
          `--ip=${f.ip}`,
          `--listen=${listen}`,
          `--etcd=${ctx.etcdEndpoints}`,
          ...etcdTlsFlags,
          `--api-token-file=${ctx.apiTokenFile}`,
          ...gcFlags,
          ...tls.args,
        ],
      },
    ],
    daemonPidFiles: [],
  };
  ctx.progress(`starting calico-master (logs in ${dirs.log})…`);
  const sup = startSupervisor(spec);
  await waitReady(ctx, 'calico-master', masterUp, sup, [join(dirs.log, 'calico-master.log')]);
  if (ctx.flags.json) ctx.json({ supervisorPid: sup.pid, api, logs: dirs.log });
  else ctx.print(`calico-master is running: API ${api} , logs in ${dirs.log}`);
  return 0;
}

/** stdout and stderr of a host tool ('' when it is missing); a hung tool is killed after 30 s. */
export async function runQuiet(argv: string[]): Promise<string> {
  const r = await runTool(argv, { timeoutMs: toolTimeoutMs(30_000) });
  return r.error?.kind === 'not-started' ? '' : r.stdout.toString('utf8') + r.stderr;
}
