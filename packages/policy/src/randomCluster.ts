/**
 * Random clusters for differential tests: endpoints on several hosts, groups with members
 * across hosts, rules of every kind (group, cidr, protocol, port, IPv4 and IPv6), and random
 * connections between them. Seeded, so a failing case is replayed from its seed.
 */
import { canonicalCidr, type EndpointState, type RuleInput } from '@calico/keyspace';
import { policyFixtures, type KeyValue } from './testing.js';

export interface RandomEndpoint {
  host: string;
  endpointId: string;
  containerId: string;
  v4: string[];
  v6: string[];
  mac: string;
  state: EndpointState;
}

export interface RandomGroup {
  groupId: string;
  members: string[];
  inbound: RuleInput[];
  outbound: RuleInput[];
}

export interface RandomCluster {
  seed: number;
  hosts: string[];
  endpoints: RandomEndpoint[];
  groups: RandomGroup[];
  /** Every key of the cluster, as the node and an orchestrator write them. */
  keys: KeyValue[];
}

export interface RandomConnection {
  src: string;
  dst: string;
  family: 4 | 6;
  /** A protocol name or number as explain() takes it. */
  protocol: string;
  port: number | null;
}

export interface RandomClusterOptions {
  hosts?: string[];
  /** Endpoints per host: between 1 and this many. */
  maxEndpointsPerHost?: number;
  maxGroups?: number;
  /** Allow inactive endpoints (a real container is always active). */
  inactive?: boolean;
  /** Allow several addresses of one family on one endpoint. */
  multiAddress?: boolean;
  /** Destination ports rules and connections draw from. */
  ports?: readonly number[];
  /** Endpoints that exist already (real containers, say): groups and rules are made over them. */
  endpoints?: readonly RandomEndpoint[];
  /** Endpoint addresses: the n-th endpoint of host h gets v4(h, n) / v6(h, n). */
  v4?: (host: number, n: number) => string;
  v6?: (host: number, n: number) => string;
}

/** Addresses no endpoint has: connections to and from outside the cluster. */
export const OUTSIDE = { 4: '203.0.113.7', 6: '2001:db8::7' } as const;

/** Protocols a connection may use; icmp and icmpv6 each also meet the other family. */
const CONNECTION_PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'udplite', '47'] as const;

export interface RandomConnectionOptions {
  /** Destination ports of connections with ports. */
  ports?: readonly number[];
  /** The protocols connections of each family use. */
  protocols?: Record<4 | 6, readonly string[]>;
  /** Addresses outside the cluster, per family; a family without one has no outside connections. */
  outside?: Partial<Record<4 | 6, string>>;
  /** Whether connections go from endpoints to the outside address too (not only from it). */
  toOutside?: boolean;
}
const PORTED = new Set(['tcp', 'udp', 'sctp', 'udplite']);

class Dice {
  constructor(readonly next: () => number) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from nothing');
    return items[Math.floor(this.next() * items.length)] as T;
  }
  hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += Math.floor(this.next() * 16).toString(16);
    return s;
  }
}

function randomRule(
  d: Dice,
  endpoints: readonly RandomEndpoint[],
  groupIds: readonly string[],
  ports: readonly number[],
): RuleInput {
  const rule: RuleInput = {};
  if (d.chance(0.55)) {
    // Mostly groups that exist, sometimes one that does not (its ipset is empty).
    rule.group = d.chance(0.9) ? d.pick(groupIds) : 'g-missing';
  } else {
    const family = d.chance(0.7) ? 4 : 6;
    const addrs = endpoints.flatMap((e) => (family === 4 ? e.v4 : e.v6));
    if (addrs.length > 0 && d.chance(0.8)) {
      const max = family === 4 ? 32 : 128;
      const len = d.pick([max, max, max - 8, max - 16, max - 24, d.int(0, max), 0, 0]);
      // Host bits cleared: the canonical network that holds the address.
      rule.cidr = canonicalCidr(`${d.pick(addrs)}/${len}`);
    } else rule.cidr = family === 4 ? d.pick(['10.0.0.0/8', '0.0.0.0/0']) : d.pick(['2001:db8::/32', '::/0']);
  }
  const r = d.next();
  const protocol =
    r < 0.5
      ? null
      : r < 0.66
        ? 'tcp'
        : r < 0.76
          ? 'udp'
          : r < 0.83
            ? 'icmp'
            : r < 0.88
              ? 'icmpv6'
              : r < 0.91
                ? 'sctp'
                : r < 0.94
                  ? 'udplite'
                  : r < 0.98
                    ? '47'
                    : '0';
  rule.protocol = protocol;
  rule.port = protocol !== null && PORTED.has(protocol) && d.chance(0.6) ? d.pick(ports) : null;
  return rule;
}

