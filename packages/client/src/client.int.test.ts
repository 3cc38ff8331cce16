import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd, requireRoot } from '@calico/testkit';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import { encodeWorkloadName, groupMemberKey, workloadNameKey } from '@calico/keyspace';
import { policyFixtures } from '@calico/policy';
import { CalicoClient, ClientError } from './index.js';

describe('CalicoClient on a real etcd', () => {
  let etcd: Etcd;
  let ds: Datastore;
  let c: CalicoClient;

  /** What calico-node writes for a container: its endpoint keys and its name. */
  async function workload(host: string, containerId: string, name: string, endpointId: string, addr: string) {
    const kvs = policyFixtures.endpoint({ host, containerId, endpointId, addrs: [addr], mac: '0e:00:00:00:00:01' });
    await ds.batch([...kvs.map((kv) => ({ put: kv.key, value: kv.value })), { put: workloadNameKey(host, containerId), value: encodeWorkloadName(name) }]);
  }

  beforeAll(async () => {
    requireRoot();
    etcd = await Etcd.start();
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    c = new CalicoClient(ds);
    await workload('h1', 'aaaa1111', 'web', 'ep-a', '198.19.0.1');
    await workload('h1', 'bbbb2222', 'db', 'ep-b', '198.19.0.2');
    await workload('h2', 'aaaa3333', 'cache', 'ep-c', '198.19.0.3');
  });
  afterAll(async () => {
    ds?.close();
    await etcd?.stop();
  });

  const code = async (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof ClientError ? `${e.code}: ${e.message}` : String(e)));

  it('addgroup writes the original defaults, and refuses a duplicate name', async () => {
    const g = await c.addGroup('frontend');
    expect(g.name).toBe('frontend');
    expect(g.inbound).toEqual([{ index: 1, rule: { group: g.id, cidr: null, protocol: null, port: null } }]);
    expect(g.outbound.map((r) => r.rule.cidr ?? `group:${r.rule.group}`)).toEqual([`group:${g.id}`, '0.0.0.0/0', '::/0']);
    expect(await ds.get(`/calico/network/group/${g.id}/rule/inbound_default`)).toBe('deny');
    expect(await code(c.addGroup('frontend'))).toBe('CONFLICT: a group named "frontend" already exists');
    expect(await code(c.addGroup('  '))).toMatch(/^INVALID: group name "  "/);
  });

  it('finds containers by id, prefix or name on any host; ambiguity and absence are named', async () => {
    expect((await c.findContainer('web')).containerId).toBe('aaaa1111');
    expect((await c.findContainer('bbbb')).containerId).toBe('bbbb2222');
    expect((await c.findContainer('aaaa3333')).host).toBe('h2');
    expect(await code(c.findContainer('aaaa'))).toBe('AMBIGUOUS: "aaaa" matches 2 containers: aaaa1111 on h1, aaaa3333 on h2');
    expect(await code(c.findContainer('nope'))).toMatch(/^NOT_FOUND: no Calico container has the id, id prefix or name "nope"/);
  });

  it('membership by container name or endpoint id, and removal', async () => {
    const r = await c.addToGroup('web', 'frontend');
    expect(r.endpointId).toBe('ep-a');
    expect(await ds.get(groupMemberKey(r.groupId, 'ep-a'))).toBe('');
    await c.addToGroup('ep-c', 'frontend');
    expect((await c.findGroup('frontend')).members).toEqual(['ep-a', 'ep-c']);
    await c.removeFromGroup('cache', 'frontend');
    expect((await c.findGroup('frontend')).members).toEqual(['ep-a']);
    expect(await code(c.removeFromGroup('db', 'frontend'))).toBe('NOT_FOUND: endpoint ep-b is not a member of group frontend');
    expect(await code(c.addToGroup('web', 'no-such-group'))).toMatch(/^NOT_FOUND: no group has the id or name "no-such-group"/);
  });

  it('rules: add with the next number, refuse bad ones with the reason, remove', async () => {
    const r = await c.addRule('frontend', 'inbound', { cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 });
    expect(r.index).toBe(2);
    expect(await code(c.addRule('frontend', 'inbound', { cidr: '0.0.0.0/0', protocol: 'icmp', port: 80 }))).toMatch(/^INVALID: .*port must be null for protocol icmp/);
    expect(await code(c.addRule('frontend', 'inbound', { group: 'x', cidr: '1.2.3.0/24' }))).toMatch(/^INVALID: /);
    await c.removeRule('frontend', 'inbound', 2);
    expect(await code(c.removeRule('frontend', 'inbound', 2))).toBe('NOT_FOUND: group frontend has no inbound rule 2 (it has 1)');
  });

  it('check explains a verdict between containers given by name', async () => {
    await c.addToGroup('db', 'frontend');
    const ok = await c.check('web', 'db');
    expect(ok.allowed).toBe(true);
    expect(ok.inbound?.decidedBy?.index).toBe(1);
    const no = await c.check('web', 'cache');
    expect(no.allowed).toBe(false);
    expect(no.reason).toMatch(/^denied/);
  });

  it('pools: add, refuse a duplicate and a non-network, remove', async () => {
    expect(await c.addPool('198.19.0.7/16')).toEqual({ cidr: '198.19.0.0/16' });
    expect(await code(c.addPool('198.19.0.0/16'))).toBe('CONFLICT: pool 198.19.0.0/16 already exists');
    expect(await code(c.addPool('banana'))).toBe('INVALID: "banana" is not an IPv4 or IPv6 network (e.g. 198.19.0.0/16)');
    expect((await c.view()).pools.v4).toEqual(['198.19.0.0/16']);
    await c.removePool('198.19.0.0/16');
    expect((await c.view()).pools.v4).toEqual([]);
  });

  it('removegroup deletes the directory and nothing of other groups', async () => {
    const other = await c.addGroup('frontend-2');
    const r = await c.removeGroup('frontend');
    expect(r.deleted).toBeGreaterThan(3);
    expect((await c.listGroups()).map((g) => g.name)).toEqual(['frontend-2']);
    await c.removeGroup(other.id);
  });

  it('invalid keys written by hand are listed as problems', async () => {
    await ds.put('/calico/network/group/bad/rule/inbound/1', '{"group": null, "cidr": "300.0.0.0/8"}');
    await ds.put('/calico/host/h9/bird_ip', 'not-an-ip');
    const keys = (await c.view()).problems.map((p) => p.key);
    expect(keys).toEqual(expect.arrayContaining(['/calico/network/group/bad/rule/inbound/1', '/calico/host/h9/bird_ip']));
  });
});
