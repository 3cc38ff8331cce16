/**
 * The control plane workloads are kept from: etcd, the master API, every host's diags service
 * and BGP. A pure function of the keys that publish them and of the etcd endpoints (which are
 * configuration, not keys), plus a small holder of those keys for consumers fed by a syncer.
 */
import {
  canonicalIP,
  decodeValue,
  isIP,
  masterApiUrlKey,
  masterIpKey,
  parseKey,
  type IPFamily,
  type ParsedKey,
} from '@calico/keyspace';
import type { EndpointPolicy } from './endpointPolicy.js';
import { compareAddrs, compareText } from './internal/addr.js';
import { ruleAppliesTo } from './internal/rules.js';
import type { ModelUpdate } from './model.js';

export type ControlPlaneService = 'etcd-client' | 'etcd-peer' | 'master-api' | 'diags' | 'bgp';

/** One address and TCP port of the control plane. */
export interface ControlPlaneTarget {
  family: IPFamily;
  /** Canonical text. */
  addr: string;
  port: number;
  protocol: 'tcp';
  service: ControlPlaneService;
  /** The host whose key named it (diags, BGP); null for etcd and the master. */
  host: string | null;
}

export interface ControlPlaneHost {
  host: string;
  birdIp: string | null;
  bird6Ip: string | null;
  diagsUrl: string | null;
}

export interface ControlPlaneInput {
  /** The datastore's endpoints as configured, and its members' client URLs: URLs or host:port. */
  etcdEndpoints: readonly string[];
  /** The members' peer URLs, when the cluster told them (besides each endpoint's address with 2380). */
  etcdPeers?: readonly string[];
  masterIp: string | null;
  masterApiUrl: string | null;
  hosts: readonly ControlPlaneHost[];
}

/** etcd's peer port: members talk to each other there (its default; the client port is configured). */
export const ETCD_PEER_PORT = 2380;
/** calico-master's port when only /calico/master/ip is known. */
export const MASTER_DEFAULT_PORT = 7600;
export const BGP_PORT = 179;

/** Address and port of a URL or host:port whose host is an IP literal; null for a name. */
function urlAddr(text: string): { addr: string; family: IPFamily; port: number } | null {
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    return null;
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const family = isIP(host);
  if (family === 0) return null;
  const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return { addr: canonicalIP(host) ?? host, family, port };
}

type Target = ControlPlaneTarget | null;

function target(addr: string, port: number, service: ControlPlaneService, host: string | null = null): Target {
  const family = isIP(addr);
  if (family === 0) return null;
  return { family, addr: canonicalIP(addr) ?? addr, port, protocol: 'tcp', service, host };
}

/**
 * Every control-plane address and port, sorted by family, address and port, one entry each
 * (the first service to name it). Names (not IP literals) in URLs and endpoints name nothing:
 * the dataplane matches addresses.
 */
export function controlPlaneTargets(input: ControlPlaneInput): ControlPlaneTarget[] {
  const found: Target[] = [];
  for (const e of input.etcdEndpoints) {
    const a = urlAddr(e);
    if (a === null) continue;
    found.push(target(a.addr, a.port, 'etcd-client'), target(a.addr, ETCD_PEER_PORT, 'etcd-peer'));
  }
  for (const p of input.etcdPeers ?? []) {
    const a = urlAddr(p);
    if (a !== null) found.push(target(a.addr, a.port, 'etcd-peer'));
  }
  const api = input.masterApiUrl === null ? null : urlAddr(input.masterApiUrl);
  if (api !== null) found.push(target(api.addr, api.port, 'master-api'));
  else if (input.masterIp !== null) found.push(target(input.masterIp, MASTER_DEFAULT_PORT, 'master-api'));
  for (const h of [...input.hosts].sort((a, b) => compareText(a.host, b.host))) {
    const d = h.diagsUrl === null ? null : urlAddr(h.diagsUrl);
    if (d !== null) found.push(target(d.addr, d.port, 'diags', h.host));
    for (const ip of [h.birdIp, h.bird6Ip]) if (ip !== null) found.push(target(ip, BGP_PORT, 'bgp', h.host));
  }
  const byKey = new Map<string, ControlPlaneTarget>();
  for (const t of found) if (t !== null && !byKey.has(`${t.addr},${t.port}`)) byKey.set(`${t.addr},${t.port}`, t);
  return [...byKey.values()].sort((a, b) => a.family - b.family || compareAddrs(a.addr, b.addr) || a.port - b.port);
}

/** What a target is, for people: "etcd client port on 198.18.0.1:2379". */
export function describeTarget(t: ControlPlaneTarget): string {
  const at = `${t.family === 6 ? `[${t.addr}]` : t.addr}:${t.port}`;
  switch (t.service) {
    case 'etcd-client':
      return `etcd client port on ${at}`;
    case 'etcd-peer':
      return `etcd peer port on ${at}`;
    case 'master-api':
      return `master API on ${at}`;
    case 'diags':
      return `diags service of host ${t.host ?? '?'} on ${at}`;
    default:
      return `BGP of host ${t.host ?? '?'} on ${at}`;
  }
}

