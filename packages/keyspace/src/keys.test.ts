import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { KeyspaceError, KeyspaceErrorCode } from './errors.js';
import {
  bgpGlobalAsNumKey,
  bgpGlobalNodeMeshKey,
  bgpGlobalPeerKey,
  bgpHostAsNumKey,
  bgpHostPeerKey,
  bgpHostPeersPrefix,
  bgpHostRouteReflectorKey,
  bird6IpKey,
  configKey,
  diagsUrlKey,
  routeProtoKey,
  extraKeySpecs,
  hostAliveKey,
  ipAssignmentKey,
  ipAssignmentsPrefix,
  ipPoolKey,
  ipPoolsPrefix,
  masterApiUrlKey,
} from './extraKeys.js';
import {
  parseKeyBySegments,
  birdIpKey,
  buildKey,
  calicoRoot,
  endpointAddrsKey,
  endpointMacKey,
  endpointPrefix,
  endpointsPrefix,
  endpointStateKey,
  groupDefaultKey,
  groupMemberKey,
  groupMembersPrefix,
  groupNameKey,
  groupPrefix,
  groupRuleKey,
  groupRuleListPrefix,
  groupRulesPrefix,
  groupsPrefix,
  hostPrefix,
  hostsPrefix,
  masterIpKey,
  parseKey,
  seedKeySpecs,
  workloadPrefix,
  workloadsPrefix,
  type CalicoKey,
  type CalicoKeyKind,
} from './keys.js';

const G = 'a935e8e1-008a-4e05-af4b-4b5701df417e';
const EP = '9f1c2d3e4b5a';
const C = 'c0ffee00beef';

// Every seed key from seed-orchestrators.md: the literal string, and the parts it must parse to.
const seedKeys: [string, string, CalicoKey][] = [
  [masterIpKey(), '/calico/master/ip', { kind: 'masterIp' }],
  [birdIpKey('host1'), '/calico/host/host1/bird_ip', { kind: 'birdIp', host: 'host1' }],
  [
    endpointAddrsKey('host1', C, EP),
    `/calico/host/host1/workload/docker/${C}/endpoint/${EP}/addrs`,
    { kind: 'endpointAddrs', host: 'host1', containerId: C, endpointId: EP },
  ],
  [
    endpointMacKey('host1', C, EP),
    `/calico/host/host1/workload/docker/${C}/endpoint/${EP}/mac`,
    { kind: 'endpointMac', host: 'host1', containerId: C, endpointId: EP },
  ],
  [
    endpointStateKey('host1', C, EP),
    `/calico/host/host1/workload/docker/${C}/endpoint/${EP}/state`,
    { kind: 'endpointState', host: 'host1', containerId: C, endpointId: EP },
  ],
  [groupNameKey(G), `/calico/network/group/${G}/name`, { kind: 'groupName', groupId: G }],
  [
    groupMemberKey(G, EP),
    `/calico/network/group/${G}/member/${EP}`,
    { kind: 'groupMember', groupId: G, endpointId: EP },
  ],
  [
    groupRuleKey(G, 'inbound', 1),
    `/calico/network/group/${G}/rule/inbound/1`,
    { kind: 'groupRule', groupId: G, direction: 'inbound', index: 1 },
  ],
  [
    groupRuleKey(G, 'outbound', 12),
    `/calico/network/group/${G}/rule/outbound/12`,
    { kind: 'groupRule', groupId: G, direction: 'outbound', index: 12 },
  ],
  [
    groupDefaultKey(G, 'inbound'),
    `/calico/network/group/${G}/rule/inbound_default`,
    { kind: 'groupDefault', groupId: G, direction: 'inbound' },
  ],
  [
    groupDefaultKey(G, 'outbound'),
    `/calico/network/group/${G}/rule/outbound_default`,
    { kind: 'groupDefault', groupId: G, direction: 'outbound' },
  ],
];

