/**
 * Keys this project adds beyond the seed's /calico layout (seed-orchestrators.md). They live
 * here, and only here, so the seed contract in keys.ts stays exactly as published; the README's
 * "Extra keys" table mirrors `extraKeySpecs` and a test keeps the two in step.
 */
import { KeyspaceError, KeyspaceErrorCode } from './errors.js';
import { canonicalCidr, canonicalIP, type IPFamily } from './ip.js';
import { checkAddress } from './internal/checks.js';
import { readCidr, readIP } from './internal/ipText.js';
import { ROOT, hostDirPrefix, segment, type KeySpec } from './internal/layout.js';

export type ExtraKey =
  | { kind: 'masterApiUrl' }
  | { kind: 'bird6Ip'; host: string }
  | { kind: 'hostAlive'; host: string }
  | { kind: 'diagsUrl'; host: string }
  | { kind: 'routeProto'; host: string }
  | { kind: 'ipAssignment'; family: IPFamily; addr: string }
  | { kind: 'ipPool'; family: IPFamily; cidr: string }
  | { kind: 'bgpGlobalAsNum' }
  | { kind: 'bgpGlobalNodeMesh' }
  | { kind: 'bgpGlobalPeer'; ip: string }
  | { kind: 'bgpHostAsNum'; host: string }
  | { kind: 'bgpHostPeer'; host: string; ip: string }
  | { kind: 'bgpHostRouteReflector'; host: string }
  | { kind: 'config'; name: string }
  | { kind: 'workloadName'; host: string; containerId: string }
  | { kind: 'refusedWorkload'; host: string; containerId: string };

export const ipamPrefix = `${ROOT}ipam/`;
export const bgpPrefix = `${ROOT}bgp/v1/`;
export const bgpGlobalPrefix = `${bgpPrefix}global/`;
export const bgpGlobalPeersPrefix = `${bgpGlobalPrefix}peer_v4/`;
export const bgpHostsPrefix = `${bgpPrefix}host/`;
export const configPrefix = `${ROOT}config/`;

function family(value: IPFamily): IPFamily {
  if (value !== 4 && value !== 6) {
    throw new KeyspaceError(KeyspaceErrorCode.INVALID_ADDRESS, `family must be 4 or 6, got ${String(value)}`);
  }
  return value;
}

export function ipAssignmentsPrefix(ipFamily: IPFamily): string {
  return `${ipamPrefix}v${family(ipFamily)}/assignment/`;
}

export function ipPoolsPrefix(ipFamily: IPFamily): string {
  return `${ipamPrefix}v${family(ipFamily)}/pool/`;
}

export function bgpHostPrefix(host: string): string {
  return `${bgpHostsPrefix}${segment('host', host)}/`;
}

export function bgpHostPeersPrefix(host: string): string {
  return `${bgpHostPrefix(host)}peer_v4/`;
}

/** The container's name beside its endpoints, so tools can find a container by name on any host. */
export function workloadNameKey(host: string, containerId: string): string {
  return `${hostDirPrefix(host)}workload/docker/${segment('containerId', containerId)}/name`;
}

/** A container with this project's labels that the host's node refused to network, and why. */
export function refusedWorkloadKey(host: string, containerId: string): string {
  return `${hostDirPrefix(host)}refused/${segment('containerId', containerId)}`;
}

export function refusedWorkloadsPrefix(host: string): string {
  return `${hostDirPrefix(host)}refused/`;
}

export function masterApiUrlKey(): string {
  return `${ROOT}master/api_url`;
}

export function bird6IpKey(host: string): string {
  return `${hostDirPrefix(host)}bird6_ip`;
}

export function hostAliveKey(host: string): string {
  return `${hostDirPrefix(host)}alive`;
}

export function diagsUrlKey(host: string): string {
  return `${hostDirPrefix(host)}diags_url`;
}

/** The kernel protocol number of the routes the host's node programs to its workloads. */
export function routeProtoKey(host: string): string {
  return `${hostDirPrefix(host)}route_proto`;
}

function address(name: string, text: string, want?: IPFamily): { family: IPFamily; addr: string } {
  const r = checkAddress(name, text, want);
  if (!r.ok) throw new KeyspaceError(KeyspaceErrorCode.INVALID_ADDRESS, r.errors.join('; '));
  return r.value;
}

