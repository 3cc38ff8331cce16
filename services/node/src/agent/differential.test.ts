/**
 * One meaning of a rule: for random clusters and random connections, explain() and the kernel
 * the agents program (FakeKernels, walked rule by rule) must give the same verdict. A
 * connection crosses the sender's host and, when the receiver lives elsewhere, the receiver's.
 * The same walks over deliberately broken kernels must find a difference, or this test could
 * not fail.
 */
import type { SyncBatch } from '@calico/datastore';
import { birdIpKey, diagsUrlKey, masterApiUrlKey } from '@calico/keyspace';
import { createLogger } from '@calico/log';
import {
  ControlPlaneKeys,
  OUTSIDE,
  controlPlaneTargets,
  explain,
  policyFixtures,
  randomCluster,
  randomConnections,
  type ControlPlaneTarget,
  type KeyValue,
  type RandomCluster,
  type RandomConnection,
} from '@calico/policy';
import { afterEach, describe, expect, it } from 'vitest';
import { hostIfName } from '../plumber/names.js';
import { PolicyAgent } from './agent.js';
import { FakeKernel } from './fakeKernel.js';
import type { Family } from './kernel.js';
import { walkForward, type WalkPacket, type WalkTables } from './packetWalk.js';

const logger = createLogger({ name: 'differential', level: 'silent' });
const CLUSTERS = 200;
const CONNECTIONS = 25;
const PROTOCOL: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132, udplite: 136, '47': 47 };
/** The host side of the fabric: what packets to and from other hosts cross. */
const FABRIC_IF = 'eth0';

const agents: PolicyAgent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
});

function tablesOf(kernel: FakeKernel): WalkTables {
  return {
    rules: (family, table, chain) => kernel.rules(family, table, chain),
    policy: (family, table, chain) => kernel.chainPolicy(family, table, chain),
    setHas: (name, addr) => {
      const members = kernel.setMembers(name);
      if (members === undefined) throw new Error(`a rule names ipset ${name}, which does not exist`);
      return members.includes(addr);
    },
  };
}

/**
 * Where the control plane is in a random cluster: etcd, the master API, a diags service and
 * BGP on addresses the connections use (the outside address, endpoints' addresses: etcd may
 * run in a container) and on the ports they use, so that drops, exemptions and misses all occur.
 */
interface ClusterControlPlane {
  keys: KeyValue[];
  etcdEndpoints: string[];
  targets: ControlPlaneTarget[];
}

function controlPlaneOf(cluster: RandomCluster): ClusterControlPlane {
  const dice = policyFixtures.random(cluster.seed * 31 + 7);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(dice() * xs.length)] as T;
  const ports = [80, 443, 5000, 8080];
  const v4 = cluster.endpoints.flatMap((e) => e.v4);
  const v6 = cluster.endpoints.flatMap((e) => e.v6);
  const url = (addr: string, port: number) => `http://${addr.includes(':') ? `[${addr}]` : addr}:${port}/`;
  const etcdEndpoints = [url(OUTSIDE[4], pick(ports)), ...(v6.length > 0 ? [url(pick(v6), pick(ports))] : [])];
  const keys: KeyValue[] = cluster.hosts.map((h, i) => ({ key: birdIpKey(h), value: `198.18.0.${11 + i}` }));
  if (v4.length > 0) keys.push({ key: masterApiUrlKey(), value: url(pick(v4), pick(ports)) });
  keys.push({ key: diagsUrlKey(pick(cluster.hosts)), value: url(pick([OUTSIDE[6], ...v4, ...v6]), pick(ports)) });
  const holder = new ControlPlaneKeys();
  for (const kv of keys) holder.apply({ type: 'put', ...kv });
  return { keys, etcdEndpoints, targets: controlPlaneTargets(holder.input(etcdEndpoints)) };
}

/**
 * The random connections, and one to each control-plane target from an endpoint of its family
 * (few random ones hit a target's port exactly), then the same from an endpoint whose outbound
 * rules name the target's address, when one has such a rule.
 */
function connectionsOf(cluster: RandomCluster, targets: readonly ControlPlaneTarget[], seed: number) {
  const out: RandomConnection[] = randomConnections(cluster, CONNECTIONS, seed * 7919);
  const dice = policyFixtures.random(seed * 13 + 5);
  for (const t of targets) {
    const own = (e: RandomCluster['endpoints'][number]) => (t.family === 4 ? e.v4 : e.v6);
    const from = cluster.endpoints.filter((e) => own(e).length > 0 && !own(e).includes(t.addr));
    const named = `${t.addr}/${t.family === 4 ? 32 : 128}`;
    const naming = from.filter((e) =>
      cluster.groups.some((g) => g.members.includes(e.endpointId) && g.outbound.some((r) => r.cidr === named)),
    );
    for (const pool of [from, naming]) {
      if (pool.length === 0) continue;
      const e = pool[Math.floor(dice() * pool.length)]!;
      out.push({ src: own(e)[0]!, dst: t.addr, family: t.family, protocol: 'tcp', port: t.port });
    }
  }
  return out;
}

