/**
 * The renderer against expected text: a small host's chains in both families, the static and
 * raw chains for every EndpointToHostAction, ruleMatch as a table, and the exact
 * iptables-restore and ipset text a first apply sends to an empty kernel.
 */
import type { Rule } from '@calico/keyspace';
import { createLogger } from '@calico/log';
import { controlPlaneTargets, endpointPolicy, policyFixtures as fx } from '@calico/policy';
import type { KeyValue, PolicyModel } from '@calico/policy';
import { describe, expect, it } from 'vitest';
import { hostIfName } from '../plumber/names.js';
import { Dataplane } from './dataplane.js';
import {
  DISPATCH_LEAF,
  renderDataplane,
  renderDispatch,
  renderEndpoint,
  renderRawChains,
  renderStaticChains,
  ruleMatch,
  type DesiredDataplane,
  type EndpointToHostAction,
  type Family,
  type LocalEndpoint,
} from './desired.js';
import { FakeKernel } from './fakeKernel.js';
import { chainSpan, controlChain, fromChain, groupSetName, ifSuffix, srcChain, toChain } from './names.js';
import { walkChain, walkForward, type WalkPacket, type WalkTables } from './packetWalk.js';

const logger = createLogger({ name: 'desired-test', level: 'silent' });

const HOST = 'h1';
const E1 = '1111111111110001'; // v4 only, in web
const E2 = '2222222222220002'; // v4 + v6, in ops and web
const E3 = '3333333333330003'; // inactive, in web
const E4 = '4444444444440004'; // in no group
const E5 = '5555555555550005'; // two v4 addresses, in web
const R1 = 'remote-web'; // on h2, in web
const R2 = 'remote-admin'; // on h2, in admin

const keys: KeyValue[] = [
  ...fx.endpoint({ host: HOST, endpointId: E1, addrs: ['10.65.0.1'], mac: '02:00:00:00:00:01' }),
  ...fx.endpoint({ host: HOST, endpointId: E2, addrs: ['10.65.0.2', 'fd00::2'], mac: '02:00:00:00:00:02' }),
  ...fx.endpoint({ host: HOST, endpointId: E3, addrs: ['10.65.0.3'], state: 'inactive' }),
  ...fx.endpoint({ host: HOST, endpointId: E4, addrs: ['10.65.0.4', 'fd00::4'] }),
  ...fx.endpoint({ host: HOST, endpointId: E5, addrs: ['10.65.0.6', '10.65.0.5'] }),
  ...fx.endpoint({ host: 'h2', endpointId: R1, addrs: ['10.65.1.1', 'fd00::1:1'] }),
  ...fx.endpoint({ host: 'h2', endpointId: R2, addrs: ['10.65.2.1', 'fd00::2:1'] }),
  ...fx.group({
    groupId: 'web',
    members: [E1, E2, E3, E5, R1],
    inbound: [
      { group: 'web' },
      { cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 },
      { cidr: '::/0', protocol: 'tcp', port: 443 },
    ],
    outbound: [{ group: 'web' }, { cidr: '0.0.0.0/0' }, { cidr: '::/0' }],
  }),
  ...fx.group({
    groupId: 'ops',
    members: [E2],
    inbound: [
      { group: 'admin', protocol: 'tcp', port: 22 },
      { cidr: '192.168.0.0/16', protocol: 'icmp' },
      { cidr: 'fd00:1::/64', protocol: 'icmpv6' },
      { group: 'admin', protocol: 'icmp' },
      { group: 'admin', protocol: 'icmpv6' },
    ],
    outbound: [
      { cidr: '10.0.0.0/8', protocol: 'udplite', port: 5000 },
      { cidr: '2001:db8::/32', protocol: 'udp', port: 53 },
    ],
  }),
  ...fx.group({ groupId: 'admin', members: [R2] }),
];

function local(model: PolicyModel, endpointId: string): LocalEndpoint {
  const ep = model.endpoint(endpointId)!;
  return {
    endpointId,
    hostIf: hostIfName(endpointId),
    mac: ep.mac,
    v4: ep.addrs.v4,
    v6: ep.addrs.v6,
    policy: endpointPolicy(model, endpointId),
  };
}

const groupMembers = (model: PolicyModel) => (groupId: string, family: Family) => model.groupAddrs(groupId, family);

const S4web = groupSetName('web', 4);
const S6web = groupSetName('web', 6);
const S4admin = groupSetName('admin', 4);
const S6admin = groupSetName('admin', 6);
const if1 = hostIfName(E1);
const if2 = hostIfName(E2);

