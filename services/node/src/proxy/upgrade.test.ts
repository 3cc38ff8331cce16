import { afterEach, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@calico/log';
import { planUpgrade, UPGRADE_BODY_MAX } from './upgrade.js';
import { routeRequest } from './route.js';
import { Throttled } from './limits.js';
import { DockerProxy } from './server.js';

const plan = (method: string, target: string, headers: Record<string, string> = {}) =>
  planUpgrade(method, target, headers);

describe('planUpgrade: only the routes dockerd hijacks may upgrade', () => {
  it.each([
    ['POST', '/containers/abc/attach?stream=1', 'attach', '/containers/abc/attach?stream=1'],
    ['POST', '/v1.41/containers/abc/%61ttach', 'attach', '/v1.41/containers/abc/attach'],
    ['GET', '/containers/abc/attach/ws', 'attach-ws', '/containers/abc/attach/ws'],
    ['POST', '/exec/e1/start', 'exec-start', '/exec/e1/start'],
    ['POST', '/v1.41/exec/e1/st%61rt', 'exec-start', '/v1.41/exec/e1/start'],
    ['POST', '/session', 'session', '/session'],
    ['POST', '/v1.41/grpc', 'grpc', '/v1.41/grpc'],
  ])('%s %s → %s', (method, target, name, path) => {
    expect(plan(method, target)).toEqual({ ok: true, name, path, bodyLength: 0 });
  });

  it.each([
    ['POST', '/containers/create', /POST create does not upgrade the connection/],
    ['POST', '/containers/%63reate', /POST create does not upgrade the connection/],
    ['POST', '/containers/x/start', /POST start does not upgrade/],
    ['GET', '/_ping', /GET \/_ping does not upgrade the connection \(only attach, exec start, session and grpc do\)/],
    ['POST', '/build?version=2', /POST \/?build does not upgrade/],
    ['GET', '/containers/x/attach', /does not upgrade/],
    ['POST', '/containers/x/attach/ws', /does not upgrade/],
    ['POST', '/containers/x/../x/attach', /not in canonical form/],
    ['POST', '/containers/a%2Fb/attach', /encoded "\/"/],
    ['POST', '/exec/%zz/start', /malformed percent-encoding/],
  ])('%s %s is refused', (method, target, why) => {
    const p = plan(method, target);
    expect(p.ok).toBe(false);
    if (!p.ok) {
      expect(p.status).toBe(400);
      expect(p.message).toMatch(why);
    }
  });

  it('frames the body by Content-Length only, within a limit', () => {
    expect(plan('POST', '/exec/e/start', { 'content-length': '27' })).toMatchObject({ ok: true, bodyLength: 27 });
    expect(plan('POST', '/exec/e/start', { 'transfer-encoding': 'chunked' })).toMatchObject({
      ok: false,
      status: 400,
    });
    expect(plan('POST', '/exec/e/start', { 'content-length': String(UPGRADE_BODY_MAX + 1) })).toMatchObject({
      ok: false,
      status: 413,
    });
    expect(plan('POST', '/exec/e/start', { 'content-length': '1e3' })).toMatchObject({ ok: false, status: 400 });
  });

  it('no target it lets upgrade is one the proxy intercepts', () => {
    const names = ['x', 'create', 'x/start', 'x/exec', 'x/json', 'a/b', '', '..'];
    for (const prefix of ['', '/v1.41']) {
      for (const n of names) {
        for (const [method, suffix] of [
          ['POST', '/attach'],
          ['GET', '/attach/ws'],
        ] as const) {
          const target = `${prefix}/containers/${n}${suffix}`;
          if (plan(method, target).ok) expect(routeRequest(method, target).kind, target).toBe('other');
        }
        const exec = `${prefix}/exec/${n}/start`;
        if (plan('POST', exec).ok) expect(routeRequest('POST', exec).kind, exec).toBe('other');
      }
    }
  });
});

describe('Throttled', () => {
  it('reports the first event at once, then one line per interval with the count', () => {
    let t = 0;
    const th = new Throttled(10, () => t);
    expect(th.note()).toBe(1);
    t = 5;
    expect(th.note()).toBeUndefined();
    expect(th.note()).toBeUndefined();
    t = 10;
    expect(th.note()).toBe(3);
  });
});

/**
 * The hand-over rule against a scripted upstream on a unix socket (the real dockerd's answers
 * are in test-e2e/src/proxy-upgrade.e2e.test.ts): what reaches the upstream, byte for byte.
 */
describe('DockerProxy upgrade hand-over (scripted upstream)', () => {
  let dir: string | undefined;
  let upstream: Server | undefined;
  let proxy: DockerProxy | undefined;
  afterEach(async () => {
    await proxy?.close();
    await new Promise((r) => (upstream ? upstream.close(r) : r(undefined)));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** An upstream that records all it receives and answers the first request head with `answer`. */
  async function start(answer: string): Promise<{ received: () => string; proxySocket: string }> {
    dir = await mkdtemp(join(tmpdir(), 'calico-upgrade-'));
    let got = '';
    upstream = createServer((s: Socket) => {
      let answered = false;
      s.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if (!answered && got.includes('\r\n\r\n')) {
          answered = true;
          s.write(answer);
        }
      });
      s.on('error', () => undefined);
    });
    const upPath = join(dir, 'up.sock');
    await new Promise<void>((r) => upstream!.listen(upPath, r));
    proxy = new DockerProxy({
      upstream: { kind: 'unix', path: upPath },
      logger: createLogger({ name: 't', level: 'silent' }),
    });
    const proxySocket = join(dir, 'proxy.sock');
    await proxy.listen([`unix://${proxySocket}`]);
    return { received: () => got, proxySocket };
  }

  function send(path: string, bytes: string, waitMs = 300): Promise<string> {
    return new Promise((resolve) => {
      const s = connect(path);
      let text = '';
      s.on('data', (c: Buffer) => (text += c.toString('latin1')));
      s.on('error', () => undefined);
      s.on('connect', () => s.write(bytes));
      setTimeout(() => {
        s.destroy();
        resolve(text);
      }, waitMs);
    });
  }

  const UPGRADED =
    'HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n' +
    'Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n';

  const attach = 'POST /containers/x/attach HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n';
  const behind = 'POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n{}';

  it('holds back what follows the request when the answer is not 101, and closes', async () => {
    const u = await start(
      'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"message":""}',
    );
    const answer = await send(u.proxySocket, attach + behind);
    expect(answer).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
    expect(answer).toContain('Connection: close');
    expect(u.received()).toContain('POST /containers/x/attach HTTP/1.1');
    expect(u.received()).not.toContain('/containers/create');
  });

  it('sends it on, as stream bytes, once the answer is 101', async () => {
    const u = await start(UPGRADED);
    const answer = await send(u.proxySocket, attach + behind);
    expect(answer).toBe(UPGRADED);
    expect(u.received().endsWith(`\r\n\r\n${behind}`)).toBe(true);
  });

  it('forwards the body of an upgrade request and only it before the answer', async () => {
    const u = await start('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    const body = '{"Detach":true}';
    const start1 =
      'POST /exec/e/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n' +
      `Content-Length: ${body.length}\r\n\r\n${body}`;
    const answer = await send(u.proxySocket, start1 + behind);
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(u.received().endsWith(`\r\n\r\n${body}`)).toBe(true);
  });

  it('refuses an upgrade on a route that does not upgrade, and sends dockerd nothing', async () => {
    const u = await start('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK');
    const answer = await send(
      u.proxySocket,
      `GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n${behind}`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(answer).toContain('does not upgrade the connection');
    expect(u.received()).toBe('');
  });
});