/** The family comes from the address; IPv6 is stored in RFC 5952 form so each address has one key. */
export function ipAssignmentKey(addr: string): string {
  const a = address('addr', addr);
  return `${ipAssignmentsPrefix(a.family)}${a.addr}`;
}

/** "/" cannot appear inside a segment, so the CIDR's "/" is written as "-" (10.0.0.0/24 -> 10.0.0.0-24). */
export function ipPoolKey(cidr: string): string {
  const r = readCidr(cidr);
  if (!r.ok) throw new KeyspaceError(KeyspaceErrorCode.INVALID_CIDR, `cidr "${cidr}" is not valid: ${r.reason}`);
  const canonical = canonicalCidr(cidr) ?? cidr; // never null once readCidr accepted it
  return `${ipPoolsPrefix(r.value.family)}${canonical.replace('/', '-')}`;
}

export function bgpGlobalAsNumKey(): string {
  return `${bgpGlobalPrefix}as_num`;
}

export function bgpGlobalNodeMeshKey(): string {
  return `${bgpGlobalPrefix}node_mesh`;
}

export function bgpGlobalPeerKey(ip: string): string {
  return `${bgpGlobalPeersPrefix}${address('ip', ip, 4).addr}`;
}

export function bgpHostAsNumKey(host: string): string {
  return `${bgpHostPrefix(host)}as_num`;
}

export function bgpHostPeerKey(host: string, ip: string): string {
  return `${bgpHostPeersPrefix(host)}${address('ip', ip, 4).addr}`;
}

export function bgpHostRouteReflectorKey(host: string): string {
  return `${bgpHostPrefix(host)}route_reflector`;
}

export function configKey(name: string): string {
  return `${configPrefix}${segment('name', name)}`;
}

export function buildExtraKey(key: ExtraKey): string {
  switch (key.kind) {
    case 'masterApiUrl':
      return masterApiUrlKey();
    case 'bird6Ip':
      return bird6IpKey(key.host);
    case 'hostAlive':
      return hostAliveKey(key.host);
    case 'diagsUrl':
      return diagsUrlKey(key.host);
    case 'routeProto':
      return routeProtoKey(key.host);
    case 'ipAssignment':
      return `${ipAssignmentsPrefix(key.family)}${address('addr', key.addr, key.family).addr}`;
    case 'ipPool': {
      const built = ipPoolKey(key.cidr);
      if (!built.startsWith(ipPoolsPrefix(key.family))) {
        throw new KeyspaceError(
          KeyspaceErrorCode.INVALID_CIDR,
          `cidr "${key.cidr}" is not an IPv${key.family} network`,
        );
      }
      return built;
    }
    case 'bgpGlobalAsNum':
      return bgpGlobalAsNumKey();
    case 'bgpGlobalNodeMesh':
      return bgpGlobalNodeMeshKey();
    case 'bgpGlobalPeer':
      return bgpGlobalPeerKey(key.ip);
    case 'bgpHostAsNum':
      return bgpHostAsNumKey(key.host);
    case 'bgpHostPeer':
      return bgpHostPeerKey(key.host, key.ip);
    case 'bgpHostRouteReflector':
      return bgpHostRouteReflectorKey(key.host);
    case 'config':
      return configKey(key.name);
    case 'workloadName':
      return workloadNameKey(key.host, key.containerId);
    case 'refusedWorkload':
      return refusedWorkloadKey(key.host, key.containerId);
  }
}

const HOST_LEAVES = {
  bird6_ip: 'bird6Ip',
  alive: 'hostAlive',
  diags_url: 'diagsUrl',
  route_proto: 'routeProto',
} as const;

function ipFamilySegment(seg: string | undefined): IPFamily | null {
  return seg === 'v4' ? 4 : seg === 'v6' ? 6 : null;
}

/** Only the canonical spelling parses, so a key and its parts correspond one to one. */
function canonicalAddress(text: string, want: IPFamily): string | null {
  const r = readIP(text);
  return r.ok && r.value.family === want && canonicalIP(text) === text ? text : null;
}

function canonicalPoolSegment(seg: string, want: IPFamily): string | null {
  const dash = seg.lastIndexOf('-');
  if (dash < 0) return null;
  const cidr = `${seg.slice(0, dash)}/${seg.slice(dash + 1)}`;
  const r = readCidr(cidr);
  // Equality with the canonical form also rules out host bits and non-RFC 5952 spellings.
  return r.ok && r.value.family === want && canonicalCidr(cidr) === cidr ? cidr : null;
}