const ND = [130, 131, 132, 133, 135, 136].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`);
const CT = ['-m conntrack --ctstate INVALID -j DROP', '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'];
/** Each outbound chain drops tcp to the control plane before its rules. */
const CTL = (family: Family) => `-m set --match-set cali${family}-ctl dst,dst -j DROP`;

const STATIC_COMMON = {
  'cali-FORWARD': ['-i cali+ -g cali-wl-fwd', '-o cali+ -g cali-wl-fwd'],
  'cali-wl-fwd': [...CT, '-i cali+ -j cali-from-wl', '-o cali+ -j cali-to-wl', '-j ACCEPT'],
  'cali-INPUT': ['-i cali+ -g cali-wl-to-host'],
};

describe('ruleMatch', () => {
  const r = (p: Partial<Rule>): Rule => ({ group: null, cidr: null, family: null, protocol: null, port: null, ...p });
  const v4net = { cidr: '10.0.0.0/8', family: 4 as const };
  const v6net = { cidr: '2001:db8::/32', family: 6 as const };
  const all4 = { cidr: '0.0.0.0/0', family: 4 as const };
  const all6 = { cidr: '::/0', family: 6 as const };
  it.each<[string, Rule, Family, 'src' | 'dst', string | null]>([
    ['group, v4, source', r({ group: 'web' }), 4, 'src', `-m set --match-set ${S4web} src`],
    ['group, v6, destination', r({ group: 'web' }), 6, 'dst', `-m set --match-set ${S6web} dst`],
    ['v4 network as source', r(v4net), 4, 'src', '-s 10.0.0.0/8'],
    ['v4 network as destination', r(v4net), 4, 'dst', '-d 10.0.0.0/8'],
    ['v4 network in v6', r(v4net), 6, 'src', null],
    ['v6 network as destination', r(v6net), 6, 'dst', '-d 2001:db8::/32'],
    ['v6 network in v4', r(v6net), 4, 'dst', null],
    ['0.0.0.0/0 needs no match', r(all4), 4, 'src', ''],
    ['0.0.0.0/0 in v6', r(all4), 6, 'src', null],
    ['::/0 needs no match', r(all6), 6, 'dst', ''],
    ['::/0 in v4', r(all6), 4, 'dst', null],
    ['tcp port', r({ ...all4, protocol: 'tcp', port: 80 }), 4, 'src', '-p tcp -m tcp --dport 80'],
    ['tcp, any port', r({ ...all6, protocol: 'tcp' }), 6, 'src', '-p tcp'],
    ['udp port', r({ ...v6net, protocol: 'udp', port: 53 }), 6, 'dst', '-d 2001:db8::/32 -p udp -m udp --dport 53'],
    [
      'sctp port',
      r({ group: 'web', protocol: 'sctp', port: 9 }),
      4,
      'src',
      `-m set --match-set ${S4web} src -p sctp -m sctp --dport 9`,
    ],
    [
      'udplite port (multiport)',
      r({ ...v4net, protocol: 'udplite', port: 5000 }),
      4,
      'dst',
      '-d 10.0.0.0/8 -p udplite -m multiport --dports 5000',
    ],
    ['icmp in v4', r({ ...all4, protocol: 'icmp' }), 4, 'src', '-p icmp'],
    ['icmp in v6', r({ ...all6, protocol: 'icmp' }), 6, 'src', null],
    ['icmp group rule in v6', r({ group: 'web', protocol: 'icmp' }), 6, 'src', null],
    ['icmpv6 in v6', r({ ...all6, protocol: 'icmpv6' }), 6, 'src', '-p ipv6-icmp'],
    ['icmpv6 in v4', r({ ...all4, protocol: 'icmpv6' }), 4, 'src', null],
    ['icmpv6 group rule in v4', r({ group: 'web', protocol: 'icmpv6' }), 4, 'src', null],
    ['protocol by number', r({ ...all4, protocol: '47' }), 4, 'dst', '-p 47'],
  ])('%s', (_name, rule, family, peer, expected) => {
    expect(ruleMatch(rule, family, peer)).toBe(expected);
  });
});

describe('renderStaticChains', () => {
  it.each<[EndpointToHostAction, Family, string[]]>([
    ['drop', 4, [...CT, '-j DROP']],
    ['drop', 6, [...CT, ...ND, '-j DROP']],
    // accept: but the control plane on this host meets the workload's outbound chain.
    ['accept', 4, [...CT, '-m set --match-set cali4-ctl dst,dst -j cali-from-wl', '-j ACCEPT']],
    ['accept', 6, [...CT, ...ND, '-m set --match-set cali6-ctl dst,dst -j cali-from-wl', '-j ACCEPT']],
    ['policy', 4, [...CT, '-j cali-from-wl', '-j ACCEPT']],
    ['policy', 6, [...CT, ...ND, '-j cali-from-wl', '-j ACCEPT']],
  ])('%s in IPv%i', (action, family, toHost) => {
    expect(Object.fromEntries(renderStaticChains(family, action))).toEqual({
      ...STATIC_COMMON,
      'cali-wl-to-host': toHost,
    });
  });
});

describe('renderRawChains', () => {
  it('IPv4 has none (rp_filter does the reverse-path check)', () => {
    expect([...renderRawChains(4)]).toEqual([]);
  });
  it('IPv6 drops workload packets that fail the reverse-path check', () => {
    expect(Object.fromEntries(renderRawChains(6))).toEqual({
      'cali-PREROUTING': ['-i cali+ -m rpfilter --invert -j DROP'],
    });
  });
});

describe('renderDispatch', () => {
  it('one goto per interface, sorted, and a drop for any other', () => {
    expect(Object.fromEntries(renderDispatch(['cali22222222222', 'cali11111111111']))).toEqual({
      'cali-from-wl': [
        '-i cali11111111111 -g cali-fw-11111111111',
        '-i cali22222222222 -g cali-fw-22222222222',
        '-j DROP',
      ],
      'cali-to-wl': [
        '-o cali11111111111 -g cali-tw-11111111111',
        '-o cali22222222222 -g cali-tw-22222222222',
        '-j DROP',
      ],
    });
  });
  it('with no workloads everything drops', () => {
    expect(Object.fromEntries(renderDispatch([]))).toEqual({ 'cali-from-wl': ['-j DROP'], 'cali-to-wl': ['-j DROP'] });
  });

  // Interfaces whose suffixes count up in hex, as sequential endpoint ids give.
  const ifs = (n: number, head = '0000') =>
    Array.from({ length: n }, (_, i) => `cali${head}${i.toString(16).padStart(11 - head.length, '0')}`);

  it(`up to ${DISPATCH_LEAF} interfaces stay in one chain`, () => {
    const d = renderDispatch(ifs(DISPATCH_LEAF));
    expect([...d.keys()]).toEqual(['cali-from-wl', 'cali-to-wl']);
    expect(d.get('cali-from-wl')).toHaveLength(DISPATCH_LEAF + 1);
  });

  it('more branch on the first hex digit where they differ, each branch a chain of its own', () => {
    // 300 suffixes 0000000000..000000012b share "00000000"; they differ in the 9th digit (0, 1).
    const d = renderDispatch(ifs(300));
    expect(d.get('cali-from-wl')).toEqual([
      '-i cali000000000+ -g cali-from-wl-000000000',
      '-i cali000000001+ -g cali-from-wl-000000001',
      '-j DROP',
    ]);
    expect(d.get('cali-to-wl')).toEqual([
      '-o cali000000000+ -g cali-to-wl-000000000',
      '-o cali000000001+ -g cali-to-wl-000000001',
      '-j DROP',
    ]);
    // 256 under 000000000: still more than a leaf holds, so one more level, on the 10th digit.
    expect(d.get('cali-from-wl-000000000')).toHaveLength(17);
    expect(d.get('cali-from-wl-0000000000')).toEqual([...ifs(16).map((i) => `-i ${i} -g ${fromChain(i)}`), '-j DROP']);
    // 44 under 000000001: a leaf.
    expect(d.get('cali-to-wl-000000001')).toHaveLength(45);
  });

  it('every interface is reached by exactly one path of prefix matches, ending at its own chain', () => {
    const all = [...ifs(700), ...ifs(90, 'ab'), ...ifs(3, 'f')];
    const d = renderDispatch([...all].reverse());
    for (const direction of ['from', 'to'] as const) {
      const flag = direction === 'from' ? '-i' : '-o';
      for (const i of all) {
        // Walk the tree as the kernel would: the first line that matches the interface wins.
        let chain = direction === 'from' ? 'cali-from-wl' : 'cali-to-wl';
        for (let depth = 0; depth < 12; depth++) {
          const line = d.get(chain)!.find((l) => {
            const m = new RegExp(`^${flag} (cali[0-9a-f]*)(\\+?) -g (\\S+)$`).exec(l);
            return m !== null && (m[2] ? i.startsWith(m[1]!) : i === m[1]);
          });
          expect(line, `${i} in ${chain}`).toBeDefined();
          chain = line!.split(' -g ')[1]!;
          if (!chain.startsWith('cali-from-wl') && !chain.startsWith('cali-to-wl')) break;
        }
        expect(chain).toBe(direction === 'from' ? fromChain(i) : toChain(i));
      }
      for (const [name, lines] of d) {
        expect(lines.at(-1)).toBe('-j DROP');
        expect(name.length).toBeLessThanOrEqual(28);
        expect(lines.length).toBeLessThanOrEqual(DISPATCH_LEAF + 1);
      }
    }
  });
});

describe('chainSpan', () => {
  // The dataplane writes chains of separate spans in separate transactions side by side, so a
  // chain with a span must jump only to chains inside it (or to ones that are not ours).
  it('every jump of a chain with a span stays inside the span', () => {
    const ifs = [
      ...Array.from({ length: 700 }, (_, i) => `cali${i.toString(16).padStart(11, '0')}`),
      'caliab000000001',
      'calif0000000002',
    ];
    const chains = renderDispatch(ifs);
    for (const i of ifs) {
      // A workload with two addresses: its outbound chain jumps to its source chain.
      chains.set(fromChain(i), [`-j ${srcChain(i)}`, '-j DROP']);
      chains.set(srcChain(i), ['-s 10.0.0.1/32 -j RETURN', '-j DROP']);
      chains.set(toChain(i), ['-j DROP']);
    }
    let checked = 0;
    for (const [name, lines] of chains) {
      const span = chainSpan(name);
      if (name === 'cali-from-wl' || name === 'cali-to-wl') expect(span).toBeNull();
      else expect(span, name).not.toBeNull();
      if (span === null) continue;
      for (const l of lines) {
        const target = / -[jg] (cali-\S+)/.exec(` ${l}`)?.[1];
        if (target === undefined) continue;
        expect(chainSpan(target)?.startsWith(span), `${name} → ${target}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(2_000);
  });
});

