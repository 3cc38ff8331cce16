import { describe, expect, it } from 'vitest';
import { groupRuleKey, type RuleInput } from '@calico/keyspace';
import { PolicyError, PolicyErrorCode } from './errors.js';
import { explain, type ExplainQuery } from './explain.js';
import type { PolicyModel } from './model.js';
import { policyFixtures as fx, type KeyValue } from './testing.js';

// Two endpoints with one address of each family; tests give them groups and rules.
const A = fx.endpoint({ host: 'h1', endpointId: 'A', addrs: ['198.19.0.1', 'fd00:198:19::1'] });
const B = fx.endpoint({ host: 'h2', endpointId: 'B', addrs: ['198.19.0.2', 'fd00:198:19::2'] });

/** Group `ga` holds A and group `gb` holds B, with the rules given (nothing else allowed). */
function twoGroups(
  rules: { aOut?: RuleInput[]; aIn?: RuleInput[]; bOut?: RuleInput[]; bIn?: RuleInput[] },
  extra: KeyValue[] = [],
): PolicyModel {
  return fx.model([
    ...A,
    ...B,
    ...fx.group({ groupId: 'ga', name: 'web', members: ['A'], outbound: rules.aOut ?? [], inbound: rules.aIn ?? [] }),
    ...fx.group({ groupId: 'gb', name: 'db', members: ['B'], outbound: rules.bOut ?? [], inbound: rules.bIn ?? [] }),
    ...extra,
  ]);
}

const ok = (m: PolicyModel, q: ExplainQuery): boolean => explain(m, q).allowed;

describe('default deny', () => {
  it('an endpoint in no group may neither send nor receive', () => {
    const m = fx.model([...A, ...B]);
    const v = explain(m, { src: 'A', dst: 'B' });
    expect(v).toEqual({
      allowed: false,
      family: 4,
      src: { addr: '198.19.0.1', endpointId: 'A' },
      dst: { addr: '198.19.0.2', endpointId: 'B' },
      outbound: { allowed: false, decidedBy: null, groups: [], reason: 'no-group' },
      inbound: { allowed: false, decidedBy: null, groups: [], reason: 'no-group' },
      reason: 'denied: endpoint A is in no group',
    });
    expect(ok(m, { src: '203.0.113.9', dst: 'B' })).toBe(false);
    expect(ok(m, { src: 'A', dst: '203.0.113.9' })).toBe(false);
  });

  it('a group with no rules denies both ways, and says which groups had nothing', () => {
    const m = twoGroups({ bIn: [{ cidr: '0.0.0.0/0' }] });
    expect(explain(m, { src: 'A', dst: 'B' }).reason).toBe(
      'denied: no outbound rule of groups [web (ga)] of A matches; default deny',
    );
    expect(explain(m, { src: 'A', dst: 'B' }).outbound?.reason).toBe('default-deny');
  });
});

describe('directions', () => {
  it('an outbound rule matches the destination; an inbound rule matches the source', () => {
    const m = twoGroups({ aOut: [{ cidr: '198.19.0.2/32' }], bIn: [{ cidr: '198.19.0.1/32' }] });
    const v = explain(m, { src: 'A', dst: 'B' });
    expect(v.allowed).toBe(true);
    expect(v.reason).toBe('allowed: outbound rule 1 of group web (ga) and inbound rule 1 of group db (gb)');
    expect(v.outbound?.decidedBy).toMatchObject({ groupId: 'ga', direction: 'outbound', index: 1 });
    // The same rules say nothing about the other direction.
    expect(ok(m, { src: 'B', dst: 'A' })).toBe(false);
  });

  it('an inbound rule naming the destination instead of the source does not match', () => {
    const m = twoGroups({ aOut: [{ cidr: '0.0.0.0/0' }], bIn: [{ cidr: '198.19.0.2/32' }] });
    expect(explain(m, { src: 'A', dst: 'B' }).reason).toBe(
      'denied: no inbound rule of groups [db (gb)] of B matches; default deny',
    );
  });

  it('traffic needs both the sender outbound and the receiver inbound', () => {
    expect(ok(twoGroups({ aOut: [{ group: 'gb' }] }), { src: 'A', dst: 'B' })).toBe(false);
    expect(ok(twoGroups({ bIn: [{ group: 'ga' }] }), { src: 'A', dst: 'B' })).toBe(false);
    expect(ok(twoGroups({ aOut: [{ group: 'gb' }], bIn: [{ group: 'ga' }] }), { src: 'A', dst: 'B' })).toBe(true);
  });

  it('with an outside address only the endpoint side decides', () => {
    const m = twoGroups({ aOut: [{ cidr: '203.0.113.0/24' }], aIn: [{ cidr: '192.0.2.0/24' }] });
    const out = explain(m, { src: 'A', dst: '203.0.113.7' });
    expect(out).toMatchObject({ allowed: true, inbound: null, dst: { addr: '203.0.113.7', endpointId: null } });
    expect(out.reason).toBe('allowed: outbound rule 1 of group web (ga); 203.0.113.7 is not an endpoint');
    expect(explain(m, { src: '192.0.2.1', dst: 'A' })).toMatchObject({ allowed: true, outbound: null });
    expect(ok(m, { src: '203.0.113.7', dst: 'A' })).toBe(false);
  });

  it('between two outside addresses no policy applies', () => {
    const v = explain(fx.model([]), { src: '192.0.2.1', dst: '192.0.2.2' });
    expect(v).toMatchObject({ allowed: true, outbound: null, inbound: null });
    expect(v.reason).toBe('allowed: neither 192.0.2.1 nor 192.0.2.2 is an endpoint, so no policy applies');
  });
});

