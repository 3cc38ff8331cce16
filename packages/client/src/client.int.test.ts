import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Etcd, requireRoot } from '@calico/testkit';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import {
  bgpHostAsNumKey,
  birdIpKey,
  encodeAsNum,
  encodeBirdIp,
  encodeHostAlive,
  encodeIpAssignment,
  encodeWorkloadName,
  encodeGroupName,
  groupMemberKey,
  groupNameKey,
  hostAliveKey,
  ipAssignmentKey,
  workloadNameKey,
  workloadPrefix,
} from '@calico/keyspace';
import { policyFixtures } from '@calico/policy';
import { CalicoClient, ClientError } from './index.js';

describe('CalicoClient on a real etcd', () => {
  let etcd: Etcd;
  let ds: Datastore;
  let c: CalicoClient;

  /** What calico-node writes for a container: its endpoint keys and its name. */
  async function workload(host: string, containerId: string, name: string, endpointId: string, addr: string) {
    const kvs = policyFixtures.endpoint({ host, containerId, endpointId, addrs: [addr], mac: '0e:00:00:00:00:01' });
    await ds.batch([
      ...kvs.map((kv) => ({ put: kv.key, value: kv.value })),
      { put: workloadNameKey(host, containerId), value: encodeWorkloadName(name) },
    ]);
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

  const code = async (p: Promise<unknown>) =>
    p.then(
      () => 'ok',
      (e: unknown) => (e instanceof ClientError ? `${e.code}: ${e.message}` : String(e)),
    );

  it('addgroup writes the original defaults, and refuses a duplicate name', async () => {
    const g = await c.addGroup('frontend');
    expect(g.name).toBe('frontend');
    expect(g.inbound).toEqual([{ index: 1, rule: { group: g.id, cidr: null, protocol: null, port: null } }]);
    expect(g.outbound.map((r) => r.rule.cidr ?? `group:${r.rule.group}`)).toEqual([
      `group:${g.id}`,
      '0.0.0.0/0',
      '::/0',
    ]);
    expect(await ds.get(`/calico/network/group/${g.id}/rule/inbound_default`)).toBe('deny');
    expect(await code(c.addGroup('frontend'))).toBe('CONFLICT: a group named "frontend" already exists');
    expect(await code(c.addGroup('  '))).toMatch(/^INVALID: group name " {2}"/);
  });

  it('finds containers by id, prefix or name on any host; ambiguity and absence are named', async () => {
    expect((await c.findContainer('web')).containerId).toBe('aaaa1111');
    expect((await c.findContainer('bbbb')).containerId).toBe('bbbb2222');
    expect((await c.findContainer('aaaa3333')).host).toBe('h2');
    expect(await code(c.findContainer('aaaa'))).toBe(
      'AMBIGUOUS: "aaaa" matches 2 containers: aaaa1111 on h1, aaaa3333 on h2',
    );
    expect(await code(c.findContainer('nope'))).toMatch(
      /^NOT_FOUND: no Calico container has the id, id prefix or name "nope"/,
    );
  });

  it('membership by container name or endpoint id, and removal', async () => {
    const r = await c.addToGroup('web', 'frontend');
    expect(r.endpointId).toBe('ep-a');
    expect(await ds.get(groupMemberKey(r.groupId, 'ep-a'))).toBe('');
    await c.addToGroup('ep-c', 'frontend');
    expect((await c.findGroup('frontend')).members).toEqual(['ep-a', 'ep-c']);
    await c.removeFromGroup('cache', 'frontend');
    expect((await c.findGroup('frontend')).members).toEqual(['ep-a']);
    expect(await code(c.removeFromGroup('db', 'frontend'))).toBe(
      'NOT_FOUND: endpoint ep-b is not a member of group frontend',
    );
    expect(await code(c.addToGroup('web', 'no-such-group'))).toMatch(
      /^NOT_FOUND: no group has the id or name "no-such-group"/,
    );
  });

  it('rules: add with the next number, refuse bad ones with the reason, remove', async () => {
    const r = await c.addRule('frontend', 'inbound', { cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 });
    expect(r.index).toBe(2);
    expect(await code(c.addRule('frontend', 'inbound', { cidr: '0.0.0.0/0', protocol: 'icmp', port: 80 }))).toMatch(
      /^INVALID: .*port must be null for protocol icmp/,
    );
    expect(await code(c.addRule('frontend', 'inbound', { group: 'x', cidr: '1.2.3.0/24' }))).toMatch(/^INVALID: /);
    await c.removeRule('frontend', 'inbound', 2);
    expect(await code(c.removeRule('frontend', 'inbound', 2))).toBe(
      'NOT_FOUND: group frontend has no inbound rule 2 (it has 1)',
    );
  });

  it('reads what an operation needs: one group by id, the groups for a name, the hosts for a container', async () => {
    const id = (await c.findGroup('frontend')).id;
    const reads: string[] = [];
    const spy = new CalicoClient(
      Object.assign(Object.create(ds) as Datastore, {
        getPrefix: (prefix: string) => {
          reads.push(prefix);
          return ds.getPrefix(prefix);
        },
      }),
    );
    const readBy = async (op: () => Promise<unknown>) => {
      reads.length = 0;
      await op();
      return [...reads];
    };
    const group = `/calico/network/group/${id}/`;
    expect(await readBy(() => spy.findGroup(id))).toEqual([group]);
    expect(await readBy(() => spy.addRule(id, 'outbound', { cidr: '198.19.0.0/16' }))).toEqual([group]);
    expect(await readBy(() => spy.removeRule(id, 'outbound', 4))).toEqual([group]);
    // A name is first tried as an id (a read of nothing), then found among the groups.
    expect(await readBy(() => spy.findGroup('frontend'))).toEqual([
      '/calico/network/group/frontend/',
      '/calico/network/group/',
      group,
    ]);
    expect(await readBy(() => spy.addToGroup('db', id))).toEqual(['/calico/host/', group]);
    // The control: the whole-cluster operations still read all of /calico/.
    expect(await readBy(() => spy.listGroups())).toEqual(['/calico/network/group/']);
    expect(await readBy(() => spy.check('web', 'db'))).toEqual(['/calico/']);
    expect((await c.findGroup(id)).outbound.map((r) => r.index)).toEqual([1, 2, 3]);
  });

  it('a name two groups share is refused with their ids; each is found by its id', async () => {
    await ds.batch([
      { put: groupNameKey('twin-1'), value: encodeGroupName('twins') },
      { put: groupNameKey('twin-2'), value: encodeGroupName('twins') },
    ]);
    expect(await code(c.findGroup('twins'))).toBe(
      'AMBIGUOUS: 2 groups are named "twins": give its id (twin-1, twin-2)',
    );
    expect(await code(c.addGroup('twins'))).toBe('CONFLICT: a group named "twins" already exists');
    expect((await c.findGroup('twin-2')).name).toBe('twins');
    await ds.delete(groupNameKey('twin-1'));
    expect((await c.findGroup('twins')).id).toBe('twin-2');
    await ds.delete(groupNameKey('twin-2'));
    expect(await code(c.findGroup('twins'))).toMatch(/^NOT_FOUND: no group has the id or name "twins"/);
  });

  it("on a host, a full container id or an endpoint id is found in that host's keys alone", async () => {
    const full = 'f'.repeat(64);
    await workload('h2', full, 'full', 'ep-full', '198.19.0.9');
    const reads: string[] = [];
    const on = (host: string) =>
      new CalicoClient(
        Object.assign(Object.create(ds) as Datastore, {
          getPrefix: (prefix: string) => {
            reads.push(prefix);
            return ds.getPrefix(prefix);
          },
        }),
        { host },
      );
    const readBy = async (op: () => Promise<{ endpointId: string }>) => {
      reads.length = 0;
      return { endpointId: (await op()).endpointId, reads: [...reads] };
    };
    const h2 = '/calico/host/h2/workload/docker/';
    expect(await readBy(() => on('h2').resolveEndpoint(full))).toEqual({ endpointId: 'ep-full', reads: [h2] });
    expect(await readBy(() => on('h2').resolveEndpoint('ep-c'))).toEqual({ endpointId: 'ep-c', reads: [h2] });
    expect((await on('h2').findContainer(full)).host).toBe('h2');
    // The control: from another host, or by name, every host's keys are read, with the same answer.
    const h1 = '/calico/host/h1/workload/docker/';
    const everyHost = ['/calico/host/'];
    expect(await readBy(() => on('h1').resolveEndpoint(full))).toEqual({
      endpointId: 'ep-full',
      reads: [h1, ...everyHost],
    });
    expect(await readBy(() => on('h2').resolveEndpoint('full'))).toEqual({
      endpointId: 'ep-full',
      reads: [h2, ...everyHost],
    });
    await ds.deleteDir(workloadPrefix('h2', full));
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
    expect(await code(c.addPool('banana'))).toBe(
      'INVALID: "banana" is not an IPv4 or IPv6 network (e.g. 198.19.0.0/16)',
    );
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
    expect(keys).toEqual(
      expect.arrayContaining(['/calico/network/group/bad/rule/inbound/1', '/calico/host/h9/bird_ip']),
    );
  });
});

describe('CalicoClient.removeHost on a real etcd', () => {
  let etcd: Etcd;
  let ds: Datastore;
  let c: CalicoClient;

  /** A host as calico-node leaves it: bird_ip, BGP settings, workloads with reservations; memberships in two groups. */
  async function host(name: string, n: number, base: number): Promise<void> {
    const ops: { put: string; value: string }[] = [
      { put: birdIpKey(name), value: encodeBirdIp(`198.18.0.${base}`) },
      { put: bgpHostAsNumKey(name), value: encodeAsNum(65000 + base) },
    ];
    for (let i = 0; i < n; i++) {
      const containerId = `${name}-c${i}`;
      const endpointId = `${name}-e${i}`;
      const addr = `198.19.${base}.${i + 1}`;
      ops.push(
        ...policyFixtures
          .endpoint({ host: name, containerId, endpointId, addrs: [addr] })
          .map((kv) => ({ put: kv.key, value: kv.value })),
        { put: workloadNameKey(name, containerId), value: encodeWorkloadName(`w-${endpointId}`) },
        { put: ipAssignmentKey(addr), value: encodeIpAssignment({ host: name, containerId, endpointId }) },
        { put: groupMemberKey('g1', endpointId), value: '' },
        { put: groupMemberKey('g2', endpointId), value: '' },
      );
    }
    await ds.batch(ops);
  }
  const keyspace = async () => new Map((await ds.getPrefix('/calico/')).kvs.map((kv) => [kv.key, kv.value]));
  /** The keys of `before` that are gone in `after`; and that nothing else changed. */
  const removedKeys = (before: Map<string, string>, after: Map<string, string>) => {
    for (const [k, v] of after) expect(before.get(k), k).toBe(v);
    return [...before.keys()].filter((k) => !after.has(k)).sort();
  };
  const hostKeys = (before: Map<string, string>, name: string) =>
    [...before]
      .filter(
        ([k, v]) =>
          k.startsWith(`/calico/host/${name}/`) ||
          k.startsWith(`/calico/bgp/v1/host/${name}/`) ||
          (k.startsWith('/calico/ipam/') && v.includes(`"host":"${name}"`)) ||
          new RegExp(`/member/${name}-e\\d+$`).test(k),
      )
      .map(([k]) => k)
      .sort();
  const code = async (p: Promise<unknown>) =>
    p.then(
      () => 'ok',
      (e: unknown) => (e instanceof ClientError ? `${e.code}: ${e.message}` : String(e)),
    );

  beforeAll(async () => {
    requireRoot();
    etcd = await Etcd.start();
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    c = new CalicoClient(ds);
  });
  afterEach(async () => {
    await ds.deleteDir('/calico/');
  });
  afterAll(async () => {
    ds?.close();
    await etcd?.stop();
  });

  it('refuses while the liveness key exists, and removes the same host once it is gone', async () => {
    await host('h1', 1, 11);
    await host('h2', 2, 12);
    const keeper = ds.leaseKeeper({ ttlSeconds: 10 });
    await keeper.start();
    await keeper.put(hostAliveKey('h2'), encodeHostAlive({ since: new Date().toISOString() }));
    const before = await keyspace();
    expect(await code(c.removeHost('h2', { removeEndpoints: true }))).toBe(
      'CONFLICT: host h2 is alive: its liveness key /calico/host/h2/alive exists (its calico-node holds it with a lease). ' +
        "A live host is never removed: stop calico-node on h2 first (calicoctl node stop), wait until the key is gone (at most the node's lease TTL), then run this again",
    );
    expect(await keyspace()).toEqual(before);
    // Control: the node stops (its lease is revoked), and the very same call removes h2.
    await keeper.stop();
    const down = await keyspace();
    const r = await c.removeHost('h2', { removeEndpoints: true });
    expect(r).toEqual({
      host: 'h2',
      removed: { workloads: 2, endpoints: 2, memberships: 4, reservations: 2, keys: hostKeys(down, 'h2').length },
    });
    expect(removedKeys(down, await keyspace())).toEqual(hostKeys(down, 'h2'));
  });

  it('without removeEndpoints refuses a host that still has workloads, naming them; with it removes exactly its data', async () => {
    await host('h1', 2, 11);
    await host('h2', 3, 12);
    // A copy of h1's first endpoint on h2 (a container moved, say): its memberships stay for h1's copy.
    await ds.batch(
      policyFixtures
        .endpoint({ host: 'h2', containerId: 'moved', endpointId: 'h1-e0', addrs: ['198.19.11.1'] })
        .map((kv) => ({ put: kv.key, value: kv.value })),
    );
    // A membership written before its endpoint exists belongs to no host and stays.
    await ds.put(groupMemberKey('g1', 'not-yet'), '');
    const before = await keyspace();
    expect(await code(c.removeHost('h2'))).toBe(
      'CONFLICT: host h2 is down but still has 4 workload(s) with 4 endpoint(s) and 3 address reservation(s); nothing was removed. ' +
        'Removing the endpoints too (calicoctl node remove --remove-endpoints; API: ?removeEndpoints=true) also removes their memberships and frees their addresses',
    );
    expect(await keyspace()).toEqual(before);
    const r = await c.removeHost('h2', { removeEndpoints: true });
    const gone = removedKeys(before, await keyspace());
    expect(gone).toEqual(hostKeys(before, 'h2'));
    expect(gone.filter((k) => k.includes('/member/'))).toEqual(
      [...['h2-e0', 'h2-e1', 'h2-e2'].flatMap((e) => [groupMemberKey('g1', e), groupMemberKey('g2', e)])].sort(),
    );
    expect(r.removed).toEqual({ workloads: 4, endpoints: 4, memberships: 6, reservations: 3, keys: gone.length });
    expect((await c.view()).hosts.map((h) => h.name)).toEqual(['h1']);
    expect(await code(c.removeHost('h2', { removeEndpoints: true }))).toBe(
      'NOT_FOUND: no host "h2" in etcd: nothing under /calico/host/h2/ or /calico/bgp/v1/host/h2/, and no address reservation names it',
    );
  });

  it('a host with nothing but its directory needs no flag', async () => {
    await host('h3', 0, 13);
    const before = await keyspace();
    expect(await c.removeHost('h3')).toEqual({
      host: 'h3',
      removed: { workloads: 0, endpoints: 0, memberships: 0, reservations: 0, keys: 2 },
    });
    expect(removedKeys(before, await keyspace())).toEqual([bgpHostAsNumKey('h3'), birdIpKey('h3')].sort());
  });

  it('a host too big for one transaction goes in chunks, still exactly its data', async () => {
    // 80 workloads: 160 memberships and 80 reservations, far over etcd's 128 operations per transaction.
    await host('h1', 1, 11);
    await host('big', 80, 20);
    const before = await keyspace();
    const r = await c.removeHost('big', { removeEndpoints: true });
    const gone = removedKeys(before, await keyspace());
    expect(gone).toEqual(hostKeys(before, 'big'));
    expect(r.removed).toEqual({ workloads: 80, endpoints: 80, memberships: 160, reservations: 80, keys: gone.length });
  });

  it('a host that comes back between the read and the delete keeps everything', async () => {
    await host('h2', 2, 12);
    const keeper = ds.leaseKeeper({ ttlSeconds: 10 });
    let comeBack = true;
    // The node restarts right after removeHost has read the keyspace.
    const racing = new Proxy(ds, {
      get(target, p) {
        if (p === 'getPrefix') {
          return async (prefix: string) => {
            const snap = await target.getPrefix(prefix);
            if (comeBack) {
              comeBack = false;
              await keeper.start();
              await keeper.put(hostAliveKey('h2'), encodeHostAlive({ since: new Date().toISOString() }));
            }
            return snap;
          };
        }
        const v = Reflect.get(target, p) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const before = await keyspace();
    expect(await code(new CalicoClient(racing).removeHost('h2', { removeEndpoints: true }))).toMatch(
      /^CONFLICT: host h2 is alive: its liveness key \/calico\/host\/h2\/alive exists/,
    );
    const after = await keyspace();
    after.delete(hostAliveKey('h2'));
    expect(after).toEqual(before);
    // Control: without the comeback the same removal goes through.
    await keeper.stop();
    expect((await new CalicoClient(racing).removeHost('h2', { removeEndpoints: true })).removed.workloads).toBe(2);
  });

  it('a reservation taken by another host between the read and the delete is left to its new holder', async () => {
    await host('h2', 2, 12);
    let retaken = false;
    const racing = new Proxy(ds, {
      get(target, p) {
        if (p === 'getPrefix') {
          return async (prefix: string) => {
            const snap = await target.getPrefix(prefix);
            if (!retaken) {
              retaken = true;
              await target.put(
                ipAssignmentKey('198.19.12.1'),
                encodeIpAssignment({ host: 'h1', containerId: 'new', endpointId: 'e-new' }),
              );
            }
            return snap;
          };
        }
        const v = Reflect.get(target, p) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const r = await new CalicoClient(racing).removeHost('h2', { removeEndpoints: true });
    expect(retaken).toBe(true);
    expect(await ds.get(ipAssignmentKey('198.19.12.1'))).toBe(
      encodeIpAssignment({ host: 'h1', containerId: 'new', endpointId: 'e-new' }),
    );
    expect(await ds.get(ipAssignmentKey('198.19.12.2'))).toBeUndefined();
    expect(r.removed).toMatchObject({ workloads: 2, reservations: 1 });
    expect((await ds.getPrefix('/calico/host/h2/')).kvs).toEqual([]);
  });

  it('a name that is not a host name is refused before etcd is asked', async () => {
    // A datastore whose etcd does not exist: any read would fail as UNAVAILABLE.
    const nowhere = new Datastore(resolveDatastoreConfig({ etcd: '127.0.0.1:1', env: {} }), { callTimeoutMs: 500 });
    try {
      for (const bad of ['H2', 'h2/alive', '../h2', '', 'h_2']) {
        expect(await code(new CalicoClient(nowhere).removeHost(bad, { removeEndpoints: true }))).toMatch(
          /^INVALID: host name /,
        );
      }
      // Control: a good name does go to etcd.
      expect(await code(new CalicoClient(nowhere).removeHost('h2', { removeEndpoints: true }))).toMatch(
        /^UNAVAILABLE: /,
      );
    } finally {
      nowhere.close();
    }
  });
});
