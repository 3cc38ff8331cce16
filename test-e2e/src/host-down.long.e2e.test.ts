import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { DevCluster } from '@calico/devcluster';
import { exec, requireRoot, waitFor, type ExecResult } from '@calico/testkit';
import { groupMemberKey, hostAliveKey } from '@calico/keyspace';
import { expectMatrix, startNodeProgrammed, startWorkload, writeGroup, type Workload } from './helpers.js';

const require = createRequire(import.meta.url);
const calicoctlJs = join(dirname(require.resolve('@calico/calicoctl/package.json')), 'dist', 'main.js');

/** How long the node stays down: far past the 60 s after which the master used to collect a host. */
const DOWN_MS = 5 * 60_000;

const addgroup = (groupId: string, members: Workload[]) => ({
  groupId,
  members: members.map((w) => w.endpointId),
  inbound: [{ group: groupId }],
  outbound: [{ group: groupId }, { cidr: '0.0.0.0/0' }],
});

/**
 * A host that is down is not a host that is gone: with the master running (default settings),
 * a node with workloads in groups is stopped for five minutes. Its data stays, the master says
 * it is down meanwhile, and once the node is back every verdict is what it was. Only a person
 * removes a host, and only one that is down.
 */
describe('a node down for five minutes with the master running', () => {
  let cluster: DevCluster;
  let dir: string;
  let A: Workload, B: Workload, C: Workload, D: Workload;
  let all: Workload[];
  let masterUrl = '';
  let failed = false;
  const WANT = ['A->C', 'B->D', 'C->A', 'D->B'];

  const masterDirs = () => [`--run-dir=${join(dir, 'master', 'run')}`, `--log-dir=${join(dir, 'master', 'log')}`];
  /** calicoctl as a person at the root namespace runs it, against the cluster's etcd. */
  const tokenFile = () => join(dir, 'api-token');
  const calicoctl = (args: string[]): Promise<ExecResult> =>
    exec(
      [process.execPath, calicoctlJs, ...args, `--etcd=${cluster.etcd.endpoints}`, `--api-token-file=${tokenFile()}`],
      { timeoutMs: 120_000 },
    );
  const auth = () => ({ authorization: `Bearer ${readFileSync(tokenFile(), 'utf8').trim()}` });
  const masterLog = async () =>
    (await readFile(join(dir, 'master', 'log', 'calico-master.log'), 'utf8').catch(() => ''))
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; time: string });
  /** Waits for the master to log a line that starts with `prefix`; resolves with it. */
  async function masterSays(prefix: string, timeoutMs = 30_000): Promise<{ msg: string; time: string }> {
    let found: { msg: string; time: string } | undefined;
    await waitFor(
      `the master to log "${prefix}…"`,
      async () => (found = (await masterLog()).find((l) => l.msg.startsWith(prefix))) !== undefined,
      timeoutMs,
      () => 'see the master log in the dump',
    );
    return found!;
  }
  const api = async (path: string) => {
    const res = await fetch(new URL(path, masterUrl), { headers: auth() });
    return { status: res.status, json: (await res.json()) as any };
  };
  const keyspace = async () => new Map((await cluster.ds.getPrefix('/calico/')).kvs.map((kv) => [kv.key, kv.value]));
  const only = (kvs: Map<string, string>, re: RegExp) => new Map([...kvs].filter(([k]) => re.test(k)));
  const MEMBERS = /\/member\//;
  const RESERVATIONS = /^\/calico\/ipam\/v[46]\/assignment\//;

  beforeAll(async () => {
    requireRoot();
    dir = await mkdtemp(join(tmpdir(), 'calico-host-down-e2e-'));
    cluster = await DevCluster.start({ hosts: ['h1', 'h2'], bgp: true });
    const m = await calicoctl([
      'master',
      `--ip=${cluster.fabric.rootLink!.ip}`,
      `--listen=${cluster.fabric.rootLink!.ip}:7657`,
      ...masterDirs(),
    ]);
    expect(m.code, m.stderr + m.stdout).toBe(0);
    masterUrl = `http://${cluster.fabric.rootLink!.ip}:7657/`;
    const [h1, h2] = [cluster.host('h1'), cluster.host('h2')];
    A = await startWorkload(cluster, h1, 'A', '198.19.1.1');
    B = await startWorkload(cluster, h1, 'B', '198.19.1.2');
    C = await startWorkload(cluster, h2, 'C', '198.19.2.3');
    D = await startWorkload(cluster, h2, 'D', '198.19.2.4');
    all = [A, B, C, D];
    await writeGroup(cluster, addgroup('g-ac', [A, C]));
    await writeGroup(cluster, addgroup('g-bd', [B, D]));
    // Written before its endpoint exists, as an orchestrator may: it must outlive the outage too.
    await cluster.ds.put(groupMemberKey('g-ac', 'ep-not-yet'), '');
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) {
      console.error(await cluster.dump());
      console.error((await exec(['sh', '-c', `tail -n 60 ${join(dir, 'master', 'log')}/*.log`])).stdout);
    }
    if (cluster) await calicoctl(['master', 'stop', ...masterDirs()]).catch(() => undefined);
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('before the outage: A and C, B and D reach each other across the hosts; node remove refuses h2 while it is up', async () => {
    await expectMatrix(cluster, all, WANT, 30_000);
    const r = await calicoctl(['node', 'remove', 'h2', '--remove-endpoints']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('calicoctl: host h2 is alive: its liveness key /calico/host/h2/alive exists');
    expect((await api('v1/hosts/h2')).json).toMatchObject({ state: 'up', downSince: null });
  });

  it(
    'stopped for five minutes, h2 keeps every membership, reservation and key; the master says DOWN; back, every verdict is what it was',
    async () => {
      const before = await keyspace();
      await cluster.stopNode('h2');
      // The node revokes its lease as it stops: the master sees the liveness key go.
      const down = await masterSays('host h2 is down');
      expect(await cluster.ds.get(hostAliveKey('h2'))).toBeUndefined();
      const h2 = (await api('v1/hosts/h2')).json;
      expect(h2).toMatchObject({
        name: 'h2',
        state: 'down',
        alive: false,
        workloads: 2,
        reservations: 2,
        downSince: expect.any(String),
      });
      expect(Date.parse(h2.downSince)).toBeLessThanOrEqual(Date.parse(down.time));
      // Fail static: while h2's node is away its kernel keeps enforcing, and h1 is unchanged.
      await expectMatrix(cluster, all, WANT);

      await new Promise((r) => setTimeout(r, DOWN_MS));

      // Still down, still reported so, and nothing of it was touched.
      const status = await calicoctl([
        'status',
        '--json',
        '--hostname=h1',
        `--run-dir=${join(dir, 'h1-run')}`,
        `--docker=${cluster.dockerd.host}`,
      ]);
      const hosts = (
        JSON.parse(status.stdout) as { hosts: { name: string; state: string; downSince: string | null }[] }
      ).hosts;
      expect(hosts.map((h) => [h.name, h.state, h.downSince])).toEqual([
        ['h1', 'up', null],
        ['h2', 'down', h2.downSince],
      ]);
      const text = await (await fetch(new URL('metrics', masterUrl), { headers: auth() })).text();
      expect(text).toMatch(/^calico_master_host_up\{host="h2"\} 0$/m);
      expect(
        (await api('v1/problems')).json.notices.map((n: { kind: string; key: string }) => `${n.kind} ${n.key}`),
      ).toEqual([`host-down ${hostAliveKey('h2')}`, `member-without-endpoint ${groupMemberKey('g-ac', 'ep-not-yet')}`]);
      const during = await keyspace();
      const expected = new Map(before);
      expected.delete(hostAliveKey('h2'));
      expect(during).toEqual(expected);
      expect((await masterLog()).filter((l) => l.msg.startsWith('removed host'))).toEqual([]);
      await expectMatrix(cluster, all, WANT);

      await startNodeProgrammed(cluster, 'h2');
      await masterSays('host h2 is up again');
      const after = await keyspace();
      expect(only(after, MEMBERS)).toEqual(only(before, MEMBERS));
      expect(only(after, RESERVATIONS)).toEqual(only(before, RESERVATIONS));
      await expectMatrix(cluster, all, WANT, 30_000);
    },
    DOWN_MS + 180_000,
  );

  it('node remove takes a down host with --remove-endpoints, and nothing of the other host', async () => {
    await cluster.stopNode('h2');
    await waitFor(
      'h2 without its liveness key',
      async () => (await cluster.ds.get(hostAliveKey('h2'))) === undefined,
      30_000,
    );
    const down = await keyspace();
    const refused = await calicoctl(['node', 'remove', 'h2']);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain(
      'calicoctl: host h2 is down but still has 2 workload(s) with 2 endpoint(s) and 2 address reservation(s); nothing was removed.',
    );
    const r = await calicoctl(['node', 'remove', 'h2', '--remove-endpoints', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const removal = JSON.parse(r.stdout) as { host: string; removed: Record<string, number> };
    expect(removal).toMatchObject({
      host: 'h2',
      removed: { workloads: 2, endpoints: 2, memberships: 2, reservations: 2 },
    });
    const after = await keyspace();
    // Exactly h2's data went: its directory, its reservations, the memberships of its endpoints.
    const gone = [...down.keys()].filter((k) => !after.has(k)).sort();
    const ofH2 = (k: string, v: string) =>
      k.startsWith('/calico/host/h2/') ||
      (RESERVATIONS.test(k) && v.includes('"host":"h2"')) ||
      [C, D].some((w) => k.endsWith(`/member/${w.endpointId}`));
    expect(gone).toEqual(
      [...down]
        .filter(([k, v]) => ofH2(k, v))
        .map(([k]) => k)
        .sort(),
    );
    for (const [k, v] of after) expect(down.get(k), k).toBe(v);
    expect(removal.removed.keys).toBe(gone.length);
    expect((await api('v1/hosts')).json.hosts.map((h: { name: string }) => h.name)).toEqual(['h1']);
    // h1 is as it was: A and B, in different groups, reach no one now that C and D are gone.
    await expectMatrix(cluster, [A, B], []);
  });
});