describe('groups', () => {
  it('a group rule matches the addresses of its member endpoints', () => {
    const m = twoGroups({ aOut: [{ group: 'gb' }], bIn: [{ group: 'ga' }] });
    expect(ok(m, { src: '198.19.0.1', dst: '198.19.0.2' })).toBe(true);
    expect(ok(m, { src: 'A', dst: '198.19.0.3' })).toBe(false);
  });

  it('an endpoint in several groups may do what any of them allows', () => {
    const m = twoGroups(
      { bIn: [{ cidr: '0.0.0.0/0' }] },
      fx.group({ groupId: 'gc', name: null, members: ['A'], outbound: [{ cidr: '198.19.0.0/24', protocol: 'udp' }] }),
    );
    const v = explain(m, { src: 'A', dst: 'B', protocol: 'udp' });
    expect(v.allowed).toBe(true);
    expect(v.outbound).toMatchObject({ groups: ['ga', 'gc'], decidedBy: { groupId: 'gc', index: 1 } });
    expect(v.reason).toBe('allowed: outbound rule 1 of group gc and inbound rule 1 of group db (gb)');
    expect(ok(m, { src: 'A', dst: 'B', protocol: 'tcp' })).toBe(false);
  });

  it('the first matching rule by group id, then index, decides', () => {
    const m = fx.model([
      ...A,
      ...fx.group({ groupId: 'g2', members: ['A'], outbound: [{ cidr: '0.0.0.0/0' }] }),
      ...fx.group({
        groupId: 'g1',
        members: ['A'],
        outbound: [{ cidr: '10.0.0.0/8' }, { cidr: '192.0.2.0/24' }, { cidr: '192.0.2.0/28' }],
      }),
    ]);
    expect(explain(m, { src: 'A', dst: '192.0.2.1' }).outbound?.decidedBy).toMatchObject({ groupId: 'g1', index: 2 });
    expect(explain(m, { src: 'A', dst: '8.8.8.8' }).outbound?.decidedBy).toMatchObject({ groupId: 'g2', index: 1 });
  });

  it('a member that is not an endpoint contributes no addresses but stays a member', () => {
    const m = twoGroups(
      { aOut: [{ group: 'gb' }], bIn: [{ group: 'ga' }] },
      fx.group({ groupId: 'gb', members: ['ghost'] }),
    );
    expect(m.group('gb')?.members).toEqual(['B', 'ghost']);
    expect(m.groupAddrs('gb', 4)).toEqual(['198.19.0.2']);
    expect(ok(m, { src: 'A', dst: 'B' })).toBe(true);
  });
});

