import { describe, expect, it } from 'vitest';
import {
  encodeRule,
  endpointAddrsKey,
  endpointMacKey,
  endpointStateKey,
  groupDefaultKey,
  groupMemberKey,
  groupNameKey,
  groupRuleKey,
} from '@calico/keyspace';
import { PolicyModel, type ModelUpdate } from './model.js';
import { policyFixtures as fx, type KeyValue } from './testing.js';

const put = (key: string, value: string): ModelUpdate => ({ type: 'put', key, value });
const del = (key: string): ModelUpdate => ({ type: 'delete', key });
const ids = (s: Set<string>): string[] => [...s].sort();

describe('endpoints', () => {
  it('builds an endpoint from its keys, addresses canonical and sorted per family', () => {
    const m = new PolicyModel();
    m.apply(
      put(
        endpointAddrsKey('h1', 'c1', 'e1'),
        '[{"addr":"198.19.0.10"},{"addr":"FD00:198:19:0:0:0:0:1"},{"addr":"198.19.0.9"}]',
      ),
    );
    m.apply(put(endpointMacKey('h1', 'c1', 'e1'), 'AA:BB:CC:DD:EE:FF'));
    m.apply(put(endpointStateKey('h1', 'c1', 'e1'), 'active\n'));
    expect(m.endpoint('e1')).toEqual({
      endpointId: 'e1',
      host: 'h1',
      containerId: 'c1',
      addrs: { v4: ['198.19.0.9', '198.19.0.10'], v6: ['fd00:198:19::1'] },
      mac: 'aa:bb:cc:dd:ee:ff',
      state: 'active',
    });
  });

  it('exists once any of its keys exists and disappears with the last one', () => {
    const m = new PolicyModel();
    m.apply(put(endpointMacKey('h1', 'c1', 'e1'), 'aa:bb:cc:dd:ee:ff'));
    expect(m.endpoint('e1')).toMatchObject({ addrs: { v4: [], v6: [] }, state: null });
    m.apply(put(endpointStateKey('h1', 'c1', 'e1'), 'inactive'));
    m.apply(del(endpointMacKey('h1', 'c1', 'e1')));
    expect(m.endpoint('e1')).toMatchObject({ mac: null, state: 'inactive' });
    m.apply(del(endpointStateKey('h1', 'c1', 'e1')));
    expect(m.endpoint('e1')).toBeUndefined();
    expect(m.endpoints()).toEqual([]);
  });

  it('uses the first container (by host, then container id) when an endpoint id is recorded twice, and says so', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h2', containerId: 'c9', endpointId: 'e1', addrs: ['198.19.0.2'] }),
      ...fx.endpoint({ host: 'h1', containerId: 'c5', endpointId: 'e1', addrs: ['198.19.0.1'] }),
    ]);
    expect(m.endpoint('e1')).toMatchObject({ host: 'h1', containerId: 'c5', addrs: { v4: ['198.19.0.1'] } });
    expect(m.problems()).toEqual([
      {
        key: '/calico/host/h2/workload/docker/c9/endpoint/e1/',
        errors: [
          '/calico/host/h2/workload/docker/c9/endpoint/e1/: endpoint e1 is also recorded under host h1, container c5; only that one is used',
        ],
      },
    ]);
  });
});