/** Recognises the extra keys from the segments below /calico/; null when none matches. */
export function parseExtraKey(parts: readonly string[]): ExtraKey | null {
  const [a, b, c, d, e, f] = parts;
  const n = parts.length;
  if (a === 'master' && n === 2 && b === 'api_url') return { kind: 'masterApiUrl' };
  if (
    a === 'host' &&
    n === 6 &&
    b !== undefined &&
    c === 'workload' &&
    d === 'docker' &&
    e !== undefined &&
    f === 'name'
  ) {
    return { kind: 'workloadName', host: b, containerId: e };
  }
  if (a === 'host' && n === 4 && b !== undefined && c === 'refused' && d !== undefined) {
    return { kind: 'refusedWorkload', host: b, containerId: d };
  }
  if (a === 'host' && n === 3 && b !== undefined && c !== undefined && Object.hasOwn(HOST_LEAVES, c)) {
    return { kind: HOST_LEAVES[c as keyof typeof HOST_LEAVES], host: b };
  }
  if (a === 'ipam' && n === 4 && d !== undefined) {
    const fam = ipFamilySegment(b);
    if (fam === null) return null;
    if (c === 'assignment') {
      const addr = canonicalAddress(d, fam);
      return addr === null ? null : { kind: 'ipAssignment', family: fam, addr };
    }
    if (c === 'pool') {
      const cidr = canonicalPoolSegment(d, fam);
      return cidr === null ? null : { kind: 'ipPool', family: fam, cidr };
    }
    return null;
  }
  if (a === 'bgp' && b === 'v1') {
    if (c === 'global') {
      if (n === 4 && d === 'as_num') return { kind: 'bgpGlobalAsNum' };
      if (n === 4 && d === 'node_mesh') return { kind: 'bgpGlobalNodeMesh' };
      if (n === 5 && d === 'peer_v4' && e !== undefined) {
        const ip = canonicalAddress(e, 4);
        return ip === null ? null : { kind: 'bgpGlobalPeer', ip };
      }
      return null;
    }
    if (c === 'host' && d !== undefined) {
      if (n === 5 && e === 'as_num') return { kind: 'bgpHostAsNum', host: d };
      if (n === 5 && e === 'route_reflector') return { kind: 'bgpHostRouteReflector', host: d };
      if (n === 6 && e === 'peer_v4' && f !== undefined) {
        const ip = canonicalAddress(f, 4);
        return ip === null ? null : { kind: 'bgpHostPeer', host: d, ip };
      }
    }
    return null;
  }
  if (a === 'config' && n === 2 && b !== undefined) return { kind: 'config', name: b };
  return null;
}