describe('protocol and port', () => {
  const web = twoGroups({ aOut: [{ cidr: '0.0.0.0/0' }], bIn: [{ cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 }] });

  it.each([
    [{ protocol: 'tcp', port: 80 }, true],
    [{ protocol: 'TCP', port: 80 }, true],
    [{ protocol: '6', port: 80 }, true],
    [{ protocol: 'tcp', port: 81 }, false],
    [{ protocol: 'udp', port: 80 }, false],
    [{ protocol: 'tcp' }, false],
    [{}, false],
    [{ protocol: null, port: null }, false],
  ])('a tcp/80 rule and %j -> %s', (q, allowed) => {
    expect(ok(web, { src: 'A', dst: 'B', ...q })).toBe(allowed);
  });

  it('a protocol-only rule allows every port of that protocol, and only it', () => {
    const m = twoGroups({ aOut: [{ cidr: '0.0.0.0/0' }], bIn: [{ cidr: '0.0.0.0/0', protocol: 'udp' }] });
    expect(ok(m, { src: 'A', dst: 'B', protocol: 'udp', port: 53 })).toBe(true);
    expect(ok(m, { src: 'A', dst: 'B', protocol: 'udp' })).toBe(true);
    expect(ok(m, { src: 'A', dst: 'B', protocol: 'icmp' })).toBe(false);
    expect(ok(m, { src: 'A', dst: 'B' })).toBe(false);
  });

  it('a rule with no protocol allows anything, asked with or without a protocol', () => {
    const m = twoGroups({ aOut: [{ group: 'gb' }], bIn: [{ group: 'ga' }] });
    for (const q of [{}, { protocol: 'tcp', port: 443 }, { protocol: 'icmp' }, { protocol: '47' }])
      expect(ok(m, { src: 'A', dst: 'B', ...q })).toBe(true);
  });

  it('the port is the destination port in both directions', () => {
    // A client (A) connecting to port 5432 on B: both sides' rules name 5432, the server's port.
    const m = twoGroups({
      aOut: [{ group: 'gb', protocol: 'tcp', port: 5432 }],
      bIn: [{ group: 'ga', protocol: 'tcp', port: 5432 }],
    });
    expect(ok(m, { src: 'A', dst: 'B', protocol: 'tcp', port: 5432 })).toBe(true);
    expect(ok(m, { src: 'B', dst: 'A', protocol: 'tcp', port: 5432 })).toBe(false);
  });

  it('protocol 0 matches nothing, is left out of the endpoint policy and is reported', () => {
    const m = twoGroups({ aOut: [{ cidr: '0.0.0.0/0' }], bIn: [{ cidr: '0.0.0.0/0', protocol: 0 }] });
    expect(m.group('gb')?.inbound[0]?.rule.protocol).toBe('0');
    expect(ok(m, { src: 'A', dst: 'B' })).toBe(false);
    expect(ok(m, { src: 'A', dst: 'B', protocol: '0' })).toBe(false);
    const key = groupRuleKey('gb', 'inbound', 1);
    expect(m.problems()).toEqual([
      { key, errors: [`${key}: protocol 0 cannot be enforced (iptables reads it as "all")`] },
    ]);
  });

  it('numbered protocols without names are kept as text and match the same number', () => {
    const m = twoGroups({ aOut: [{ cidr: '0.0.0.0/0', protocol: 47 }], bIn: [{ cidr: '0.0.0.0/0' }] });
    expect(ok(m, { src: 'A', dst: 'B', protocol: '47' })).toBe(true);
    expect(ok(m, { src: 'A', dst: 'B', protocol: 'tcp' })).toBe(false);
  });
});

