import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError, table, type Context } from '../context.js';
import { hostDirs } from '../paths.js';
import type { HostInfo, Notice } from '@calico/client';
import { apiCall, hasClientCertificate } from '@calico/datastore';
import { containerRunning, inspectRole, nodeContainer, runQuiet, whyNot } from './services.js';
import type { NodeFlags } from './services.js';

export interface BgpSession {
  peer: string;
  type: string;
  state: string;
  since: string;
  info: string;
}

/** Reads `birdc show protocols`: one line per protocol; BGP ones are our sessions. */
export function parseBirdProtocols(text: string): BgpSession[] {
  const types: Record<string, string> = {
    Mesh: 'mesh',
    Global: 'global',
    Node: 'node',
    RR: 'reflector',
    RRClient: 'rr-client',
  };
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c[1] === 'BGP')
    .map((c) => {
      const [name = '', , , state = '', since = '', ...info] = c;
      const [prefix = '', ...rest] = name.split('_');
      const peer = rest.length === 4 ? rest.join('.') : rest.join(':').replace(/::+/g, '::');
      return { peer, type: types[prefix] ?? prefix, state, since, info: info.join(' ') };
    });
}

/** Where the node's proxy listens, as its status file says. */
interface ProxyView {
  listen: string[];
  tls: string;
  /** TCP listeners off loopback without --tlsverify, there by --insecure-listen. */
  insecureListen: string[];
}

/** What the node's agent last wrote of itself (every few seconds): its sync state, metrics URL and listeners. */
function agentView(file: string): { policy: string; metrics: string | null; proxy: ProxyView | null } {
  let doc: {
    writtenAt?: string;
    metricsUrl?: string | null;
    programmed?: boolean;
    datastore?: { status?: string };
    proxy?: ProxyView;
  };
  try {
    doc = JSON.parse(readFileSync(file, 'utf8')) as typeof doc;
  } catch {
    return { policy: `unknown (no agent status in ${file} yet)`, metrics: null, proxy: null };
  }
  const sync =
    doc.datastore?.status === 'in-sync'
      ? 'in sync with etcd'
      : `not in sync with etcd (${doc.datastore?.status ?? 'unknown'})`;
  const kernel = doc.programmed ? 'programmed in the kernel' : 'not yet programmed in the kernel';
  const policy = `${sync}, ${kernel} (as of ${doc.writtenAt ?? '?'})`;
  return { policy, metrics: doc.metricsUrl ?? null, proxy: doc.proxy ?? null };
}