export const extraKeySpecs: readonly KeySpec<ExtraKey['kind']>[] = [
  {
    kind: 'refusedWorkload',
    pattern: '/calico/host/<hostname>/refused/<container-id>',
    example: '/calico/host/host1/refused/c0ffee',
    value: 'one line: why the node did not network this container, which carries Calico labels (a copy or a forgery)',
    writer: 'node, when it refuses the container; removed with the container',
  },
  {
    kind: 'workloadName',
    pattern: '/calico/host/<hostname>/workload/docker/<container-id>/name',
    example: '/calico/host/host1/workload/docker/c0ffee/name',
    value:
      "the container's name as Docker shows it (without the leading /); outside endpoint/, so orchestrators listing endpoints never see it",
    writer: 'node (plumber), beside the endpoint keys; removed with the workload',
  },
  {
    kind: 'masterApiUrl',
    pattern: '/calico/master/api_url',
    example: '/calico/master/api_url',
    value: 'absolute http(s) URL of the master HTTP API',
    writer: 'master service, at start',
  },
  {
    kind: 'bird6Ip',
    pattern: '/calico/host/<hostname>/bird6_ip',
    example: '/calico/host/host1/bird6_ip',
    value: 'IPv6 address BIRD listens on for IPv6 BGP (RFC 5952 form)',
    writer: 'calicoctl node --ip6',
  },
  {
    kind: 'hostAlive',
    pattern: '/calico/host/<hostname>/alive',
    example: '/calico/host/host1/alive',
    value: 'JSON {"since": ISO-8601 time, "pid"?: positive integer}; bound to the node\'s lease',
    writer: 'node service, renewed through its etcd lease',
  },
  {
    kind: 'diagsUrl',
    pattern: '/calico/host/<hostname>/diags_url',
    example: '/calico/host/host1/diags_url',
    value: "absolute http(s) URL of the host's diags service",
    writer: 'diags service, at start',
  },
  {
    kind: 'routeProto',
    pattern: '/calico/host/<hostname>/route_proto',
    example: '/calico/host/host1/route_proto',
    value: "decimal 5-255 (not 12, BIRD's): the kernel protocol of the node's workload routes; BIRD exports only those",
    writer: 'node service, once every running workload is plumbed with it (at start)',
  },
  {
    kind: 'ipAssignment',
    pattern: '/calico/ipam/v4/assignment/<addr>',
    example: '/calico/ipam/v4/assignment/198.19.0.1',
    value: 'JSON {"host", "containerId", "endpointId"?}',
    writer: 'node (plumber) when it assigns CALICO_IP; released when its container is removed or its host is removed',
  },
  {
    kind: 'ipAssignment',
    pattern: '/calico/ipam/v6/assignment/<addr>',
    example: '/calico/ipam/v6/assignment/fd00:198:19::1',
    value: 'JSON {"host", "containerId", "endpointId"?}; <addr> in RFC 5952 form',
    writer: 'node (plumber) when it assigns CALICO_IP; released when its container is removed or its host is removed',
  },
  {
    kind: 'ipPool',
    pattern: '/calico/ipam/v4/pool/<network>-<prefix-length>',
    example: '/calico/ipam/v4/pool/198.19.0.0-16',
    value: 'JSON {"cidr"}, equal to the CIDR in the key',
    writer: 'calicoctl pool add/remove',
  },
  {
    kind: 'ipPool',
    pattern: '/calico/ipam/v6/pool/<network>-<prefix-length>',
    example: '/calico/ipam/v6/pool/fd00:198:19::-48',
    value: 'JSON {"cidr"}, equal to the CIDR in the key',
    writer: 'calicoctl pool add/remove',
  },
  {
    kind: 'bgpGlobalAsNum',
    pattern: '/calico/bgp/v1/global/as_num',
    example: '/calico/bgp/v1/global/as_num',
    value: 'AS number, decimal 1 to 4294967295',
    writer: 'calicoctl bgp default-node-as',
  },
  {
    kind: 'bgpGlobalNodeMesh',
    pattern: '/calico/bgp/v1/global/node_mesh',
    example: '/calico/bgp/v1/global/node_mesh',
    value: 'JSON {"enabled": boolean}',
    writer: 'calicoctl bgp node-mesh on|off',
  },
  {
    kind: 'bgpGlobalPeer',
    pattern: '/calico/bgp/v1/global/peer_v4/<ip>',
    example: '/calico/bgp/v1/global/peer_v4/198.18.0.254',
    value: 'JSON {"ip", "as_num"}; ip equal to the one in the key',
    writer: 'calicoctl bgp peer add/remove',
  },
  {
    kind: 'bgpHostAsNum',
    pattern: '/calico/bgp/v1/host/<hostname>/as_num',
    example: '/calico/bgp/v1/host/host1/as_num',
    value: 'AS number, decimal 1 to 4294967295; overrides the global one',
    writer: 'calicoctl node --as',
  },
  {
    kind: 'bgpHostPeer',
    pattern: '/calico/bgp/v1/host/<hostname>/peer_v4/<ip>',
    example: '/calico/bgp/v1/host/host1/peer_v4/198.18.0.254',
    value: 'JSON {"ip", "as_num"}; ip equal to the one in the key',
    writer: 'calicoctl node bgp peer add/remove',
  },
  {
    kind: 'bgpHostRouteReflector',
    pattern: '/calico/bgp/v1/host/<hostname>/route_reflector',
    example: '/calico/bgp/v1/host/host1/route_reflector',
    value: 'JSON {"cluster_id": dotted-quad cluster id}',
    writer: 'calicoctl node --route-reflector',
  },
  {
    kind: 'config',
    pattern: '/calico/config/<name>',
    example: '/calico/config/log_level',
    value: 'free text, read by whichever service owns <name>',
    writer: 'calicoctl config set',
  },
];
