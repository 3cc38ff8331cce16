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
      { name: 'h1', birdIp: '198.18.0.11', bird6Ip: null, alive: true, since: '2026-11-29T00:00:00.000Z', endpoints: 1 },
      { name: 'h2', birdIp: null, bird6Ip: null, alive: false, since: null, endpoints: 0 },
    ]);
    expect(v.workloads).toEqual([{ host: 'h1', containerId: 'c1', name: 'web', endpoints: [{ endpointId: 'e1', addrs: ['198.19.0.1'], mac: null, state: 'active', groups: ['g1'] }] }]);
    expect(v.pools).toEqual({ v4: ['198.19.0.0/16'], v6: [] });
    expect(v.problems.map((p) => p.key)).toEqual(['/calico/host/h2/bird_ip', '/calico/network/group/g1/rule/inbound/7']);
  });
});