const extraKeys: [string, string, CalicoKey][] = [
  [masterApiUrlKey(), '/calico/master/api_url', { kind: 'masterApiUrl' }],
  [bird6IpKey('host1'), '/calico/host/host1/bird6_ip', { kind: 'bird6Ip', host: 'host1' }],
  [hostAliveKey('host1'), '/calico/host/host1/alive', { kind: 'hostAlive', host: 'host1' }],
  [diagsUrlKey('host1'), '/calico/host/host1/diags_url', { kind: 'diagsUrl', host: 'host1' }],
  [routeProtoKey('host1'), '/calico/host/host1/route_proto', { kind: 'routeProto', host: 'host1' }],
  [
    ipAssignmentKey('198.19.0.1'),
    '/calico/ipam/v4/assignment/198.19.0.1',
    { kind: 'ipAssignment', family: 4, addr: '198.19.0.1' },
  ],
  [
    ipAssignmentKey('fd00:198:19::1'),
    '/calico/ipam/v6/assignment/fd00:198:19::1',
    { kind: 'ipAssignment', family: 6, addr: 'fd00:198:19::1' },
  ],
  [
    ipPoolKey('198.19.0.0/16'),
    '/calico/ipam/v4/pool/198.19.0.0-16',
    { kind: 'ipPool', family: 4, cidr: '198.19.0.0/16' },
  ],
  [
    ipPoolKey('fd00:198:19::/48'),
    '/calico/ipam/v6/pool/fd00:198:19::-48',
    { kind: 'ipPool', family: 6, cidr: 'fd00:198:19::/48' },
  ],
  [ipPoolKey('::/0'), '/calico/ipam/v6/pool/::-0', { kind: 'ipPool', family: 6, cidr: '::/0' }],
  [bgpGlobalAsNumKey(), '/calico/bgp/v1/global/as_num', { kind: 'bgpGlobalAsNum' }],
  [bgpGlobalNodeMeshKey(), '/calico/bgp/v1/global/node_mesh', { kind: 'bgpGlobalNodeMesh' }],
  [
    bgpGlobalPeerKey('198.18.0.254'),
    '/calico/bgp/v1/global/peer_v4/198.18.0.254',
    { kind: 'bgpGlobalPeer', ip: '198.18.0.254' },
  ],
  [bgpHostAsNumKey('host1'), '/calico/bgp/v1/host/host1/as_num', { kind: 'bgpHostAsNum', host: 'host1' }],
  [
    bgpHostPeerKey('host1', '198.18.0.254'),
    '/calico/bgp/v1/host/host1/peer_v4/198.18.0.254',
    { kind: 'bgpHostPeer', host: 'host1', ip: '198.18.0.254' },
  ],
  [
    bgpHostRouteReflectorKey('host1'),
    '/calico/bgp/v1/host/host1/route_reflector',
    { kind: 'bgpHostRouteReflector', host: 'host1' },
  ],
  [configKey('log_level'), '/calico/config/log_level', { kind: 'config', name: 'log_level' }],
];

describe.each([
  ['seed', seedKeys],
  ['extra', extraKeys],
])('%s keys', (_origin, table) => {
  it.each(table)('%s', (built, literal, parts) => {
    expect(built).toBe(literal);
    expect(parseKey(literal)).toEqual(parts);
    expect(buildKey(parts)).toBe(literal);
  });
});

describe('the key catalogue', () => {
  const specs = [...seedKeySpecs, ...extraKeySpecs];
  // A Record over every kind: adding a kind without listing it here fails to compile.
  const allKinds: Record<CalicoKeyKind, true> = {
    masterIp: true,
    birdIp: true,
    endpointAddrs: true,
    endpointMac: true,
    endpointState: true,
    groupName: true,
    groupMember: true,
    groupRule: true,
    groupDefault: true,
    masterApiUrl: true,
    bird6Ip: true,
    hostAlive: true,
    diagsUrl: true,
    routeProto: true,
    ipAssignment: true,
    ipPool: true,
    bgpGlobalAsNum: true,
    bgpGlobalNodeMesh: true,
    bgpGlobalPeer: true,
    bgpHostAsNum: true,
    bgpHostPeer: true,
    bgpHostRouteReflector: true,
    config: true,
    workloadName: true,
    refusedWorkload: true,
  };

  it('describes every kind, each as seed or extra but not both', () => {
    const seedKinds = new Set(seedKeySpecs.map((s) => s.kind));
    const extraKinds = new Set(extraKeySpecs.map((s) => s.kind));
    expect([...seedKinds, ...extraKinds].sort()).toEqual(Object.keys(allKinds).sort());
  });

  it.each(specs.map((s) => [s.pattern, s] as const))('%s: its example parses to its kind and back', (_p, spec) => {
    const parsed = parseKey(spec.example);
    expect(parsed.kind).toBe(spec.kind);
    if (parsed.kind !== 'unknown') expect(buildKey(parsed)).toBe(spec.example);
  });

  it('is what the README documents', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    for (const spec of specs) expect(readme, spec.pattern).toContain(`\`${spec.pattern}\``);
  });
});

