import { join } from 'node:path';
import { UsageError, table, type Context } from '../context.js';
import { hostDirs } from '../paths.js';
import { readSupervisor } from '../supervisor.js';
import { containerRunning, httpStatus, nodeContainer, runQuiet, type NodeFlags } from './services.js';

export interface BgpSession {
  peer: string;
  type: string;
  state: string;
  since: string;
  info: string;
}

/** Reads `birdc show protocols`: one line per protocol; BGP ones are our sessions. */
export function parseBirdProtocols(text: string): BgpSession[] {
  const types: Record<string, string> = { Mesh: 'mesh', Global: 'global', Node: 'node', RR: 'reflector', RRClient: 'rr-client' };
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

export async function status(ctx: Context, args: string[], f: NodeFlags): Promise<number> {
  if (args.length) throw new UsageError('usage: calicoctl status [--hostname=<NAME>]');
  const host = ctx.hostname;
  const dirs = hostDirs(host, { runDir: f.runDir, logDir: f.logDir, stateDir: f.stateDir });
  const sup = readSupervisor(dirs.run, 'node');
  const inDocker = !sup?.alive && (await containerRunning(f.docker, nodeContainer(host)));
  const running = !!sup?.alive || inDocker;
  const services = Object.entries(sup?.state?.services ?? {}).map(([name, s]) => ({ name, pid: running ? s.pid : null, restarts: s.restarts }));
  const bgp = running ? parseBirdProtocols(await runQuiet(['birdc', '-s', join(dirs.state, 'bird.ctl'), 'show', 'protocols'])) : [];
  let etcd = 'reachable';
  let endpoints: { container: string; name: string | null; addrs: string; state: string | null }[] = [];
  let masterState = 'unknown';
  let problems: { key: string; errors: string[] }[] = [];
  try {
    const v = await ctx.client.view();
    endpoints = v.workloads
      .filter((w) => w.host === host)
      .flatMap((w) => w.endpoints.map((e) => ({ container: w.containerId.slice(0, 12), name: w.name, addrs: e.addrs.join(','), state: e.state })));
    problems = v.problems;
    if (v.masterApiUrl) {
      const u = new URL('healthz', v.masterApiUrl);
      masterState = (await httpStatus({ host: u.hostname, port: Number(u.port) || 80 }, u.pathname)) === 200 ? `reachable at ${v.masterApiUrl}` : `not answering at ${v.masterApiUrl}`;
    } else masterState = 'not started (no /calico/master/api_url)';
  } catch (e) {
    etcd = `unreachable: ${(e as Error).message}`;
  }
  if (ctx.flags.json) {
    ctx.json({ host, node: running ? 'running' : 'not running', services, bgp, endpoints, etcd, master: masterState, problems });
  } else {
    ctx.print(`host ${host}: calico-node ${inDocker ? `running (container ${nodeContainer(host)})` : running ? `running (supervisor pid ${sup!.pid})` : 'NOT running'}`);
    if (services.length) ctx.print(table(['SERVICE', 'PID', 'RESTARTS'], services.map((s) => [s.name, String(s.pid ?? '-'), String(s.restarts)])));
    ctx.print('');
    ctx.print(bgp.length ? table(['PEER', 'TYPE', 'STATE', 'SINCE', 'INFO'], bgp.map((b) => [b.peer, b.type, b.state, b.since, b.info])) : 'BGP: no sessions');
    ctx.print('');
    ctx.print(endpoints.length ? table(['CONTAINER', 'NAME', 'ADDRESSES', 'STATE'], endpoints.map((e) => [e.container, e.name ?? '-', e.addrs, e.state ?? '-'])) : 'No endpoints on this host');
    ctx.print('');
    ctx.print(`etcd: ${etcd}`);
    ctx.print(`master: ${masterState}`);
    if (problems.length) {
      ctx.print(`\n${problems.length} invalid key(s) in etcd (ignored by every service):`);
      for (const p of problems) ctx.print(`  ${p.errors.join('; ')}`);
    }
  }
  return running ? 0 : 1;
}
