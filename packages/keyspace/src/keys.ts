/**
 * The seed's /calico layout (seed-orchestrators.md), built from typed parts and parsed back.
 * Every builder validates its parts; parseKey never throws and answers `unknown` for anything
 * that is not exactly one of our keys. The project's additions live in extraKeys.ts.
 */
import { KeyspaceError, KeyspaceErrorCode } from './errors.js';
import { buildExtraKey, parseExtraKey, type ExtraKey } from './extraKeys.js';
import { HOSTS, ROOT, hostDirPrefix, segment, splitKey, type KeySpec } from './internal/layout.js';

export type Direction = 'inbound' | 'outbound';
export const directions: readonly Direction[] = ['inbound', 'outbound'];

export type SeedKey =
  | { kind: 'masterIp' }
  | { kind: 'birdIp'; host: string }
  | { kind: 'endpointAddrs'; host: string; containerId: string; endpointId: string }
  | { kind: 'endpointMac'; host: string; containerId: string; endpointId: string }
  | { kind: 'endpointState'; host: string; containerId: string; endpointId: string }
  | { kind: 'groupName'; groupId: string }
  | { kind: 'groupMember'; groupId: string; endpointId: string }
  | { kind: 'groupRule'; groupId: string; direction: Direction; index: number }
  | { kind: 'groupDefault'; groupId: string; direction: Direction };

/** Every key this package knows. */
export type CalicoKey = SeedKey | ExtraKey;
export type CalicoKeyKind = CalicoKey['kind'];
export type UnknownKey = { kind: 'unknown'; key: string };
export type ParsedKey = CalicoKey | UnknownKey;

export const calicoRoot = ROOT;
export const masterPrefix = `${ROOT}master/`;
export const hostsPrefix = HOSTS;
export const networkPrefix = `${ROOT}network/`;
export const groupsPrefix = `${networkPrefix}group/`;

function direction(value: Direction): Direction {
  if (value !== 'inbound' && value !== 'outbound') {
    throw new KeyspaceError(
      KeyspaceErrorCode.INVALID_SEGMENT,
      `direction must be "inbound" or "outbound", got "${String(value)}"`,
    );
  }
  return value;
}

function ruleIndex(value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new KeyspaceError(
      KeyspaceErrorCode.INVALID_INDEX,
      `rule index must be a positive integer, got ${String(value)}`,
    );
  }
  return value;
}

// Prefixes. Each ends in "/" so that a prefix read or delete of "ab" never reaches "abc".

export function hostPrefix(host: string): string {
  return hostDirPrefix(host);
}

/** Container directories of one host (only the docker orchestrator exists). */
export function workloadsPrefix(host: string): string {
  return `${hostDirPrefix(host)}workload/docker/`;
}

export function workloadPrefix(host: string, containerId: string): string {
  return `${workloadsPrefix(host)}${segment('containerId', containerId)}/`;
}

/** Listing this is how an orchestrator finds the endpoint id of a container (seed, "Controlling Group Membership"). */
export function endpointsPrefix(host: string, containerId: string): string {
  return `${workloadPrefix(host, containerId)}endpoint/`;
}

export function endpointPrefix(host: string, containerId: string, endpointId: string): string {
  return `${endpointsPrefix(host, containerId)}${segment('endpointId', endpointId)}/`;
}

export function groupPrefix(groupId: string): string {
  return `${groupsPrefix}${segment('groupId', groupId)}/`;
}

export function groupMembersPrefix(groupId: string): string {
  return `${groupPrefix(groupId)}member/`;
}

/** Both directions' numbered rules and both defaults. */
export function groupRulesPrefix(groupId: string): string {
  return `${groupPrefix(groupId)}rule/`;
}

/** The numbered rules of one direction; the trailing "/" keeps `<dir>_default` out. */
export function groupRuleListPrefix(groupId: string, dir: Direction): string {
  return `${groupRulesPrefix(groupId)}${direction(dir)}/`;
}

// Seed keys.

export function masterIpKey(): string {
  return `${masterPrefix}ip`;
}

export function birdIpKey(host: string): string {
  return `${hostDirPrefix(host)}bird_ip`;
}

export function endpointAddrsKey(host: string, containerId: string, endpointId: string): string {
  return `${endpointPrefix(host, containerId, endpointId)}addrs`;
}

export function endpointMacKey(host: string, containerId: string, endpointId: string): string {
  return `${endpointPrefix(host, containerId, endpointId)}mac`;
}

export function endpointStateKey(host: string, containerId: string, endpointId: string): string {
  return `${endpointPrefix(host, containerId, endpointId)}state`;
}

export function groupNameKey(groupId: string): string {
  return `${groupPrefix(groupId)}name`;
}

export function groupMemberKey(groupId: string, endpointId: string): string {
  return `${groupMembersPrefix(groupId)}${segment('endpointId', endpointId)}`;
}

