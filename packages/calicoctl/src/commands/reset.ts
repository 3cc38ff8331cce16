import { readdir, rm, readFile, realpath } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { hostPrefix, bgpHostPrefix, groupMemberKey, ipAssignmentKey } from '@calico/keyspace';
import { UsageError, type Context } from '../context.js';
import { hostDirs } from '../paths.js';
import { cmdlineNamesFile, runToolOk, signalIfOurs, stopProcess, toolTimeoutMs, waitNotAlive } from '@calico/proc';
import { cleanStale } from '../supervisor.js';
import { containerRunning, dockerCli, inspectRole, nodeContainer, runQuiet, type NodeFlags } from './services.js';

interface Removed {
  services: number;
  interfaces: number;
  routes: number;
  chains: number;
  ipsets: number;
  files: number;
  keys: number;
}

/** Removes our chains, hooks and ipsets from this namespace's kernel. */
async function resetFirewall(removed: Removed): Promise<void> {
  for (const [save, restore] of [
    ['iptables-save', 'iptables-restore'],
    ['ip6tables-save', 'ip6tables-restore'],
  ] as const) {
    for (const t of ['filter', 'raw'] as const) {
      const text = await runQuiet([save, '-t', t]);
      const chains = text
        .split('\n')
        .filter((l) => l.startsWith(':cali'))
        .map((l) => l.slice(1).split(' ')[0]!);
      const hooks = text
        .split('\n')
        .filter((l) => /^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) .*-j cali-/.test(l))
        .map((l) => l.replace(/^-A /, '-D '));
      if (!chains.length && !hooks.length) continue;
      const script = [
        `*${t}`,
        ...chains.map((c) => `:${c} - [0:0]`),
        ...hooks,
        ...chains.map((c) => `-X ${c}`),
        'COMMIT',
        '',
      ].join('\n');
      await runToolOk([restore, '--noflush', '-w', '5'], { input: script, timeoutMs: toolTimeoutMs(30_000) });
      removed.chains += chains.length;
    }
  }
  const sets = (await runQuiet(['ipset', 'list', '-n'])).split('\n').filter((n) => n.startsWith('cali'));
  for (const s of sets) await runQuiet(['ipset', 'destroy', s]);
  removed.ipsets += sets.length;
}

/**
 * Why reset must not remove dir, or undefined. It removes whole directories, so the last step of
 * the path must not be a link leading elsewhere (the ones above it may be: /var/run is one on
 * Debian), and what it resolves to must sit at least three levels below the root
 * (`/run/calico/<host>`, or a directory given by flag).
 */
export async function notRemovable(dir: string): Promise<string | undefined> {
  const abs = resolve(dir);
  let real: string;
  let parent: string;
  try {
    [real, parent] = await Promise.all([realpath(abs), realpath(dirname(abs))]);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  if (real !== join(parent, basename(abs)))
    return `${dir} resolves to ${real}; reset removes only a host's own directory, not what a link leads to`;
  if (real.split(sep).filter(Boolean).length < 3) return `${dir} is too near the root to be a host's own directory`;
  return undefined;
}

/**
 * calicoctl reset: everything Calico made on this host goes. The node's services stop, then
 * workload veths, BGP routes, chains, ipsets, BIRD's files, and this host's keys in etcd (its
 * directory, its BGP settings, the addresses it held and its endpoints' memberships).
 * Containers stay; they lose their Calico network. Safe to run twice.
 */
export async function reset(ctx: Context, args: string[], f: NodeFlags): Promise<number> {
  if (args.length) throw new UsageError('usage: calicoctl reset [--hostname=<NAME>]');
  const host = ctx.hostname;
  const dirs = hostDirs(host, { runDir: f.runDir, logDir: f.logDir, stateDir: f.stateDir });
  // Checked before anything is stopped or removed.
  for (const d of [dirs.state, dirs.run]) {
    const why = await notRemovable(d);
    if (why !== undefined) throw new Error(`reset of ${host} refused, nothing was changed: ${why}`);
  }
  const removed: Removed = { services: 0, interfaces: 0, routes: 0, chains: 0, ipsets: 0, files: 0, keys: 0 };

  const sup = inspectRole(dirs, 'node', host);
  if (sup?.alive) {
    ctx.progress(`stopping calico-node on ${host}…`);
    if (signalIfOurs(sup.record, 'SIGTERM')) await waitNotAlive(sup.record, 30_000);
    removed.services++;
  } else if (sup) {
    // A dead supervisor's services that are still running (BIRD follows below).
    removed.services += (await cleanStale(sup, dirs.run, 'node')).stopped.length;
  }
  if (await containerRunning(f.docker, nodeContainer(host))) {
    ctx.progress(`removing container ${nodeContainer(host)}…`);
    await dockerCli(f.docker, ['rm', '-f', nodeContainer(host)]);
    removed.services++;
  }
  const birdPidFile = `${dirs.state}/bird.pid`;
  const birdPid = Number((await readFile(birdPidFile, 'utf8').catch(() => '')).trim());
  if (birdPid) {
    const r = await stopProcess({ pid: birdPid }, { cmdlineMatches: cmdlineNamesFile(birdPidFile) });
    if (r !== 'not-running') removed.services++;
  }

  ctx.progress('removing workload interfaces, routes, chains and ipsets…');
  const ifs = (await readdir('/sys/class/net')).filter((n) => n.startsWith('cali'));
  for (const i of ifs) await runQuiet(['ip', 'link', 'del', i]);
  removed.interfaces = ifs.length;
  for (const fam of ['-4', '-6']) {
    const routes = (await runQuiet(['ip', fam, 'route', 'show', 'proto', 'bird'])).split('\n').filter(Boolean);
    if (routes.length) await runQuiet(['ip', fam, 'route', 'flush', 'proto', 'bird']);
    removed.routes += routes.length;
  }
  await resetFirewall(removed);

  for (const d of [dirs.state, dirs.run]) {
    const files = await readdir(d).catch(() => [] as string[]);
    removed.files += files.length;
    await rm(d, { recursive: true, force: true });
  }

  ctx.progress(`removing ${host}'s keys from etcd…`);
  const v = await ctx.client.view();
  const mine = v.workloads.filter((w) => w.host === host);
  const ops: { delete: string }[] = [];
  for (const w of mine)
    for (const e of w.endpoints) for (const g of e.groups) ops.push({ delete: groupMemberKey(g, e.endpointId) });
  for (const [addr, holder] of v.assignments) if (holder.host === host) ops.push({ delete: ipAssignmentKey(addr) });
  if (ops.length) await ctx.ds.batch(ops);
  removed.keys += ops.length;
  removed.keys += await ctx.ds.deleteDir(hostPrefix(host));
  removed.keys += await ctx.ds.deleteDir(bgpHostPrefix(host));

  if (ctx.flags.json) ctx.json({ host, removed });
  else {
    const r = removed;
    ctx.print(
      `reset ${host}: removed ${r.services} service(s), ${r.interfaces} interface(s), ${r.routes} route(s), ${r.chains} chain(s), ${r.ipsets} ipset(s), ${r.files} file(s), ${r.keys} etcd key(s)`,
    );
  }
  return 0;
}
