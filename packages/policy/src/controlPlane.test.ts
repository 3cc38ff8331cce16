import { describe, expect, it } from 'vitest';
import { bird6IpKey, birdIpKey, diagsUrlKey, masterApiUrlKey, masterIpKey } from '@calico/keyspace';
import {
  ControlPlaneKeys,
  controlPlaneExemptions,
  controlPlaneTargets,
  describeTarget,
  targetSetMember,
  type ControlPlaneInput,
} from './controlPlane.js';
import { endpointPolicy } from './endpointPolicy.js';
import { explain } from './explain.js';
import { policyFixtures as fx } from './testing.js';

const none: ControlPlaneInput = { etcdEndpoints: [], masterIp: null, masterApiUrl: null, hosts: [] };
const short = (i: ControlPlaneInput) =>
  controlPlaneTargets(i).map((t) => `${t.service} ${targetSetMember(t)}${t.host ? ` ${t.host}` : ''}`);

describe('controlPlaneTargets', () => {
  it("etcd: each endpoint's client port and the peer port 2380, whatever way the endpoint is written", () => {
    const etcdEndpoints = ['http://198.18.0.1:2379', '198.18.0.2:32379', 'https://[FD00:198:18::1]:2379/'];
    expect(short({ ...none, etcdEndpoints })).toEqual([
      'etcd-client 198.18.0.1,tcp:2379',
      'etcd-peer 198.18.0.1,tcp:2380',
      'etcd-peer 198.18.0.2,tcp:2380',
      'etcd-client 198.18.0.2,tcp:32379',
      'etcd-client fd00:198:18::1,tcp:2379',
      'etcd-peer fd00:198:18::1,tcp:2380',
    ]);
  });

  it("etcd members' peer URLs, when known, are targets too", () => {
    const etcdEndpoints = ['198.18.0.1:2379', 'http://198.18.0.2:2379'];
    const etcdPeers = ['http://198.18.0.1:32380', 'http://198.18.0.2:2380'];
    expect(short({ ...none, etcdEndpoints, etcdPeers })).toEqual([
      'etcd-client 198.18.0.1,tcp:2379',
      'etcd-peer 198.18.0.1,tcp:2380',
      'etcd-peer 198.18.0.1,tcp:32380',
      'etcd-client 198.18.0.2,tcp:2379',
      'etcd-peer 198.18.0.2,tcp:2380',
    ]);
  });

  it('a name instead of an address names nothing: the dataplane matches addresses', () => {
    const named = { ...none, etcdEndpoints: ['http://etcd.example:2379'], masterApiUrl: 'http://master.example:7600/' };
    expect(short(named)).toEqual([]);
  });

  it("the master: api_url's address and port; master/ip with port 7600 only when api_url says nothing usable", () => {
    const both = { ...none, masterIp: '198.18.0.1', masterApiUrl: 'http://198.18.0.1:17600/' };
    expect(short(both)).toEqual(['master-api 198.18.0.1,tcp:17600']);
    expect(short({ ...none, masterIp: '198.18.0.1', masterApiUrl: null })).toEqual(['master-api 198.18.0.1,tcp:7600']);
    expect(short({ ...none, masterApiUrl: 'https://198.18.0.3/' })).toEqual(['master-api 198.18.0.3,tcp:443']);
  });

  it('every host: its diags service and BGP on bird_ip and bird6_ip', () => {
    const hosts = [
      { host: 'h2', birdIp: '198.18.0.12', bird6Ip: null, diagsUrl: null },
      { host: 'h1', birdIp: '198.18.0.11', bird6Ip: 'fd00:198:18::11', diagsUrl: 'http://198.18.0.11:9099/' },
    ];
    expect(short({ ...none, hosts })).toEqual([
      'bgp 198.18.0.11,tcp:179 h1',
      'diags 198.18.0.11,tcp:9099 h1',
      'bgp 198.18.0.12,tcp:179 h2',
      'bgp fd00:198:18::11,tcp:179 h1',
    ]);
  });

  it('one entry per address and port', () => {
    const etcdEndpoints = ['198.18.0.1:2379', '198.18.0.1:2379'];
    const t = controlPlaneTargets({ ...none, etcdEndpoints, masterApiUrl: 'http://198.18.0.1:2379/' });
    expect(t.map(describeTarget)).toEqual(['etcd client port on 198.18.0.1:2379', 'etcd peer port on 198.18.0.1:2380']);
  });
});