describe('renderEndpoint', () => {
  const model = fx.model(keys);
  const chainsOf = (id: string, family: Family) => {
    const r = renderEndpoint(local(model, id), family);
    return { chains: Object.fromEntries(r.chains), sets: Object.fromEntries(r.sets) };
  };

  it('an inactive endpoint has no chains (the dispatch drops its packets) and names no set', () => {
    for (const family of [4, 6] as const) expect(chainsOf(E3, family)).toEqual({ chains: {}, sets: {} });
  });

  it('an endpoint in no group may only be spoof-checked and then dropped', () => {
    const hostIf = hostIfName(E4);
    expect(chainsOf(E4, 4)).toEqual({
      chains: { [fromChain(hostIf)]: ['! -s 10.65.0.4/32 -j DROP', CTL(4), '-j DROP'], [toChain(hostIf)]: ['-j DROP'] },
      sets: {},
    });
    expect(chainsOf(E4, 6)).toEqual({
      chains: { [fromChain(hostIf)]: ['! -s fd00::4/128 -j DROP', CTL(6), '-j DROP'], [toChain(hostIf)]: ['-j DROP'] },
      sets: {},
    });
  });

  it('an endpoint with two v4 addresses checks its source in a chain of its own', () => {
    const hostIf = hostIfName(E5);
    expect(chainsOf(E5, 4)).toEqual({
      chains: {
        [srcChain(hostIf)]: ['-s 10.65.0.5/32 -j RETURN', '-s 10.65.0.6/32 -j RETURN', '-j DROP'],
        [fromChain(hostIf)]: [
          `-j ${srcChain(hostIf)}`,
          CTL(4),
          `-m set --match-set ${S4web} dst -j RETURN`,
          '-j RETURN',
          '-j DROP',
        ],
        [toChain(hostIf)]: [
          `-m set --match-set ${S4web} src -j RETURN`,
          '-p tcp -m tcp --dport 80 -j RETURN',
          '-j DROP',
        ],
      },
      sets: { [S4web]: 'web' },
    });
    // No IPv6 address: no IPv6 chains, so the IPv6 dispatch drops its packets.
    expect(chainsOf(E5, 6)).toEqual({ chains: {}, sets: {} });
  });
});

