import { describe, expect, it } from 'vitest';
import { groupMemberKey } from '@calico/keyspace';
import { endpointPolicy, endpointsOnHost, groupAddrs, groupsOfEndpoint, referencedGroups } from './endpointPolicy.js';
import { PolicyErrorCode } from './errors.js';
import { policyFixtures as fx } from './testing.js';

const cluster = () =>
  fx.model([
    ...fx.endpoint({ host: 'h1', endpointId: 'a', addrs: ['198.19.0.10', '198.19.0.9', 'fd00:198:19::a'] }),
    ...fx.endpoint({ host: 'h1', endpointId: 'b', addrs: ['198.19.0.2'], state: 'inactive' }),
    ...fx.endpoint({ host: 'h2', endpointId: 'c', addrs: ['198.19.0.3'] }),
    ...fx.group({
      groupId: 'web',
      members: ['a', 'c'],
      inbound: [{ group: 'lb', protocol: 'tcp', port: 80 }, { cidr: '10.0.0.0/8' }],
      outbound: [{ group: 'db' }],
    }),
    ...fx.group({
      groupId: 'app',
      members: ['a', 'b'],
      inbound: [{ group: 'web' }, { cidr: '0.0.0.0/0', protocol: 0 }],
      outbound: [{ group: 'gone' }],
    }),
    ...fx.group({ groupId: 'db', members: ['c'], inbound: [{ group: 'web' }] }),
    ...fx.group({ groupId: 'lb', members: ['ghost'] }),
  ]);

describe('endpointPolicy', () => {
  it('lists the rules of every group of the endpoint, by group id then index', () => {
    const p = endpointPolicy(cluster(), 'a');
    expect(p.groups).toEqual(['app', 'web']);
    expect(p.active).toBe(true);
    expect(p.inbound.map((r) => `${r.groupId}/${r.index}`)).toEqual(['app/1', 'web/1', 'web/2']);
    expect(p.outbound.map((r) => `${r.groupId}/${r.index}`)).toEqual(['app/1', 'web/1']);
  });

  it('leaves out rules that cannot be enforced (protocol 0) but keeps dangling group references', () => {
    const p = endpointPolicy(cluster(), 'a');
    expect(p.inbound.some((r) => r.rule.protocol === '0')).toBe(false);
    expect(p.outbound[0]?.rule.group).toBe('gone');
  });

  it('gives an inactive endpoint no rules at all', () => {
    expect(endpointPolicy(cluster(), 'b')).toEqual({
      endpointId: 'b',
      active: false,
      groups: ['app'],
      inbound: [],
      outbound: [],
    });
  });

  it('gives an endpoint in no group no rules (default deny)', () => {
    const m = fx.model(fx.endpoint({ host: 'h', endpointId: 'lonely', addrs: ['198.19.0.1'] }));
    expect(endpointPolicy(m, 'lonely')).toEqual({
      endpointId: 'lonely',
      active: true,
      groups: [],
      inbound: [],
      outbound: [],
    });
  });

  it('refuses an unknown endpoint', () => {
    expect(() => endpointPolicy(cluster(), 'ghost')).toThrow(
      expect.objectContaining({ code: PolicyErrorCode.UNKNOWN_ENDPOINT, message: 'no endpoint has id ghost' }),
    );
  });
});

describe('groupAddrs', () => {
  it('is the sorted addresses of one family of the active member endpoints', () => {
    const m = cluster();
    expect(groupAddrs(m, 'web', 4)).toEqual(['198.19.0.3', '198.19.0.9', '198.19.0.10']);
    expect(groupAddrs(m, 'web', 6)).toEqual(['fd00:198:19::a']);
    expect(groupAddrs(m, 'app', 4)).toEqual(['198.19.0.9', '198.19.0.10']);
    expect(groupAddrs(m, 'lb', 4)).toEqual([]);
    expect(groupAddrs(m, 'gone', 4)).toEqual([]);
  });

  it('follows membership changes', () => {
    const m = cluster();
    m.apply({ type: 'put', key: groupMemberKey('lb', 'c'), value: '' });
    expect(groupAddrs(m, 'lb', 4)).toEqual(['198.19.0.3']);
    m.apply({ type: 'delete', key: groupMemberKey('lb', 'c') });
    expect(groupAddrs(m, 'lb', 4)).toEqual([]);
  });

  it('lists an address shared by two members once', () => {
    const m = fx.model([
      ...fx.endpoint({ host: 'h', endpointId: 'x', addrs: ['198.19.0.1'] }),
      ...fx.endpoint({ host: 'h', endpointId: 'y', addrs: ['198.19.0.1'] }),
      ...fx.group({ groupId: 'g', members: ['x', 'y'] }),
    ]);
    expect(groupAddrs(m, 'g', 4)).toEqual(['198.19.0.1']);
  });
});

describe('host views', () => {
  it('groupsOfEndpoint lists memberships, sorted, even for ids that are not endpoints', () => {
    const m = cluster();
    expect(groupsOfEndpoint(m, 'a')).toEqual(['app', 'web']);
    expect(groupsOfEndpoint(m, 'ghost')).toEqual(['lb']);
    expect(groupsOfEndpoint(m, 'nobody')).toEqual([]);
  });

  it('endpointsOnHost lists a host endpoints by id', () => {
    const m = cluster();
    expect(endpointsOnHost(m, 'h1').map((e) => e.endpointId)).toEqual(['a', 'b']);
    expect(endpointsOnHost(m, 'h9')).toEqual([]);
  });

  it('referencedGroups names the ipsets a host needs, missing groups included', () => {
    const m = cluster();
    // h1: a (web + app rules); b is inactive so its rules do not count.
    expect(referencedGroups(m, 'h1')).toEqual(['db', 'gone', 'lb', 'web']);
    // h2: c is in web and db.
    expect(referencedGroups(m, 'h2')).toEqual(['db', 'lb', 'web']);
    expect(referencedGroups(m, 'h9')).toEqual([]);
  });
});