describe('ControlPlaneKeys', () => {
  it("keeps every host's bird_ip and bird6_ip by address, the ones that decode", () => {
    const k = new ControlPlaneKeys();
    k.apply({ type: 'put', key: birdIpKey('h1'), value: '198.18.0.11' });
    k.apply({ type: 'put', key: bird6IpKey('h1'), value: 'fd00::11' });
    k.apply({ type: 'put', key: birdIpKey('h2'), value: '198.18.0.12' });
    k.apply({ type: 'put', key: diagsUrlKey('h3'), value: 'http://198.18.0.13:9099/' });
    expect([...k.birdIps()]).toEqual([
      ['198.18.0.11', 'h1'],
      ['fd00::11', 'h1'],
      ['198.18.0.12', 'h2'],
    ]);
    k.apply({ type: 'put', key: birdIpKey('h2'), value: 'not an address' });
    k.apply({ type: 'delete', key: bird6IpKey('h1') });
    expect([...k.birdIps()]).toEqual([['198.18.0.11', 'h1']]);
  });

  it('follows puts and deletes of the keys, ignores every other key, and treats a bad value as absent', () => {
    const k = new ControlPlaneKeys();
    expect(k.apply({ type: 'put', key: birdIpKey('h1'), value: '198.18.0.11' })).toBe(true);
    expect(k.apply({ type: 'put', key: birdIpKey('h1'), value: '198.18.0.11' })).toBe(false);
    expect(k.apply({ type: 'put', key: bird6IpKey('h1'), value: 'fd00::11' })).toBe(true);
    expect(k.apply({ type: 'put', key: diagsUrlKey('h2'), value: 'http://198.18.0.12:9099/' })).toBe(true);
    expect(k.apply({ type: 'put', key: masterIpKey(), value: '198.18.0.1' })).toBe(true);
    expect(k.apply({ type: 'put', key: masterApiUrlKey(), value: 'http://198.18.0.1:7601/' })).toBe(true);
    // Keys ending in the same letters that are not these.
    const deep = '/calico/host/h1/workload/docker/c/endpoint/e/bird_ip';
    expect(k.apply({ type: 'put', key: deep, value: '198.18.0.9' })).toBe(false);
    expect(k.apply({ type: 'put', key: '/calico/network/group/g/rule/outbound/1', value: '{}' })).toBe(false);
    expect(short(k.input(['198.18.0.1:2379']))).toEqual([
      'etcd-client 198.18.0.1,tcp:2379',
      'etcd-peer 198.18.0.1,tcp:2380',
      'master-api 198.18.0.1,tcp:7601',
      'bgp 198.18.0.11,tcp:179 h1',
      'diags 198.18.0.12,tcp:9099 h2',
      'bgp fd00::11,tcp:179 h1',
    ]);
    expect(k.apply({ type: 'put', key: birdIpKey('h1'), value: 'not an address' })).toBe(true);
    expect(k.apply({ type: 'delete', key: bird6IpKey('h1') })).toBe(true);
    expect(k.apply({ type: 'delete', key: masterApiUrlKey() })).toBe(true);
    expect(short(k.input([]))).toEqual(['master-api 198.18.0.1,tcp:7600', 'diags 198.18.0.12,tcp:9099 h2']);
  });
});

describe('explain() and the control plane', () => {
  const A = fx.endpoint({ host: 'h1', endpointId: 'A', addrs: ['198.19.0.1', 'fd00:198:19::1'] });
  const targets = controlPlaneTargets({
    etcdEndpoints: ['http://198.18.0.1:2379'],
    masterIp: null,
    masterApiUrl: null,
    hosts: [{ host: 'h2', birdIp: '198.18.0.12', bird6Ip: 'fd00:198:18::12', diagsUrl: null }],
  });
  const withOutbound = (outbound: { cidr: string; protocol?: string; port?: number }[]) =>
    fx.model([...A, ...fx.group({ groupId: 'ga', name: 'web', members: ['A'], outbound })]);
  const open = withOutbound([{ cidr: '0.0.0.0/0' }, { cidr: '::/0' }]);
  const ask = (m: ReturnType<typeof withOutbound>, dst: string, port: number, protocol = 'tcp') =>
    explain(m, { src: 'A', dst, protocol, port }, { controlPlane: targets });
  const why = (m: ReturnType<typeof withOutbound>, dst: string, port: number, protocol = 'tcp') =>
    ask(m, dst, port, protocol).outbound?.reason;

  it('0.0.0.0/0 does not open etcd or BGP; the same rules open other ports of the same address', () => {
    const v = explain(open, { src: 'A', dst: '198.18.0.1', protocol: 'tcp', port: 2379 }, { controlPlane: targets });
    expect(v.allowed).toBe(false);
    const controlPlane = { service: 'etcd-client', addr: '198.18.0.1', port: 2379 };
    expect(v.outbound).toMatchObject({ reason: 'control-plane', controlPlane });
    expect(v.reason).toBe(
      'denied: 198.18.0.1 port 2379 is the control plane (etcd client port on 198.18.0.1:2379); ' +
        'only an outbound rule naming 198.18.0.1/32 opens it for A',
    );
    expect(why(open, 'fd00:198:18::12', 179)).toBe('control-plane');
    // Controls: the same query without the control plane, another port, another protocol.
    expect(explain(open, { src: 'A', dst: '198.18.0.1', protocol: 'tcp', port: 2379 }).allowed).toBe(true);
    expect(why(open, '198.18.0.1', 8080)).toBe('rule');
    expect(why(open, '198.18.0.1', 2379, 'udp')).toBe('rule');
  });

  it('a cidr rule naming the address as a host prefix opens it, and its rules then decide', () => {
    const named = withOutbound([{ cidr: '0.0.0.0/0' }, { cidr: '198.18.0.1/32', protocol: 'udp' }]);
    expect(controlPlaneExemptions(endpointPolicy(named, 'A'), 4)).toEqual(['198.18.0.1']);
    expect(ask(named, '198.18.0.1', 2379).reason).toBe(
      'allowed: outbound rule 1 of group web (ga); 198.18.0.1 is not an endpoint; ' +
        '198.18.0.1 port 2379 is the control plane (etcd client port on 198.18.0.1:2379), ' +
        'opened by outbound rule 2 of group web (ga)',
    );
    // Named, but the rules allow no tcp to it: default deny.
    const onlyUdp = withOutbound([{ cidr: '198.18.0.1/32', protocol: 'udp' }]);
    expect(why(onlyUdp, '198.18.0.1', 2379)).toBe('default-deny');
    // A /31 holding it names it not.
    const wide = withOutbound([{ cidr: '198.18.0.0/31' }]);
    expect(controlPlaneExemptions(endpointPolicy(wide, 'A'), 4)).toEqual([]);
    expect(why(wide, '198.18.0.1', 2380)).toBe('control-plane');
  });
});
