import { describe, expect, it } from 'vitest';
import { policyFixtures } from '@calico/policy';
import { buildView, keyProblems } from './view.js';

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
      {
        name: 'h1',
        state: 'up',
        birdIp: '198.18.0.11',
        bird6Ip: null,
        alive: true,
        since: '2026-11-29T00:00:00.000Z',
        endpoints: 1,
        workloads: 1,
        reservations: 0,
      },
      {
        name: 'h2',
        state: 'down',
        birdIp: null,
        bird6Ip: null,
        alive: false,
        since: null,
        endpoints: 0,
        workloads: 0,
        reservations: 0,
      },
    ]);
    expect(v.workloads).toEqual([
      {
        host: 'h1',
        containerId: 'c1',
        name: 'web',
        endpoints: [{ endpointId: 'e1', addrs: ['198.19.0.1'], mac: null, state: 'active', groups: ['g1'] }],
      },
    ]);
    expect(v.pools).toEqual({ v4: ['198.19.0.0/16'], v6: [] });
    expect(v.problems.map((p) => p.key)).toEqual([
      '/calico/host/h2/bird_ip',
      '/calico/network/group/g1/rule/inbound/7',
    ]);
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
        message:
          'host h3 is down: no liveness key /calico/host/h3/alive (its calico-node is stopped or cannot reach etcd); its 2 workload(s), their memberships and its 1 address reservation(s) are kept until it is back or removed (calicoctl node remove h3 --remove-endpoints)',
      },
      expect.objectContaining({ kind: 'host-down', host: 'h9' }),
      {
        kind: 'member-without-endpoint',
        key: '/calico/network/group/g1/member/ghost',
        groupId: 'g1',
        endpointId: 'ghost',
        message:
          'endpoint ghost exists on no host; the membership is kept (an orchestrator may write it before the container exists; it goes when the container is removed)',
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
    for (const p of v.problems)
      expect(p.errors).toEqual([expect.stringContaining('the host segment is not a host name')]);
  });

  it('a container a node refused to network is a problem, saying why', () => {
    const kvs = [
      {
        key: '/calico/host/h1/refused/c0ffee0123456789',
        value: 'address 198.19.0.1 is reserved by container aaaa on host h1',
      },
    ];
    expect(buildView(kvs, 1).problems).toEqual([
      {
        key: '/calico/host/h1/refused/c0ffee0123456789',
        errors: [
          'container c0ffee012345 on host h1 is not networked: address 198.19.0.1 is reserved by container aaaa on host h1',
        ],
      },
    ]);
  });
});

describe('buildView problems: every bad key once', () => {
  const unread = (key: string) => ({ key, errors: [`${key}: not a key of the calico keyspace; nothing reads it`] });
  it("an unknown key anywhere under /calico/ is a problem (nothing reads it), beside the model's under network/", () => {
    const kvs = [
      { key: '/calico/host/h1/bird-ip', value: '198.18.0.11' },
      { key: '/calico/host/h1/bird_ip/x', value: '198.18.0.11' },
      { key: '/calico/bgp/v1/global/as_num ', value: '64512' },
      { key: '/calico/network/group/g1/rule/inbound/01', value: '{"cidr":"0.0.0.0/0"}' },
      { key: '/calico//host', value: '' },
      // the controls: a known key, and keys outside /calico/
      { key: '/calico/host/h1/bird_ip', value: '198.18.0.11' },
      { key: '/other/thing', value: 'x' },
      { key: '/calicox/a', value: 'x' },
    ];
    const v = buildView(kvs, 1);
    const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : 1);
    expect([...v.problems].sort(byKey)).toEqual([
      unread('/calico//host'),
      unread('/calico/bgp/v1/global/as_num '),
      unread('/calico/host/h1/bird-ip'),
      unread('/calico/host/h1/bird_ip/x'),
      {
        key: '/calico/network/group/g1/rule/inbound/01',
        errors: ['/calico/network/group/g1/rule/inbound/01: not a key of the calico keyspace'],
      },
    ]);
    expect(v.hosts.map((h) => [h.name, h.birdIp])).toEqual([['h1', '198.18.0.11']]);
  });

  it('a refusal that does not decode is one problem, saying so and not quoting it', () => {
    const key = '/calico/host/h1/refused/c0ffee0123456789';
    const v = buildView([{ key, value: `first line\n${'x'.repeat(100_000)}` }], 1);
    expect(v.problems).toEqual([{ key, errors: [`${key}: must be one non-empty line of at most 2000 characters`] }]);
    // The control: a refusal that decodes is reported once, with its reason.
    expect(buildView([{ key, value: 'no reservation' }], 1).problems).toEqual([
      { key, errors: ['container c0ffee012345 on host h1 is not networked: no reservation'] },
    ]);
  });

  it('a key whose host segment is not a host name makes no host, whatever its kind', () => {
    const kvs = [
      { key: '/calico/host/FZ-A/alive', value: '{"since":"2026-11-29T00:00:00.000Z"}' },
      { key: '/calico/host/fz a/bird_ip', value: '198.18.0.50' },
      { key: '/calico/host/fz\na/refused/c1', value: 'why' },
      { key: '/calico/bgp/v1/host/fz_a/as_num', value: '64512' },
      { key: '/calico/ipam/v4/assignment/198.19.0.9', value: '{"host":"FZ-A","containerId":"c9"}' },
      { key: '/calico/host/h1/bird_ip', value: '198.18.0.11' },
    ];
    const v = buildView(kvs, 1);
    expect(v.hosts.map((h) => h.name)).toEqual(['h1']);
    expect(v.notices.map((n) => n.key)).toEqual(['/calico/host/h1/alive']);
    expect(v.problems.map((p) => p.key).sort()).toEqual([
      '/calico/bgp/v1/host/fz_a/as_num',
      '/calico/host/FZ-A/alive',
      '/calico/host/fz\na/refused/c1',
      '/calico/host/fz a/bird_ip',
    ]);
    for (const p of v.problems)
      expect(p.errors).toEqual([expect.stringContaining('the host segment is not a host name')]);
  });
});

describe("keyProblems: one key on its own, in the view's words", () => {
  it.each([
    ['/calico/host/h1/bird_ip', 'nonsense'],
    ['/calico/host/h1/bird-ip', '198.18.0.11'],
    ['/calico/network/group/g1/rule/inbound/01', '{"cidr":"0.0.0.0/0"}'],
    ['/calico/network/group/g1/rule/inbound/1', '{'],
    ['/calico/host/H1/workload/docker/c1/endpoint/e1/state', 'active'],
    ['/calico/bgp/v1/global/node_mesh', '{"enabled":"yes"}'],
  ])('%j = %j says what the view says', (key, value) => {
    const errors = keyProblems(key, value);
    expect(errors).toBeDefined();
    expect(buildView([{ key, value }], 1).problems).toEqual([{ key, errors }]);
  });

  it('says nothing of a good key, or of one outside /calico/ (the controls)', () => {
    expect(keyProblems('/calico/host/h1/bird_ip', '198.18.0.11')).toBeUndefined();
    expect(keyProblems('/calico/network/group/g1/member/e1', 'anything')).toBeUndefined();
    expect(keyProblems('/elsewhere/x', 'y')).toBeUndefined();
  });
});