describe('IPv4 and IPv6 are separate', () => {
  it('0.0.0.0/0 is IPv4 only and ::/0 IPv6 only', () => {
    const v4only = twoGroups({ aOut: [{ cidr: '0.0.0.0/0' }], bIn: [{ cidr: '0.0.0.0/0' }] });
    expect(ok(v4only, { src: 'A', dst: 'B', family: 4 })).toBe(true);
    expect(ok(v4only, { src: 'A', dst: 'B', family: 6 })).toBe(false);
    expect(ok(v4only, { src: 'fd00:198:19::1', dst: 'fd00:198:19::2' })).toBe(false);
    const v6only = twoGroups({ aOut: [{ cidr: '::/0' }], bIn: [{ cidr: '::/0' }] });
    expect(ok(v6only, { src: 'A', dst: 'B' })).toBe(false);
    expect(ok(v6only, { src: 'A', dst: 'B', family: 6 })).toBe(true);
  });

  it('icmp is IPv4 and icmpv6 IPv6: a rule of one never opens the other family', () => {
    const m = twoGroups({
      aOut: [{ cidr: '0.0.0.0/0' }, { cidr: '::/0' }],
      bIn: [
        { group: 'ga', protocol: 'icmp' },
        { group: 'ga', protocol: 'icmpv6' },
      ],
    });
    expect(ok(m, { src: 'A', dst: 'B', protocol: 'icmp', family: 4 })).toBe(true);
    expect(ok(m, { src: 'A', dst: 'B', protocol: 'icmpv6', family: 6 })).toBe(true);
    // The same protocol numbers in the other family match neither rule (the renderer skips them too).
    const icmpIn6 = explain(m, { src: 'A', dst: 'B', protocol: 'icmp', family: 6 });
    expect(icmpIn6.allowed).toBe(false);
    expect(icmpIn6.inbound?.reason).toBe('default-deny');
    expect(ok(m, { src: 'A', dst: 'B', protocol: 'icmpv6', family: 4 })).toBe(false);
  });

  it('an IPv4 network never matches an IPv4-mapped IPv6 address', () => {
    const m = twoGroups({ aOut: [{ cidr: '198.19.0.0/16' }] });
    expect(ok(m, { src: 'A', dst: '198.19.9.9' })).toBe(true);
    expect(ok(m, { src: 'A', dst: '::ffff:198.19.9.9' })).toBe(false);
  });

  it('a group rule matches only member addresses of the packet family', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h1', endpointId: 'A', addrs: ['198.19.0.1', 'fd00:198:19::1'] }),
      ...fx.endpoint({ host: 'h2', endpointId: 'V6', addrs: ['fd00:198:19::6'] }),
      ...fx.group({ groupId: 'ga', members: ['A'], outbound: [{ group: 'g6' }], inbound: [{ group: 'g6' }] }),
      ...fx.group({ groupId: 'g6', members: ['V6'], outbound: [{ group: 'ga' }], inbound: [{ group: 'ga' }] }),
    ]);
    expect(m.groupAddrs('g6', 4)).toEqual([]);
    expect(m.groupAddrs('ga', 6)).toEqual(['fd00:198:19::1']);
    expect(explain(m, { src: 'A', dst: 'V6' })).toMatchObject({
      allowed: true,
      family: 6,
      src: { addr: 'fd00:198:19::1' },
    });
    expect(ok(m, { src: 'fd00:198:19::6', dst: 'fd00:198:19::1' })).toBe(true);
    // IPv4 traffic from A finds no address in g6, so the same group rule allows nothing.
    expect(ok(m, { src: 'A', dst: '198.19.0.6' })).toBe(false);
    expect(() => explain(m, { src: '198.19.0.1', dst: 'V6' })).toThrow('endpoint V6 has no IPv4 address');
  });

  it('resolves an endpoint id to its first address of the other side family', () => {
    const m = twoGroups({});
    expect(explain(m, { src: 'A', dst: 'fd00:198:19::99' }).src.addr).toBe('fd00:198:19::1');
    expect(explain(m, { src: '0:0::FFFF:198.19.0.2', dst: 'A' })).toMatchObject({
      family: 6,
      src: { addr: '::ffff:198.19.0.2', endpointId: null },
    });
    expect(explain(m, { src: 'fd00:198:19:0::2', dst: 'A' }).src).toEqual({ addr: 'fd00:198:19::2', endpointId: 'B' });
  });
});

describe('endpoint state', () => {
  it('an inactive endpoint neither sends nor receives, whatever its groups allow', () => {
    const open: RuleInput[] = [{ cidr: '0.0.0.0/0' }];
    const m = twoGroups(
      { aOut: open, aIn: open, bOut: open, bIn: open },
      fx.endpoint({ host: 'h2', endpointId: 'B', addrs: ['198.19.0.2', 'fd00:198:19::2'], state: 'inactive' }),
    );
    expect(ok(m, { src: 'A', dst: 'B' })).toBe(false);
    expect(explain(m, { src: 'A', dst: 'B' }).reason).toBe('denied: endpoint B is inactive');
    expect(explain(m, { src: 'B', dst: 'A' }).outbound).toEqual({
      allowed: false,
      decidedBy: null,
      groups: ['gb'],
      reason: 'inactive',
    });
    expect(ok(m, { src: '198.19.0.2', dst: '203.0.113.1' })).toBe(false);
  });

  it('an inactive endpoint lends no addresses to its groups, and a missing state counts as active', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h', endpointId: 'x', addrs: ['198.19.0.7'], state: 'inactive' }),
      ...fx.endpoint({ host: 'h', endpointId: 'y', addrs: ['198.19.0.8'], state: null }),
      ...fx.group({ groupId: 'g', members: ['x', 'y'] }),
    ]);
    expect(m.groupAddrs('g', 4)).toEqual(['198.19.0.8']);
  });

  it('an address held by an inactive and an active endpoint belongs to the active one', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h', endpointId: 'old', addrs: ['198.19.0.7'], state: 'inactive' }),
      ...fx.endpoint({ host: 'h', endpointId: 'new', addrs: ['198.19.0.7'] }),
    ]);
    expect(explain(m, { src: '203.0.113.1', dst: '198.19.0.7' }).dst.endpointId).toBe('new');
  });
});

