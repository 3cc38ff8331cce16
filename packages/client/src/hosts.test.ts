import { describe, expect, it } from 'vitest';
import { encodeHostAlive, encodeIpAssignment, groupMemberKey, hostAliveKey, ipAssignmentKey } from '@calico/keyspace';
import { policyFixtures } from '@calico/policy';
import { indexHosts, knownHosts, membersWithoutEndpoint, planHostRemoval } from './hosts.js';

const endpoint = (host: string, endpointId: string, addr: string) => [
  ...policyFixtures.endpoint({ host, containerId: `c-${endpointId}`, endpointId, addrs: [addr] }),
  { key: ipAssignmentKey(addr), value: encodeIpAssignment({ host, containerId: `c-${endpointId}`, endpointId }) },
];
const member = (g: string, e: string) => ({ key: groupMemberKey(g, e), value: '' });

describe('planHostRemoval', () => {
  const kvs = [
    { key: hostAliveKey('h1'), value: encodeHostAlive({ since: '2026-01-01T00:00:00.000Z' }) },
    ...endpoint('h1', 'e1', '198.19.0.1'),
    { key: '/calico/host/h2/bird_ip', value: '198.18.0.12' },
    ...endpoint('h2', 'e2', '198.19.0.2'),
    // A copy of e1 on h2: its membership stays with h1's copy.
    ...policyFixtures.endpoint({ host: 'h2', containerId: 'c-copy', endpointId: 'e1', addrs: ['198.19.0.1'] }),
    { key: '/calico/bgp/v1/host/h2/as_num', value: '65002' },
    { key: ipAssignmentKey('198.19.0.22'), value: encodeIpAssignment({ host: 'h2', containerId: 'pending' }) },
    { key: ipAssignmentKey('198.19.0.99'), value: '{' },
    member('g1', 'e1'),
    member('g1', 'e2'),
    member('g2', 'e2'),
    member('g1', 'ghost'),
  ];
  const ix = indexHosts(kvs);

  it('takes the memberships of endpoints only it holds, its workloads, its directories and its reservations', () => {
    const p = planHostRemoval(ix, 'h2');
    expect(p).toMatchObject({
      host: 'h2',
      alive: false,
      known: true,
      dirs: ['/calico/host/h2/', '/calico/bgp/v1/host/h2/'],
    });
    expect(p.workloads).toEqual([
      { containerId: 'c-copy', prefix: '/calico/host/h2/workload/docker/c-copy/', endpointIds: ['e1'] },
      { containerId: 'c-e2', prefix: '/calico/host/h2/workload/docker/c-e2/', endpointIds: ['e2'] },
    ]);
    expect(p.memberships.map((m) => m.key)).toEqual([groupMemberKey('g1', 'e2'), groupMemberKey('g2', 'e2')]);
    expect(p.assignments.map((a) => a.addr)).toEqual(['198.19.0.2', '198.19.0.22']);
  });

  it('knows a live host, an unknown one, and one known only by a reservation', () => {
    expect(planHostRemoval(ix, 'h1')).toMatchObject({ alive: true, known: true });
    expect(planHostRemoval(ix, 'h7')).toMatchObject({
      alive: false,
      known: false,
      workloads: [],
      memberships: [],
      assignments: [],
      dirs: [],
    });
    const only = planHostRemoval(
      indexHosts([
        { key: ipAssignmentKey('198.19.0.5'), value: encodeIpAssignment({ host: 'h5', containerId: 'c5' }) },
      ]),
      'h5',
    );
    expect(only).toMatchObject({
      known: true,
      dirs: [],
      assignments: [expect.objectContaining({ addr: '198.19.0.5' })],
    });
  });

  it("lists hosts and memberships whose endpoint exists nowhere; a reservation that does not decode is no one's", () => {
    expect([...knownHosts(ix)].sort()).toEqual(['h1', 'h2']);
    expect(membersWithoutEndpoint(ix).map((m) => m.key)).toEqual([groupMemberKey('g1', 'ghost')]);
  });
});
