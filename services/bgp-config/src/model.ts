import { decodeEntry, hostNameError, isIP, parseKey, type EndpointAddr } from '@calico/keyspace';

/** Calico's AS number when neither the host nor the cluster names one. */
export const DEFAULT_AS = 64511;

export interface PeerSpec {
  ip: string;
  asNum: number;
}

export interface HostInput {
  ip?: string;
  ip6?: string;
  asNum?: number;
  clusterId?: string;
  peers: PeerSpec[];
  /** The addresses of the host's endpoints (read for this host only). */
  endpointAddrs: Set<string>;
  /** The kernel protocol of the node's workload routes; absent while the host runs an older node. */
  routeProto?: number;
}

/**
 * What bgp-config reads from etcd: hosts' addresses, BGP settings, the container pools, and of
 * its own host the endpoints' addresses and the node's route protocol.
 */
export interface BgpInput {
  hosts: Map<string, HostInput>;
  global: { asNum?: number; mesh?: boolean; peers: PeerSpec[] };
  pools: { v4: string[]; v6: string[] };
  /** Keys that did not decode, with the reason: reported, never fatal. */
  problems: Map<string, string[]>;
}

export function emptyInput(): BgpInput {
  return { hosts: new Map(), global: { peers: [] }, pools: { v4: [], v6: [] }, problems: new Map() };
}

const BGP_KINDS = new Set([
  'birdIp',
  'bird6Ip',
  'ipPool',
  'bgpGlobalAsNum',
  'bgpGlobalNodeMesh',
  'bgpGlobalPeer',
  'bgpHostAsNum',
  'bgpHostPeer',
  'bgpHostRouteReflector',
]);
/** Kinds read of one host only: they decide what that host's BIRD exports. */
const OWN_HOST_KINDS = new Set(['endpointAddrs', 'routeProto']);

/**
 * The keys bgp-config of `host` needs: every host's BGP keys, and the endpoint addresses and
 * route protocol of `host` itself; other hosts' workloads are skipped.
 */
export function bgpKeyFilter(host: string): (key: string) => boolean {
  return (key) => {
    const k = parseKey(key);
    if (BGP_KINDS.has(k.kind)) return true;
    return OWN_HOST_KINDS.has(k.kind) && 'host' in k && k.host === host;
  };
}

/** Builds the input from the current keys (order does not matter: it is rebuilt from the whole set). */
export function bgpInputFrom(keys: ReadonlyMap<string, string>): BgpInput {
  const input = emptyInput();
  const host = (name: string) => {
    let h = input.hosts.get(name);
    if (!h) input.hosts.set(name, (h = { peers: [], endpointAddrs: new Set() }));
    return h;
  };
  for (const [key, raw] of keys) {
    const kind = parseKey(key).kind;
    if (!BGP_KINDS.has(kind) && !OWN_HOST_KINDS.has(kind)) continue;
    const d = decodeEntry(key, raw);
    if (!d.ok) {
      input.problems.set(key, d.errors);
      continue;
    }
    const k = d.value.key;
    const v = d.value.value as unknown;
    // A host segment is rendered into bird.conf (its comments): only a host name may get there.
    const badHost = 'host' in k && typeof k.host === 'string' ? hostNameError(k.host) : undefined;
    if (badHost !== undefined) {
      input.problems.set(key, [
        `host segment ${JSON.stringify((k as { host: string }).host)} is not a host name: ${badHost}`,
      ]);
      continue;
    }
    switch (k.kind) {
      case 'birdIp':
        host(k.host).ip = v as string;
        break;
      case 'bird6Ip':
        host(k.host).ip6 = v as string;
        break;
      case 'bgpHostAsNum':
        host(k.host).asNum = v as number;
        break;
      case 'bgpHostRouteReflector':
        host(k.host).clusterId = (v as { clusterId: string }).clusterId;
        break;
      case 'bgpHostPeer':
        host(k.host).peers.push(v as PeerSpec);
        break;
      case 'bgpGlobalAsNum':
        input.global.asNum = v as number;
        break;
      case 'bgpGlobalNodeMesh':
        input.global.mesh = (v as { enabled: boolean }).enabled;
        break;
      case 'bgpGlobalPeer':
        input.global.peers.push(v as PeerSpec);
        break;
      case 'endpointAddrs':
        for (const a of v as EndpointAddr[]) host(k.host).endpointAddrs.add(a.addr);
        break;
      case 'routeProto':
        host(k.host).routeProto = v as number;
        break;
      case 'ipPool':
        (k.family === 4 ? input.pools.v4 : input.pools.v6).push(k.cidr);
        break;
      default:
        break;
    }
  }
  const byIp = (a: PeerSpec, b: PeerSpec) => compareIp(a.ip, b.ip);
  input.global.peers.sort(byIp);
  for (const h of input.hosts.values()) h.peers.sort(byIp);
  input.pools.v4.sort();
  input.pools.v6.sort();
  return input;
}