describe('prefixes', () => {
  it.each([
    [calicoRoot, '/calico/'],
    [hostsPrefix, '/calico/host/'],
    [hostPrefix('host1'), '/calico/host/host1/'],
    [workloadsPrefix('host1'), '/calico/host/host1/workload/docker/'],
    [workloadPrefix('host1', C), `/calico/host/host1/workload/docker/${C}/`],
    [endpointsPrefix('host1', C), `/calico/host/host1/workload/docker/${C}/endpoint/`],
    [endpointPrefix('host1', C, EP), `/calico/host/host1/workload/docker/${C}/endpoint/${EP}/`],
    [groupsPrefix, '/calico/network/group/'],
    [groupPrefix(G), `/calico/network/group/${G}/`],
    [groupMembersPrefix(G), `/calico/network/group/${G}/member/`],
    [groupRulesPrefix(G), `/calico/network/group/${G}/rule/`],
    [groupRuleListPrefix(G, 'outbound'), `/calico/network/group/${G}/rule/outbound/`],
    [ipAssignmentsPrefix(6), '/calico/ipam/v6/assignment/'],
    [ipPoolsPrefix(4), '/calico/ipam/v4/pool/'],
    [bgpHostPeersPrefix('host1'), '/calico/bgp/v1/host/host1/peer_v4/'],
  ])('%s', (built, literal) => {
    expect(built).toBe(literal);
    expect(built.endsWith('/')).toBe(true);
  });

  it('keeps each key below the prefixes of its parents', () => {
    expect(groupRuleKey(G, 'inbound', 3).startsWith(groupRuleListPrefix(G, 'inbound'))).toBe(true);
    // "inbound_default" must not be listed with the numbered inbound rules.
    expect(groupDefaultKey(G, 'inbound').startsWith(groupRuleListPrefix(G, 'inbound'))).toBe(false);
    expect(endpointAddrsKey('h', C, EP).startsWith(endpointsPrefix('h', C))).toBe(true);
  });
});