/** A random cluster; the same seed and options give the same cluster. */
export function randomCluster(seed: number, opts: RandomClusterOptions = {}): RandomCluster {
  const d = new Dice(policyFixtures.random(seed));
  const given = opts.endpoints && [...new Set(opts.endpoints.map((e) => e.host))];
  const hosts = opts.hosts ?? given ?? ['h1', 'h2', 'h3'].slice(0, d.int(2, 3));
  const ports = opts.ports ?? [80, 443, 5000];
  const v4 = opts.v4 ?? ((h: number, n: number) => `198.19.${h + 1}.${n + 1}`);
  const v6 = opts.v6 ?? ((h: number, n: number) => `fd00:198:19:${(h + 1).toString(16)}::${(n + 1).toString(16)}`);
  const endpoints: RandomEndpoint[] = opts.endpoints ? [...opts.endpoints] : [];
  const usedIfs = new Set<string>();
  if (!opts.endpoints)
    hosts.forEach((host, h) => {
      let n = 0;
      const count = d.int(1, opts.maxEndpointsPerHost ?? 4);
      for (let i = 0; i < count; i++) {
        let hex: string;
        // Interface names are made of the first 11 hex digits: keep them apart.
        do hex = d.hex(32);
        while (usedIfs.has(hex.slice(0, 11)));
        usedIfs.add(hex.slice(0, 11));
        const endpointId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
        const kind = d.pick(['v4', 'v4', 'v4', 'v6', 'dual', 'dual'] as const);
        const many = (opts.multiAddress ?? true) && d.chance(0.15) ? 2 : 1;
        const ep: RandomEndpoint = {
          host,
          endpointId,
          containerId: d.hex(64),
          v4: kind === 'v6' ? [] : Array.from({ length: many }, () => v4(h, n++)),
          v6: kind === 'v4' ? [] : Array.from({ length: many }, () => v6(h, n++)),
          mac: `0e:${Array.from({ length: 5 }, () => d.hex(2)).join(':')}`,
          state: (opts.inactive ?? true) && d.chance(0.05) ? 'inactive' : 'active',
        };
        endpoints.push(ep);
      }
    });
  const groupIds = Array.from({ length: d.int(1, opts.maxGroups ?? 5) }, (_, i) => `g${i}`);
  const groups: RandomGroup[] = groupIds.map((groupId) => ({
    groupId,
    members: [
      ...endpoints.filter(() => d.chance(0.6)).map((e) => e.endpointId),
      // A member that is no endpoint (yet): it adds nothing.
      ...(d.chance(0.1) ? ['00000000-dead-4000-8000-000000000000'] : []),
    ],
    inbound: Array.from({ length: d.int(0, 4) }, () => randomRule(d, endpoints, groupIds, ports)),
    outbound: Array.from({ length: d.int(0, 4) }, () => randomRule(d, endpoints, groupIds, ports)),
  }));
  // Given endpoints are written already: the keys are the groups'.
  const keys = opts.endpoints ? clusterKeys([], groups) : clusterKeys(endpoints, groups);
  return { seed, hosts, endpoints, groups, keys };
}

function clusterKeys(endpoints: readonly RandomEndpoint[], groups: readonly RandomGroup[]): KeyValue[] {
  return [
    ...endpoints.flatMap((e) =>
      policyFixtures.endpoint({
        host: e.host,
        endpointId: e.endpointId,
        containerId: e.containerId,
        addrs: [...e.v4, ...e.v6],
        mac: e.mac,
        state: e.state,
      }),
    ),
    ...groups.flatMap((g) =>
      policyFixtures.group({ groupId: g.groupId, members: g.members, inbound: g.inbound, outbound: g.outbound }),
    ),
  ];
}

/** The addresses of an endpoint in one family. */
export function addrsOf(ep: RandomEndpoint, family: 4 | 6): string[] {
  return family === 4 ? ep.v4 : ep.v6;
}

/**
 * Random connections in a cluster: endpoint to endpoint (on one host or across hosts), and
 * between endpoints and an outside address, with a protocol and, where it has ports, a port.
 */
export function randomConnections(
  cluster: RandomCluster,
  n: number,
  seed: number,
  opts: RandomConnectionOptions = {},
): RandomConnection[] {
  const d = new Dice(policyFixtures.random(seed));
  const ports = opts.ports ?? [80, 443, 5000, 8080];
  const outside = opts.outside ?? OUTSIDE;
  const toOutside = opts.toOutside ?? true;
  const out: RandomConnection[] = [];
  const eps = cluster.endpoints;
  for (let tries = 0; out.length < n && tries < n * 20; tries++) {
    const family = d.chance(0.7) ? 4 : 6;
    const withFamily = eps.filter((e) => addrsOf(e, family).length > 0);
    if (withFamily.length === 0) continue;
    const far = outside[family];
    const r = d.next();
    let src: string;
    let dst: string;
    if (far !== undefined && r < 0.1) {
      src = far;
      dst = d.pick(addrsOf(d.pick(withFamily), family));
    } else if (far !== undefined && toOutside && r < 0.2) {
      src = d.pick(addrsOf(d.pick(withFamily), family));
      dst = far;
    } else {
      const a = d.pick(withFamily);
      const others = withFamily.filter((e) => e !== a);
      if (others.length === 0) continue;
      src = d.pick(addrsOf(a, family));
      dst = d.pick(addrsOf(d.pick(others), family));
    }
    const protocol = d.pick(opts.protocols?.[family] ?? CONNECTION_PROTOCOLS);
    out.push({ src, dst, family, protocol, port: PORTED.has(protocol) ? d.pick(ports) : null });
  }
  return out;
}
