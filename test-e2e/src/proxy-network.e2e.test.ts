import { beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import type { DevCluster } from '@calico/devcluster';
import { encodeIpPool, ipPoolKey } from '@calico/keyspace';
import { waitFor } from '@calico/testkit';
import { LABELS } from '@calico/node';
import { containersNamed, hostCounts, keyCounts } from './counts.js';
import { clusterForSuite } from './helpers.js';

interface ApiResponse {
  status: number;
  body: string;
}

/** One Docker API call on a unix socket (the proxy's or dockerd's). */
function api(socketPath: string, method: string, path: string, body?: string): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const headers = { host: 'docker', 'content-type': 'application/json' };
    const req = request({ socketPath, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const message = (r: ApiResponse) => (JSON.parse(r.body) as { message: string }).message;

/**
 * A workload keeps the network it was given, on the real proxy in front of the real dockerd:
 * each refused request gets a 4xx that says why and leaves no container, key, veth or route,
 * and in the same test a control shows that without the guard it would have happened.
 */
describe('a workload keeps the network it was given', () => {
  let cluster: DevCluster;

  // dockerd lives in the fabric's namespace: the bridge of a docker network stays out of the root one.
  const started = clusterForSuite({ hosts: ['h1', 'h2'], dockerdInFabric: true, master: true });
  beforeAll(() => {
    cluster = started();
  });

  const h1 = () => cluster.host('h1');
  const proxy = () => h1().proxySocket;
  const dockerd = () => cluster.dockerd.socketPath;

  async function snapshot() {
    const c = await hostCounts(h1());
    const containers = (await containersNamed(cluster, 'pn-')).map((x) => x.name);
    return { containers, keys: await keyCounts(cluster), veths: c.veths, routes4: c.routes4, routes6: c.routes6 };
  }
  /** `docker run -d` through h1's proxy with CALICO_IP. */
  const run = (name: string, ip: string) =>
    h1().docker(['run', '-d', '--name', name, '-e', `CALICO_IP=${ip}`, cluster.image, 'sleep', '600']);
  /** The address h1's proxy says the container has, and whether h1 routes it to a veth. */
  async function networked(id: string): Promise<{ ip: string; routed: boolean }> {
    const format = '{{.NetworkSettings.IPAddress}}{{.NetworkSettings.GlobalIPv6Address}}';
    const ip = (await h1().docker(['inspect', '-f', format, id])).stdout.trim();
    const route = await h1()
      .ns.execOk(['ip', 'route', 'get', ip])
      .catch(() => '');
    return { ip, routed: / dev cali[0-9a-f]{11}/.test(route) };
  }
  async function removeAndSettle(ids: string[], before: Awaited<ReturnType<typeof snapshot>>) {
    await cluster.dockerd.dockerOk(['rm', '-f', ...ids]);
    const same = async () => JSON.stringify(await snapshot()) === JSON.stringify(before);
    await waitFor('nothing left behind', same, 15_000, () => 'snapshot differs');
  }

  it('CALICO_IP: every reserved class is refused with a 400 naming it; the create works once it is free', async () => {
    const before = await snapshot();
    const cases: [string, RegExp][] = [
      ['198.18.0.11', /it is an address of this host/],
      ['198.18.0.12', /it is the management address \(bird_ip\) of host "h2"/],
      // etcd and the master both listen on the fabric's root address.
      ['198.18.0.1', /it is the address of an etcd endpoint/],
      ['127.0.0.1', /it is a loopback address/],
      ['::1', /it is the loopback address/],
      ['169.254.1.1', /it is a link-local address/],
      ['fe80::1', /it is a link-local address/],
      ['224.0.0.1', /it is a multicast address/],
      ['ff02::1', /it is a multicast address/],
      ['0.0.0.0', /addresses in 0.0.0.0\/8 mean "this network"/],
      ['::', /it is the unspecified address ::/],
      ['255.255.255.255', /it is the broadcast address/],
    ];
    for (const [ip, why] of cases) {
      const r = await run('pn-ip', ip);
      expect(r.code, ip).not.toBe(0);
      expect(r.stderr, ip).toMatch(why);
      expect(await snapshot(), ip).toEqual(before);
    }
    // An address on one of h1's interfaces is read as the kernel has it at the create.
    await h1().ns.execOk(['ip', 'addr', 'add', '198.19.61.7/32', 'dev', 'lo']);
    const withLo = await snapshot();
    const onLo = await run('pn-ip', '198.19.61.7');
    expect(onLo.stderr).toMatch(/198.19.61.7 cannot be given to a container: it is an address of this host/);
    expect(await snapshot()).toEqual(withLo);
    // Control: once h1 no longer has it, the same create is networked with it.
    await h1().ns.execOk(['ip', 'addr', 'del', '198.19.61.7/32', 'dev', 'lo']);
    const free = await run('pn-ip', '198.19.61.7');
    expect(free.code, free.stderr).toBe(0);
    expect(await networked(free.stdout.trim())).toEqual({ ip: '198.19.61.7', routed: true });
    await removeAndSettle([free.stdout.trim()], before);
  });

  it('CALICO_IP with pools: outside every pool is refused naming them; inside, auto and without pools work', async () => {
    const before = await snapshot();
    await cluster.ds.put(ipPoolKey('198.19.60.0/24'), encodeIpPool('198.19.60.0/24'));
    await cluster.ds.put(ipPoolKey('fd00:198:19:60::/64'), encodeIpPool('fd00:198:19:60::/64'));
    const withPools = await snapshot();
    try {
      for (const ip of ['198.19.62.1', 'fd00:198:19:62::1']) {
        const r = await run('pn-pool', ip);
        expect(r.code).not.toBe(0);
        const v6 = /outside every IPv6 pool \(fd00:198:19:60::\/64\)/;
        expect(r.stderr).toMatch(ip.includes(':') ? v6 : /outside every IPv4 pool \(198.19.60.0\/24\)/);
        expect(await snapshot()).toEqual(withPools);
      }
      const inside = await run('pn-pool-in', '198.19.60.9');
      const auto = await run('pn-pool-auto', 'auto');
      expect(inside.code, inside.stderr).toBe(0);
      expect(auto.code, auto.stderr).toBe(0);
      expect(await networked(inside.stdout.trim())).toEqual({ ip: '198.19.60.9', routed: true });
      expect(await networked(auto.stdout.trim())).toEqual({ ip: '198.19.60.1', routed: true });
      await removeAndSettle([inside.stdout.trim(), auto.stdout.trim()], withPools);
    } finally {
      await cluster.ds.delete(ipPoolKey('198.19.60.0/24'));
      await cluster.ds.delete(ipPoolKey('fd00:198:19:60::/64'));
    }
    // Control: without pools (the seed's way) the refused address is the orchestrator's to give.
    const r = await run('pn-pool', '198.19.62.1');
    expect(r.code, r.stderr).toBe(0);
    expect(await networked(r.stdout.trim())).toEqual({ ip: '198.19.62.1', routed: true });
    await removeAndSettle([r.stdout.trim()], before);
  });

  it('network connect/disconnect of a Calico workload is refused with a 409; straight, dockerd does them', async () => {
    const before = await snapshot();
    const net = await cluster.dockerd.dockerOk(['network', 'create', '--subnet', '198.19.250.0/24', 'pn-net']);
    try {
      const ids: string[] = [];
      const ours = await run('pn-net-ours', '198.19.63.1');
      expect(ours.code, ours.stderr).toBe(0);
      const id = ours.stdout.trim();
      const links = async (c: string) => {
        const text = await cluster.dockerd.dockerOk(['exec', c, 'ip', '-o', 'link']);
        return text.split('\n').filter((l) => /^\d+: eth\d/.test(l)).length;
      };
      const networks = async (c: string) => {
        const text = await cluster.dockerd.dockerOk(['inspect', '-f', '{{json .NetworkSettings.Networks}}', c]);
        return Object.keys(JSON.parse(text) as object).sort();
      };
      expect(await links(id)).toBe(1);
      expect(await networks(id)).toEqual(['none']);
      const withOurs = await snapshot();
      const ipam = '"EndpointConfig":{"IPAMConfig":{"IPv4Address":"198.19.250.9"}}';
      const refusals: [string, string, RegExp][] = [
        [
          '/networks/pn-net/connect',
          `{"Container":"${id}"}`,
          /is a Calico workload: connecting it to network pn-net would/,
        ],
        ['/v1.41/networks/pn-net/connect', '{"Container":"pn-net-ours"}', /second network/],
        ['/networks/pn-net/connect', '{"container":"/pn-net-ours"}', /second network/],
        ['/networks/pn-net/connect', `{"Container":"${id.slice(0, 12)}",${ipam}}`, /second network/],
        ['/networks/%70n-net/connect', `{"Container":"${id}"}`, /second network/],
        [
          '/networks/none/disconnect',
          `{"Container":"${id}","Force":true}`,
          /disconnecting it from network none would change/,
        ],
      ];
      for (const [path, body, why] of refusals) {
        const r = await api(proxy(), 'POST', path, body);
        expect(r.status, `${path} ${body}: ${r.body}`).toBe(409);
        expect(message(r)).toMatch(why);
        expect(await links(id)).toBe(1);
        expect(await networks(id)).toEqual(['none']);
        expect(await snapshot()).toEqual(withOurs);
      }
      // A second key that dockerd would read as Container is refused before anything is looked up.
      const dup = await api(proxy(), 'POST', '/networks/pn-net/connect', `{"Container":"pa-x","container":"${id}"}`);
      expect(dup.status).toBe(400);
      expect(message(dup)).toMatch(/sets Container twice/);
      // Not Calico's: forwarded, and dockerd disconnects and connects it.
      const plainRun = ['run', '-d', '--name', 'pn-net-plain', '--net', 'pn-net', cluster.image, 'sleep', '600'];
      const plain = (await h1().docker(plainRun)).stdout.trim();
      for (const op of ['disconnect', 'connect']) {
        const p = await api(proxy(), 'POST', `/networks/pn-net/${op}`, '{"Container":"pn-net-plain"}');
        expect(p.status, `${op}: ${p.body}`).toBe(200);
        expect(await networks(plain)).toEqual(op === 'connect' ? ['pn-net'] : []);
      }
      // Control, straight to dockerd. It refuses a second network beside "none" itself, but not
      // a disconnect from it: the running workload loses its network.
      const second = await api(dockerd(), 'POST', '/networks/pn-net/connect', `{"Container":"${id}"}`);
      expect(second.status).toBe(400);
      expect(message(second)).toMatch(/one of the networks in private \(none\) mode/);
      const off = await api(dockerd(), 'POST', '/networks/none/disconnect', `{"Container":"${id}"}`);
      expect(off.status, off.body).toBe(200);
      expect(await networks(id)).toEqual([]);
      // A workload created but not started yet (no veth of ours in it) is moved onto pn-net, and
      // starts there; through the proxy both calls are refused.
      const created = (
        await h1().docker([
          'create',
          '--name',
          'pn-net-created',
          '-e',
          'CALICO_IP=198.19.63.2',
          cluster.image,
          'sleep',
          '600',
        ])
      ).stdout.trim();
      for (const [op, net] of [
        ['disconnect', 'none'],
        ['connect', 'pn-net'],
      ] as const) {
        const r = await api(proxy(), 'POST', `/networks/${net}/${op}`, '{"Container":"pn-net-created"}');
        expect(r.status, r.body).toBe(409);
      }
      expect(await networks(created)).toEqual(['none']);
      for (const [op, net] of [
        ['disconnect', 'none'],
        ['connect', 'pn-net'],
      ] as const) {
        const r = await api(dockerd(), 'POST', `/networks/${net}/${op}`, '{"Container":"pn-net-created"}');
        expect(r.status, `${op}: ${r.body}`).toBe(200);
      }
      expect(await networks(created)).toEqual(['pn-net']);
      await cluster.dockerd.dockerOk(['start', created]);
      expect(await cluster.dockerd.dockerOk(['exec', created, 'ip', '-o', '-4', 'addr'])).toMatch(
        /inet 198\.19\.250\./,
      );
      ids.push(created);
      await removeAndSettle([id, plain, ...ids], before);
    } finally {
      await cluster.dockerd.docker(['rm', '-f', 'pn-net-ours', 'pn-net-plain', 'pn-net-created']);
      // dockerd lets go of a removed container's endpoints a moment after the removal.
      await waitFor(
        'pn-net removed',
        async () => (await cluster.dockerd.docker(['network', 'rm', net.trim()])).code === 0,
        15_000,
      );
    }
  });

  it('--net container: of a Calico workload is refused with a 409; straight, or of another, it works', async () => {
    const before = await snapshot();
    const names = ['ours', 'direct', 'plain', 'join', 'late', 'old'].map((n) => `pn-share-${n}`);
    const sleeper = [cluster.image, 'sleep', '600'];
    const state = async (c: string, format: string) =>
      (await cluster.dockerd.dockerOk(['inspect', '-f', format, c])).trim();
    try {
      const ours = await run('pn-share-ours', '198.19.65.1');
      expect(ours.code, ours.stderr).toBe(0);
      const id = ours.stdout.trim();
      const withOurs = await snapshot();
      const addrsIn = async (c: string) =>
        (await cluster.dockerd.dockerOk(['exec', c, 'ip', '-o', '-4', 'addr'])).match(/inet [0-9.]+/g) ?? [];
      const join = (ref: string, name = 'pn-share-join') =>
        h1().docker(['run', '-d', '--name', name, '--net', `container:${ref}`, cluster.image, 'sleep', '600']);
      const refused = new RegExp(`would share the network of Calico workload ${id.slice(0, 12)}`);
      // The real docker CLI through the proxy, naming the workload every way dockerd resolves it.
      for (const ref of ['pn-share-ours', id, id.slice(0, 12), id.slice(0, 6)]) {
        const r = await join(ref);
        expect(r.code, ref).not.toBe(0);
        expect(r.stderr, ref).toMatch(refused);
        expect(await snapshot(), ref).toEqual(withOurs);
      }
      // A build's RUN steps take the build's network mode (the classic builder, dockerd 20.10's default).
      const dockerfile = `FROM ${cluster.image}\nRUN ip -o -4 addr\n`;
      const buildArgs = ['build', '--no-cache', '--network', 'container:pn-share-ours', '-t', 'pn-share-img', '-'];
      const refusedBuild = await h1().docker(buildArgs, dockerfile);
      expect(refusedBuild.code).not.toBe(0);
      expect(refusedBuild.stderr).toMatch(refused);
      const directBuild = await cluster.dockerd.docker(buildArgs, { input: dockerfile });
      expect(directBuild.code, directBuild.stderr).toBe(0);
      expect(directBuild.stdout).toMatch(/inet 198\.19\.65\.1/);
      await cluster.dockerd.dockerOk(['rmi', 'pn-share-img']);
      expect(await snapshot()).toEqual(withOurs);
      // Control, straight to dockerd: the container joins and takes the workload's address.
      const directRun = ['run', '-d', '--name', 'pn-share-direct', '--net', 'container:pn-share-ours', ...sleeper];
      const direct = (await cluster.dockerd.dockerOk(directRun)).trim();
      expect(await addrsIn(direct)).toEqual(['inet 127.0.0.1', 'inet 198.19.65.1']);
      // A container that shares the workload's network is refused as the workload is.
      const chained = await join('pn-share-direct');
      expect(chained.stderr).toMatch(/Calico workload [0-9a-f]{12} \(pn-share-direct shares the network of /);
      await cluster.dockerd.dockerOk(['rm', '-f', direct]);
      expect(await snapshot()).toEqual(withOurs);
      // Control, through the proxy: another container's network may be shared.
      const plainRun = ['run', '-d', '--name', 'pn-share-plain', '--net', 'none', ...sleeper];
      const plain = (await h1().docker(plainRun)).stdout.trim();
      const joined = await join('pn-share-plain');
      expect(joined.code, joined.stderr).toBe(0);
      expect(await addrsIn(joined.stdout.trim())).toEqual(['inet 127.0.0.1']);
      // dockerd resolves the name at the start, not at the create: a create naming a container
      // that does not exist yet is forwarded, and its start refused once the name is a workload.
      const lateCreate = ['create', '--name', 'pn-share-late', '--net', 'container:pn-share-later', ...sleeper];
      const late = await h1().docker(lateCreate);
      expect(late.code, late.stderr).toBe(0);
      await cluster.dockerd.dockerOk(['rename', 'pn-share-ours', 'pn-share-later']);
      const lateStart = await h1().docker(['start', 'pn-share-late']);
      expect(lateStart.stderr).toMatch(refused);
      expect(await state('pn-share-late', '{{.State.Running}}')).toBe('false');
      // Old clients (API < 1.24) may set the network mode on the start; dockerd takes it.
      const old = (await h1().docker(['create', '--name', 'pn-share-old', '--net', 'none', ...sleeper])).stdout.trim();
      const oldBody = '{"NetworkMode":"container:pn-share-later"}';
      const oldStart = await api(proxy(), 'POST', `/v1.23/containers/${old}/start`, oldBody);
      expect(oldStart.status, oldStart.body).toBe(409);
      expect(message(oldStart)).toMatch(refused);
      const oldDirect = await api(dockerd(), 'POST', `/v1.23/containers/${old}/start`, oldBody);
      expect(oldDirect.status, oldDirect.body).toBe(204);
      expect(await addrsIn(old)).toEqual(['inet 127.0.0.1', 'inet 198.19.65.1']);
      // docker update cannot change a network mode: dockerd's UpdateConfig has no such field.
      const upd = await api(dockerd(), 'POST', `/containers/${plain}/update`, oldBody);
      expect(upd.status, upd.body).toBe(200);
      expect(await state(plain, '{{.HostConfig.NetworkMode}}')).toBe('none');
      await cluster.dockerd.dockerOk(['rm', '-f', old, 'pn-share-late', joined.stdout.trim(), plain]);
      expect({ ...(await snapshot()), containers: withOurs.containers }).toEqual(withOurs);
      await removeAndSettle([id], before);
    } finally {
      await cluster.dockerd.docker(['rm', '-f', ...names, 'pn-share-later']);
      await cluster.dockerd.docker(['rmi', 'pn-share-img']);
    }
  });

  it("network connect of a container that does not exist gets dockerd's own 404", async () => {
    const r = await api(proxy(), 'POST', '/networks/none/connect', '{"Container":"pn-nonesuch"}');
    const d = await api(dockerd(), 'POST', '/networks/none/connect', '{"Container":"pn-nonesuch"}');
    expect(r.status).toBe(404);
    expect(d.status).toBe(404);
    expect(message(r)).toMatch(/No such container: pn-nonesuch/);
    expect(message(d)).toMatch(/No such container: pn-nonesuch/);
  });

  it('labels are not authority: a commit copy and a forgery are not plumbed, and their removal leaves the workload alone', async () => {
    const before = await snapshot();
    const orig = await run('pn-orig', '198.19.64.1');
    expect(orig.code, orig.stderr).toBe(0);
    const id = orig.stdout.trim();
    expect(await networked(id)).toEqual({ ip: '198.19.64.1', routed: true });
    const withOrig = await snapshot();
    const labels = JSON.parse(
      await cluster.dockerd.dockerOk(['inspect', '-f', '{{json .Config.Labels}}', id]),
    ) as Record<string, string>;
    // Straight to dockerd, as anyone with its socket could: a copy by commit, and a forgery by --label.
    await cluster.dockerd.dockerOk(['commit', id, 'pn-copy-img']);
    try {
      const copy = (
        await cluster.dockerd.dockerOk([
          'run',
          '-d',
          '--name',
          'pn-copy',
          '--net',
          'none',
          '--entrypoint',
          'sleep',
          'pn-copy-img',
          '600',
        ])
      ).trim();
      const forged = (
        await cluster.dockerd.dockerOk([
          'run',
          '-d',
          '--name',
          'pn-forged',
          '--net',
          'none',
          ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
          cluster.image,
          'sleep',
          '600',
        ])
      ).trim();
      expect(
        (
          JSON.parse(await cluster.dockerd.dockerOk(['inspect', '-f', '{{json .Config.Labels}}', copy])) as Record<
            string,
            string
          >
        )[LABELS.addrs],
      ).toBe('198.19.64.1');
      // The node saw both start and refused to network them.
      await waitFor(
        'the node refuses both',
        () =>
          (
            h1()
              .node!.log()
              .match(/address 198.19.64.1 is reserved by container/g) ?? []
          ).length >= 2,
        15_000,
        () => h1().node!.log().slice(-3000),
      );
      // Listed by the master as problems, one per container, naming the address and its holder.
      const problems = async () => {
        const r = (await (await cluster.masterFetch('v1/problems')).json()) as {
          problems: { key: string; errors: string[] }[];
        };
        return r.problems.filter((p) => p.key.startsWith('/calico/host/h1/refused/'));
      };
      await waitFor('the master lists both', async () => (await problems()).length === 2, 15_000);
      expect((await problems()).map((p) => p.key).sort()).toEqual(
        [copy, forged].sort().map((c) => `/calico/host/h1/refused/${c}`),
      );
      for (const p of await problems())
        expect(p.errors[0]).toMatch(
          new RegExp(`is not networked: address 198.19.64.1 is reserved by container ${id.slice(0, 12)} on host h1`),
        );
      const keys = { ...withOrig.keys, refusedWorkload: 2 };
      expect({ ...(await snapshot()), containers: withOrig.containers }).toEqual({ ...withOrig, keys });
      for (const c of [copy, forged])
        expect(await cluster.dockerd.dockerOk(['exec', c, 'ip', '-o', 'link'])).not.toMatch(/eth0/);
      await cluster.dockerd.dockerOk(['stop', '-t', '0', copy, forged]);
      await cluster.dockerd.dockerOk(['rm', copy, forged]);
      await waitFor(
        'the node saw both go',
        () =>
          (
            h1()
              .node!.log()
              .match(/that no reservation names was removed/g) ?? []
          ).length >= 2,
        15_000,
        () => h1().node!.log().slice(-3000),
      );
      await waitFor('the master lists neither', async () => (await problems()).length === 0, 15_000);
      // The workload keeps its veth, route, endpoint and reservation.
      expect(await snapshot()).toEqual(withOrig);
      expect(await networked(id)).toEqual({ ip: '198.19.64.1', routed: true });
    } finally {
      await cluster.dockerd.docker(['rm', '-f', 'pn-copy', 'pn-forged']);
      await cluster.dockerd.docker(['rmi', 'pn-copy-img']);
    }
    // Control: the workload's own removal takes all of it away.
    await removeAndSettle([id], before);
  });
});