export function groupRuleKey(groupId: string, dir: Direction, index: number): string {
  return `${groupRuleListPrefix(groupId, dir)}${ruleIndex(index)}`;
}

export function groupDefaultKey(groupId: string, dir: Direction): string {
  return `${groupRulesPrefix(groupId)}${direction(dir)}_default`;
}

/** The inverse of parseKey for every known kind; validates the parts like the builders do. */
export function buildKey(key: CalicoKey): string {
  switch (key.kind) {
    case 'masterIp':
      return masterIpKey();
    case 'birdIp':
      return birdIpKey(key.host);
    case 'endpointAddrs':
      return endpointAddrsKey(key.host, key.containerId, key.endpointId);
    case 'endpointMac':
      return endpointMacKey(key.host, key.containerId, key.endpointId);
    case 'endpointState':
      return endpointStateKey(key.host, key.containerId, key.endpointId);
    case 'groupName':
      return groupNameKey(key.groupId);
    case 'groupMember':
      return groupMemberKey(key.groupId, key.endpointId);
    case 'groupRule':
      return groupRuleKey(key.groupId, key.direction, key.index);
    case 'groupDefault':
      return groupDefaultKey(key.groupId, key.direction);
    default:
      return buildExtraKey(key);
  }
}

const ENDPOINT_LEAVES = { addrs: 'endpointAddrs', mac: 'endpointMac', state: 'endpointState' } as const;
// No leading zeros: "01" would name the same rule as "1" under a different key.
const RULE_INDEX = /^[1-9][0-9]*$/;

function parseSeedKey(parts: readonly string[]): SeedKey | null {
  const [a, b, c, d, e, f, g, h] = parts;
  const n = parts.length;
  if (a === 'master' && n === 2 && b === 'ip') return { kind: 'masterIp' };
  if (a === 'host' && b !== undefined) {
    if (n === 3 && c === 'bird_ip') return { kind: 'birdIp', host: b };
    if (n === 8 && c === 'workload' && d === 'docker' && e !== undefined && f === 'endpoint' && g !== undefined) {
      if (h !== undefined && Object.hasOwn(ENDPOINT_LEAVES, h)) {
        const kind = ENDPOINT_LEAVES[h as keyof typeof ENDPOINT_LEAVES];
        return { kind, host: b, containerId: e, endpointId: g };
      }
    }
    return null;
  }
  if (a === 'network' && b === 'group' && c !== undefined) {
    if (n === 4 && d === 'name') return { kind: 'groupName', groupId: c };
    if (n === 5 && d === 'member' && e !== undefined) return { kind: 'groupMember', groupId: c, endpointId: e };
    if (d !== 'rule') return null;
    if (n === 5 && (e === 'inbound_default' || e === 'outbound_default')) {
      return { kind: 'groupDefault', groupId: c, direction: e === 'inbound_default' ? 'inbound' : 'outbound' };
    }
    if (n === 6 && (e === 'inbound' || e === 'outbound') && f !== undefined && RULE_INDEX.test(f)) {
      const index = Number(f);
      if (Number.isSafeInteger(index)) return { kind: 'groupRule', groupId: c, direction: e, index };
    }
  }
  return null;
}

const WORKLOAD_DIR = '/workload/docker/';
const ENDPOINT_DIR = '/endpoint/';
const MEMBER_DIR = '/member/';

/**
 * Endpoint leaves and group members make up nearly all of a large keyspace; these are read
 * with a few index lookups instead of splitting the key. null: not one of them (or malformed),
 * so the general path decides.
 */
function parseBulkKey(key: string): SeedKey | null {
  if (key.startsWith(HOSTS)) {
    const h0 = HOSTS.length;
    const h1 = key.indexOf('/', h0);
    if (h1 <= h0 || !key.startsWith(WORKLOAD_DIR, h1)) return null;
    const c0 = h1 + WORKLOAD_DIR.length;
    const c1 = key.indexOf('/', c0);
    if (c1 <= c0 || !key.startsWith(ENDPOINT_DIR, c1)) return null;
    const e0 = c1 + ENDPOINT_DIR.length;
    const e1 = key.indexOf('/', e0);
    if (e1 <= e0) return null;
    // The leaf compared in place: no string is made of it.
    const leafLength = key.length - e1 - 1;
    let kind: (typeof ENDPOINT_LEAVES)[keyof typeof ENDPOINT_LEAVES];
    if (leafLength === 5 && key.startsWith('addrs', e1 + 1)) kind = 'endpointAddrs';
    else if (leafLength === 5 && key.startsWith('state', e1 + 1)) kind = 'endpointState';
    else if (leafLength === 3 && key.startsWith('mac', e1 + 1)) kind = 'endpointMac';
    else return null;
    return { kind, host: key.slice(h0, h1), containerId: key.slice(c0, c1), endpointId: key.slice(e0, e1) };
  }
  if (key.startsWith(groupsPrefix)) {
    const g0 = groupsPrefix.length;
    const g1 = key.indexOf('/', g0);
    if (g1 <= g0 || !key.startsWith(MEMBER_DIR, g1)) return null;
    const e0 = g1 + MEMBER_DIR.length;
    if (e0 === key.length || key.indexOf('/', e0) !== -1) return null;
    return { kind: 'groupMember', groupId: key.slice(g0, g1), endpointId: key.slice(e0) };
  }
  return null;
}

