import { request as httpRequest, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '@calico/log';
import { compileRoutes, routeRequest } from './route.js';
import { connectUpstream, describeUpstream, type Upstream } from './upstream.js';
import { endToEndHeaders, HOP_BY_HOP, rawDockerError } from './headers.js';

/**
 * dockerd 20.10's routes that take the connection over (hijack) once they answer: attach and
 * exec start answer `101 UPGRADED` (`Upgrade: tcp`), the websocket attach `101 Switching
 * Protocols`, and BuildKit's session and gRPC routes `101` with `Upgrade: h2c`. Nothing else
 * upgrades; `POST /build` streams an ordinary response, BuildKit or not.
 */
export const UPGRADE_ROUTES = {
  attach: { method: 'POST', template: '/containers/{name:.*}/attach' },
  'attach-ws': { method: 'GET', template: '/containers/{name:.*}/attach/ws' },
  'exec-start': { method: 'POST', template: '/exec/{name:.*}/start' },
  session: { method: 'POST', template: '/session' },
  grpc: { method: 'POST', template: '/grpc' },
} as const;
export type UpgradeRouteName = keyof typeof UPGRADE_ROUTES;

const upgradeRoute = compileRoutes(UPGRADE_ROUTES);

/** The largest body an upgrade request may carry (exec start sends a few bytes of JSON). */
export const UPGRADE_BODY_MAX = 64 * 1024;

export type UpgradePlan =
  | { ok: true; name: UpgradeRouteName; path: string; bodyLength: number }
  | { ok: false; status: number; message: string };

/**
 * Whether a request that asks for an upgrade goes to dockerd, read as dockerd routes it, and
 * how long its body is. Only the upgrade routes go; any other request with `Connection:
 * Upgrade` is refused, since dockerd would answer it and read what follows as more requests.
 */
export function planUpgrade(method: string, target: string, headers: IncomingHttpHeaders): UpgradePlan {
  const intercepted = routeRequest(method, target);
  if (intercepted.kind === 'refuse') return { ok: false, status: 400, message: intercepted.message };
  if (intercepted.kind === 'route') {
    return { ok: false, status: 400, message: `${method} ${intercepted.name} does not upgrade the connection` };
  }
  const d = upgradeRoute(method, target);
  if (d.kind === 'refuse') return { ok: false, status: 400, message: d.message };
  if (d.kind === 'other') {
    const path = target.split('?')[0];
    return {
      ok: false,
      status: 400,
      message: `${method} ${path} does not upgrade the connection (only attach, exec start, session and grpc do)`,
    };
  }
  if (headers['transfer-encoding'] !== undefined) {
    return { ok: false, status: 400, message: 'an upgrade request must frame its body with Content-Length' };
  }
  const cl = headers['content-length'];
  if (cl !== undefined && !/^\d{1,15}$/.test(cl)) {
    return { ok: false, status: 400, message: `Content-Length "${cl}" is not a length` };
  }
  const bodyLength = cl === undefined ? 0 : Number(cl);
  if (bodyLength > UPGRADE_BODY_MAX) {
    return {
      ok: false,
      status: 413,
      message: `the request body is over ${UPGRADE_BODY_MAX} bytes, the limit for ${d.name}`,
    };
  }
  return { ok: true, name: d.name, path: d.path + d.query, bodyLength };
}

export interface UpgradeDeps {
  upstream: Upstream;
  logger: Logger;
  /** Longest silence while the request body is read (ms). */
  bodyIdleTimeoutMs: number;
  /** Sockets to destroy when the proxy closes. */
  track(s: Socket): void;
  /** Told of the answer: dockerd's status, or the proxy's refusal. */
  onAnswer(route: 'upgrade' | 'refused', status: number): void;
}

/**
 * A request with `Connection: Upgrade`. The proxy reads the request (head and body, framed by
 * Content-Length) and sends exactly that to dockerd on a connection of its own, holding back
 * whatever the client wrote after it. Only when dockerd answers 101 does the connection become
 * a raw pipe: the held bytes follow, then both sockets are spliced, each direction half-closed
 * on its own so that stdin's end reaches the container. Any other answer (an error, or a
 * detached exec start's 200) is relayed and the connection closed: the bytes after the request
 * never reach dockerd as requests of their own.
 */
export function handleUpgrade(deps: UpgradeDeps, req: IncomingMessage, client: Socket, head: Buffer): void {
  client.pause();
  const { logger } = deps;
  const method = req.method ?? '';
  const plan = planUpgrade(method, req.url ?? '/', req.headers);
  if (!plan.ok) {
    logger.info({ url: req.url, err: plan.message }, 'upgrade refused; answering the client with the reason');
    deps.onAnswer('refused', plan.status);
    return closeWith(client, plan.status, `calico: ${plan.message}`, deps.bodyIdleTimeoutMs);
  }
  readBody(client, head, plan.bodyLength, deps.bodyIdleTimeoutMs).then(
    ({ body, rest }) => forward(deps, req, client, plan.path, body, rest),
    (e: Error) => {
      logger.info({ url: req.url, err: e.message }, 'upgrade request body incomplete; closing the connection');
      deps.onAnswer('refused', 408);
      closeWith(client, 408, `calico: ${e.message}`, deps.bodyIdleTimeoutMs);
    },
  );
}

/** The first n bytes (head, then the socket), and what came after them; the socket left paused. */
function readBody(client: Socket, head: Buffer, n: number, idleMs: number): Promise<{ body: Buffer; rest: Buffer }> {
  if (head.length >= n) return Promise.resolve({ body: head.subarray(0, n), rest: head.subarray(n) });
  return new Promise((resolve, reject) => {
    const chunks = [head];
    let have = head.length;
    const done = () => {
      clearTimeout(timer);
      client.pause();
      client.off('data', onData);
      client.off('end', onEnd);
      client.off('close', onEnd);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`the request body stalled: no bytes for ${idleMs / 1000} s`));
    }, idleMs);
    const onData = (c: Buffer) => {
      timer.refresh();
      chunks.push(c);
      have += c.length;
      if (have < n) return;
      done();
      const all = Buffer.concat(chunks);
      resolve({ body: all.subarray(0, n), rest: all.subarray(n) });
    };
    const onEnd = () => {
      done();
      reject(new Error('the client closed the connection before the end of the request body'));
    };
    client.on('data', onData);
    client.on('end', onEnd);
    client.on('close', onEnd);
    client.resume();
  });
}