describe('groups', () => {
  it('collects name, sorted members, rules by numeric index and deny defaults', () => {
    const m = new PolicyModel();
    m.apply(put(groupRuleKey('g', 'inbound', 10), encodeRule({ cidr: '10.0.0.0/8' })));
    m.apply(put(groupRuleKey('g', 'inbound', 2), encodeRule({ group: 'g' })));
    m.apply(put(groupRuleKey('g', 'outbound', 1), encodeRule({ cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 })));
    m.apply(put(groupMemberKey('g', 'z'), ''));
    m.apply(put(groupMemberKey('g', 'a'), 'ignored'));
    m.apply(put(groupNameKey('g'), 'web'));
    const g = m.group('g');
    expect(g).toMatchObject({
      groupId: 'g',
      name: 'web',
      members: ['a', 'z'],
      inboundDefault: 'deny',
      outboundDefault: 'deny',
    });
    expect(g?.inbound.map((r) => r.index)).toEqual([2, 10]);
    expect(g?.outbound).toEqual([
      {
        groupId: 'g',
        direction: 'outbound',
        index: 1,
        rule: { group: null, cidr: '0.0.0.0/0', family: 4, protocol: 'tcp', port: 80 },
      },
    ]);
  });

  it('exists while any key under it exists; the defaults are deny even when unwritten', () => {
    const m = new PolicyModel();
    m.apply(put(groupDefaultKey('g', 'inbound'), 'deny'));
    expect(m.group('g')).toEqual({
      groupId: 'g',
      name: null,
      members: [],
      inbound: [],
      outbound: [],
      inboundDefault: 'deny',
      outboundDefault: 'deny',
    });
    m.apply(put(groupMemberKey('g', 'e'), ''));
    m.apply(del(groupDefaultKey('g', 'inbound')));
    expect(m.group('g')?.members).toEqual(['e']);
    m.apply(del(groupMemberKey('g', 'e')));
    expect(m.group('g')).toBeUndefined();
    expect(m.groupIdsOf('e')).toEqual([]);
  });

  it('tracks memberships from the endpoint side, sorted, for ids that are not endpoints too', () => {
    const m = fx.model([
      ...fx.group({ groupId: 'g2', members: ['e'] }),
      ...fx.group({ groupId: 'g1', members: ['e'] }),
    ]);
    expect(m.groupIdsOf('e')).toEqual(['g1', 'g2']);
  });

  it('hands out frozen views so a consumer cannot corrupt the model', () => {
    const m = fx.model(fx.group({ groupId: 'g', members: ['a'] }));
    const g = m.group('g');
    // The group must exist, or the push below throws a TypeError for a reason other than frozenness.
    expect(g?.members).toEqual(['a']);
    expect(() => (g!.members as string[]).push('b')).toThrow(TypeError);
  });
});