describe('dangling group references', () => {
  it('match nothing and are reported until the group appears', () => {
    const m = twoGroups({ aOut: [{ group: 'later' }], bIn: [{ cidr: '0.0.0.0/0' }] });
    const key = groupRuleKey('ga', 'outbound', 1);
    expect(m.problems()).toEqual([{ key, errors: [`${key}: refers to group later, which does not exist`] }]);
    expect(ok(m, { src: 'A', dst: 'B' })).toBe(false);
    m.applyAll(fx.puts(fx.group({ groupId: 'later', name: null, members: ['B'], defaults: false })));
    expect(m.problems()).toEqual([]);
    expect(ok(m, { src: 'A', dst: 'B' })).toBe(true);
    m.apply({ type: 'delete', key: '/calico/network/group/later/member/B' });
    expect(m.problems().map((p) => p.key)).toEqual([key]);
  });

  it('a rule can refer to its own group', () => {
    const m = fx.model([...A, ...fx.group({ groupId: 'self', members: ['A'], outbound: [{ group: 'self' }] })]);
    expect(m.problems()).toEqual([]);
    expect(m.groupAddrs('self', 4)).toEqual(['198.19.0.1']);
  });
});

describe('errors', () => {
  const m = twoGroups({}, fx.endpoint({ host: 'h3', endpointId: 'V4', addrs: ['198.19.0.4'] }));

  it.each<[ExplainQuery, string, string]>([
    [
      { src: 'nobody', dst: 'A' },
      PolicyErrorCode.UNKNOWN_ENDPOINT,
      'source "nobody" is neither an IP address nor the id of a known endpoint',
    ],
    [
      { src: 'A', dst: 'nobody' },
      PolicyErrorCode.UNKNOWN_ENDPOINT,
      'destination "nobody" is neither an IP address nor the id of a known endpoint',
    ],
    [
      { src: '198.19.0.1', dst: 'fd00::1' },
      PolicyErrorCode.FAMILY_MISMATCH,
      'cannot mix IPv4 198.19.0.1 with IPv6 fd00::1',
    ],
    [
      { src: '198.19.0.1', dst: 'B', family: 6 },
      PolicyErrorCode.FAMILY_MISMATCH,
      '198.19.0.1 is an IPv4 address, but IPv6 was asked for',
    ],
    [{ src: 'V4', dst: 'fd00::1' }, PolicyErrorCode.NO_ADDRESS, 'endpoint V4 has no IPv6 address'],
    [{ src: 'V4', dst: 'B', family: 6 }, PolicyErrorCode.NO_ADDRESS, 'endpoint V4 has no IPv6 address'],
    [
      { src: 'A', dst: 'B', protocol: 'gre' },
      PolicyErrorCode.INVALID_QUERY,
      'protocol "gre" is not one of icmp, tcp, udp, icmpv6, sctp, udplite or a number from 0 to 255',
    ],
    [
      { src: 'A', dst: 'B', port: 80 },
      PolicyErrorCode.INVALID_QUERY,
      'port 80 needs a protocol (tcp, udp, sctp or udplite)',
    ],
    [
      { src: 'A', dst: 'B', protocol: 'icmp', port: 80 },
      PolicyErrorCode.INVALID_QUERY,
      'protocol icmp has no ports, so port must be null',
    ],
    [
      { src: 'A', dst: 'B', protocol: 'tcp', port: 0 },
      PolicyErrorCode.INVALID_QUERY,
      'port 0 is not an integer from 1 to 65535',
    ],
    [{ src: '198.19.0.1', dst: 'B', family: 5 as 4 }, PolicyErrorCode.INVALID_QUERY, 'family must be 4 or 6, got 5'],
  ])('%j -> %s', (q, code, message) => {
    let thrown: unknown;
    try {
      explain(m, q);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(PolicyError);
    expect(thrown).toMatchObject({ code, message, name: 'PolicyError' });
  });

  it('two endpoints with no family in common', () => {
    const m6 = fx.model([
      ...fx.endpoint({ host: 'h', endpointId: 'X', addrs: ['198.19.0.1'] }),
      ...fx.endpoint({ host: 'h', endpointId: 'Y', addrs: ['fd00::1'] }),
    ]);
    expect(() => explain(m6, { src: 'X', dst: 'Y' })).toThrow('endpoints X and Y have no address family in common');
  });

  it('malformed rules never reach explain', () => {
    const bad = fx.model([
      ...A,
      ...fx.group({ groupId: 'g', members: ['A'] }),
      { key: groupRuleKey('g', 'outbound', 1), value: '{"cidr":"0.0.0.0/0","port":80}' },
    ]);
    expect(ok(bad, { src: 'A', dst: '8.8.8.8' })).toBe(false);
    expect(bad.problems()[0]?.key).toBe(groupRuleKey('g', 'outbound', 1));
  });
});