describe('renderDataplane for a small host', () => {
  const model = fx.model(keys);
  const d = renderDataplane([local(model, E1), local(model, E2)], groupMembers(model), 'drop');

  const dispatch = {
    'cali-from-wl': [`-i ${if1} -g ${fromChain(if1)}`, `-i ${if2} -g ${fromChain(if2)}`, '-j DROP'],
    'cali-to-wl': [`-o ${if1} -g ${toChain(if1)}`, `-o ${if2} -g ${toChain(if2)}`, '-j DROP'],
  };

  it('IPv4 filter table', () => {
    expect(Object.fromEntries(d.tables[4].filter)).toEqual({
      ...STATIC_COMMON,
      'cali-wl-to-host': [...CT, '-j DROP'],
      ...dispatch,
      [fromChain(if1)]: [
        '-m mac ! --mac-source 02:00:00:00:00:01 -j DROP',
        '! -s 10.65.0.1/32 -j DROP',
        CTL(4),
        `-m set --match-set ${S4web} dst -j RETURN`,
        '-j RETURN',
        '-j DROP',
      ],
      [toChain(if1)]: [`-m set --match-set ${S4web} src -j RETURN`, '-p tcp -m tcp --dport 80 -j RETURN', '-j DROP'],
      [fromChain(if2)]: [
        '-m mac ! --mac-source 02:00:00:00:00:02 -j DROP',
        '! -s 10.65.0.2/32 -j DROP',
        CTL(4),
        '-d 10.0.0.0/8 -p udplite -m multiport --dports 5000 -j RETURN',
        `-m set --match-set ${S4web} dst -j RETURN`,
        '-j RETURN',
        '-j DROP',
      ],
      [toChain(if2)]: [
        `-m set --match-set ${S4admin} src -p tcp -m tcp --dport 22 -j RETURN`,
        '-s 192.168.0.0/16 -p icmp -j RETURN',
        `-m set --match-set ${S4admin} src -p icmp -j RETURN`,
        `-m set --match-set ${S4web} src -j RETURN`,
        '-p tcp -m tcp --dport 80 -j RETURN',
        '-j DROP',
      ],
    });
  });

  it('IPv6 filter table', () => {
    expect(Object.fromEntries(d.tables[6].filter)).toEqual({
      ...STATIC_COMMON,
      'cali-wl-to-host': [...CT, ...ND, '-j DROP'],
      // E1 has no IPv6 address: it has no IPv6 chains, and the dispatch drops its packets.
      'cali-from-wl': [`-i ${if2} -g ${fromChain(if2)}`, '-j DROP'],
      'cali-to-wl': [`-o ${if2} -g ${toChain(if2)}`, '-j DROP'],
      [fromChain(if2)]: [
        '-m mac ! --mac-source 02:00:00:00:00:02 -j DROP',
        '! -s fd00::2/128 -j DROP',
        CTL(6),
        '-d 2001:db8::/32 -p udp -m udp --dport 53 -j RETURN',
        `-m set --match-set ${S6web} dst -j RETURN`,
        '-j RETURN',
        '-j DROP',
      ],
      [toChain(if2)]: [
        `-m set --match-set ${S6admin} src -p tcp -m tcp --dport 22 -j RETURN`,
        '-s fd00:1::/64 -p ipv6-icmp -j RETURN',
        `-m set --match-set ${S6admin} src -p ipv6-icmp -j RETURN`,
        `-m set --match-set ${S6web} src -j RETURN`,
        '-p tcp -m tcp --dport 443 -j RETURN',
        '-j DROP',
      ],
    });
  });

  it('raw tables', () => {
    expect(Object.fromEntries(d.tables[4].raw)).toEqual({});
    expect(Object.fromEntries(d.tables[6].raw)).toEqual({
      'cali-PREROUTING': ['-i cali+ -m rpfilter --invert -j DROP'],
    });
  });

  it('ipsets: one per group and family that a rule names, holding the active members of that family', () => {
    const sets = Object.fromEntries(
      [...d.ipsets].map(([name, s]) => [name, { family: s.family, members: [...s.members] }]),
    );
    expect(sets).toEqual({
      // Always, for the chains that name them; empty here, as no control plane was given.
      'cali4-ctl': { family: 4, members: [] },
      'cali6-ctl': { family: 6, members: [] },
      // E3 is inactive: its address is not a member.
      [S4web]: { family: 4, members: ['10.65.0.1', '10.65.0.2', '10.65.0.5', '10.65.0.6', '10.65.1.1'] },
      [S4admin]: { family: 4, members: ['10.65.2.1'] },
      [S6web]: { family: 6, members: ['fd00::2', 'fd00::1:1'] },
      [S6admin]: { family: 6, members: ['fd00::2:1'] },
    });
    for (const name of d.ipsets.keys()) expect(name.length).toBeLessThanOrEqual(31);
    expect(S4web).toMatch(/^cali4g-[A-Za-z0-9]{20}$/);
    expect(S6web).toMatch(/^cali6g-[A-Za-z0-9]{20}$/);
  });

  it('IPv4 rules never land in the IPv6 table, nor IPv6 rules in the IPv4 table', () => {
    const all = [local(model, E1), local(model, E2), local(model, E3), local(model, E4), local(model, E5)];
    for (const action of ['drop', 'accept', 'policy'] as const) {
      const full = renderDataplane(all, groupMembers(model), action);
      const v4 = [...full.tables[4].filter.values(), ...full.tables[4].raw.values()].flat();
      const v6 = [...full.tables[6].filter.values(), ...full.tables[6].raw.values()].flat();
      for (const line of v4) {
        expect(line).not.toMatch(/[0-9a-f]*:[0-9a-f:]*\/|cali6g-|ipv6-icmp|icmp6|rpfilter/);
      }
      for (const line of v6) {
        expect(line).not.toMatch(/\d+\.\d+\.\d+\.\d+|cali4g-|-p icmp\b/);
      }
      for (const [name, s] of full.ipsets) {
        expect(name.startsWith(`cali${s.family}g-`) || name === `cali${s.family}-ctl`).toBe(true);
      }
    }
  });

  it('loads into a kernel that checks address families and set families', async () => {
    const kernel = new FakeKernel();
    const full = renderDataplane(
      [E1, E2, E3, E4, E5].map((id) => local(model, id)),
      groupMembers(model),
      'policy',
    );
    const dp = new Dataplane(kernel, logger);
    load(dp, full);
    await dp.apply();
    expect(kernel.received.every((r) => r.ok)).toBe(true);
    expect(kernel.rules(4, 'filter', toChain(if2))).toHaveLength(6);
  });
});