/** An address as a number, for ordering. */
function ipNumber(s: string): bigint {
  if (isIP(s) === 4) return s.split('.').reduce((n, o) => (n << 8n) + BigInt(Number(o)), 0n);
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((n, g) => (n << 16n) + BigInt(parseInt(g || '0', 16)), 0n);
}

/** Orders addresses numerically, so that "higher address is passive" is well defined. */
export function compareIp(a: string, b: string): number {
  const x = ipNumber(a);
  const y = ipNumber(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export type PeerType = 'mesh' | 'reflector' | 'rr-client' | 'global' | 'node';

export interface BirdPeer {
  /** A BIRD protocol name: letters, digits and underscores. */
  name: string;
  type: PeerType;
  family: 4 | 6;
  ip: string;
  asNum: number;
  passive: boolean;
  /** This host reflects the peer's routes (this host is a reflector, the peer its client). */
  rrClient: boolean;
  /** eBGP peers and peers off the fabric may be more than one hop away. */
  multihop: boolean;
  /** Set on a reflector's sessions with its clients and fellow reflectors. */
  clusterId: string | null;
  description: string;
}

/** Everything the template needs to render one host's bird.conf. */
export interface BirdView {
  host: string;
  routerId: string;
  ip: string;
  ip6: string | null;
  asNum: number;
  clusterId: string | null;
  pools: { v4: string[]; v6: string[] };
  /**
   * The only routes the kernel protocol takes in (and so BGP announces): this host's endpoint
   * addresses, as /32 and /128, in lines of up to 100 characters for the prefix sets of bird.conf.
   */
  endpoints: { v4: string[]; v6: string[]; count: number };
  /** Set once the node has published it: only routes of this kernel protocol are taken in. */
  routeProto: number | null;
  peers: BirdPeer[];
  logFile: string | null;
  /** Other hosts left out of this config, and why (reported by the service; never fatal). */
  skipped: { host: string; reason: string }[];
}

export class BgpViewError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BgpViewError';
  }
}

const protoName = (prefix: string, ip: string) => `${prefix}_${ip.replace(/[.:]/g, '_')}`;

/**
 * One host's BGP sessions. With the node mesh on (the default), every other host with a
 * bird_ip is an iBGP peer. With it off, reflectors peer with every host (their clients) and
 * with each other, and other hosts peer only with the reflectors. Global and per-host peers
 * are added in both modes. Of two hosts that peer with each other, the one with the higher
 * address waits (passive), so they never collide by connecting at the same time.
 */