describe('validation filter', () => {
  const ruleKey = groupRuleKey('g', 'inbound', 1);
  const bad: [string, string, string][] = [
    [ruleKey, 'not json', `${ruleKey}: value is not valid JSON: "not json"`],
    [ruleKey, '{"group":null,"cidr":null}', `${ruleKey}: exactly one of group and cidr must be set, both are null`],
    [endpointAddrsKey('h', 'c', 'e'), '[]', `${endpointAddrsKey('h', 'c', 'e')}: addrs must not be empty`],
    [
      endpointStateKey('h', 'c', 'e'),
      'running',
      `${endpointStateKey('h', 'c', 'e')}: state must be "active" or "inactive", got "running"`,
    ],
    [
      groupDefaultKey('g', 'outbound'),
      'allow',
      `${groupDefaultKey('g', 'outbound')}: default must be "deny" (the only supported value), got "allow"`,
    ],
    [groupNameKey('g'), '  ', `${groupNameKey('g')}: name must not be empty`],
  ];

  it.each(bad)('%s = %j is a problem, never a crash', (key, value, message) => {
    const m = new PolicyModel();
    expect(() => m.apply(put(key, value))).not.toThrow();
    expect(m.problems()).toEqual([{ key, errors: [message] }]);
    expect(m.endpoints()).toEqual([]);
    expect(m.groups()).toEqual([]);
  });

  it('treats a bad value as a delete of the good one it replaces, and clears the problem on a later good put', () => {
    const m = fx.model(fx.group({ groupId: 'g', inbound: [{ cidr: '10.0.0.0/8' }], defaults: false, name: null }));
    const change = m.apply(put(ruleKey, '{"cidr": "10.0.0.0/33"}'));
    expect(ids(change.groups)).toEqual(['g']);
    expect(m.group('g')).toBeUndefined();
    expect(m.problems().map((p) => p.key)).toEqual([ruleKey]);
    m.apply(put(ruleKey, encodeRule({ cidr: '10.0.0.0/16' })));
    expect(m.problems()).toEqual([]);
    expect(m.group('g')?.inbound[0]?.rule.cidr).toBe('10.0.0.0/16');
  });

  it('uses no endpoint key whose host segment is not a host name, and reports it', () => {
    const m = new PolicyModel();
    const good = endpointAddrsKey('h1', 'c1', 'e1');
    const bad = '/calico/host/H 1/workload/docker/c2/endpoint/e2/addrs';
    m.apply(put(good, '[{"addr":"198.19.0.1"}]'));
    m.apply(put(bad, '[{"addr":"198.19.0.2"}]'));
    m.apply(put(endpointAddrsKey('h2', 'c3', 'e3'), '[{"addr":"198.19.0.3"}]'));
    expect(m.endpoints().map((e) => e.endpointId)).toEqual(['e1', 'e3']);
    expect(m.problems()).toEqual([
      { key: bad, errors: [expect.stringContaining(`${bad}: the host segment is not a host name: host name "H 1"`)] },
    ]);
    m.apply(del(bad));
    expect(m.problems()).toEqual([]);
  });

  it('clears the problem when the bad key is deleted', () => {
    const m = new PolicyModel();
    m.apply(put(ruleKey, '{'));
    m.apply(del(ruleKey));
    expect(m.problems()).toEqual([]);
  });

  it('ignores keys the model does not use, silently', () => {
    const m = new PolicyModel();
    for (const [key, value] of [
      ['/calico/host/h1/bird_ip', 'not an ip'],
      ['/calico/master/ip', '10.0.0.1'],
      ['/calico/ipam/v4/assignment/198.19.0.1', '{"host":"h1","containerId":"c"}'],
      ['/calico/bgp/v1/global/as_num', 'x'],
      ['/calico/config/LogLevel', 'debug'],
      ['/calico/host/h1/something/else', 'x'],
      ['/elsewhere/network/group/g/name', 'x'],
    ] as const) {
      expect(m.apply(put(key, value))).toEqual({ endpoints: new Set(), groups: new Set() });
    }
    expect(m.problems()).toEqual([]);
    expect(m.version).toBe(0);
  });

  it('reports unknown keys under /calico/network/ (a mistyped group key) until they are deleted', () => {
    const m = new PolicyModel();
    const typo = '/calico/network/group/g/rules/inbound/1';
    m.apply(put(typo, encodeRule({ group: 'g' })));
    m.apply(put('/calico/network/group/g/rule/inbound/01', '{}'));
    expect(m.problems()).toEqual([
      {
        key: '/calico/network/group/g/rule/inbound/01',
        errors: ['/calico/network/group/g/rule/inbound/01: not a key of the calico keyspace'],
      },
      { key: typo, errors: [`${typo}: not a key of the calico keyspace`] },
    ]);
    expect(m.groups()).toEqual([]);
    m.apply(del(typo));
    expect(m.problems().map((p) => p.key)).toEqual(['/calico/network/group/g/rule/inbound/01']);
  });
});

