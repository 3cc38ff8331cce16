import { calicoRoot, parseKey } from '@calico/keyspace';
import type { DevCluster, DevHost } from '@calico/devcluster';
import { HOST_IF_PREFIX } from '@calico/node';

/** What a host's kernel holds of ours: the figures a leak would change. */
export interface HostCounts {
  /** Workload veths (host side, cali…). */
  veths: number;
  routes4: number;
  /** IPv6 routes other than link-local and multicast ones. */
  routes6: number;
  /** Our chains (cali…) in the filter and raw tables of both families. */
  chains: number;
  /** Of those, the per-workload ones (cali-fw-…, cali-tw-…). */
  workloadChains: number;
  /** Rules in those chains. */
  rules: number;
  /** Group ipsets (cali4g-, cali6g-) and their members; the control plane's sets do not move with workloads. */
  ipsets: number;
  ipsetMembers: number;
}

export async function hostCounts(host: DevHost): Promise<HostCounts> {
  const ns = host.ns;
  const links = await ns.execOk(['ip', '-o', 'link', 'show']);
  const veths = links.split('\n').filter((l) => new RegExp(`^\\d+: ${HOST_IF_PREFIX}[0-9a-f]{11}@`).test(l)).length;
  const lines = (t: string) => t.split('\n').filter((l) => l.trim() !== '');
  const routes4 = lines(await ns.execOk(['ip', '-4', 'route', 'show', 'table', 'all'])).length;
  // Link-local and multicast routes come and go with each interface's IPv6 (eth0's settles a
  // moment after the host is made; a veth's come with it): counted by the veths already.
  const routes6 = lines(await ns.execOk(['ip', '-6', 'route', 'show', 'table', 'all'])).filter(
    (l) => !/^(local |multicast |anycast )?f[ef][0-9a-f]{2}:/.test(l),
  ).length;
  let chains = 0;
  let workloadChains = 0;
  let rules = 0;
  for (const tool of ['iptables-save', 'ip6tables-save']) {
    for (const table of ['filter', 'raw']) {
      const text = await ns.execOk([tool, '-t', table]);
      chains += text.split('\n').filter((l) => l.startsWith(':cali')).length;
      workloadChains += text.split('\n').filter((l) => /^:cali-[ft]w-/.test(l)).length;
      rules += text.split('\n').filter((l) => l.startsWith('-A cali')).length;
    }
  }
  const listed = (await ns.execOk(['ipset', 'list', '-t'])).split(/\n(?=Name: )/);
  const sets = listed.filter((b) => /^Name: cali[46]g-/.test(b));
  const ipsetMembers = sets.reduce((n, b) => n + Number(/Number of entries: (\d+)/.exec(b)?.[1] ?? NaN), 0);
  return { veths, routes4, routes6, chains, workloadChains, rules, ipsets: sets.length, ipsetMembers };
}

/** Keys under /calico by kind (endpointState, ipAssignment, groupMember, …). */
export async function keyCounts(cluster: DevCluster): Promise<Record<string, number>> {
  const { kvs } = await cluster.ds.getPrefix(calicoRoot);
  const out: Record<string, number> = {};
  for (const kv of kvs) {
    const kind = parseKey(kv.key).kind;
    out[kind] = (out[kind] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

/** A container as dockerd has it (straight, not through a proxy). */
export interface ContainerState {
  id: string;
  name: string;
  running: boolean;
  pid: number;
  status: string;
  labels: Record<string, string>;
}

/** Every container whose name starts with prefix, inspected in one call. */
export async function containersNamed(cluster: DevCluster, prefix: string): Promise<ContainerState[]> {
  const ids = (await cluster.dockerd.dockerOk(['ps', '-aq', '--no-trunc', '--filter', `name=^/${prefix}`]))
    .split('\n')
    .filter(Boolean);
  if (ids.length === 0) return [];
  const out: ContainerState[] = [];
  // Inspect in chunks: a long argv is fine, a long answer is too.
  for (let i = 0; i < ids.length; i += 100) {
    const docs = JSON.parse(await cluster.dockerd.dockerOk(['inspect', ...ids.slice(i, i + 100)])) as {
      Id: string;
      Name: string;
      State: { Running: boolean; Pid: number; Status: string };
      Config: { Labels: Record<string, string> | null };
    }[];
    for (const d of docs) {
      out.push({
        id: d.Id,
        name: d.Name.replace(/^\//, ''),
        running: d.State.Running,
        pid: d.State.Pid,
        status: d.State.Status,
        labels: d.Config.Labels ?? {},
      });
    }
  }
  return out;
}

/** Runs fn over items with at most `width` at once, in order of start; returns results in item order. */
export async function pool<T, R>(
  items: readonly T[],
  width: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i] as T, i);
    }),
  );
  return out;
}
