import { beforeAll, describe, expect, it } from 'vitest';
import {
  Cleanup,
  Dockerd,
  Etcd,
  Fabric,
  ensureBusyboxImage,
  findLeftovers,
  pidAlive,
  requireRoot,
  snapshotSystem,
  BUSYBOX_IMAGE,
  exec,
  execOk,
  type SystemSnapshot,
} from './index.js';

describe('testkit on real parts', () => {
  let before: SystemSnapshot;
  beforeAll(async () => {
    requireRoot();
    before = await snapshotSystem();
  });

  it('etcd: a single member answers etcdctl and restarts with its data', async () => {
    const etcd = await Etcd.start();
    try {
      await etcd.etcdctl(['put', '/t/a', '1']);
      await etcd.restart();
      expect((await etcd.etcdctl(['get', '/t/a', '--print-value-only'])).trim()).toBe('1');
    } finally {
      await etcd.stop();
    }
  });

  it('etcd: a 3-member cluster keeps quorum with one member down', async () => {
    const etcd = await Etcd.start({ members: 3 });
    try {
      expect(etcd.endpoints.split(',')).toHaveLength(3);
      await etcd.stopMember(0);
      await etcd.etcdctl(['--endpoints', etcd.clientUrls.slice(1).join(','), 'put', '/t/q', 'ok']);
      await etcd.startMember(0);
      const list = await etcd.etcdctl(['member', 'list']);
      expect(list.split('\n').filter((l) => l.includes('started'))).toHaveLength(3);
    } finally {
      await etcd.stop();
    }
  });

  it('etcd with tls: 3 members peer over TLS; only a client certificate of its CA gets in', async () => {
    const etcd = await Etcd.start({ members: 3, tls: true });
    try {
      expect(etcd.endpoints.split(',').every((e) => e.startsWith('https://'))).toBe(true);
      await etcd.etcdctl(['put', '/t/tls', 'ok']);
      const list = await etcd.etcdctl(['member', 'list']);
      expect(list.split('\n').filter((l) => l.includes('started') && l.includes('https://'))).toHaveLength(3);
      const ca = etcd.clientTls!.ca;
      const get = (flags: string[]) =>
        exec(
          [
            'etcdctl',
            `--endpoints=${etcd.clientUrls[0]}`,
            '--dial-timeout=2s',
            ...flags,
            'get',
            '/t/tls',
            '--print-value-only',
          ],
          {
            env: { ...process.env, ETCDCTL_API: '3' },
          },
        );
      // The control: the same call with the client certificate is answered.
      expect((await get(etcd.etcdctlTlsFlags)).stdout.trim()).toBe('ok');
      const noCert = await get([`--cacert=${ca}`]);
      expect(noCert.code).not.toBe(0);
      expect(noCert.stdout).not.toContain('ok');
    } finally {
      await etcd.stop();
    }
  });

  it('teardown of etcd, dockerd, the busybox image and namespace hosts leaves nothing behind', async () => {
    const cleanup = new Cleanup();
    const pids: number[] = [];
    const dirs: string[] = [];
    let failure: unknown;
    let fabric: Fabric | undefined;
    try {
      const etcd = await Etcd.start();
      cleanup.defer('etcd', () => etcd.stop());
      pids.push(...etcd.pids);
      dirs.push(etcd.dir);

      const dockerd = await Dockerd.start();
      cleanup.defer('dockerd', () => dockerd.stop());
      pids.push(dockerd.pid);
      dirs.push(dockerd.dir);

      fabric = await Fabric.create();
      const f = fabric;
      cleanup.defer('fabric', () => f.destroy());
      dirs.push(fabric.dir);
      const h1 = await fabric.addHost('h1');
      const h2 = await fabric.addHost('h2');
      // The root namespace's one link to the fabric reaches the hosts (and is removed with it).
      const rootIp = await fabric.linkRoot();
      const fromHost = await h2.exec(['busybox', 'ping', '-c', '1', '-W', '2', rootIp]);
      expect(fromHost.code, fromHost.stdout + fromHost.stderr).toBe(0);

      // Hosts reach each other over the fabric, and only there.
      const ping = await h1.exec(['busybox', 'ping', '-c', '1', '-W', '2', h2.ip]);
      expect(ping.code, ping.stdout + ping.stderr).toBe(0);
      expect(await h1.execOk(['ip', '-4', 'route'])).not.toContain('default');

      const sleeper = h1.spawn('sleeper', ['sleep', '600']);
      pids.push(sleeper.pid);

      // A container whose netns gets a veth from host 1 can talk to host 1.
      const image = await ensureBusyboxImage(dockerd.host);
      expect(image).toBe(BUSYBOX_IMAGE);
      const id = (await dockerd.dockerOk(['run', '-d', '--net', 'none', image, 'sleep', '600'])).trim();
      const pid = (await dockerd.dockerOk(['inspect', '-f', '{{.State.Pid}}', id])).trim();
      await h1.execOk(['ip', 'link', 'add', 'tkveth0', 'type', 'veth', 'peer', 'name', 'tkveth1']);
      await h1.execOk(['ip', 'link', 'set', 'tkveth1', 'netns', pid]);
      await h1.execOk(['ip', 'addr', 'add', '198.19.0.1/32', 'dev', 'tkveth0']);
      await h1.execOk(['ip', 'link', 'set', 'tkveth0', 'up']);
      await h1.execOk(['ip', 'route', 'add', '198.19.0.2/32', 'dev', 'tkveth0']);
      // The container has no NET_ADMIN: plumb its side from outside, as the node will.
      const inContainer = (argv: string[]) => execOk(['nsenter', `--net=/proc/${pid}/ns/net`, ...argv]);
      await inContainer(['ip', 'addr', 'add', '198.19.0.2/32', 'dev', 'tkveth1']);
      await inContainer(['ip', 'link', 'set', 'tkveth1', 'up']);
      await inContainer(['ip', 'route', 'add', 'default', 'dev', 'tkveth1']);
      const cping = await dockerd.docker(['exec', id, 'ping', '-c', '1', '-W', '2', '198.19.0.1']);
      expect(cping.code, cping.stdout + cping.stderr).toBe(0);
      // The root namespace has no route to the test ranges.
      const rootRoutes = (await exec(['ip', '-4', 'route', 'show', 'table', 'all'])).stdout;
      expect(rootRoutes.split('\n').filter((l) => /198\.1[89]\./.test(l))).toEqual([
        expect.stringMatching(/^198\.18\.0\.0\/24 dev ck[0-9a-f]{4}-root /),
        expect.stringMatching(/^local 198\.18\.0\.1 dev ck[0-9a-f]{4}-root /),
        expect.stringMatching(/^broadcast 198\.18\.0\.255 dev ck[0-9a-f]{4}-root /),
      ]);
    } catch (e) {
      failure = e;
      if (fabric) console.error(await fabric.dump());
    } finally {
      await cleanup.run();
    }
    if (failure) throw failure;
    expect(pids.length).toBeGreaterThanOrEqual(3);
    expect(await findLeftovers({ before, pids, dirs })).toEqual([]);
    for (const p of pids) expect(pidAlive(p)).toBe(false);
  });
});