/** parseKey's general path: split into segments and match every layout. */
export function parseKeyBySegments(key: string): ParsedKey {
  const parts = splitKey(key);
  const parsed = parts === null ? null : (parseSeedKey(parts) ?? parseExtraKey(parts));
  return parsed ?? { kind: 'unknown', key };
}

/** Classifies a key. Never throws: malformed keys and keys outside /calico come back as `unknown`. */
export function parseKey(key: string): ParsedKey {
  return parseBulkKey(key) ?? parseKeyBySegments(key);
}

export const seedKeySpecs: readonly KeySpec<SeedKey['kind']>[] = [
  {
    kind: 'masterIp',
    pattern: '/calico/master/ip',
    example: '/calico/master/ip',
    value: 'IPv4 or IPv6 address of the calico-master service',
    writer: 'calicoctl master --ip (master service)',
  },
  {
    kind: 'birdIp',
    pattern: '/calico/host/<hostname>/bird_ip',
    example: '/calico/host/host1/bird_ip',
    value: 'IPv4 address BIRD listens on',
    writer: 'calicoctl node --ip (node service)',
  },
  {
    kind: 'endpointAddrs',
    pattern: '/calico/host/<hostname>/workload/docker/<container-id>/endpoint/<endpoint-id>/addrs',
    example: '/calico/host/host1/workload/docker/c0ffee/endpoint/9f1c2d3e/addrs',
    value: 'JSON list of {"addr"}: IPv4/IPv6 addresses, non-empty, no duplicates',
    writer: 'node (plumber)',
  },
  {
    kind: 'endpointMac',
    pattern: '/calico/host/<hostname>/workload/docker/<container-id>/endpoint/<endpoint-id>/mac',
    example: '/calico/host/host1/workload/docker/c0ffee/endpoint/9f1c2d3e/mac',
    value: 'MAC address aa:bb:cc:dd:ee:ff (lowercase)',
    writer: 'node (plumber)',
  },
  {
    kind: 'endpointState',
    pattern: '/calico/host/<hostname>/workload/docker/<container-id>/endpoint/<endpoint-id>/state',
    example: '/calico/host/host1/workload/docker/c0ffee/endpoint/9f1c2d3e/state',
    value: '"active" or "inactive"',
    writer: 'node (plumber, docker events watcher)',
  },
  {
    kind: 'groupName',
    pattern: '/calico/network/group/<group-id>/name',
    example: '/calico/network/group/a935e8e1-008a-4e05-af4b-4b5701df417e/name',
    value: 'human-readable name, 1 to 256 characters, no control characters',
    writer: 'orchestrator, calicoctl, master API',
  },
  {
    kind: 'groupMember',
    pattern: '/calico/network/group/<group-id>/member/<endpoint-id>',
    example: '/calico/network/group/a935e8e1-008a-4e05-af4b-4b5701df417e/member/9f1c2d3e',
    value: 'empty string (any value is accepted and ignored)',
    writer: 'orchestrator, calicoctl, master API',
  },
  {
    kind: 'groupRule',
    pattern: '/calico/network/group/<group-id>/rule/inbound/<n>',
    example: '/calico/network/group/a935e8e1-008a-4e05-af4b-4b5701df417e/rule/inbound/1',
    value: 'JSON {"group", "cidr", "protocol", "port"}',
    writer: 'orchestrator, calicoctl, master API',
  },
  {
    kind: 'groupRule',
    pattern: '/calico/network/group/<group-id>/rule/outbound/<n>',
    example: '/calico/network/group/a935e8e1-008a-4e05-af4b-4b5701df417e/rule/outbound/2',
    value: 'JSON {"group", "cidr", "protocol", "port"}',
    writer: 'orchestrator, calicoctl, master API',
  },
  {
    kind: 'groupDefault',
    pattern: '/calico/network/group/<group-id>/rule/inbound_default',
    example: '/calico/network/group/a935e8e1-008a-4e05-af4b-4b5701df417e/rule/inbound_default',
    value: '"deny" (the only supported value)',
    writer: 'orchestrator, calicoctl, master API',
  },
  {
    kind: 'groupDefault',
    pattern: '/calico/network/group/<group-id>/rule/outbound_default',
    example: '/calico/network/group/a935e8e1-008a-4e05-af4b-4b5701df417e/rule/outbound_default',
    value: '"deny" (the only supported value)',
    writer: 'orchestrator, calicoctl, master API',
  },
];