function load(dp: Dataplane, d: DesiredDataplane): void {
  for (const family of [4, 6] as const) {
    for (const table of ['filter', 'raw'] as const)
      for (const [chain, lines] of d.tables[family][table]) dp.setChain(family, table, chain, lines);
  }
  for (const [name, s] of d.ipsets) dp.setIpset(name, s.family, s.members, s.type);
}

describe('the text of a first apply to an empty kernel', () => {
  const E = 'abcdef0123456789';
  const hostIf = hostIfName(E);
  const fw = fromChain(hostIf);
  const tw = toChain(hostIf);
  const set = groupSetName('g', 4);
  const model = fx.model([
    ...fx.endpoint({ host: HOST, endpointId: E, addrs: ['10.65.0.1'] }),
    ...fx.group({ groupId: 'g', members: [E], inbound: [{ group: 'g' }], outbound: [{ cidr: '0.0.0.0/0' }] }),
  ]);
  /**
   * One "-A" line as the dataplane writes it: the hash comment first, then the rule. The hash
   * values are pinned in names.test.ts; here each must be distinct, and is compared as <hash>.
   */
  const A = (chain: string, lines: string[]) => lines.map((l) => `-A ${chain} -m comment --comment "cali:<hash>" ${l}`);
  const hashed = (text: string | undefined) => {
    const hashes = [...(text ?? '').matchAll(/"cali:([A-Za-z0-9]{16})"/g)].map((m) => m[1]);
    expect(new Set(hashes).size).toBe(hashes.length);
    return (text ?? '').replace(/"cali:[A-Za-z0-9]{16}"/g, '"cali:<hash>"');
  };

  it('creates the set, then writes each table with its hooks, in that order', async () => {
    const kernel = new FakeKernel();
    const dp = new Dataplane(kernel, logger);
    load(dp, renderDataplane([local(model, E)], groupMembers(model), 'drop'));
    const stats = await dp.apply();

    // IPv4 has no raw chains; IPv6 writes its filter and raw tables in one restore.
    expect(kernel.calls).toEqual({ iptablesRestore: 2, ipsetRestore: 1, saves: 5 });
    expect(kernel.received.map((r) => [r.kind, r.family])).toEqual([
      ['ipsetRestore', null],
      ['iptablesRestore', 4],
      ['iptablesRestore', 6],
    ]);
    expect(kernel.texts('ipsetRestore')).toEqual([
      [
        'create cali4-ctl hash:ip,port family inet maxelem 65536',
        `create ${set} hash:ip family inet maxelem 65536`,
        `add ${set} 10.65.0.1`,
        'create cali6-ctl hash:ip,port family inet6 maxelem 65536',
        '',
      ].join('\n'),
    ]);

    // wl null: the workload has no chains in the family (no address of it), and the dispatch drops.
    const filterText = (toHost: string[], wl: { fwLines: string[]; twLines: string[] } | null) =>
      [
        '*filter',
        ':cali-FORWARD - [0:0]',
        ':cali-wl-fwd - [0:0]',
        ':cali-INPUT - [0:0]',
        ':cali-wl-to-host - [0:0]',
        ':cali-from-wl - [0:0]',
        ':cali-to-wl - [0:0]',
        ...(wl ? [`:${fw} - [0:0]`, `:${tw} - [0:0]`] : []),
        ...A('cali-FORWARD', ['-i cali+ -g cali-wl-fwd', '-o cali+ -g cali-wl-fwd']),
        ...A('cali-wl-fwd', [
          '-m conntrack --ctstate INVALID -j DROP',
          '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
          '-i cali+ -j cali-from-wl',
          '-o cali+ -j cali-to-wl',
          '-j ACCEPT',
        ]),
        ...A('cali-INPUT', ['-i cali+ -g cali-wl-to-host']),
        ...A('cali-wl-to-host', toHost),
        ...A('cali-from-wl', [...(wl ? [`-i ${hostIf} -g ${fw}`] : []), '-j DROP']),
        ...A('cali-to-wl', [...(wl ? [`-o ${hostIf} -g ${tw}`] : []), '-j DROP']),
        ...(wl ? [...A(fw, wl.fwLines), ...A(tw, wl.twLines)] : []),
        '-I FORWARD 1 -m comment --comment "cali:hook" -j cali-FORWARD',
        '-I INPUT 1 -m comment --comment "cali:hook" -j cali-INPUT',
        'COMMIT',
        '',
      ].join('\n');

    expect(hashed(kernel.texts('iptablesRestore', 4)[0])).toBe(
      filterText(
        ['-m conntrack --ctstate INVALID -j DROP', '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-j DROP'],
        {
          fwLines: ['! -s 10.65.0.1/32 -j DROP', CTL(4), '-j RETURN', '-j DROP'],
          twLines: [`-m set --match-set ${set} src -j RETURN`, '-j DROP'],
        },
      ),
    );
    expect(kernel.texts('iptablesRestore', 6).map(hashed)).toEqual([
      filterText(
        [
          '-m conntrack --ctstate INVALID -j DROP',
          '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
          '-p ipv6-icmp -m icmp6 --icmpv6-type 130 -j ACCEPT',
          '-p ipv6-icmp -m icmp6 --icmpv6-type 131 -j ACCEPT',
          '-p ipv6-icmp -m icmp6 --icmpv6-type 132 -j ACCEPT',
          '-p ipv6-icmp -m icmp6 --icmpv6-type 133 -j ACCEPT',
          '-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT',
          '-p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT',
          '-j DROP',
        ],
        null,
      ) +
        [
          '*raw',
          ':cali-PREROUTING - [0:0]',
          ...A('cali-PREROUTING', ['-i cali+ -m rpfilter --invert -j DROP']),
          '-I PREROUTING 1 -m comment --comment "cali:hook" -j cali-PREROUTING',
          'COMMIT',
          '',
        ].join('\n'),
    ]);
    // The group's set and the two control-plane sets.
    const created = { ipsetsCreated: 3, ipsetsDestroyed: 0 };
    expect(stats).toEqual({ kernelCalls: 3, chainsWritten: 8 + 6 + 1, chainsDeleted: 0, ipsetEntries: 1, ...created });
    expect(kernel.received.every((r) => r.ok)).toBe(true);
    // What the kernel now holds, as iptables-save prints it: the hook first in FORWARD.
    expect(await kernel.iptablesSave(4, 'filter')).toContain(
      '\n-A FORWARD -m comment --comment "cali:hook" -j cali-FORWARD\n',
    );
    const head = `\ncreate ${set} hash:ip family inet hashsize 1024 maxelem 65536 `;
    const saved = `${head}bucketsize 12 initval 0x[0-9a-f]{8}\n`;
    expect(await kernel.ipsetSave()).toMatch(new RegExp(`${saved}add ${set} 10.65.0.1\n`));
  });
});

