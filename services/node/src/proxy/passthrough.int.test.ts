import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, writeFile, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import Docker from 'dockerode';
import {
  Dockerd,
  Etcd,
  TestCa,
  ensureBusyboxImage,
  exec,
  requireRoot,
  waitFor,
  type ExecResult,
} from '@calico/testkit';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import { createLogger } from '@calico/log';
import { DockerProxy } from './server.js';
import { parseDockerHost } from './upstream.js';
import { nodeInterceptors } from './intercepts.js';
import { listenConfig } from './listen.js';
import { Workloads } from '../workloads.js';
import { Plumber } from '../plumber/plumber.js';
import { EndpointStore } from '../etcd/endpoints.js';
import { AddressRegistry } from '../etcd/addresses.js';

/** How the docker CLI reaches the proxy: plain TCP, TCP with TLS as dockerd has it (--tlsverify), a unix socket. */
const TRANSPORTS = ['tcp', 'tls', 'unix'] as const;
type Transport = (typeof TRANSPORTS)[number];

/**
 * The docker CLI must not be able to tell the proxy from dockerd: every command runs twice,
 * once straight to dockerd and once through the proxy, and exit codes and output must match;
 * over each way of reaching the proxy.
 */
describe('Docker API pass-through with the real docker CLI', () => {
  let dockerd: Dockerd;
  let etcd: Etcd;
  let ds: Datastore;
  let plain: DockerProxy;
  let tls: DockerProxy;
  let image: string;
  let dir: string;
  let certPath: string;
  let caFile: string;
  let clientCert: { cert: string; key: string };

  beforeAll(async () => {
    requireRoot();
    dockerd = await Dockerd.start();
    image = await ensureBusyboxImage(dockerd.host);
    dir = await mkdtemp(join(tmpdir(), 'calico-pt-'));
    // The node's own interceptors are in place: requests without CALICO_IP must still be
    // indistinguishable from dockerd's answers.
    etcd = await Etcd.start();
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    const logger = createLogger({ name: 'proxy-test', level: 'warn' });
    const addresses = new AddressRegistry(ds);
    const workloads = new Workloads(
      'pt-host',
      new Docker({ socketPath: dockerd.socketPath }),
      new Plumber(logger),
      new EndpointStore(ds, 'pt-host'),
      addresses,
      logger,
    );
    const interceptors = nodeInterceptors({
      host: 'pt-host',
      waitBinary: '/bin/busybox',
      addresses,
      workloads,
      reservedAddresses: async () => ({ hostAddrs: [], birdIps: new Map(), etcdAddrs: [], masterAddrs: [], pools: [] }),
      logger,
    });
    const ca = await TestCa.create(join(dir, 'ca'));
    const server = await ca.issue('proxy', { server: { ips: ['127.0.0.1'] } });
    certPath = await ca.dockerCertPath(join(dir, 'client'));
    caFile = ca.cert;
    clientCert = { cert: join(certPath, 'cert.pem'), key: join(certPath, 'key.pem') };
    const lc = listenConfig({
      listen: ['127.0.0.1:0'],
      tlsverify: true,
      tlscacert: ca.cert,
      tlscert: server.cert,
      tlskey: server.key,
    });
    if (!lc.ok) throw new Error(lc.errors.join('; '));
    const upstream = parseDockerHost(dockerd.host);
    plain = new DockerProxy({ upstream, logger, interceptors });
    await plain.listen(['127.0.0.1:0', `unix://${join(dir, 'proxy.sock')}`]);
    tls = new DockerProxy({ upstream, logger, interceptors, tls: lc.value.tls! });
    await tls.listen(lc.value.addresses);
  });
  afterAll(async () => {
    await plain?.close();
    await tls?.close();
    ds?.close();
    await etcd?.stop();
    await dockerd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe.each(TRANSPORTS)('over %s', (transport: Transport) => {
    /** DOCKER_HOST and the rest of the docker CLI's environment for this transport. */
    let viaProxy: string;
    let cliEnv: NodeJS.ProcessEnv;
    beforeAll(() => {
      viaProxy =
        transport === 'unix'
          ? `unix://${join(dir, 'proxy.sock')}`
          : `tcp://127.0.0.1:${(transport === 'tls' ? tls : plain).port}`;
      cliEnv = {
        DOCKER_HOST: viaProxy,
        ...(transport === 'tls' ? { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certPath } : {}),
      };
    });

    const direct = (args: string[], input?: string) => dockerd.docker(args, { input });
    const proxied = (args: string[], input?: string) => dockerd.docker(args, { input, env: cliEnv });

    async function both(args: string[], input?: string): Promise<[ExecResult, ExecResult]> {
      return [await direct(args, input), await proxied(args, input)];
    }

    it('version, info, images, ps and inspect match', async () => {
      for (const args of [
        ['version', '--format', '{{.Server.Version}} {{.Server.APIVersion}}'],
        ['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}'],
        ['ps', '-a', '--format', '{{.ID}}'],
        ['image', 'inspect', image],
        ['info', '--format', '{{.Driver}} {{.Containers}}'],
      ]) {
        const [a, b] = await both(args);
        expect(b.code, `${args.join(' ')}: ${b.stderr}`).toBe(a.code);
        expect(b.stdout, args.join(' ')).toBe(a.stdout);
      }
    });

    it('run --rm prints the same bytes and exit code, including a failing command', async () => {
      const [a, b] = await both(['run', '--rm', '--net', 'none', image, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
      expect([b.code, b.stdout, b.stderr]).toEqual([a.code, a.stdout, a.stderr]);
      expect(b.code).toBe(3);
      expect(b.stdout).toBe('out\n');
    });

    it('run -i relays stdin and its end (hijacked attach, half-close)', async () => {
      const input = 'line one\nline two\n'.repeat(1000);
      const [a, b] = await both(['run', '-i', '--rm', '--net', 'none', image, 'sh', '-c', 'cat; echo done'], input);
      expect(a.code).toBe(0);
      expect(b.code, b.stderr).toBe(0);
      expect(b.stdout).toBe(`${input}done\n`);
      expect(b.stdout).toBe(a.stdout);
    });

    it('exec -i and exec with a failing command', async () => {
      const id = (await direct(['run', '-d', '--net', 'none', image, 'sleep', '300'])).stdout.trim();
      try {
        const [a, b] = await both(['exec', '-i', id, 'sh', '-c', 'wc -c'], 'abcdef');
        expect([b.code, b.stdout.trim()]).toEqual([a.code, '6']);
        const [c, d] = await both(['exec', id, 'sh', '-c', 'exit 7']);
        expect([d.code, c.code]).toEqual([7, 7]);
        const [e, f] = await both(['exec', 'no-such-container', 'true']);
        expect(f.code).toBe(e.code);
        expect(f.stderr).toBe(e.stderr);
      } finally {
        await direct(['rm', '-f', id]);
      }
    });

    it('errors come back as dockerd wrote them (missing image, missing container)', async () => {
      for (const args of [
        ['inspect', 'nope-nope'],
        ['run', '--rm', '--pull=never', 'no-such-image:1', 'true'],
        ['rm', 'nope'],
      ]) {
        const [a, b] = await both(args);
        expect(b.code, args.join(' ')).toBe(a.code);
        expect(b.stderr.replace(viaProxy, ''), args.join(' ')).toBe(a.stderr);
      }
    });

    it('logs -f streams each line as it is written, without waiting for the end', async () => {
      // The container blocks after its first line until we let it go: a proxy that buffered
      // the stream would never show that line, and the test would time out.
      const id = (
        await direct([
          'run',
          '-d',
          '--net',
          'none',
          image,
          'sh',
          '-c',
          'echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second',
        ])
      ).stdout.trim();
      try {
        const p = spawn('docker', ['logs', '-f', id], { env: { ...process.env, ...cliEnv } });
        let out = '';
        const exited = new Promise<number | null>((r) => p.on('exit', r));
        await new Promise<void>((resolve, reject) => {
          p.stdout.on('data', (c: Buffer) => {
            out += c.toString();
            if (out.includes('first')) resolve();
          });
          void exited.then(() => reject(new Error('logs -f ended before the first line')));
        });
        expect(out).toBe('first\n');
        await direct(['exec', id, 'touch', '/tmp/go']);
        expect(await exited).toBe(0);
        expect(out).toBe('first\nsecond\n');
      } finally {
        await direct(['rm', '-f', id]);
      }
    });

    it('events streams while it happens, and wait returns the exit code', async () => {
      const since = Math.floor(Date.now() / 1000) - 1;
      const id = (await direct(['create', '--net', 'none', image, 'sh', '-c', 'exit 4'])).stdout.trim();
      // From before the create: the create arrives whenever the stream opens, and shows it is open.
      const events = ['events', '--since', String(since), '--format', '{{.Action}}', '--filter', `container=${id}`];
      const p = spawn('docker', events, { env: { ...process.env, ...cliEnv } });
      let seen = '';
      p.stdout.on('data', (c: Buffer) => (seen += c.toString()));
      const actions = () => seen.split('\n').filter(Boolean);
      try {
        await waitFor(
          'the create event through the proxy',
          () => actions().includes('create'),
          15_000,
          () => seen,
        );
        expect(actions()).toEqual(['create']);
        // What happens from now on can only come live down the open stream.
        await direct(['start', id]);
        const w = await proxied(['wait', id]);
        expect(w.stdout.trim()).toBe('4');
        await waitFor(
          'the die event through the proxy',
          () => actions().includes('die'),
          15_000,
          () => seen,
        );
        expect(actions().slice(0, 2)).toEqual(['create', 'start']);
        await direct(['rm', id]);
        const until = Math.floor(Date.now() / 1000) + 1;
        const [a, b] = await both([
          'events',
          '--since',
          String(since),
          '--until',
          String(until),
          '--format',
          '{{.Action}} {{.Actor.ID}}',
          '--filter',
          `container=${id}`,
        ]);
        expect(b.stdout).toBe(a.stdout);
        expect(b.stdout).toContain('destroy');
      } finally {
        p.kill();
      }
    });

    it('cp uploads and downloads archives', async () => {
      const id = (await direct(['run', '-d', '--net', 'none', image, 'sleep', '300'])).stdout.trim();
      try {
        const src = join(dir, 'payload.txt');
        await writeFile(src, 'x'.repeat(200_000));
        const up = await proxied(['cp', src, `${id}:/tmp/payload.txt`]);
        expect(up.code, up.stderr).toBe(0);
        const down = await proxied(['cp', `${id}:/tmp/payload.txt`, join(dir, 'back.txt')]);
        expect(down.code, down.stderr).toBe(0);
        expect(await readFile(join(dir, 'back.txt'), 'utf8')).toBe('x'.repeat(200_000));
      } finally {
        await direct(['rm', '-f', id]);
      }
    });

    it('build streams the context up and the progress back (legacy builder)', async () => {
      const ctx = join(dir, 'ctx');
      await exec(['mkdir', '-p', ctx]);
      await writeFile(join(ctx, 'Dockerfile'), `FROM ${image}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n`);
      // A context of its own per transport: a cached build would not print the RUN step.
      await writeFile(join(ctx, 'hello.txt'), `hello from the build context over ${transport}\n`);
      const b = await exec(['docker', 'build', '--network', 'none', '-t', 'calico-pt-build:1', ctx], {
        env: { ...process.env, ...cliEnv, DOCKER_BUILDKIT: '0' },
      });
      expect(b.code, b.stderr).toBe(0);
      expect(b.stdout).toContain(`hello from the build context over ${transport}`);
      const r = await proxied(['run', '--rm', '--net', 'none', 'calico-pt-build:1', 'cat', '/hello.txt']);
      expect(r.stdout).toBe(`hello from the build context over ${transport}\n`);
      await direct(['rmi', 'calico-pt-build:1']);
    });

    it('stats streams, and pull fails exactly as dockerd says (no registry here)', async () => {
      const id = (await direct(['run', '-d', '--net', 'none', image, 'sleep', '300'])).stdout.trim();
      try {
        const st = await proxied(['stats', '--no-stream', '--format', '{{.ID}}', id]);
        expect(st.code, st.stderr).toBe(0);
        expect(st.stdout.trim()).toBe(id.slice(0, 12));
        const [a, b] = await both(['pull', 'calico-no-such-image-anywhere:1']);
        expect(b.code).toBe(a.code);
        expect(b.code).not.toBe(0);
      } finally {
        await direct(['rm', '-f', id]);
      }
    });

    it('keeps connections alive and never adds Connection: close', async () => {
      const http = await import('node:http');
      const https = await import('node:https');
      const agent =
        transport === 'tls'
          ? new https.Agent({
              keepAlive: true,
              maxSockets: 1,
              ca: readFileSync(caFile),
              cert: readFileSync(clientCert.cert),
              key: readFileSync(clientCert.key),
            })
          : new http.Agent({ keepAlive: true, maxSockets: 1 });
      const target =
        transport === 'unix'
          ? { socketPath: join(dir, 'proxy.sock') }
          : { host: '127.0.0.1', port: (transport === 'tls' ? tls : plain).port };
      const get = () =>
        new Promise<{ status: number; connection: string | undefined; reused: boolean }>((resolve, reject) => {
          const req = (transport === 'tls' ? https.request : http.request)(
            { ...target, path: '/_ping', agent },
            (res) => {
              res.resume();
              res.on('end', () =>
                resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, reused: req.reusedSocket }),
              );
            },
          );
          req.on('error', reject);
          req.end();
        });
      const first = await get();
      const second = await get();
      agent.destroy();
      expect(first.status).toBe(200);
      expect(first.connection).not.toBe('close');
      expect(second.connection).not.toBe('close');
      // The second request went over the connection the first one kept alive.
      expect([first.reused, second.reused]).toEqual([false, true]);
    });

    it('run -t allocates a terminal through the proxy', async () => {
      const [a, b] = await both(['run', '--rm', '-t', '--net', 'none', image, 'sh', '-c', 'test -t 1 && echo tty']);
      expect(b.code).toBe(0);
      expect(b.stdout).toBe(a.stdout);
      expect(b.stdout).toContain('tty');
    });
  });
});