function forward(
  deps: UpgradeDeps,
  req: IncomingMessage,
  client: Socket,
  path: string,
  body: Buffer,
  rest: Buffer,
): void {
  const { logger } = deps;
  const headers = endToEndHeaders(req.rawHeaders);
  headers.Connection = 'Upgrade';
  headers.Upgrade = req.headers.upgrade ?? '';
  let answered = false;
  const up = httpRequest({
    method: req.method,
    path,
    headers,
    createConnection: () => {
      const s = connectUpstream(deps.upstream);
      deps.track(s);
      return s;
    },
  });
  up.on('upgrade', (res: IncomingMessage, upstream: Socket, upHead: Buffer) => {
    answered = true;
    deps.onAnswer('upgrade', res.statusCode ?? 101);
    // The stream may stay quiet for hours (an idle `attach`): no timeout applies to it.
    client.setTimeout(0);
    client.write(statusHead(res, []));
    if (upHead.length) client.write(upHead);
    if (rest.length) upstream.write(rest);
    client.pipe(upstream);
    upstream.pipe(client);
    const fail = (e: Error) => {
      logger.warn({ url: req.url, err: e.message }, 'hijacked stream failed; closing both sides');
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', fail);
    client.on('error', fail);
  });
  up.on('response', (res) => {
    answered = true;
    deps.onAnswer('upgrade', res.statusCode ?? 502);
    logger.debug(
      { url: req.url, status: res.statusCode },
      'dockerd did not upgrade; answer relayed, connection closed',
    );
    client.write(statusHead(res, ['Connection: close']));
    // What the client sent after the request is dropped with the connection.
    client.on('data', () => undefined);
    client.resume();
    res.pipe(client);
    res.on('end', () => up.destroy());
    res.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
    client.setTimeout(deps.bodyIdleTimeoutMs, () => client.destroy());
  });
  up.on('error', (e) => {
    if (answered) return void client.destroy();
    logger.warn({ url: req.url, err: e.message }, 'dockerd did not answer an upgrade request; told the client');
    deps.onAnswer('upgrade', 502);
    const where = describeUpstream(deps.upstream);
    closeWith(client, 502, `calico: cannot reach dockerd at ${where}: ${e.message}`, deps.bodyIdleTimeoutMs);
  });
  client.on('close', () => {
    if (!answered) up.destroy();
  });
  up.end(body);
}

/** dockerd's status line and headers as received; hop-by-hop ones only on a 101 (they are its meaning). */
function statusHead(res: IncomingMessage, extra: string[]): string {
  const lines = [`HTTP/${res.httpVersion} ${res.statusCode} ${res.statusMessage}`];
  const upgraded = res.statusCode === 101;
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i]!;
    if (!upgraded && HOP_BY_HOP.has(name.toLowerCase())) continue;
    lines.push(`${name}: ${res.rawHeaders[i + 1]}`);
  }
  return `${[...lines, ...extra].join('\r\n')}\r\n\r\n`;
}

/**
 * Answers and closes a connection taken from node:http. Later bytes from the client are read
 * and dropped: a socket closed with unread bytes would reset, and the answer could be lost.
 */
function closeWith(client: Socket, status: number, message: string, lingerMs: number): void {
  if (client.destroyed) return;
  client.on('data', () => undefined);
  client.on('error', () => undefined);
  client.resume();
  client.end(rawDockerError(status, STATUS_CODES[status] ?? 'Error', message));
  client.setTimeout(lingerMs, () => client.destroy());
}