describe('version and change tracking', () => {
  const addrs = endpointAddrsKey('h1', 'c1', 'e1');

  it('counts effective changes only', () => {
    const m = new PolicyModel();
    m.apply(put(addrs, '[{"addr":"198.19.0.1"},{"addr":"198.19.0.2"}]'));
    expect(m.version).toBe(1);
    m.apply(put(addrs, '[{"addr":"198.19.0.2"},{"addr":"198.19.0.1"}]')); // same set, other order
    m.apply(del(endpointMacKey('h1', 'c1', 'e1'))); // never existed
    expect(m.version).toBe(1);
    m.apply(put(addrs, 'garbage'));
    expect(m.version).toBe(2);
    m.apply(put(addrs, 'garbage'));
    expect(m.version).toBe(2);
    m.apply(put(addrs, 'garbage again'));
    expect(m.version).toBe(3); // the problem's text changed
  });

  it('an endpoint change touches the endpoint and the groups whose addresses it feeds', () => {
    const m = fx.model([
      ...fx.group({ groupId: 'g1', members: ['e1'] }),
      ...fx.group({ groupId: 'g2', members: ['e2'] }),
    ]);
    const c = m.apply(put(addrs, '[{"addr":"198.19.0.1"}]'));
    expect({ endpoints: ids(c.endpoints), groups: ids(c.groups) }).toEqual({ endpoints: ['e1'], groups: ['g1'] });
    const gone = m.apply(del(addrs));
    expect({ endpoints: ids(gone.endpoints), groups: ids(gone.groups) }).toEqual({ endpoints: ['e1'], groups: ['g1'] });
  });

  it('a membership change touches that group and that endpoint only (O(1) for the agent)', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h1', endpointId: 'e1', addrs: ['198.19.0.1'] }),
      ...fx.endpoint({ host: 'h1', endpointId: 'e2', addrs: ['198.19.0.2'] }),
      ...fx.group({ groupId: 'g', members: ['e2'] }),
    ]);
    const c = m.apply(put(groupMemberKey('g', 'e1'), ''));
    expect({ endpoints: ids(c.endpoints), groups: ids(c.groups) }).toEqual({ endpoints: ['e1'], groups: ['g'] });
    const notEndpoint = m.apply(put(groupMemberKey('g', 'ghost'), ''));
    expect({ endpoints: ids(notEndpoint.endpoints), groups: ids(notEndpoint.groups) }).toEqual({
      endpoints: [],
      groups: ['g'],
    });
  });

  it('a rule change touches the group and every member that is an endpoint', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h1', endpointId: 'e1', addrs: ['198.19.0.1'] }),
      ...fx.endpoint({ host: 'h1', endpointId: 'e2', addrs: ['198.19.0.2'] }),
      ...fx.group({ groupId: 'g', members: ['e1', 'e2', 'ghost'] }),
    ]);
    const c = m.apply(put(groupRuleKey('g', 'outbound', 1), encodeRule({ cidr: '::/0' })));
    expect({ endpoints: ids(c.endpoints), groups: ids(c.groups) }).toEqual({ endpoints: ['e1', 'e2'], groups: ['g'] });
  });

  it('a batch changing several keys of a group lists its members, including one that joins in the same batch', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h', endpointId: 'a' }),
      ...fx.endpoint({ host: 'h', endpointId: 'b' }),
      ...fx.group({ groupId: 'g', members: ['a'] }),
    ]);
    const c = m.applyAll([
      put(groupRuleKey('g', 'inbound', 7), encodeRule({ cidr: '10.0.0.0/8' })),
      put(groupNameKey('g'), 'renamed'),
      put(groupMemberKey('g', 'b'), ''),
      put(groupRuleKey('g', 'outbound', 7), encodeRule({ cidr: '10.0.0.0/8' })),
    ]);
    expect({ endpoints: ids(c.endpoints), groups: ids(c.groups) }).toEqual({ endpoints: ['a', 'b'], groups: ['g'] });
  });

  it('lists the endpoint ids of one host', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h1', endpointId: 'a' }),
      ...fx.endpoint({ host: 'h2', endpointId: 'b' }),
      ...fx.endpoint({ host: 'h1', endpointId: 'c' }),
    ]);
    expect(m.endpointIdsOn('h1').sort()).toEqual(['a', 'c']);
    expect(m.endpointIdsOn('h3')).toEqual([]);
  });

  it('a repeated put touches nothing', () => {
    const m = fx.model(fx.group({ groupId: 'g', members: ['e1'] }));
    expect(m.apply(put(groupNameKey('g'), 'g'))).toEqual({ endpoints: new Set(), groups: new Set() });
  });

  it('applyAll returns the union of what each update touched', () => {
    const m = new PolicyModel();
    const c = m.applyAll(
      fx.puts([
        ...fx.endpoint({ host: 'h', endpointId: 'e', addrs: ['198.19.0.1'] }),
        ...fx.group({ groupId: 'g', members: ['e'] }),
      ]),
    );
    expect({ endpoints: ids(c.endpoints), groups: ids(c.groups) }).toEqual({ endpoints: ['e'], groups: ['g'] });
  });

  it('drops cached views of what changed', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h', endpointId: 'e', addrs: ['198.19.0.1'] }),
      ...fx.group({ groupId: 'g', members: ['e'] }),
    ]);
    expect(m.groupAddrs('g', 4)).toEqual(['198.19.0.1']);
    m.apply(put(endpointAddrsKey('h', 'c-e', 'e'), '[{"addr":"198.19.0.7"}]'));
    expect(m.endpoint('e')?.addrs.v4).toEqual(['198.19.0.7']);
    expect(m.groupAddrs('g', 4)).toEqual(['198.19.0.7']);
    expect(m.endpointsWithAddr('198.19.0.7')).toEqual(['e']);
  });
});