describe('builders normalise addresses', () => {
  it.each([
    [() => ipAssignmentKey('FD00:0198:0019:0:0:0:0:1'), '/calico/ipam/v6/assignment/fd00:198:19::1'],
    [() => ipAssignmentKey('::FFFF:198.19.0.1'), '/calico/ipam/v6/assignment/::ffff:198.19.0.1'],
    [() => ipPoolKey('198.19.7.7/16'), '/calico/ipam/v4/pool/198.19.0.0-16'],
    [() => ipPoolKey('FD00:198:19::1/48'), '/calico/ipam/v6/pool/fd00:198:19::-48'],
  ])('%#', (build, literal) => expect(build()).toBe(literal));
});

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('builders refuse bad parts', () => {
  const { INVALID_SEGMENT, INVALID_INDEX, INVALID_ADDRESS, INVALID_CIDR } = KeyspaceErrorCode;
  it.each([
    ['host must not be empty', INVALID_SEGMENT, () => birdIpKey('')],
    ['host "a/b" must not contain "/"', INVALID_SEGMENT, () => hostPrefix('a/b')],
    ['containerId must not be empty', INVALID_SEGMENT, () => workloadPrefix('h', '')],
    ['endpointId "x/y" must not contain "/"', INVALID_SEGMENT, () => endpointAddrsKey('h', C, 'x/y')],
    ['groupId must not be empty', INVALID_SEGMENT, () => groupNameKey('')],
    ['endpointId must not be empty', INVALID_SEGMENT, () => groupMemberKey(G, '')],
    ['groupId must be a string, got undefined', INVALID_SEGMENT, () => groupNameKey(undefined as unknown as string)],
    ['rule index must be a positive integer, got 0', INVALID_INDEX, () => groupRuleKey(G, 'inbound', 0)],
    ['rule index must be a positive integer, got 1.5', INVALID_INDEX, () => groupRuleKey(G, 'inbound', 1.5)],
    ['rule index must be a positive integer, got -1', INVALID_INDEX, () => groupRuleKey(G, 'inbound', -1)],
    ['rule index must be a positive integer, got NaN', INVALID_INDEX, () => groupRuleKey(G, 'inbound', Number.NaN)],
    [
      'direction must be "inbound" or "outbound", got "sideways"',
      INVALID_SEGMENT,
      () => groupDefaultKey(G, 'sideways' as 'inbound'),
    ],
    ['name "a/b" must not contain "/"', INVALID_SEGMENT, () => configKey('a/b')],
    ['host must not be empty', INVALID_SEGMENT, () => bgpHostAsNumKey('')],
    [
      'addr "198.19.0.256" is not an IPv4 or IPv6 address: octet "256" is greater than 255',
      INVALID_ADDRESS,
      () => ipAssignmentKey('198.19.0.256'),
    ],
    ['ip "fd00::1" is not an IPv4 address: it is IPv6', INVALID_ADDRESS, () => bgpGlobalPeerKey('fd00::1')],
    [
      'ip "1.2.3" is not an IPv4 address: expected four dot-separated decimal octets',
      INVALID_ADDRESS,
      () => bgpHostPeerKey('h', '1.2.3'),
    ],
    [
      'cidr "198.19.0.0" is not valid: missing prefix length (expected address/length)',
      INVALID_CIDR,
      () => ipPoolKey('198.19.0.0'),
    ],
    ['family must be 4 or 6, got 5', INVALID_ADDRESS, () => ipAssignmentsPrefix(5 as 4)],
    [
      'addr "fd00::1" is not an IPv4 address: it is IPv6',
      INVALID_ADDRESS,
      () => buildKey({ kind: 'ipAssignment', family: 4, addr: 'fd00::1' }),
    ],
    [
      'cidr "10.0.0.0/8" is not an IPv6 network',
      INVALID_CIDR,
      () => buildKey({ kind: 'ipPool', family: 6, cidr: '10.0.0.0/8' }),
    ],
  ])('%s', (message, code, build) => {
    const e = thrown(build);
    expect(e).toBeInstanceOf(KeyspaceError);
    expect(e).toMatchObject({ name: 'KeyspaceError', code, message });
  });
});

describe('parseKey answers unknown for keys that are not exactly ours', () => {
  it.each([
    '',
    '/',
    'calico/master/ip',
    '/calico',
    '/calico/',
    '/calico/master',
    '/calico/master/ip/',
    '/calico/master/ip/extra',
    '/calicox/master/ip',
    '/other/master/ip',
    '/calico//master/ip',
    '/calico/host/host1',
    '/calico/host//bird_ip',
    '/calico/host/host1/bird_ip/x',
    '/calico/host/host1/other',
    '/calico/host/host1/workload/docker/c1/endpoint/e1',
    '/calico/host/host1/workload/docker/c1/endpoint/e1/other',
    '/calico/host/host1/workload/rkt/c1/endpoint/e1/addrs',
    '/calico/host/host1/workload/docker/c1/endpoint/e1/addrs/x',
    '/calico/network/group/g1',
    '/calico/network/group/g1/name/x',
    '/calico/network/group//name',
    '/calico/network/group/g1/member',
    '/calico/network/group/g1/member/e1/x',
    '/calico/network/group/g1/rule/inbound',
    '/calico/network/group/g1/rule/inbound/0',
    '/calico/network/group/g1/rule/inbound/-1',
    '/calico/network/group/g1/rule/inbound/01',
    '/calico/network/group/g1/rule/inbound/1.5',
    '/calico/network/group/g1/rule/inbound/1e3',
    '/calico/network/group/g1/rule/inbound/abc',
    '/calico/network/group/g1/rule/inbound/99999999999999999999',
    '/calico/network/group/g1/rule/inbound/1/x',
    '/calico/network/group/g1/rule/sideways/1',
    '/calico/network/group/g1/rule/inbound_default/x',
    '/calico/network/group/g1/rule/allow_default',
    '/calico/network/groups/g1/name',
    '/calico/ipam/v4/assignment/fd00::1',
    '/calico/ipam/v6/assignment/198.19.0.1',
    '/calico/ipam/v6/assignment/FD00::1',
    '/calico/ipam/v6/assignment/fd00:0::1',
    '/calico/ipam/v4/assignment/198.19.000.1',
    '/calico/ipam/v5/assignment/198.19.0.1',
    '/calico/ipam/v4/pool/198.19.0.1-16',
    '/calico/ipam/v4/pool/198.19.0.0',
    '/calico/ipam/v4/pool/198.19.0.0/16',
    '/calico/ipam/v4/pool/198.19.0.0-33',
    '/calico/ipam/v6/pool/198.19.0.0-16',
    '/calico/ipam/v4/other/198.19.0.0-16',
    '/calico/bgp/v2/global/as_num',
    '/calico/bgp/v1/global/other',
    '/calico/bgp/v1/global/peer_v4/fd00::1',
    '/calico/bgp/v1/global/peer_v4',
    '/calico/bgp/v1/host/host1',
    '/calico/bgp/v1/host/host1/peer_v4/1.2.3',
    '/calico/bgp/v1/host/host1/route_reflector/x',
    '/calico/config',
    '/calico/config/a/b',
  ])('%j', (key) => expect(parseKey(key)).toEqual({ kind: 'unknown', key }));
});

