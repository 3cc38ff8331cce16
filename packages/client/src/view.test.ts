import { describe, expect, it } from 'vitest';
import { policyFixtures } from '@calico/policy';
import { buildView } from './view.js';

describe('buildView', () => {
  it('gathers hosts, workloads with names and groups, pools, and every problem', () => {
    const kvs = [
      { key: '/calico/host/h1/bird_ip', value: '198.18.0.11' },
      { key: '/calico/host/h1/alive', value: '{"since":"2026-11-29T00:00:00.000Z"}' },
      { key: '/calico/host/h2/bird_ip', value: 'nonsense' },
      ...policyFixtures.endpoint({ host: 'h1', containerId: 'c1', endpointId: 'e1', addrs: ['198.19.0.1'] }),
      { key: '/calico/host/h1/workload/docker/c1/name', value: 'web' },
      ...policyFixtures.group({ ...policyFixtures.addgroup('g1', ['e1']) }),
      { key: '/calico/ipam/v4/pool/198.19.0.0-16', value: '{"cidr":"198.19.0.0/16"}' },
      { key: '/calico/network/group/g1/rule/inbound/7', value: '{' },
    ];
    const v = buildView(kvs, 42);
    expect(v.revision).toBe(42);
    expect(v.hosts).toEqual([
      { name: 'h1', state: 'up', birdIp: '198.18.0.11', bird6Ip: null, alive: true, since: '2026-11-29T00:00:00.000Z', endpoints: 1, workloads: 1, reservations: 0 },
      { name: 'h2', state: 'down', birdIp: null, bird6Ip: null, alive: false, since: null, endpoints: 0, workloads: 0, reservations: 0 },
    ]);
    expect(v.workloads).toEqual([{ host: 'h1', containerId: 'c1', name: 'web', endpoints: [{ endpointId: 'e1', addrs: ['198.19.0.1'], mac: null, state: 'active', groups: ['g1'] }] }]);
    expect(v.pools).toEqual({ v4: ['198.19.0.0/16'], v6: [] });
    expect(v.problems.map((p) => p.key)).toEqual(['/calico/host/h2/bird_ip', '/calico/network/group/g1/rule/inbound/7']);
    expect(v.notices.map((n) => [n.kind, n.key])).toEqual([['host-down', '/calico/host/h2/alive']]);
  });

  it('a host that is down keeps its place, with what it holds; a membership of an endpoint that exists nowhere is a notice', () => {
    const kvs = [
      ...policyFixtures.endpoint({ host: 'h3', containerId: 'c3', endpointId: 'e3', addrs: ['198.19.0.3'] }),
      ...policyFixtures.endpoint({ host: 'h3', containerId: 'c4', endpointId: 'e4', addrs: ['198.19.0.4'] }),
      { key: '/calico/ipam/v4/assignment/198.19.0.3', value: '{"host":"h3","containerId":"c3","endpointId":"e3"}' },
      { key: '/calico/ipam/v4/assignment/198.19.0.9', value: '{"host":"h9","containerId":"pending"}' },
      ...policyFixtures.group({ ...policyFixtures.addgroup('g1', ['e3', 'ghost']) }),
    ];
    const v = buildView(kvs, 7);
    expect(v.hosts.map((h) => [h.name, h.state, h.workloads, h.endpoints, h.reservations])).toEqual([
      ['h3', 'down', 2, 2, 1],
      ['h9', 'down', 0, 0, 1],
    ]);
    expect(v.notices).toEqual([
      {
        kind: 'host-down',
        key: '/calico/host/h3/alive',
        host: 'h3',
        message: 'host h3 is down: no liveness key /calico/host/h3/alive (its calico-node is stopped or cannot reach etcd); its 2 workload(s), their memberships and its 1 address reservation(s) are kept until it is back or removed (calicoctl node remove h3 --remove-endpoints)',
      },
      expect.objectContaining({ kind: 'host-down', host: 'h9' }),
      {
        kind: 'member-without-endpoint',
        key: '/calico/network/group/g1/member/ghost',
        groupId: 'g1',
        endpointId: 'ghost',
        message: 'endpoint ghost exists on no host; the membership is kept (an orchestrator may write it before the container exists; it goes when the container is removed)',
      },
    ]);
    expect(v.problems).toEqual([]);
  });

  it('a key whose host segment is not a host name is a problem, and its endpoint is nowhere', () => {
    const kvs = [
      { key: '/calico/host/Bad Host/bird_ip', value: '198.18.0.12' },
      ...policyFixtures.endpoint({ host: 'bad_host', containerId: 'c1', endpointId: 'e1', addrs: ['198.19.0.1'] }),
      ...policyFixtures.endpoint({ host: 'h1', containerId: 'c2', endpointId: 'e2', addrs: ['198.19.0.2'] }),
    ];
    const v = buildView(kvs, 1);
    expect(v.workloads.map((w) => w.containerId)).toEqual(['c2']);
    expect(v.problems.map((p) => p.key)).toEqual([
      '/calico/host/Bad Host/bird_ip',
      '/calico/host/bad_host/workload/docker/c1/endpoint/e1/addrs',
      '/calico/host/bad_host/workload/docker/c1/endpoint/e1/state',
    ]);
    for (const p of v.problems) expect(p.errors).toEqual([expect.stringContaining('the host segment is not a host name')]);
  });

  it('a container a node refused to network is a problem, saying why', () => {
    const kvs = [{ key: '/calico/host/h1/refused/c0ffee0123456789', value: 'address 198.19.0.1 is reserved by container aaaa on host h1' }];
    expect(buildView(kvs, 1).problems).toEqual([
      {
        key: '/calico/host/h1/refused/c0ffee0123456789',
        errors: ['container c0ffee012345 on host h1 is not networked: address 198.19.0.1 is reserved by container aaaa on host h1'],
      },
    ]);
  });
});