describe('order independence', () => {
  const scenario: KeyValue[] = [
    ...fx.endpoint({ host: 'h1', endpointId: 'a', addrs: ['198.19.0.1'] }),
    ...fx.group(fx.addgroup('g', ['a', 'b'])),
    ...fx.group({ groupId: 'h', inbound: [{ group: 'missing' }], defaults: false }),
  ];

  /** The snapshot and every group's ipset contents: all a consumer can see. */
  function seen(m: PolicyModel) {
    return {
      ...m.snapshot(),
      addrs: m.groups().map((g) => [g.groupId, m.groupAddrs(g.groupId, 4), m.groupAddrs(g.groupId, 6)]),
    };
  }

  function fed(updates: readonly ModelUpdate[]) {
    const m = new PolicyModel();
    m.applyAll(updates);
    return seen(m);
  }

  it('every order of a small set of puts gives the same model', () => {
    const small = fx.puts([
      ...fx.endpoint({ host: 'h1', endpointId: 'a', addrs: ['198.19.0.1'], state: null }),
      { key: groupMemberKey('g', 'a'), value: '' },
      { key: groupRuleKey('g', 'inbound', 1), value: encodeRule({ group: 'g' }) },
      { key: groupRuleKey('h', 'inbound', 1), value: encodeRule({ group: 'g', protocol: 'tcp', port: 22 }) },
      { key: groupNameKey('g'), value: 'web' },
    ]);
    const expected = fed(small);
    const orders = fx.permutations(small);
    expect(orders).toHaveLength(120);
    for (const order of orders) expect(fed(order)).toEqual(expected);
  });

  it('every order of puts, bad values and deletes of different keys ends the same', () => {
    // Each key's own updates keep their order; only different keys are reordered.
    const histories: ModelUpdate[][] = [
      [put(endpointAddrsKey('h1', 'c', 'a'), 'bad'), put(endpointAddrsKey('h1', 'c', 'a'), '[{"addr":"198.19.0.1"}]')],
      [put(groupMemberKey('g', 'a'), ''), del(groupMemberKey('g', 'a'))],
      [put(groupRuleKey('g', 'outbound', 1), encodeRule({ cidr: '0.0.0.0/0' }))],
      [put(groupRuleKey('g', 'inbound', 3), '{"group":"g","port":1}')],
    ];
    const finals = [
      put(endpointAddrsKey('h1', 'c', 'a'), '[{"addr":"198.19.0.1"}]'),
      put(groupRuleKey('g', 'outbound', 1), encodeRule({ cidr: '0.0.0.0/0' })),
      put(groupRuleKey('g', 'inbound', 3), '{"group":"g","port":1}'),
    ];
    const expected = fed(finals);
    expect(expected.problems.map((p) => p.key)).toEqual([groupRuleKey('g', 'inbound', 3)]);
    const all = histories.flat();
    const keepsKeyOrder = (order: ModelUpdate[]): boolean =>
      histories.every((h) => h.every((u, i) => i === 0 || order.indexOf(u) > order.indexOf(h[i - 1] as ModelUpdate)));
    const orders = fx.permutations(all).filter(keepsKeyOrder);
    expect(orders).toHaveLength(180); // 6! / (2! * 2!)
    for (const order of orders) expect(fed(order)).toEqual(expected);
  });

  it('seeded interleavings of longer per-key histories give the same model', () => {
    const histories: ModelUpdate[][] = [];
    const finals: ModelUpdate[] = [];
    for (let i = 1; i <= 20; i++) {
      const key = endpointAddrsKey(`h${i % 3}`, `c${i}`, `e${i}`);
      const good = put(key, `[{"addr":"198.19.2.${i}"}]`);
      histories.push([put(key, '[]'), put(key, `[{"addr":"198.19.3.${i}"}]`), good]);
      finals.push(good);
      const member = groupMemberKey(`g${i % 4}`, `e${i}`);
      histories.push(i % 2 === 0 ? [put(member, ''), del(member), put(member, 'x')] : [put(member, ''), del(member)]);
      if (i % 2 === 0) finals.push(put(member, 'x'));
    }
    for (let g = 0; g < 4; g++) {
      const rule = groupRuleKey(`g${g}`, 'inbound', 1);
      const last = put(rule, encodeRule({ group: `g${(g + 1) % 5}` }));
      histories.push([put(rule, 'nope'), del(rule), last]);
      finals.push(last);
    }
    const expected = fed(finals);
    for (let seed = 1; seed <= 100; seed++) expect(fed(fx.interleave(histories, seed))).toEqual(expected);
    // load(), in pages and then tracked, reaches the same model.
    for (let seed = 1; seed <= 30; seed++) {
      const order = fx.interleave(histories, seed);
      const m = new PolicyModel();
      const third = Math.floor(order.length / 3);
      m.load(order.slice(0, third));
      m.load(order.slice(third, 2 * third));
      m.applyAll(order.slice(2 * third));
      expect(seen(m)).toEqual(expected);
    }
  });

  it('seeded shuffles of a bigger cluster give the same model', () => {
    const entries: KeyValue[] = [...scenario];
    for (let i = 1; i <= 30; i++) {
      entries.push(
        ...fx.endpoint({
          host: `h${i % 4}`,
          endpointId: `e${i}`,
          addrs: [`198.19.1.${i}`, `fd00:198:19::${i.toString(16)}`],
          mac: '02:00:00:00:00:01',
        }),
      );
    }
    for (let g = 1; g <= 6; g++) {
      const members = Array.from({ length: 30 }, (_, i) => `e${i + 1}`).filter((_, i) => i % g === 0);
      entries.push(
        ...fx.group({
          ...fx.addgroup(`grp${g}`, members),
          inbound: [{ group: `grp${g + 1}`, protocol: 'tcp', port: 8000 + g }, { cidr: '::/0' }],
        }),
      );
    }
    const expected = fed(fx.puts(entries));
    expect(expected.endpoints).toHaveLength(31);
    expect(expected.addrs.filter(([, v4]) => v4!.length >= 5)).toHaveLength(6);
    for (let seed = 1; seed <= 50; seed++) expect(fed(fx.puts(fx.shuffle(entries, seed)))).toEqual(expected);
  });

  it('the snapshot is plain JSON', () => {
    const snap = fed(fx.puts(scenario));
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
    expect(snap.problems).toEqual([
      {
        key: groupRuleKey('h', 'inbound', 1),
        errors: [`${groupRuleKey('h', 'inbound', 1)}: refers to group missing, which does not exist`],
      },
    ]);
  });
});