describe('parts that are unusual but legal', () => {
  it.each([
    ['host names with dots', birdIpKey('node-1.example.com'), { kind: 'birdIp', host: 'node-1.example.com' }],
    ['a group id named like a key word', groupNameKey('member'), { kind: 'groupName', groupId: 'member' }],
    ['a host named "workload"', birdIpKey('workload'), { kind: 'birdIp', host: 'workload' }],
    ['unicode', groupNameKey('grüppe'), { kind: 'groupName', groupId: 'grüppe' }],
    [
      'a large rule index',
      groupRuleKey('g', 'inbound', Number.MAX_SAFE_INTEGER),
      { kind: 'groupRule', groupId: 'g', direction: 'inbound', index: Number.MAX_SAFE_INTEGER },
    ],
  ] as const)('%s', (_what, key, parts) => {
    expect(parseKey(key)).toEqual(parts);
  });
});

describe('the bulk fast path of parseKey', () => {
  it('answers what splitting the key answers, for keys near the endpoint and member layouts', () => {
    const pieces = [
      '',
      '/',
      'calico',
      'host',
      'h1',
      'workload',
      'docker',
      'c1',
      'endpoint',
      'e1',
      'addrs',
      'mac',
      'state',
      'network',
      'group',
      'g1',
      'member',
      'name',
      'rule',
      'x',
    ];
    let seed = 11;
    // xorshift32: small, seeded, and random in its low bits.
    const rnd = (n: number) => ((seed ^= seed << 13), (seed ^= seed >>> 17), (seed ^= seed << 5), (seed >>> 0) % n);
    const shapes = [
      ['/calico/host/', 'h1', '/workload/docker/', 'c1', '/endpoint/', 'e1', '/', 'addrs'],
      ['/calico/network/group/', 'g1', '/member/', 'e1'],
    ];
    let matched = 0;
    // Compared as text and asserted once: an expect per key costs more than the parsing.
    const differ: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      // A well-formed key with one or two parts swapped for something else.
      const parts = [...shapes[rnd(2)]!];
      for (let k = rnd(3); k > 0; k--) parts[rnd(parts.length)] = pieces[rnd(pieces.length)]!;
      const key = parts.join('');
      const fast = parseKey(key);
      if (JSON.stringify(fast) !== JSON.stringify(parseKeyBySegments(key))) differ.push(key);
      if (fast.kind !== 'unknown') matched++;
    }
    expect(differ.slice(0, 5).map((key) => [key, parseKey(key), parseKeyBySegments(key)])).toEqual([]);
    expect(matched).toBeGreaterThan(2_000);
  });
});