export function birdView(input: BgpInput, host: string, opts: { logFile?: string | null } = {}): BirdView {
  const me = input.hosts.get(host);
  if (!me?.ip) throw new BgpViewError(`host "${host}" has no bird_ip yet: start calico-node on it with --ip`);
  const globalAs = input.global.asNum ?? DEFAULT_AS;
  const asOf = (h: { asNum?: number }) => h.asNum ?? globalAs;
  const myAs = asOf(me);
  const mesh = input.global.mesh ?? true;
  const peers: BirdPeer[] = [];
  const skipped: { host: string; reason: string }[] = [];
  const others = [...input.hosts.entries()]
    .filter(([n, h]) => n !== host && h.ip)
    .sort(([, a], [, b]) => compareIp(a.ip!, b.ip!));
  const meReflector = me.clusterId !== undefined;
  for (const [name, h] of others) {
    const otherReflector = h.clusterId !== undefined;
    let type: PeerType | null = null;
    if (mesh) type = 'mesh';
    else if (meReflector) type = otherReflector ? 'reflector' : 'rr-client';
    else if (otherReflector) type = 'reflector';
    if (!type) continue;
    const base = {
      type,
      asNum: asOf(h),
      rrClient: type === 'rr-client',
      clusterId: meReflector && type !== 'mesh' ? me.clusterId! : null,
      description: comment(`${type} peer ${name}`),
    };
    // A second host claiming an address already peered with (or this host's own) is left out,
    // not peered with twice; the rest of the cluster keeps its sessions.
    const taken = h.ip === me.ip ? host : others.find(([n2, h2]) => n2 !== name && h2.ip === h.ip && n2 < name)?.[0];
    if (taken !== undefined) {
      skipped.push({
        host: name,
        reason: `bird_ip ${h.ip!} is also host ${taken}'s; host ${name} is left out of this host's BGP sessions`,
      });
      continue;
    }
    peers.push({
      ...base,
      name: protoName(type === 'mesh' ? 'Mesh' : type === 'rr-client' ? 'RRClient' : 'RR', h.ip!),
      family: 4,
      ip: h.ip!,
      passive: compareIp(me.ip, h.ip!) > 0,
      multihop: asOf(h) !== myAs,
    });
    if (me.ip6 && h.ip6) {
      peers.push({
        ...base,
        name: protoName(type === 'mesh' ? 'Mesh' : type === 'rr-client' ? 'RRClient' : 'RR', h.ip6),
        family: 6,
        ip: h.ip6,
        passive: compareIp(me.ip6, h.ip6) > 0,
        multihop: asOf(h) !== myAs,
      });
    }
  }
  const seen = new Set(peers.map((p) => p.ip));
  for (const [type, list] of [
    ['node', me.peers],
    ['global', input.global.peers],
  ] as const) {
    for (const p of list) {
      // A host's own peer list wins over the global one for the same address.
      if (seen.has(p.ip) || p.ip === me.ip) continue;
      seen.add(p.ip);
      peers.push({
        name: protoName(type === 'node' ? 'Node' : 'Global', p.ip),
        type,
        family: 4,
        ip: p.ip,
        asNum: p.asNum,
        passive: false,
        rrClient: false,
        multihop: p.asNum !== myAs,
        clusterId: null,
        description: comment(`${type} peer ${p.ip} AS ${p.asNum}`),
      });
    }
  }
  return {
    host,
    routerId: me.ip,
    ip: me.ip,
    ip6: me.ip6 ?? null,
    asNum: myAs,
    clusterId: mesh ? null : (me.clusterId ?? null),
    pools: input.pools,
    endpoints: endpointLines(me.endpointAddrs),
    routeProto: me.routeProto ?? null,
    peers,
    logFile: opts.logFile ?? null,
    skipped,
  };
}

const SET_LINE_CHARS = 100;

/** Host routes for the addresses, sorted, one prefix per address (nothing aggregated). */
function endpointLines(addrs: ReadonlySet<string>): BirdView['endpoints'] {
  const lines = (family: 4 | 6) => {
    const len = family === 4 ? 32 : 128;
    const keyed = [...addrs].filter((a) => isIP(a) === family).map((a): [bigint, string] => [ipNumber(a), a]);
    const prefixes = keyed.sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([, a]) => `${a}/${len}`);
    const out: string[] = [];
    for (const p of prefixes) {
      const last = out.length - 1;
      if (last >= 0 && out[last]!.length + 2 + p.length <= SET_LINE_CHARS) out[last] += `, ${p}`;
      else out.push(p);
    }
    return out;
  };
  return { v4: lines(4), v6: lines(6), count: addrs.size };
}

/** Text for a bird.conf comment line: nothing that could end the line or the comment. */
function comment(text: string): string {
  return text.replace(/[^\w .:@-]/g, '_');
}