/** Every host of the cluster programmed by its own agent from the whole keyspace. */
async function programHosts(cluster: RandomCluster, newKernel: () => FakeKernel): Promise<Map<string, FakeKernel>> {
  const kernels = new Map<string, FakeKernel>();
  const cp = controlPlaneOf(cluster);
  const keys = [...cluster.keys, ...cp.keys];
  const updates = policyFixtures.puts(keys).map((u) => ({ ...u, revision: 1 }));
  const snapshot: SyncBatch = { kind: 'snapshot', revision: 1, updates };
  for (const host of cluster.hosts) {
    const kernel = newKernel();
    const agent = new PolicyAgent({ host, kernel, logger, etcdEndpoints: cp.etcdEndpoints });
    agents.push(agent);
    agent.handleBatch(snapshot);
    agent.handleStatus('in-sync', 'test');
    await agent.idle();
    expect(agent.status().lastError, `agent of ${host} (seed ${cluster.seed})`).toBeNull();
    kernels.set(host, kernel);
  }
  return kernels;
}

interface Walked {
  allowed: boolean;
  trace: string[];
}

/** What the programmed kernels do with the first packet of a connection. */
function kernelVerdict(cluster: RandomCluster, kernels: Map<string, FakeKernel>, c: RandomConnection): Walked {
  const owner = (addr: string) => cluster.endpoints.find((e) => e.v4.includes(addr) || e.v6.includes(addr));
  const src = owner(c.src);
  const dst = owner(c.dst);
  const packet = (inIf: string, outIf: string): WalkPacket => ({
    family: c.family,
    src: c.src,
    dst: c.dst,
    protocol: PROTOCOL[c.protocol]!,
    dport: c.port,
    sport: c.port === null ? null : 40_000,
    inIf,
    outIf,
    srcMac: src && inIf !== FABRIC_IF ? src.mac : null,
    reversePathOk: true,
    ctState: 'NEW',
  });
  const trace: string[] = [];
  const hop = (host: string, p: WalkPacket): boolean => {
    const r = walkForward(tablesOf(kernels.get(host)!), p);
    trace.push(`-- ${host} (in ${p.inIf}, out ${p.outIf})`, ...r.trace);
    return r.accepted;
  };
  let allowed = true;
  if (src) {
    const sameHost = dst !== undefined && dst.host === src.host;
    allowed = hop(src.host, packet(hostIfName(src.endpointId), sameHost ? hostIfName(dst.endpointId) : FABRIC_IF));
  }
  if (allowed && dst && dst.host !== src?.host) allowed = hop(dst.host, packet(FABRIC_IF, hostIfName(dst.endpointId)));
  return { allowed, trace };
}

interface Mismatch {
  seed: number;
  connection: RandomConnection;
  explain: string;
  kernel: Walked;
}

/** Runs `clusters` random clusters; returns the connections where explain() and the kernels disagree. */
async function differences(opts: {
  from: number;
  clusters: number;
  newKernel?: () => FakeKernel;
  stopAtFirst?: boolean;
}): Promise<{ cases: number; mismatches: Mismatch[] }> {
  let cases = 0;
  const mismatches: Mismatch[] = [];
  for (let seed = opts.from; seed < opts.from + opts.clusters; seed++) {
    const cluster = randomCluster(seed);
    const model = policyFixtures.model(cluster.keys);
    const kernels = await programHosts(cluster, opts.newKernel ?? (() => new FakeKernel()));
    const { targets } = controlPlaneOf(cluster);
    for (const c of connectionsOf(cluster, targets, seed)) {
      cases++;
      const query = { src: c.src, dst: c.dst, protocol: c.protocol, port: c.port };
      const v = explain(model, query, { controlPlane: targets });
      const k = kernelVerdict(cluster, kernels, c);
      if (v.allowed !== k.allowed) {
        mismatches.push({ seed, connection: c, explain: v.reason, kernel: k });
        if (opts.stopAtFirst) return { cases, mismatches };
      }
    }
    await Promise.all(agents.splice(0).map((a) => a.stop()));
  }
  return { cases, mismatches };
}

/** A kernel that receives every iptables-restore through a (deliberately wrong) rewrite. */
class BrokenKernel extends FakeKernel {
  constructor(private readonly rewrite: (text: string) => string) {
    super();
  }
  override iptablesRestore(family: Family, text: string): Promise<void> {
    return super.iptablesRestore(family, this.rewrite(text));
  }
}

