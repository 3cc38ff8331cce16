import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TestCa, exec, waitFor, type Dockerd, type ExecResult, type NamespaceHost } from '@calico/testkit';
import type { Datastore } from '@calico/datastore';
import { CalicoctlHosts } from './calicoctlHosts.js';

/**
 * The node's proxy listens as dockerd does, started by calicoctl on namespace hosts: TLS with
 * client certificates that the real docker CLI's DOCKER_TLS_VERIFY settings satisfy (and
 * nothing else does), a unix socket of mode 0660 group docker, and an address off loopback
 * without TLS only when the user says --insecure-listen, which status then shows.
 */
describe('the proxy listens like dockerd: TLS, unix socket, insecure-listen', () => {
  let dockerd: Dockerd;
  let ds: Datastore;
  let dir: string;
  let image: string;
  let ca: TestCa;
  /** DOCKER_CERT_PATH folders: a client certificate of the CA, none, one of another CA. */
  const certs = { good: '', none: '', stranger: '' };
  let hosts: Record<string, NamespaceHost>;
  let env: CalicoctlHosts;

  const calicoctl = (h: string, args: string[]) => env.calicoctl(h, args);
  const tlsAddr = () => `tcp://${hosts.h1!.ip}:2376`;
  const unixSock = () => join(dir, 'h1-proxy.sock');
  /** The real docker CLI, from the root namespace, with exactly this environment for DOCKER_*. */
  const docker = (env: Record<string, string>, args: string[]) =>
    exec(['docker', ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(dir, 'home'), ...env },
      timeoutMs: 60_000,
    });
  const viaTls = (certPath: string, args: string[]) =>
    docker({ DOCKER_HOST: tlsAddr(), DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certPath }, args);
  const direct = (args: string[]) => dockerd.docker(args);

  /** What a refused request could have left: our containers and every /calico key. */
  async function snapshot() {
    const names = (await direct(['ps', '-a', '--format', '{{.Names}}', '--filter', 'name=^/pl-'])).stdout
      .split('\n')
      .filter(Boolean)
      .sort();
    const keys = (await ds.getPrefix('/calico/')).kvs.map((kv) => kv.key).sort();
    return { names, keys };
  }

  beforeAll(async () => {
    env = await CalicoctlHosts.start('calico-listen-e2e-');
    ({ dir, dockerd, image, ds, hosts } = env);
    ca = await TestCa.create(join(dir, 'ca'), 'calico-proxy-ca');
    const other = await TestCa.create(join(dir, 'other-ca'), 'someone-elses-ca');
    certs.good = await ca.dockerCertPath(join(dir, 'client-good'));
    certs.none = await ca.dockerCertPath(join(dir, 'client-none'), null);
    certs.stranger = await ca.dockerCertPath(join(dir, 'client-stranger'), { ca: other });
  });
  afterEach((ctx) => env?.note(ctx));
  afterAll(async () => {
    await env?.stop();
  });

  it('calicoctl node on a TCP address off loopback without --tlsverify: refused, nothing started; --insecure-listen starts it and status says so', async () => {
    const insecure = `tcp://${hosts.h2!.ip}:2375`;
    const refused = await calicoctl('h2', [
      'node',
      `--ip=${hosts.h2!.ip}`,
      `--docker=${dockerd.host}`,
      `--proxy-listen=${insecure}`,
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`calicoctl: --proxy-listen=${insecure}: not loopback and no --tlsverify`);
    const notRunning = await calicoctl('h2', ['status']);
    expect(notRunning.code).toBe(1);
    expect(notRunning.stdout).toContain('calico-node NOT running');
    // Nothing answers there: the docker CLI cannot reach it.
    expect((await docker({ DOCKER_HOST: insecure }, ['ps', '-q'])).code).not.toBe(0);

    const started = await calicoctl('h2', [
      'node',
      `--ip=${hosts.h2!.ip}`,
      `--docker=${dockerd.host}`,
      `--proxy-listen=${insecure}`,
      '--insecure-listen',
    ]);
    expect(started.code, started.stderr + started.stdout).toBe(0);
    expect(started.stdout).toContain(`Docker API: DOCKER_HOST=${insecure}`);
    // It is as open as it was said to be: any docker CLI that reaches it is served.
    const ps = await docker({ DOCKER_HOST: insecure }, ['ps', '-q']);
    expect(ps.code, ps.stderr).toBe(0);
    const log = await readFile(join(dir, 'h2', 'log', 'calico-node.log'), 'utf8');
    expect(log).toContain(
      'INSECURE: the Docker API proxy listens off loopback without --tlsverify (--insecure-listen)',
    );
    let st: ExecResult | undefined;
    await waitFor(
      'status to show the insecure listener',
      async () => (st = await calicoctl('h2', ['status'])).stdout.includes('insecure listen:'),
      20_000,
      () => st?.stdout ?? '',
    );
    expect(st!.stdout).toContain(
      `insecure listen: ${insecure} has no --tlsverify (--insecure-listen): anyone who reaches it is root on h2`,
    );
    const j = JSON.parse((await calicoctl('h2', ['status', '--json'])).stdout) as {
      proxy: { insecureListen: string[]; tls: string };
    };
    expect(j.proxy).toMatchObject({ insecureListen: [insecure], tls: 'none' });
  });

  it('calicoctl node --tlsverify: the docker CLI with DOCKER_TLS_VERIFY runs a networked Calico container through it; a unix socket 0660 group docker serves too', async () => {
    const server = await ca.issue('h1-proxy', { server: { ips: [hosts.h1!.ip] } });
    const r = await calicoctl('h1', [
      'node',
      `--ip=${hosts.h1!.ip}`,
      `--docker=${dockerd.host}`,
      `--proxy-listen=${tlsAddr()}`,
      `--proxy-listen=unix://${unixSock()}`,
      '--tlsverify',
      `--tlscacert=${ca.cert}`,
      `--tlscert=${server.cert}`,
      `--tlskey=${server.key}`,
    ]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain(`Docker API: DOCKER_HOST=${tlsAddr()}`);
    expect(r.stdout).toContain('DOCKER_TLS_VERIFY=1');

    const a = await viaTls(certs.good, [
      'run',
      '-d',
      '--name',
      'pl-a',
      '-e',
      'CALICO_IP=198.19.60.1',
      image,
      'sleep',
      '3600',
    ]);
    expect(a.code, a.stderr).toBe(0);
    // The unix socket: made as dockerd makes its own, and the docker CLI is served over it.
    const st = await stat(unixSock());
    expect((st.mode & 0o777).toString(8)).toBe('660');
    const dockerGid = Number((await exec(['getent', 'group', 'docker'])).stdout.split(':')[2]);
    expect(st.gid).toBe(dockerGid);
    const b = await docker({ DOCKER_HOST: `unix://${unixSock()}` }, [
      'run',
      '-d',
      '--name',
      'pl-b',
      '-e',
      'CALICO_IP=198.19.60.2',
      image,
      'sleep',
      '3600',
    ]);
    expect(b.code, b.stderr).toBe(0);

    // Networked: each has its address on eth0, and once in one group they reach each other.
    expect((await direct(['exec', 'pl-a', 'ip', '-4', '-o', 'addr', 'show', 'eth0'])).stdout).toContain(
      '198.19.60.1/32',
    );
    expect((await direct(['exec', 'pl-b', 'ip', '-4', '-o', 'addr', 'show', 'eth0'])).stdout).toContain(
      '198.19.60.2/32',
    );
    const ping = async () => (await direct(['exec', 'pl-a', 'ping', '-c', '1', '-W', '1', '198.19.60.2'])).code === 0;
    expect(await ping()).toBe(false);
    expect((await calicoctl('h1', ['addgroup', 'PL'])).code).toBe(0);
    for (const c of ['pl-a', 'pl-b']) expect((await calicoctl('h1', ['addtogroup', c, 'PL'])).code).toBe(0);
    await waitFor('pl-a reaches pl-b', ping, 30_000);

    const status = await calicoctl('h1', ['status']);
    expect(status.stdout).toContain(
      `proxy: ${tlsAddr()}, unix://${unixSock()}, unix://${join(dir, 'h1', 'run', 'docker.sock')} (TLS on TCP: tlsverify`,
    );
    expect(status.stdout).not.toContain('insecure listen:');
  });

  it("a docker CLI with no client certificate, or one of another CA, is refused at the handshake and leaves nothing; the CA's certificate is served", async () => {
    const before = await snapshot();
    const run = ['run', '-d', '--name', 'pl-refused', '-e', 'CALICO_IP=198.19.60.9', image, 'sleep', '3600'];
    for (const certPath of [certs.none, certs.stranger]) {
      const r = await viaTls(certPath, run);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(
        /remote error: tls: (certificate required|bad certificate|unknown certificate authority)/,
      );
    }
    // Without TLS at all, to the TLS port: no HTTP answer.
    const plain = await docker({ DOCKER_HOST: tlsAddr() }, run);
    expect(plain.code).not.toBe(0);
    expect(await snapshot()).toEqual(before);
    // Control: the same command with a certificate of the CA makes the container.
    const ok = await viaTls(certs.good, run);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await snapshot()).names).toEqual([...before.names, 'pl-refused'].sort());
    expect((await viaTls(certs.good, ['rm', '-f', 'pl-refused'])).code).toBe(0);
    await waitFor(
      'the control leaves nothing behind',
      async () => JSON.stringify(await snapshot()) === JSON.stringify(before),
      20_000,
    );
  });

  it('node stop removes the proxy socket it made', async () => {
    expect(existsSync(unixSock())).toBe(true);
    for (const c of ['pl-a', 'pl-b']) await direct(['rm', '-f', c]);
    const stop = await calicoctl('h1', ['node', 'stop']);
    expect(stop.code, stop.stderr).toBe(0);
    expect(existsSync(unixSock())).toBe(false);
  });
});
