import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer as createNetServer, connect } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { link, lstat, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '@calico/log';
import { exec, requireRoot, TestCa, type CertFiles } from '@calico/testkit';
import { DockerProxy } from './server.js';
import { groupIdIn, listenConfig, type ListenTls } from './listen.js';

const logger = createLogger({ name: 'listen-test', level: 'warn' });
const mainJs = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

/** What dockerd would be: answers 200 to everything and counts what reached it. */
async function stubUpstream(dir: string): Promise<{ path: string; requests: string[]; server: Server }> {
  const path = join(dir, 'upstream.sock');
  const requests: string[] = [];
  const server = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('OK');
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { path, requests, server };
}

function pingUnix(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath: path, path: '/_ping' }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** GET /_ping over TLS to 127.0.0.1:port with the given client certificate (or none). */
type TlsPing = { ok: true; status: number } | { ok: false; error: string };

function pingTls(port: number, caFile: string, client: CertFiles | undefined): Promise<TlsPing> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/_ping',
        ca: readFileSync(caFile),
        ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ ok: true, status: res.statusCode ?? 0 }));
        res.on('error', (e) => resolve({ ok: false, error: e.message }));
      },
    );
    req.on('error', (e) => resolve({ ok: false, error: `${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}` }));
    req.end();
  });
}

