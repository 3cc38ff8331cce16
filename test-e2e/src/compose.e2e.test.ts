import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import {
  Dockerd,
  Fabric,
  ensureBusyboxImage,
  exec,
  execOk,
  findLeftovers,
  requireRoot,
  snapshotSystem,
  waitFor,
  type NamespaceHost,
  type SystemSnapshot,
} from '@calico/testkit';

const require = createRequire(import.meta.url);
const calicoctlJs = join(dirname(require.resolve('@calico/calicoctl/package.json')), 'dist', 'main.js');
const deployDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'deploy');

/**
 * The images and the compose dev cluster: build the images, bring etcd, the master and a node
 * up with Debian's docker-compose on a dockerd that lives in a namespace test host (so that
 * host-network containers land there), run the scenario, take it all down.
 */
describe('service images and the compose cluster', () => {
  let builder: Dockerd;
  let fabric: Fabric;
  let h1: NamespaceHost;
  let hostDockerd: Dockerd;
  let dir: string;
  let before: SystemSnapshot;
  let failed = false;
  const pids: number[] = [];
  const dirs: string[] = [];

  const compose = (args: string[]) =>
    exec(['docker-compose', '-p', 'calicotest', '-f', join(deployDir, 'compose', 'docker-compose.yml'), ...args], {
      env: {
        ...process.env,
        DOCKER_HOST: hostDockerd.host,
        CALICO_HOSTNAME: 'h1',
        CALICO_NODE_IP: h1.ip,
        CALICO_DOCKER_SOCKET: hostDockerd.socketPath,
        CALICO_CONFIG_DIR: join(dir, 'etc-calico'),
      },
      timeoutMs: 300_000,
    });
  const viaNode = (args: string[]) => h1.exec(['docker', '-H', 'tcp://127.0.0.1:2375', ...args], { timeoutMs: 60_000 });
  /** Where the compose cluster's etcd-certs step makes etcd's CA and the client certificate. */
  const tlsDir = () => join(dir, 'etc-calico', 'etcd');
  const etcdFlags = () => [
    `--etcd=https://${h1.ip}:2379`,
    `--etcd-ca=${join(tlsDir(), 'ca.pem')}`,
    `--etcd-cert=${join(tlsDir(), 'client.pem')}`,
    `--etcd-key=${join(tlsDir(), 'client-key.pem')}`,
  ];
  const calicoctl = (args: string[], etcd = etcdFlags()) =>
    h1.exec([process.execPath, calicoctlJs, ...args, ...etcd, `--api-token-file=${join(dir, 'api-token')}`], {
      timeoutMs: 60_000,
    });

  beforeAll(async () => {
    requireRoot();
    before = await snapshotSystem();
    dir = await mkdtemp(join(tmpdir(), 'calico-compose-'));
    builder = await Dockerd.start();
    pids.push(builder.pid);
    dirs.push(builder.dir);
    const b = await exec(['bash', join(deployDir, 'build-images.sh')], {
      env: { ...process.env, DOCKER_HOST: builder.host },
      timeoutMs: 900_000,
    });
    if (b.code !== 0) throw new Error(`build-images.sh failed:\n${b.stdout}\n${b.stderr}`);
    fabric = await Fabric.create();
    dirs.push(fabric.dir);
    h1 = await fabric.addHost('h1');
    hostDockerd = await Dockerd.start({ netns: h1.netns });
    pids.push(hostDockerd.pid);
    dirs.push(hostDockerd.dir);
    // No registry: the host's daemon gets the images from the one that built them.
    await execOk(
      [
        'sh',
        '-c',
        `docker -H ${builder.host} save calico/etcd:dev calico/master:dev calico/node:dev | docker -H ${hostDockerd.host} load`,
      ],
      { timeoutMs: 300_000 },
    );
    await ensureBusyboxImage(hostDockerd.host);
  }, 1_200_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && hostDockerd) {
      console.error(await fabric?.dump());
      console.error((await compose(['logs', '--no-color', '--tail=60'])).stdout);
    }
    if (hostDockerd) await compose(['down', '-v', '--remove-orphans']).catch(() => undefined);
    await hostDockerd?.stop();
    await fabric?.destroy();
    await builder?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('builds one image per service, from production dependencies only', async () => {
    const images = (await builder.dockerOk(['images', '--format', '{{.Repository}}:{{.Tag}}'])).split('\n');
    expect(images).toEqual(
      expect.arrayContaining([
        'calico/node:dev',
        'calico/master:dev',
        'calico/diags:dev',
        'calico/etcd:dev',
        'node:20-bookworm-slim',
      ]),
    );
    // Production only: no test runner or compiler in the node image.
    const r = await builder.docker([
      'run',
      '--rm',
      '--net',
      'none',
      '--entrypoint',
      'sh',
      'calico/node:dev',
      '-c',
      'ls /opt/calico/node/node_modules; ls /opt/calico/node/node_modules/.pnpm 2>/dev/null | grep -cE "^(vitest|typescript)@" || true',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/^vitest$|^typescript$/m);
    expect(r.stdout.trim().split('\n').pop()).toBe('0');
    const v = await builder.docker([
      'run',
      '--rm',
      '--net',
      'none',
      '--entrypoint',
      'sh',
      'calico/node:dev',
      '-c',
      'node --version && bird --version 2>&1',
    ]);
    expect(v.stdout).toMatch(/^v20\./);
    expect(v.stdout).toContain('BIRD version 2.');
  });

  it('compose brings up etcd, the master and a node, and the scenario runs through the node', async () => {
    const up = await compose(['up', '-d']);
    expect(up.code, up.stderr).toBe(0);
    await waitFor(
      'the node proxy',
      async () => (await viaNode(['version', '--format', '{{.Server.Version}}'])).code === 0,
      90_000,
      () => 'node proxy not answering',
    );
    await waitFor(
      'the master',
      async () => (await h1.exec(['busybox', 'wget', '-q', '-O-', `http://${h1.ip}:7600/healthz`])).code === 0,
      60_000,
    );
    for (const [n, ip] of [
      ['A', '198.19.1.1'],
      ['B', '198.19.1.2'],
      ['C', '198.19.1.3'],
    ] as const) {
      const r = await viaNode([
        'run',
        '-d',
        '--name',
        `wl-${n}`,
        '-e',
        `CALICO_IP=${ip}`,
        'busybox:calico',
        'sleep',
        '3600',
      ]);
      expect(r.code, r.stderr).toBe(0);
    }
    // etcd is TLS only: its files were made at first start, keys for root only, and a client
    // without the certificate gets nothing (the calls below, with it, are the control).
    expect((await stat(join(tlsDir(), 'client-key.pem'))).mode & 0o777).toBe(0o600);
    const noCert = await calicoctl(
      ['addgroup', 'NO_CERT'],
      [`--etcd=https://${h1.ip}:2379`, `--etcd-ca=${join(tlsDir(), 'ca.pem')}`],
    );
    expect(noCert.code).not.toBe(0);
    for (const g of ['AC', 'B']) expect((await calicoctl(['addgroup', g])).code).toBe(0);
    expect((await calicoctl(['showgroups'])).stdout).not.toContain('NO_CERT');
    for (const [c, g] of [
      ['wl-A', 'AC'],
      ['wl-C', 'AC'],
      ['wl-B', 'B'],
    ] as const) {
      const r = await calicoctl(['addtogroup', c, g]);
      expect(r.code, r.stderr).toBe(0);
    }
    const ping = async (from: string, to: string) =>
      (await viaNode(['exec', from, 'ping', '-c', '1', '-W', '1', to])).code === 0;
    await waitFor('A reaches C', () => ping('wl-A', '198.19.1.3'), 30_000);
    expect(await ping('wl-A', '198.19.1.2')).toBe(false);
    expect(await ping('wl-B', '198.19.1.1')).toBe(false);
  });

  it('calicoctl node and master --runtime=docker run the same images, and stop them', async () => {
    const rmNode = await compose(['rm', '-s', '-f', 'node']);
    expect(rmNode.code, rmNode.stderr).toBe(0);
    const up = await calicoctl([
      'node',
      '--runtime=docker',
      `--ip=${h1.ip}`,
      `--docker=${hostDockerd.host}`,
      '--hostname=h1',
      `--state-dir=${join(dir, 'state')}`,
    ]);
    expect(up.code, up.stderr + up.stdout).toBe(0);
    expect(up.stdout).toContain('calico-node is running on h1 in container calico-node-h1');
    const st = await calicoctl([
      'status',
      '--hostname=h1',
      `--docker=${hostDockerd.host}`,
      `--state-dir=${join(dir, 'state')}`,
    ]);
    expect(st.stdout).toContain('running (container calico-node-h1)');
    // The workloads it finds are healed and still under policy.
    await waitFor(
      'A reaches C again',
      async () => (await viaNode(['exec', 'wl-A', 'ping', '-c', '1', '-W', '1', '198.19.1.3'])).code === 0,
      30_000,
    );
    const m = await calicoctl([
      'master',
      '--runtime=docker',
      `--ip=${h1.ip}`,
      `--listen=${h1.ip}:7610`,
      `--docker=${hostDockerd.host}`,
    ]);
    expect(m.code, m.stderr + m.stdout).toBe(0);
    expect((await calicoctl(['master', 'stop', '--runtime=docker', `--docker=${hostDockerd.host}`])).stdout).toContain(
      'calico-master stopped',
    );
    expect(
      (await calicoctl(['node', 'stop', '--runtime=docker', '--hostname=h1', `--docker=${hostDockerd.host}`])).stdout,
    ).toContain('calico-node on h1 stopped');
    expect((await hostDockerd.docker(['inspect', 'calico-node-h1'])).code).not.toBe(0);
  });

  it('compose down and the teardown leave nothing behind', async () => {
    // The node is stopped by now: remove the workloads on dockerd itself.
    await hostDockerd.docker(['rm', '-f', 'wl-A', 'wl-B', 'wl-C']);
    const down = await compose(['down', '-v', '--remove-orphans']);
    expect(down.code, down.stderr).toBe(0);
    expect((await hostDockerd.dockerOk(['ps', '-aq'])).trim()).toBe('');
    await hostDockerd.stop();
    await fabric.destroy();
    await builder.stop();
    expect(await findLeftovers({ before, pids, dirs })).toEqual([]);
  });
});
