import { statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd, requireRoot } from '@calico/testkit';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import {
  encodeGroupName,
  encodeHostAlive,
  encodeIpAssignment,
  encodeRule,
  encodeWorkloadName,
  groupMemberKey,
  groupNameKey,
  groupPrefix,
  groupRuleKey,
  hostAliveKey,
  ipAssignmentKey,
  masterApiUrlKey,
  masterIpKey,
  workloadNameKey,
} from '@calico/keyspace';
import { createLogger } from '@calico/log';
import { policyFixtures } from '@calico/policy';
import { loadMasterConfig } from './config.js';
import { startMaster, type RunningMaster } from './master.js';

describe('calico-master API on a real etcd', () => {
  let etcd: Etcd;
  let ds: Datastore;
  let master: RunningMaster;
  let tokenFile = '';
  let token = '';

  async function api(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; json: any; text: string; headers: Headers }> {
    const res = await fetch(new URL(path.replace(/^\//, ''), master.url), {
      method,
      headers: headers ?? {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text, headers: res.headers };
  }

  /** What calico-node writes for a running container on a live host. */
  async function workload(host: string, containerId: string, name: string, endpointId: string, addr: string) {
    const kvs = policyFixtures.endpoint({ host, containerId, endpointId, addrs: [addr], mac: '0e:00:00:00:00:01' });
    await ds.batch([
      ...kvs.map((kv) => ({ put: kv.key, value: kv.value })),
      { put: workloadNameKey(host, containerId), value: encodeWorkloadName(name) },
      { put: ipAssignmentKey(addr), value: encodeIpAssignment({ host, containerId, endpointId }) },
      { put: hostAliveKey(host), value: encodeHostAlive({ since: new Date().toISOString() }) },
    ]);
  }

  beforeAll(async () => {
    requireRoot();
    etcd = await Etcd.start();
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    await workload('h1', 'aaaa1111', 'web', 'ep-a', '198.19.0.1');
    await workload('h1', 'bbbb2222', 'db', 'ep-b', '198.19.0.2');
    await workload('h2', 'aaaa3333', 'cache', 'ep-c', '198.19.0.3');
    // In a folder that does not exist yet: the master makes it.
    tokenFile = join(etcd.dir, 'etc-calico', 'api-token');
    const cfg = loadMasterConfig(
      ['--ip=127.0.0.1', '--listen=127.0.0.1:0', `--etcd=${etcd.endpoints}`, `--api-token-file=${tokenFile}`],
      {},
    );
    if (!cfg.ok) throw new Error(cfg.errors.join('\n'));
    master = await startMaster(cfg.value, { logger: createLogger({ name: 'calico-master', level: 'silent' }) });
    token = readFileSync(tokenFile, 'utf8').trim();
    await master.published;
    await master.syncer.waitInSync();
  });
  afterAll(async () => {
    await master?.stop();
    ds?.close();
    await etcd?.stop();
  });

  it('publishes its address and API URL under /calico/master/', async () => {
    expect(await ds.get(masterIpKey())).toBe('127.0.0.1');
    expect(await ds.get(masterApiUrlKey())).toBe(master.url);
    expect(master.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
  });

  it('made the API token at first start: 43 base64url characters, mode 0600, in a new 0700 folder', () => {
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(tokenFile).uid).toBe(0);
    expect(statSync(join(etcd.dir, 'etc-calico')).mode & 0o777).toBe(0o700);
  });

  it('every route but /healthz is a 401 without the token or with a wrong one, and answers with it', async () => {
    const refused = {
      status: 401,
      json: { error: { code: 'UNAUTHORIZED', message: expect.stringContaining('Authorization: Bearer <token>') } },
    };
    // One character off (never the token itself), twice the token, none at all.
    const wrong = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    for (const headers of <Record<string, string>[]>[
      {},
      { authorization: `Bearer ${wrong}` },
      { authorization: `Bearer ${token}${token}` },
    ]) {
      for (const path of ['/v1/hosts', '/v1/groups', '/metrics']) {
        const r = await api('GET', path, undefined, headers);
        expect(r).toMatchObject(refused);
        expect(r.headers.get('www-authenticate')).toBe('Bearer realm="calico-master"');
      }
      expect(
        await api('POST', '/v1/pools', { cidr: '198.19.9.0/24' }, { ...headers, 'content-type': 'application/json' }),
      ).toMatchObject(refused);
    }
    expect((await api('GET', '/v1/pools')).text).not.toContain('198.19.9.0');
    // Control: the same calls with the token are answered; /healthz needs none.
    expect(await api('POST', '/v1/pools', { cidr: '198.19.9.0/24' })).toMatchObject({ status: 201 });
    expect((await api('GET', '/v1/pools')).text).toContain('198.19.9.0/24');
    expect(await api('DELETE', '/v1/pools/198.19.9.0%2F24')).toMatchObject({ status: 200 });
    expect(await api('GET', '/v1/hosts')).toMatchObject({ status: 200, json: { hosts: expect.any(Array) } });
    expect((await api('GET', '/metrics')).status).toBe(200);
    expect(await api('GET', '/healthz', undefined, {})).toMatchObject({ status: 200 });
  });

  it('a form post (what a browser sends cross-site) is a 415 and writes nothing; the same body as JSON is taken', async () => {
    const form = { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' };
    expect(await api('POST', '/v1/groups', '{"name": "formgroup"}', form)).toMatchObject({
      status: 415,
      json: { error: { code: 'UNSUPPORTED_MEDIA_TYPE' } },
    });
    expect((await api('GET', '/v1/groups/formgroup')).status).toBe(404);
    expect(await api('POST', '/v1/groups', { name: 'formgroup' })).toMatchObject({ status: 201 });
    expect(await api('DELETE', '/v1/groups/formgroup')).toMatchObject({ status: 200 });
  });

  it('GET /healthz answers in-sync', async () => {
    expect(await api('GET', '/healthz')).toMatchObject({ status: 200, json: { ok: true, etcd: 'in-sync' } });
  });

  let groupId = '';
  it('groups: create, refuse duplicates and bad bodies, list, get by name or id, 404', async () => {
    const r = await api('POST', '/v1/groups', { name: 'frontend' });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({ name: 'frontend', members: [], inbound: [{ index: 1 }] });
    groupId = r.json.id;
    expect(r.headers.get('location')).toBe(`/v1/groups/${groupId}`);
    expect(await api('POST', '/v1/groups', { name: 'frontend' })).toMatchObject({
      status: 409,
      json: { error: { code: 'CONFLICT', message: 'a group named "frontend" already exists' } },
    });
    expect(await api('POST', '/v1/groups', '{"name": ')).toMatchObject({
      status: 400,
      json: { error: { code: 'INVALID' } },
    });
    expect(await api('POST', '/v1/groups', { name: '   ' })).toMatchObject({
      status: 400,
      json: { error: { code: 'INVALID' } },
    });
    expect((await api('POST', '/v1/groups', { name: 'backend', id: 'g-backend' })).json.id).toBe('g-backend');
    const list = await api('GET', '/v1/groups');
    expect(list.status).toBe(200);
    expect(list.json.groups.map((g: { name: string }) => g.name).sort()).toEqual(['backend', 'frontend']);
    expect((await api('GET', '/v1/groups/frontend')).json.id).toBe(groupId);
    expect((await api('GET', `/v1/groups/${groupId}`)).json.name).toBe('frontend');
    expect(await api('GET', '/v1/groups/nope')).toMatchObject({ status: 404, json: { error: { code: 'NOT_FOUND' } } });
  });

  it('rules: add with the next number, refuse a bad rule with its reason, list, remove', async () => {
    const r = await api('POST', '/v1/groups/frontend/rules/inbound', {
      group: null,
      cidr: '0.0.0.0/0',
      protocol: 'tcp',
      port: '80',
    });
    expect(r).toMatchObject({ status: 201, json: { groupId, direction: 'inbound', index: 2 } });
    const bad = await api('POST', '/v1/groups/frontend/rules/inbound', {
      cidr: '0.0.0.0/0',
      protocol: 'icmp',
      port: 80,
    });
    expect(bad).toMatchObject({
      status: 400,
      json: { error: { code: 'INVALID', message: 'rule: port must be null for protocol icmp' } },
    });
    expect((await api('POST', '/v1/groups/frontend/rules/sideways', { cidr: '0.0.0.0/0' })).status).toBe(400);
    const rules = await api('GET', '/v1/groups/frontend/rules');
    expect(rules.json.inbound).toEqual([
      { index: 1, rule: { group: groupId, cidr: null, protocol: null, port: null } },
      { index: 2, rule: { group: null, cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 } },
    ]);
    expect(rules.json.outbound).toHaveLength(3);
    expect(await api('DELETE', '/v1/groups/frontend/rules/inbound/2')).toMatchObject({
      status: 200,
      json: { groupId, direction: 'inbound', index: 2 },
    });
    expect(await api('DELETE', '/v1/groups/frontend/rules/inbound/2')).toMatchObject({
      status: 404,
      json: { error: { message: 'group frontend has no inbound rule 2 (it has 1)' } },
    });
    expect((await api('DELETE', '/v1/groups/frontend/rules/inbound/02')).status).toBe(400);
  });

  it('reads groups from its synced copy, and what was just written is in the answer', async () => {
    const before = { ...master.reads.served };
    // Written to etcd behind the master's back, then read through it at once: the read waits for
    // the copy to reach the revision etcd has, so the new group and its rule are in the answer.
    for (let i = 0; i < 20; i++) {
      const id = `g-copy-${i}`;
      await ds.batch([
        { put: groupNameKey(id), value: encodeGroupName(`copy-${i}`) },
        { put: groupRuleKey(id, 'inbound', 1), value: encodeRule({ cidr: '198.19.0.0/16' }) },
      ]);
      expect(await api('GET', `/v1/groups/copy-${i}`)).toMatchObject({
        status: 200,
        json: { id, name: `copy-${i}`, inbound: [{ index: 1, rule: { cidr: '198.19.0.0/16' } }] },
      });
      await ds.deleteDir(groupPrefix(id));
      expect((await api('GET', `/v1/groups/${id}`)).status).toBe(404);
    }
    // A put of the value a key already holds moves etcd's revision and changes nothing in the
    // copy (no batch is delivered for it): the copy still answers.
    const name = (await ds.get(groupNameKey(groupId)))!;
    await ds.put(groupNameKey(groupId), name);
    expect(await api('GET', '/v1/groups/frontend')).toMatchObject({ status: 200, json: { id: groupId } });
    expect(master.reads.served.copy - before.copy).toBeGreaterThanOrEqual(60);
    expect(master.reads.served.etcd).toBe(before.etcd);
    // The control: a write outside /calico/ moves etcd's revision past anything the copy can
    // reach, and the same reads go to etcd, with the same answers.
    await ds.put('/elsewhere/x', '1');
    expect(await api('GET', '/v1/groups/frontend')).toMatchObject({ status: 200, json: { name: 'frontend' } });
    expect(master.reads.served.etcd).toBeGreaterThan(before.etcd);
    await ds.delete('/elsewhere/x');
  });

  it('members: by container name or endpoint id; ambiguity, absence and removal', async () => {
    expect(await api('POST', '/v1/groups/frontend/members', { container: 'web' })).toMatchObject({
      status: 201,
      json: { endpointId: 'ep-a', groupId },
    });
    expect(await api('POST', '/v1/groups/frontend/members', { endpoint: 'ep-b' })).toMatchObject({
      status: 201,
      json: { endpointId: 'ep-b', groupId },
    });
    expect(await ds.get(groupMemberKey(groupId, 'ep-a'))).toBe('');
    expect(await api('POST', '/v1/groups/frontend/members', { container: 'aaaa' })).toMatchObject({
      status: 409,
      json: { error: { code: 'AMBIGUOUS' } },
    });
    expect(await api('POST', '/v1/groups/frontend/members', { endpoint: 'web' })).toMatchObject({
      status: 404,
      json: { error: { code: 'NOT_FOUND' } },
    });
    expect(await api('POST', '/v1/groups/frontend/members', { container: 'nope' })).toMatchObject({ status: 404 });
    expect(await api('POST', '/v1/groups/frontend/members', {})).toMatchObject({ status: 400 });
    expect(await api('POST', '/v1/groups/backend/members', { container: 'cache' })).toMatchObject({ status: 201 });
    expect(await api('DELETE', '/v1/groups/backend/members/cache')).toMatchObject({
      status: 200,
      json: { endpointId: 'ep-c', groupId: 'g-backend' },
    });
    expect(await api('DELETE', '/v1/groups/backend/members/ep-c')).toMatchObject({
      status: 404,
      json: { error: { message: 'endpoint ep-c is not a member of group backend' } },
    });
    expect((await api('GET', '/v1/groups/frontend')).json.members).toEqual(['ep-a', 'ep-b']);
  });

  it('hosts and endpoints come from the cluster view', async () => {
    const hosts = await api('GET', '/v1/hosts');
    expect(
      hosts.json.hosts.map(
        (h: { name: string; state: string; alive: boolean; endpoints: number; downSince: string | null }) => [
          h.name,
          h.state,
          h.alive,
          h.endpoints,
          h.downSince,
        ],
      ),
    ).toEqual([
      ['h1', 'up', true, 2, null],
      ['h2', 'up', true, 1, null],
    ]);
    const eps = await api('GET', '/v1/endpoints');
    expect(eps.json.workloads).toContainEqual({
      host: 'h1',
      containerId: 'aaaa1111',
      name: 'web',
      endpoints: [
        { endpointId: 'ep-a', addrs: ['198.19.0.1'], mac: '0e:00:00:00:00:01', state: 'active', groups: [groupId] },
      ],
    });
  });

  it('check explains a verdict; a bad query is a 400', async () => {
    const yes = await api('GET', '/v1/check?src=web&dst=db&protocol=tcp&port=5432');
    expect(yes).toMatchObject({
      status: 200,
      json: {
        allowed: true,
        src: { endpointId: 'ep-a' },
        dst: { endpointId: 'ep-b' },
        inbound: { decidedBy: { index: 1 } },
      },
    });
    const no = await api('GET', '/v1/check?src=web&dst=cache');
    expect(no.json.allowed).toBe(false);
    expect(no.json.reason).toMatch(/^denied/);
    expect(await api('GET', '/v1/check?src=web')).toMatchObject({ status: 400, json: { error: { code: 'INVALID' } } });
    expect(await api('GET', '/v1/check?src=web&dst=db&protocol=icmp&port=80')).toMatchObject({ status: 400 });
    expect(await api('GET', '/v1/check?src=ghost&dst=db')).toMatchObject({ status: 404 });
  });

  it('pools: add, refuse a duplicate, list, remove by encoded CIDR or key spelling', async () => {
    expect(await api('POST', '/v1/pools', { cidr: '198.19.0.7/16' })).toMatchObject({
      status: 201,
      json: { cidr: '198.19.0.0/16' },
    });
    expect(await api('POST', '/v1/pools', { cidr: 'fd00:198:19::/48' })).toMatchObject({ status: 201 });
    expect(await api('POST', '/v1/pools', { cidr: '198.19.0.0/16' })).toMatchObject({ status: 409 });
    expect(await api('POST', '/v1/pools', { cidr: 'banana' })).toMatchObject({ status: 400 });
    expect((await api('GET', '/v1/pools')).json).toMatchObject({ v4: ['198.19.0.0/16'], v6: ['fd00:198:19::/48'] });
    expect(await api('DELETE', `/v1/pools/${encodeURIComponent('198.19.0.0/16')}`)).toMatchObject({
      status: 200,
      json: { cidr: '198.19.0.0/16' },
    });
    expect(await api('DELETE', '/v1/pools/fd00:198:19::-48')).toMatchObject({
      status: 200,
      json: { cidr: 'fd00:198:19::/48' },
    });
    expect(await api('DELETE', '/v1/pools/198.19.0.0%2F16')).toMatchObject({ status: 404 });
    expect((await api('GET', '/v1/pools')).json).toMatchObject({ v4: [], v6: [] });
  });

  it('problems list a rule written by hand that does not decode', async () => {
    await ds.put('/calico/network/group/bad/rule/inbound/1', '{"group": null, "cidr": "300.0.0.0/8"}');
    const r = await api('GET', '/v1/problems');
    expect(r.status).toBe(200);
    const p = r.json.problems.find((x: { key: string }) => x.key === '/calico/network/group/bad/rule/inbound/1');
    expect(p.errors.join(' ')).toMatch(/300\.0\.0\.0\/8/);
  });

  it('unknown routes are 404, wrong methods 405 with Allow', async () => {
    expect(await api('GET', '/v1/nothing')).toMatchObject({ status: 404, json: { error: { code: 'NOT_FOUND' } } });
    const r = await api('PUT', '/v1/groups');
    expect(r).toMatchObject({
      status: 405,
      json: { error: { code: 'METHOD_NOT_ALLOWED', message: 'PUT is not allowed on /v1/groups; use GET or POST' } },
    });
    expect(r.headers.get('allow')).toBe('GET, POST');
  });

  it('DELETE /v1/groups/{g} removes the group directory', async () => {
    expect(await api('DELETE', '/v1/groups/backend')).toMatchObject({
      status: 200,
      json: { id: 'g-backend', name: 'backend' },
    });
    expect(await api('GET', '/v1/groups/backend')).toMatchObject({ status: 404 });
    expect((await ds.getPrefix('/calico/network/group/g-backend/')).kvs).toEqual([]);
  });

  it('GET /metrics: the gauges, GC counters, request counts and process metrics', async () => {
    await master.syncer.drain();
    const r = await api('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    const line = (re: RegExp) => expect(r.text).toMatch(re);
    line(/^calico_master_groups 1$/m); // frontend; the hand-written "bad" rule does not decode, so makes no group
    line(/^calico_master_endpoints 3$/m);
    line(/^calico_master_hosts\{state="up"\} 2$/m);
    line(/^calico_master_hosts\{state="down"\} 0$/m);
    line(/^calico_master_host_up\{host="h1"\} 1$/m);
    line(/^calico_master_members_without_endpoint 0$/m);
    line(/^calico_master_problems [1-9]\d*$/m);
    line(/^calico_master_gc_deleted_total\{kind="host"\} 0$/m);
    line(/^calico_master_gc_deleted_total\{kind="membership"\} 0$/m);
    line(/^calico_master_gc_deleted_total\{kind="endpoint"\} 0$/m);
    line(/^calico_master_gc_deleted_total\{kind="assignment"\} 0$/m);
    line(/^calico_master_api_requests_total\{route="\/v1\/groups",code="201"\} 3$/m); // frontend, backend, formgroup
    line(/^calico_master_api_requests_total\{route="\/v1\/groups\/\{group\}\/rules\/\{direction\}",code="400"\} 2$/m);
    line(/^calico_master_api_requests_total\{route="unmatched",code="404"\} 1$/m);
    line(/^calico_master_in_sync 1$/m);
    line(/^process_cpu_user_seconds_total /m);
    line(/^nodejs_eventloop_lag_seconds /m);
  });

  describe('hosts down and their removal', () => {
    const keyspace = async () => new Map((await ds.getPrefix('/calico/')).kvs.map((kv) => [kv.key, kv.value]));

    it('a host whose liveness key is gone is down in /v1/hosts, /v1/hosts/{host}, /v1/problems and the metrics, since the master saw it go', async () => {
      // No round has run on the 5 s interval yet: the master knows h2 was up from the round it
      // ran when it came in sync, so it knows since when h2 is down.
      await ds.delete(hostAliveKey('h2'));
      await ds.put(groupMemberKey('g-ghost', 'ep-ghost'), '');
      await master.syncer.drain();
      await master.gc.runOnce();
      const since = master.gc.hostsDown.get('h2');
      expect(since).toEqual(expect.any(Number));
      const h2 = await api('GET', '/v1/hosts/h2');
      expect(h2).toMatchObject({
        status: 200,
        json: {
          name: 'h2',
          state: 'down',
          alive: false,
          since: null,
          endpoints: 1,
          workloads: 1,
          reservations: 1,
          downSince: new Date(since!).toISOString(),
        },
      });
      expect(
        (await api('GET', '/v1/hosts')).json.hosts.map((h: { name: string; state: string }) => `${h.name}:${h.state}`),
      ).toEqual(['h1:up', 'h2:down']);
      expect(await api('GET', '/v1/hosts/h7')).toMatchObject({
        status: 404,
        json: { error: { code: 'NOT_FOUND', message: 'no host "h7" (GET /v1/hosts lists them)' } },
      });
      expect(await api('GET', '/v1/hosts/H2')).toMatchObject({ status: 400, json: { error: { code: 'INVALID' } } });
      const problems = (await api('GET', '/v1/problems')).json;
      expect(problems.notices).toEqual([
        {
          kind: 'host-down',
          key: hostAliveKey('h2'),
          host: 'h2',
          since: new Date(since!).toISOString(),
          message: expect.stringMatching(/^host h2 is down: no liveness key/),
        },
        {
          kind: 'member-without-endpoint',
          key: groupMemberKey('g-ghost', 'ep-ghost'),
          groupId: 'g-ghost',
          endpointId: 'ep-ghost',
          message: expect.stringMatching(/^endpoint ep-ghost exists on no host; the membership is kept/),
        },
      ]);
      const text = (await api('GET', '/metrics')).text;
      expect(text).toMatch(/^calico_master_hosts\{state="down"\} 1$/m);
      expect(text).toMatch(/^calico_master_host_up\{host="h2"\} 0$/m);
      expect(text).toMatch(new RegExp(`^calico_master_host_down_since_seconds\\{host="h2"\\} ${since! / 1000}$`, 'm'));
      expect(text).toMatch(/^calico_master_members_without_endpoint 1$/m);
    });

    it('DELETE /v1/hosts/{host}: refused while alive, refused with endpoints unless removeEndpoints=true, then exactly its data goes', async () => {
      const before = await keyspace();
      const alive = await api('DELETE', '/v1/hosts/h1?removeEndpoints=true');
      expect(alive).toMatchObject({
        status: 409,
        json: {
          error: {
            code: 'CONFLICT',
            message: expect.stringMatching(/^host h1 is alive: its liveness key \/calico\/host\/h1\/alive exists/),
          },
        },
      });
      const withEndpoints = await api('DELETE', '/v1/hosts/h2');
      expect(withEndpoints).toMatchObject({
        status: 409,
        json: {
          error: {
            code: 'CONFLICT',
            message: expect.stringMatching(
              /^host h2 is down but still has 1 workload\(s\) with 1 endpoint\(s\) and 1 address reservation\(s\); nothing was removed/,
            ),
          },
        },
      });
      expect(await api('DELETE', '/v1/hosts/h2?removeEndpoints=maybe')).toMatchObject({ status: 400 });
      expect(await keyspace()).toEqual(before);
      const r = await api('DELETE', '/v1/hosts/h2?removeEndpoints=true');
      expect(r).toMatchObject({
        status: 200,
        json: { host: 'h2', removed: { workloads: 1, endpoints: 1, memberships: 0, reservations: 1 } },
      });
      const after = await keyspace();
      for (const [k, v] of after) expect(before.get(k), k).toBe(v);
      const gone = [...before.keys()].filter((k) => !after.has(k)).sort();
      expect(gone).toEqual(
        [...before.keys()]
          .filter((k) => k.startsWith('/calico/host/h2/') || k === ipAssignmentKey('198.19.0.3'))
          .sort(),
      );
      expect(r.json.removed.keys).toBe(gone.length);
      expect(await api('DELETE', '/v1/hosts/h2?removeEndpoints=true')).toMatchObject({ status: 404 });
      // Control for the refusal of h1: once its liveness key is gone, the same call removes it.
      await ds.delete(hostAliveKey('h1'));
      expect(await api('DELETE', '/v1/hosts/h1?removeEndpoints=true')).toMatchObject({
        status: 200,
        json: { host: 'h1', removed: { workloads: 2 } },
      });
      expect((await api('GET', '/v1/hosts')).json.hosts).toEqual([]);
    });
  });
});