/** The member a target is in a hash:ip,port ipset, spelt as `ipset save` prints it. */
export function targetSetMember(t: ControlPlaneTarget): string {
  return `${t.addr},${t.protocol}:${t.port}`;
}

/**
 * The addresses an endpoint's outbound policy names as host prefixes (a cidr rule of /32 or
 * /128), sorted: the control-plane addresses it may reach, if its rules then allow the traffic.
 * Wider cidrs (0.0.0.0/0, a /24) open nothing of the control plane. Whether an address is a
 * target does not matter here, so the renderer's chains do not change when targets do.
 */
export function controlPlaneExemptions(policy: EndpointPolicy, family: IPFamily): string[] {
  const host = family === 4 ? '/32' : '/128';
  const out = new Set<string>();
  for (const ref of policy.outbound) {
    const { cidr } = ref.rule;
    const addr = cidr?.endsWith(host) ? cidr.slice(0, -host.length) : null;
    if (addr !== null && isIP(addr) === family && ruleAppliesTo(ref.rule, family)) out.add(addr);
  }
  return [...out].sort(compareAddrs);
}

const MASTER_IP_KEY = masterIpKey();
const HOST_LEAF = /\/(?:bird_ip|bird6_ip|diags_url)$/;
type ControlPlaneKey = Extract<ParsedKey, { kind: 'masterIp' | 'masterApiUrl' | 'birdIp' | 'bird6Ip' | 'diagsUrl' }>;
const CONTROL_PLANE_KINDS = new Set<ParsedKey['kind']>(['masterIp', 'masterApiUrl', 'birdIp', 'bird6Ip', 'diagsUrl']);
const isControlPlaneKey = (k: ParsedKey): k is ControlPlaneKey => CONTROL_PLANE_KINDS.has(k.kind);
const MASTER_API_URL_KEY = masterApiUrlKey();

/**
 * The keys controlPlaneTargets() needs, as updates arrive. apply() answers whether the
 * targets may have changed; it looks at a key's last letter before parsing it, since it sees
 * every key of a snapshot and all but a few per host are something else.
 */
export class ControlPlaneKeys {
  #masterIp: string | null = null;
  #masterApiUrl: string | null = null;
  readonly #hosts = new Map<string, ControlPlaneHost>();
  #birdIps: Map<string, string> | undefined;

  apply(update: ModelUpdate): boolean {
    const { key } = update;
    const last = key.charCodeAt(key.length - 1);
    // bird_ip, bird6_ip and master/ip end in "p"; diags_url and api_url in "l".
    if (last !== 112 /* p */ && last !== 108 /* l */) return false;
    if (key !== MASTER_IP_KEY && key !== MASTER_API_URL_KEY && !HOST_LEAF.test(key)) return false;
    const parsed = parseKey(key);
    if (!isControlPlaneKey(parsed)) return false;
    // A value that does not decode counts as absent (whoever reads it as a key reports it).
    let value: string | null = null;
    if (update.type === 'put') {
      const d = decodeValue(parsed, key, update.value);
      if (d.ok) value = d.value as string;
    }
    if (parsed.kind === 'masterIp' || parsed.kind === 'masterApiUrl') {
      const before = parsed.kind === 'masterIp' ? this.#masterIp : this.#masterApiUrl;
      if (parsed.kind === 'masterIp') this.#masterIp = value;
      else this.#masterApiUrl = value;
      return before !== value;
    }
    const h = this.#hosts.get(parsed.host) ?? { host: parsed.host, birdIp: null, bird6Ip: null, diagsUrl: null };
    const field = parsed.kind === 'birdIp' ? 'birdIp' : parsed.kind === 'bird6Ip' ? 'bird6Ip' : 'diagsUrl';
    if (h[field] === value) return false;
    h[field] = value;
    if (field !== 'diagsUrl') this.#birdIps = undefined;
    if (h.birdIp === null && h.bird6Ip === null && h.diagsUrl === null) this.#hosts.delete(parsed.host);
    else this.#hosts.set(parsed.host, h);
    return true;
  }

  /** Every host's bird_ip and bird6_ip that decodes: address → host. */
  birdIps(): ReadonlyMap<string, string> {
    if (!this.#birdIps) {
      this.#birdIps = new Map();
      for (const h of this.#hosts.values())
        for (const ip of [h.birdIp, h.bird6Ip]) if (ip !== null) this.#birdIps.set(ip, h.host);
    }
    return this.#birdIps;
  }

  /** The input of controlPlaneTargets() with these etcd endpoints (and members' peer URLs). */
  input(etcdEndpoints: readonly string[], etcdPeers: readonly string[] = []): ControlPlaneInput {
    return {
      etcdEndpoints: [...etcdEndpoints],
      etcdPeers: [...etcdPeers],
      masterIp: this.#masterIp,
      masterApiUrl: this.#masterApiUrl,
      hosts: [...this.#hosts.values()].map((h) => ({ ...h })),
    };
  }
}