describe('the proxy listens like dockerd: unix socket and TLS', () => {
  let dir: string;
  let up: Awaited<ReturnType<typeof stubUpstream>>;
  let ca: TestCa;
  let otherCa: TestCa;
  let server: CertFiles;
  let goodClient: CertFiles;
  let strangerClient: CertFiles;

  beforeAll(async () => {
    requireRoot();
    dir = await mkdtemp(join(tmpdir(), 'calico-listen-'));
    up = await stubUpstream(dir);
    ca = await TestCa.create(join(dir, 'ca'), 'proxy-ca');
    otherCa = await TestCa.create(join(dir, 'other'), 'other-ca');
    server = await ca.issue('proxy', { server: { ips: ['127.0.0.1'] } });
    goodClient = await ca.issue('good-client', { client: true });
    strangerClient = await otherCa.issue('stranger', { client: true });
  });
  afterAll(async () => {
    await new Promise((r) => up?.server.close(r));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const proxyWith = (tls?: ListenTls) =>
    new DockerProxy({ upstream: { kind: 'unix', path: up.path }, logger, ...(tls ? { tls } : {}) });
  const tlsOf = (verify: boolean): ListenTls => {
    const files = { tlscacert: ca.cert, tlscert: server.cert, tlskey: server.key };
    const r = listenConfig({ listen: ['127.0.0.1:0'], tlsverify: verify, tls: !verify, ...files });
    if (!r.ok) throw new Error(r.errors.join('; '));
    return r.value.tls!;
  };

  it('a unix socket is mode 0660, group docker, served, and removed at stop', async () => {
    const dockerGid = groupIdIn(await readFile('/etc/group', 'utf8'), 'docker');
    // This machine has the group (docker.io makes it); without it the socket keeps root's.
    expect(dockerGid).toBeTypeOf('number');
    const path = join(dir, 'p1.sock');
    const proxy = proxyWith();
    await proxy.listen([`unix://${path}`]);
    try {
      const st = await stat(path);
      expect(st.isSocket()).toBe(true);
      expect((st.mode & 0o777).toString(8)).toBe('660');
      expect(st.gid).toBe(dockerGid);
      expect(await pingUnix(path)).toBe(200);
    } finally {
      await proxy.close();
    }
    expect(existsSync(path)).toBe(false);
  });

  it('a stale socket (nobody answers) is replaced; a live one, or a file, is kept and refused', async () => {
    // Stale: a hard link to a socket whose listener has gone (its own path is unlinked on close).
    const live = join(dir, 'live.sock');
    const stalePath = join(dir, 'stale.sock');
    const holder = createNetServer();
    await new Promise<void>((r) => holder.listen(live, r));
    await link(live, stalePath);
    const p1 = proxyWith();
    // Control: while its listener lives, the same inode answers and is not replaced.
    await expect(p1.listen([`unix://${stalePath}`])).rejects.toThrow(/something is listening on it already/);
    expect((await lstat(stalePath)).isSocket()).toBe(true);
    await expect(p1.listen([`unix://${live}`])).rejects.toThrow(/something is listening on it already/);
    await new Promise((r) => holder.close(r));
    expect((await lstat(stalePath)).isSocket()).toBe(true);
    await p1.listen([`unix://${stalePath}`]);
    expect(await pingUnix(stalePath)).toBe(200);
    await p1.close();

    const file = join(dir, 'not-a-socket');
    await writeFile(file, 'keep me');
    const p2 = proxyWith();
    await expect(p2.listen([`unix://${file}`])).rejects.toThrow(`${file} exists and is not a socket; not replacing it`);
    await p2.close();
    expect(await readFile(file, 'utf8')).toBe('keep me');
  });

  it('--tlsverify: no client certificate, or one of another CA, is refused at the handshake; one of the CA is served', async () => {
    const proxy = proxyWith(tlsOf(true));
    await proxy.listen(['127.0.0.1:0']);
    try {
      const port = proxy.port!;
      const before = up.requests.length;
      const none = await pingTls(port, ca.cert, undefined);
      const stranger = await pingTls(port, ca.cert, strangerClient);
      expect(none.ok, JSON.stringify(none)).toBe(false);
      expect(stranger.ok, JSON.stringify(stranger)).toBe(false);
      expect(!none.ok && none.error).toMatch(/certificate required|handshake|ECONNRESET|socket hang up/i);
      expect(!stranger.ok && stranger.error).toMatch(/unknown ca|bad certificate|handshake|ECONNRESET|socket hang up/i);
      // Plain HTTP to the TLS port gets no HTTP answer at all.
      const plain = await new Promise<string>((resolve) => {
        const s = connect({ host: '127.0.0.1', port });
        let got = '';
        s.on('data', (c: Buffer) => (got += c.toString('latin1')));
        s.on('error', () => undefined);
        s.on('close', () => resolve(got));
        s.write('GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n');
      });
      expect(plain).not.toMatch(/^HTTP\/1\.1 200/);
      expect(up.requests.length, 'no refused client reached dockerd').toBe(before);
      // Control: the same call with a certificate of the CA goes through to dockerd.
      expect(await pingTls(port, ca.cert, goodClient)).toEqual({ ok: true, status: 200 });
      expect(up.requests.slice(before)).toEqual(['GET /_ping']);
    } finally {
      await proxy.close();
    }
  });

  it('--tls (no verification) serves a client without a certificate; unix listeners stay plain', async () => {
    const path = join(dir, 'tls-side.sock');
    const proxy = proxyWith(tlsOf(false));
    await proxy.listen(['127.0.0.1:0', `unix://${path}`]);
    try {
      expect(proxy.ports({ tls: true })).toEqual([proxy.port]);
      expect(await pingTls(proxy.port!, ca.cert, undefined)).toEqual({ ok: true, status: 200 });
      expect(await pingUnix(path)).toBe(200);
    } finally {
      await proxy.close();
    }
  });

  it('calico-node refuses to start on a missing or mismatched TLS file, or an insecure address, and listens nowhere', async () => {
    const sock = join(dir, 'never.sock');
    const base = [
      '--ip=198.18.0.99',
      '--hostname=listen-test',
      '--etcd=127.0.0.1:1',
      `--docker=unix://${up.path}`,
      `--listen=unix://${sock}`,
    ];
    const run = (args: string[]) => exec([process.execPath, mainJs, ...base, ...args], { timeoutMs: 30_000 });
    /** An address off loopback with TLS verifying clients of these files. */
    const tls = (cacert: string, cert: string, key: string) => [
      '--listen=198.18.0.99:2376',
      '--tlsverify',
      `--tlscacert=${cacert}`,
      `--tlscert=${cert}`,
      `--tlskey=${key}`,
    ];
    const missing = await run(tls(join(dir, 'nope.pem'), server.cert, server.key));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`calico-node: --tlscacert=${join(dir, 'nope.pem')}: cannot read it (ENOENT)`);
    // The key of another certificate.
    const mismatched = await run(tls(ca.cert, server.cert, goodClient.key));
    expect(mismatched.code).toBe(2);
    expect(mismatched.stderr).toMatch(/calico-node: --tlscacert\/--tlscert\/--tlskey .*key values mismatch/);
    const insecure = await run(['--listen=0.0.0.0:2375']);
    expect(insecure.code).toBe(2);
    expect(insecure.stderr).toContain('calico-node: --listen=tcp://0.0.0.0:2375: not loopback and no --tlsverify');
    expect(existsSync(sock)).toBe(false);
    // Control: with every file right it gets past its config (and waits on the etcd that is not
    // there), in a network namespace of its own: its policy hooks must not touch the machine's.
    const good = [...base, ...tls(ca.cert, server.cert, server.key), '--metrics-listen=none'];
    const ok = await exec(['unshare', '--net', 'timeout', '3', process.execPath, mainJs, ...good]);
    expect(ok.code, ok.stderr).toBe(124);
    expect(ok.stderr).not.toContain('calico-node: --');
  });
});