export async function status(ctx: Context, args: string[], f: NodeFlags): Promise<number> {
  if (args.length) throw new UsageError('usage: calicoctl status [--hostname=<NAME>]');
  const host = ctx.hostname;
  const apiTls = ctx.apiTls();
  const dirs = hostDirs(host, { runDir: f.runDir, logDir: f.logDir, stateDir: f.stateDir });
  // Running means the recorded supervisor is alive and is the process calicoctl started: a
  // zombie or a reused pid is "not running" (see @calico/proc).
  const sup = inspectRole(dirs, 'node', host);
  const inDocker = !sup?.alive && (await containerRunning(f.docker, nodeContainer(host)));
  const running = !!sup?.alive || inDocker;
  const reason = running ? null : sup ? `supervisor ${whyNot(sup.liveness)}` : `no supervisor recorded in ${dirs.run}`;
  const services = Object.entries(sup?.state?.services ?? {}).map(([name, s]) => {
    const l = sup?.services.find((x) => x.name === name)?.liveness;
    const state = l?.alive ? 'running' : l ? `not running: ${whyNot(l)}` : 'not running';
    return { name, pid: l?.alive ? s.pid : null, restarts: s.restarts, state };
  });
  const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
  const leftRunning = running ? [] : services.filter((s) => s.pid !== null).sort(byName);
  const bgp = running
    ? parseBirdProtocols(await runQuiet(['birdc', '-s', join(dirs.state, 'bird.ctl'), 'show', 'protocols']))
    : [];
  let etcd = 'reachable';
  let endpoints: { container: string; name: string | null; addrs: string; state: string | null }[] = [];
  let masterState = 'unknown';
  let problems: { key: string; errors: string[] }[] = [];
  let hosts: (HostInfo & { downSince: string | null })[] = [];
  let notices: Notice[] = [];
  try {
    const v = await ctx.client.view();
    notices = v.notices;
    // Since when a host is down, only the master knows (it watched the liveness key go).
    type MasterHosts = { hosts?: { name: string; downSince?: string | null }[] } | undefined;
    const hostsUrl = v.masterApiUrl ? new URL('v1/hosts', v.masterApiUrl) : undefined;
    let token: string | undefined;
    let tokenError: string | undefined;
    try {
      if (hostsUrl) token = ctx.apiToken();
    } catch (e) {
      tokenError = (e as Error).message;
    }
    // A client certificate (--api-cert) authenticates to an https master without the token.
    const canAsk = token !== undefined || (hasClientCertificate(apiTls) && hostsUrl?.protocol === 'https:');
    let refused: string | undefined;
    let fromMaster: MasterHosts;
    if (hostsUrl && canAsk) {
      const r = await apiCall(hostsUrl, { token, tls: apiTls, timeoutMs: 2_000 }).catch(() => undefined);
      if (r?.status === 200) fromMaster = JSON.parse(r.body) as MasterHosts;
      else if (r?.status === 401) {
        refused = (JSON.parse(r.body) as { error?: { message?: string } }).error?.message ?? '401';
      }
    }
    const downSince = new Map((fromMaster?.hosts ?? []).map((h) => [h.name, h.downSince ?? null]));
    hosts = v.hosts.map((h) => ({ ...h, downSince: h.state === 'down' ? (downSince.get(h.name) ?? null) : null }));
    endpoints = v.workloads
      .filter((w) => w.host === host)
      .flatMap((w) =>
        w.endpoints.map((e) => ({
          container: w.containerId.slice(0, 12),
          name: w.name,
          addrs: e.addrs.join(','),
          state: e.state,
        })),
      );
    problems = v.problems;
    if (v.masterApiUrl) {
      const url = v.masterApiUrl;
      const health = await apiCall(new URL('healthz', url), { tls: apiTls, timeoutMs: 2_000 }).then(
        (r) => ({ status: r.status, error: undefined }),
        (e: unknown) => ({ status: 0, error: (e as Error).message }),
      );
      const why = health.error ? ` (${health.error})` : '';
      masterState = health.status === 200 ? `reachable at ${url}` : `not answering at ${url}${why}`;
      // Without the token (or a certificate) the master answers /healthz only: say why down times are unknown.
      if (!canAsk) masterState += `; its API is not asked (${tokenError ?? 'no token and no client certificate'})`;
      else if (refused) masterState += `; its API refused calicoctl (${refused})`;
    } else masterState = 'not started (no /calico/master/api_url)';
  } catch (e) {
    etcd = `unreachable: ${(e as Error).message}`;
  }
  const agent = running ? agentView(join(dirs.run, 'agent-status.json')) : null;
  const me = hosts.find((h) => h.name === host);
  if (ctx.flags.json) {
    const node = running ? 'running' : 'not running';
    const state = me?.state ?? null;
    const policy = agent?.policy ?? null;
    const metrics = agent?.metrics ?? null;
    const proxy = agent?.proxy ?? null;
    ctx.json({
      host,
      node,
      reason,
      state,
      services,
      bgp,
      endpoints,
      etcd,
      master: masterState,
      policy,
      metrics,
      proxy,
      hosts,
      problems,
      notices,
    });
  } else {
    const how = inDocker
      ? `running (container ${nodeContainer(host)})`
      : running
        ? `running (supervisor pid ${sup!.pid})`
        : `NOT running (${reason})`;
    ctx.print(`host ${host}: calico-node ${how}`);
    if (me?.state === 'down') ctx.print(`  the cluster sees ${host} DOWN (no liveness key); all it holds is kept`);
    if (leftRunning.length) {
      const left = leftRunning.map((s) => `${s.name} (pid ${s.pid})`).join(', ');
      ctx.print(`  left running by the dead supervisor: ${left}; "calicoctl node" stops them and starts afresh`);
    }
    if (services.length) {
      const rows = services.map((s) => [s.name, String(s.pid ?? '-'), String(s.restarts), s.state]);
      ctx.print(table(['SERVICE', 'PID', 'RESTARTS', 'STATE'], rows));
    }
    ctx.print('');
    ctx.print(
      bgp.length
        ? table(
            ['PEER', 'TYPE', 'STATE', 'SINCE', 'INFO'],
            bgp.map((b) => [b.peer, b.type, b.state, b.since, b.info]),
          )
        : 'BGP: no sessions',
    );
    ctx.print('');
    ctx.print(
      endpoints.length
        ? table(
            ['CONTAINER', 'NAME', 'ADDRESSES', 'STATE'],
            endpoints.map((e) => [e.container, e.name ?? '-', e.addrs, e.state ?? '-']),
          )
        : 'No endpoints on this host',
    );
    ctx.print('');
    if (hosts.length) {
      const since = (h: (typeof hosts)[number]) =>
        h.state === 'up' ? (h.since ?? '-') : (h.downSince ?? 'unknown (the master did not see it go)');
      const state = (h: (typeof hosts)[number]) => (h.state === 'up' ? 'up' : 'DOWN');
      const rows = hosts.map((h) => [h.name, state(h), since(h), String(h.workloads), String(h.reservations)]);
      ctx.print(table(['HOST', 'STATE', 'SINCE', 'WORKLOADS', 'RESERVATIONS'], rows));
      const down = hosts.filter((h) => h.state === 'down').map((h) => h.name);
      if (down.length) {
        ctx.print(`${down.length} host(s) DOWN keep their workloads, memberships and addresses until back or removed:`);
        ctx.print('  calicoctl node remove <HOSTNAME> --remove-endpoints');
      }
      ctx.print('');
    }
    const orphans = notices.filter((n) => n.kind === 'member-without-endpoint');
    if (orphans.length) {
      ctx.print(`${orphans.length} membership(s) name an endpoint that exists on no host (kept):`);
      for (const n of orphans.slice(0, 10)) ctx.print(`  ${n.key}`);
      if (orphans.length > 10) ctx.print(`  … and ${orphans.length - 10} more (status --json lists them all)`);
      ctx.print('');
    }
    ctx.print(`etcd: ${etcd}`);
    ctx.print(`master: ${masterState}`);
    if (agent) ctx.print(`policy: ${agent.policy}\nmetrics: ${agent.metrics ?? 'not served (--metrics-listen=none)'}`);
    if (agent?.proxy) ctx.print(`proxy: ${agent.proxy.listen.join(', ')} (TLS on TCP: ${agent.proxy.tls})`);
    for (const l of agent?.proxy?.insecureListen ?? []) {
      const why = `has no --tlsverify (--insecure-listen): anyone who reaches it is root on ${host}`;
      ctx.print(`insecure listen: ${l} ${why}`);
    }
    if (problems.length) {
      ctx.print(`\n${problems.length} invalid key(s) in etcd (ignored by every service):`);
      for (const p of problems) ctx.print(`  ${p.errors.join('; ')}`);
    }
  }
  return running ? 0 : 1;
}