describe('the control plane', () => {
  const E = 'abcdef0123456789';
  const hostIf = hostIfName(E);
  const targets = controlPlaneTargets({
    etcdEndpoints: ['http://198.18.0.1:2379'],
    masterIp: null,
    masterApiUrl: 'http://198.18.0.1:7600/',
    hosts: [{ host: 'h2', birdIp: '198.18.0.12', bird6Ip: 'fd00:198:18::12', diagsUrl: 'http://198.18.0.12:9099/' }],
  });
  const modelWith = (outbound: { cidr: string; protocol?: string }[]) =>
    fx.model([
      ...fx.endpoint({ host: HOST, endpointId: E, addrs: ['10.65.0.1', 'fd00::1'] }),
      ...fx.group({ groupId: 'g', members: [E], outbound }),
    ]);

  it('a workload whose rules name addresses as host prefixes: a chain returns for them, drops the rest', () => {
    const m = modelWith([
      { cidr: '0.0.0.0/0' },
      { cidr: '198.18.0.1/32', protocol: 'tcp' },
      { cidr: '198.18.0.0/24' },
      { cidr: 'fd00:198:18::12/128' },
    ]);
    const v4 = Object.fromEntries(renderEndpoint(local(m, E), 4).chains);
    expect(v4[fromChain(hostIf)]?.slice(0, 2)).toEqual([
      '! -s 10.65.0.1/32 -j DROP',
      `-m set --match-set cali4-ctl dst,dst -j ${controlChain(hostIf)}`,
    ]);
    // The /24 names no address; 0.0.0.0/0 neither.
    expect(v4[controlChain(hostIf)]).toEqual(['-d 198.18.0.1/32 -j RETURN', '-j DROP']);
    const v6 = Object.fromEntries(renderEndpoint(local(m, E), 6).chains);
    expect(v6[controlChain(hostIf)]).toEqual(['-d fd00:198:18::12/128 -j RETURN', '-j DROP']);
    expect(chainSpan(controlChain(hostIf))).toBe(ifSuffix(hostIf));
  });

  it('the sets hold address,tcp:port pairs per family; the chains do not depend on them', () => {
    const m = modelWith([{ cidr: '0.0.0.0/0' }]);
    const withTargets = renderDataplane([local(m, E)], groupMembers(m), 'drop', targets);
    const without = renderDataplane([local(m, E)], groupMembers(m), 'drop');
    expect([...withTargets.ipsets.get('cali4-ctl')!.members]).toEqual([
      '198.18.0.1,tcp:2379',
      '198.18.0.1,tcp:2380',
      '198.18.0.1,tcp:7600',
      '198.18.0.12,tcp:179',
      '198.18.0.12,tcp:9099',
    ]);
    expect([...withTargets.ipsets.get('cali6-ctl')!.members]).toEqual(['fd00:198:18::12,tcp:179']);
    expect(withTargets.ipsets.get('cali6-ctl')?.type).toBe('hash:ip,port');
    expect(withTargets.tables).toEqual(without.tables);
  });

  it('a walk drops tcp to a target; passes another port, udp, and the address under a host-prefix rule', async () => {
    const kernelFor = async (outbound: { cidr: string }[], action: EndpointToHostAction = 'drop') => {
      const m = modelWith(outbound);
      const kernel = new FakeKernel();
      const dp = new Dataplane(kernel, logger);
      load(dp, renderDataplane([local(m, E)], groupMembers(m), action, targets));
      await dp.apply();
      return kernel;
    };
    const tables = (k: FakeKernel): WalkTables => ({
      rules: (f, t, c) => k.rules(f, t, c),
      policy: (f, t, c) => k.chainPolicy(f, t, c),
      setHas: (name, member) => k.setMembers(name)!.includes(member),
    });
    const packet = (dst: string, dport: number, protocol = 6): WalkPacket => ({
      family: 4,
      src: '10.65.0.1',
      dst,
      protocol,
      dport,
      sport: 40_000,
      inIf: hostIf,
      outIf: 'eth0',
      srcMac: null,
      reversePathOk: true,
      ctState: 'NEW',
    });
    const open = await kernelFor([{ cidr: '0.0.0.0/0' }]);
    const fwd = (k: FakeKernel, p: WalkPacket) => walkForward(tables(k), p).accepted;
    expect(fwd(open, packet('198.18.0.1', 2379))).toBe(false);
    expect(fwd(open, packet('198.18.0.12', 179))).toBe(false);
    expect(fwd(open, packet('198.18.0.1', 2381))).toBe(true);
    expect(fwd(open, packet('198.18.0.1', 2379, 17))).toBe(true);
    const named = await kernelFor([{ cidr: '0.0.0.0/0' }, { cidr: '198.18.0.1/32' }]);
    expect(fwd(named, packet('198.18.0.1', 2379))).toBe(true);
    expect(fwd(named, packet('198.18.0.12', 179))).toBe(false);
    // To this host with EndpointToHostAction accept: the control plane still meets the workload's chain.
    const toHost = (k: FakeKernel, p: WalkPacket) => walkChain(tables(k), 'filter', 'INPUT', p);
    const accepting = await kernelFor([{ cidr: '0.0.0.0/0' }], 'accept');
    expect(toHost(accepting, packet('198.18.0.12', 9099))).toBe(false);
    expect(toHost(accepting, packet('198.18.0.12', 8080))).toBe(true);
    const acceptingNamed = await kernelFor([{ cidr: '198.18.0.12/32' }], 'accept');
    expect(toHost(acceptingNamed, packet('198.18.0.12', 9099))).toBe(true);
  });
});
