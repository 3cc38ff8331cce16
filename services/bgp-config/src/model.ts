import { decodeEntry, hostNameError, isIP, parseKey } from '@calico/keyspace';

/** Calico's AS number when neither the host nor the cluster names one. */
export const DEFAULT_AS = 64511;

export interface PeerSpec {
  ip: string;
  asNum: number;
}

/** What bgp-config reads from etcd: hosts' addresses, BGP settings and the container pools. */
export interface BgpInput {
  hosts: Map<string, { ip?: string; ip6?: string; asNum?: number; clusterId?: string; peers: PeerSpec[] }>;
  global: { asNum?: number; mesh?: boolean; peers: PeerSpec[] };
  pools: { v4: string[]; v6: string[] };
  /** Keys that did not decode, with the reason: reported, never fatal. */
  problems: Map<string, string[]>;
}

export function emptyInput(): BgpInput {
  return { hosts: new Map(), global: { peers: [] }, pools: { v4: [], v6: [] }, problems: new Map() };
}

/** The keys bgp-config needs; everything else under /calico/host/ (workloads) is skipped. */
export function isBgpKey(key: string): boolean {
  const k = parseKey(key);
  return ['birdIp', 'bird6Ip', 'ipPool', 'bgpGlobalAsNum', 'bgpGlobalNodeMesh', 'bgpGlobalPeer', 'bgpHostAsNum', 'bgpHostPeer', 'bgpHostRouteReflector'].includes(k.kind);
}

/** Builds the input from the current keys (order does not matter: it is rebuilt from the whole set). */
export function bgpInputFrom(keys: ReadonlyMap<string, string>): BgpInput {
  const input = emptyInput();
  const host = (name: string) => {
    let h = input.hosts.get(name);
    if (!h) input.hosts.set(name, (h = { peers: [] }));
    return h;
  };
  for (const [key, raw] of keys) {
    if (!isBgpKey(key)) continue;
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
      input.problems.set(key, [`host segment ${JSON.stringify((k as { host: string }).host)} is not a host name: ${badHost}`]);
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

/** Orders addresses numerically, so that "higher address is passive" is well defined. */
export function compareIp(a: string, b: string): number {
  const num = (s: string): bigint => {
    if (isIP(s) === 4) return s.split('.').reduce((n, o) => (n << 8n) + BigInt(Number(o)), 0n);
    const [head, tail] = s.split('::') as [string, string | undefined];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    return groups.reduce((n, g) => (n << 16n) + BigInt(parseInt(g || '0', 16)), 0n);
  };
  const x = num(a);
  const y = num(b);
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
  const others = [...input.hosts.entries()].filter(([n, h]) => n !== host && h.ip).sort(([, a], [, b]) => compareIp(a.ip!, b.ip!));
  const meReflector = me.clusterId !== undefined;
  for (const [name, h] of others) {
    const otherReflector = h.clusterId !== undefined;
    let type: PeerType | null = null;
    if (mesh) type = 'mesh';
    else if (meReflector) type = otherReflector ? 'reflector' : 'rr-client';
    else if (otherReflector) type = 'reflector';
    if (!type) continue;
    const base = { type, asNum: asOf(h), rrClient: type === 'rr-client', clusterId: meReflector && type !== 'mesh' ? me.clusterId! : null, description: comment(`${type} peer ${name}`) };
    // A second host claiming an address already peered with (or this host's own) is left out,
    // not peered with twice; the rest of the cluster keeps its sessions.
    const taken = h.ip === me.ip ? host : others.find(([n2, h2]) => n2 !== name && h2.ip === h.ip && n2 < name)?.[0];
    if (taken !== undefined) {
      skipped.push({ host: name, reason: `bird_ip ${h.ip!} is also host ${taken}'s; host ${name} is left out of this host's BGP sessions` });
      continue;
    }
    peers.push({ ...base, name: protoName(type === 'mesh' ? 'Mesh' : type === 'rr-client' ? 'RRClient' : 'RR', h.ip!), family: 4, ip: h.ip!, passive: compareIp(me.ip, h.ip!) > 0, multihop: asOf(h) !== myAs });
    if (me.ip6 && h.ip6) {
      peers.push({ ...base, name: protoName(type === 'mesh' ? 'Mesh' : type === 'rr-client' ? 'RRClient' : 'RR', h.ip6), family: 6, ip: h.ip6, passive: compareIp(me.ip6, h.ip6) > 0, multihop: asOf(h) !== myAs });
    }
  }
  const seen = new Set(peers.map((p) => p.ip));
  for (const [type, list] of [['node', me.peers], ['global', input.global.peers]] as const) {
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
    peers,
    logFile: opts.logFile ?? null,
    skipped,
  };
}

/** Text for a bird.conf comment line: nothing that could end the line or the comment. */
function comment(text: string): string {
  return text.replace(/[^\w .:@-]/g, '_');
}