describe('explain() and the programmed kernel agree', () => {
  it(`on ${CLUSTERS} random clusters, ${CONNECTIONS} connections each`, async () => {
    const { cases, mismatches } = await differences({ from: 1, clusters: CLUSTERS });
    expect(cases).toBeGreaterThan(CLUSTERS * CONNECTIONS);
    // Shown in full on failure: the cluster's seed, the connection, both readings and the walk.
    expect(mismatches.slice(0, 3)).toEqual([]);
  }, 120_000);

  it('the cases cover what they must: both verdicts, both families, every kind of rule and path', () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= CLUSTERS; seed++) {
      const cluster = randomCluster(seed);
      const model = policyFixtures.model(cluster.keys);
      const { targets } = controlPlaneOf(cluster);
      for (const c of connectionsOf(cluster, targets, seed)) {
        const query = { src: c.src, dst: c.dst, protocol: c.protocol, port: c.port };
        const v = explain(model, query, { controlPlane: targets });
        if (v.outbound?.reason === 'control-plane') seen.add('kept from the control plane');
        const cp = targets.some((t) => t.addr === c.dst && t.port === c.port && c.protocol === 'tcp');
        if (cp && v.outbound?.decidedBy) seen.add('to the control plane by a rule naming it');
        seen.add(`${v.allowed ? 'allowed' : 'denied'} IPv${c.family}`);
        seen.add(`protocol ${c.protocol}`);
        const src = cluster.endpoints.find((e) => [...e.v4, ...e.v6].includes(c.src));
        const dst = cluster.endpoints.find((e) => [...e.v4, ...e.v6].includes(c.dst));
        seen.add(!src ? 'from outside' : !dst ? 'to outside' : src.host === dst.host ? 'same host' : 'across hosts');
        for (const side of [v.outbound, v.inbound]) {
          const r = side?.decidedBy?.rule;
          if (!r) continue;
          seen.add(`allowed by ${r.group !== null ? 'group' : 'cidr'} rule`);
          if (r.port !== null) seen.add('allowed by a port rule');
          if (r.protocol !== null) seen.add('allowed by a protocol rule');
        }
        if (v.outbound?.reason === 'inactive' || v.inbound?.reason === 'inactive') seen.add('inactive endpoint');
      }
    }
    for (const want of [
      'allowed IPv4',
      'denied IPv4',
      'allowed IPv6',
      'denied IPv6',
      'from outside',
      'to outside',
      'same host',
      'across hosts',
      'allowed by group rule',
      'allowed by cidr rule',
      'allowed by a port rule',
      'allowed by a protocol rule',
      'inactive endpoint',
      'kept from the control plane',
      'to the control plane by a rule naming it',
      ...Object.keys(PROTOCOL).map((p) => `protocol ${p}`),
    ]) {
      expect(seen, want).toContain(want);
    }
  });

  // Each broken kernel must be caught: otherwise the agreement above proves nothing.
  const breakages: [string, (text: string) => string][] = [
    ['ports matched on the source side', (t) => t.replace(/--dport /g, '--sport ')],
    ['group peers matched on the wrong side', (t) => t.replace(/(--match-set \S+) src/g, '$1 dst')],
    [
      'inbound default allows',
      (t) => t.replace(/^(-A cali-tw-\S+ (?:-m comment --comment \S+ )?)-j DROP$/gm, '$1-j RETURN'),
    ],
    ['udp rules widened to every protocol', (t) => t.replace(/-p udp -m udp --dport \d+ /g, '')],
    [
      'cidr rules one bit wider',
      (t) =>
        t.replace(
          / -([sd]) (\d+\.\d+\.\d+\.\d+)\/([1-9]\d?) /g,
          (_m, f: string, a: string, l: string) => ` -${f} ${a}/${Number(l) - 1} `,
        ),
    ],
    ['icmp rules widened to every protocol', (t) => t.replace(/ -p icmp -j RETURN$/gm, ' -j RETURN')],
    ['no control-plane drop', (t) => t.replace(/(-m set --match-set cali[46]-ctl dst,dst) -j DROP/g, '$1')],
    [
      'control-plane exemptions for everything',
      (t) => t.replace(/^(-A cali-cx-\S+ (?:-m comment --comment \S+ )?)-j DROP$/gm, '$1-j RETURN'),
    ],
  ];
  it.each(breakages)(
    'a kernel with %s is caught',
    async (_name, rewrite) => {
      const { mismatches } = await differences({
        from: 1,
        clusters: CLUSTERS,
        newKernel: () => new BrokenKernel(rewrite),
        stopAtFirst: true,
      });
      expect(mismatches.length).toBe(1);
    },
    120_000,
  );
});
