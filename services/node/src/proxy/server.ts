import {
  createServer,
  request as httpRequest,
  type Agent,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { Duplex } from 'node:stream';
import { unlink } from 'node:fs/promises';
import type { Logger } from '@calico/log';
import { connectUpstream, describeUpstream, upstreamAgent, upstreamTarget, type Upstream } from './upstream.js';
import { ProxyError, sendDockerError, toProxyError } from './errors.js';
import { BODY_RULES, readRequestBody } from './requestBody.js';
import type { JsonObject } from '../workload/createRequest.js';
import { routeRequest, type RouteDecision, type RouteName } from './route.js';

/** A request dockerd would route to an intercepted route. */
export type Routed = Extract<RouteDecision, { kind: 'route' }>;

/** A complete (buffered) answer from dockerd, for calls the proxy inspects or rewrites. */
export interface UpstreamResponse {
  status: number;
  statusMessage: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface InterceptContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** The route as dockerd reads the path; params are decoded, one char per byte. */
  route: Routed;
  /** The request body, read once; over the route's limit (BODY_RULES) it is a 413. */
  body(): Promise<Buffer>;
  /** The body as dockerd will read it (one JSON object, no key twice), or a 400 saying why. */
  jsonBody(): Promise<{ raw: Buffer; doc: JsonObject | undefined }>;
  /** Sends a request to dockerd and buffers the answer. */
  call(method: string, path: string, body?: Buffer, headers?: OutgoingHttpHeaders): Promise<UpstreamResponse>;
  /** The client's own request to dockerd, with a replaced body if given, buffered. */
  forward(body?: Buffer): Promise<UpstreamResponse>;
  /** Streams the client's request to dockerd and the answer back, untouched. */
  passThrough(): void;
  /** Writes a buffered answer to the client. */
  reply(r: UpstreamResponse, body?: Buffer): void;
}

export interface Interceptor {
  /** The dockerd route it handles, versioned or not, however the path is spelt. */
  route: RouteName;
  name: string;
  handle(ctx: InterceptContext): Promise<void>;
}

export interface DockerProxyOptions {
  upstream: Upstream;
  logger: Logger;
  interceptors?: Interceptor[];
  agent?: Agent;
  /** Told of every answered request: its route (interceptor, "passthrough", "upgrade", "refused") and status. */
  onRequest?: (route: string, status: number) => void;
}

/** Hop-by-hop headers belong to one connection; the proxy manages its own. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

function endToEndHeaders(raw: string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    const prev = out[name];
    const v = raw[i + 1]!;
    out[name] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
  }
  return out;
}

/**
 * The Docker API on a socket of our own, indistinguishable from dockerd for everything it
 * does not intercept: responses stream chunk by chunk with headers flushed at once, uploads
 * stream through, and hijacked connections (attach, exec) are spliced byte for byte.
 */
export class DockerProxy {
  readonly servers: Server[] = [];
  private readonly agent: Agent;
  private readonly interceptors: Interceptor[];
  private readonly sockets = new Set<Duplex>();

  constructor(private readonly opts: DockerProxyOptions) {
    this.agent = opts.agent ?? upstreamAgent();
    this.interceptors = opts.interceptors ?? [];
  }

  /** Listens on "host:port" or "unix:///path" (several allowed). */
  async listen(addrs: string[]): Promise<void> {
    for (const a of addrs) {
      const server = createServer({ keepAlive: true }, (req, res) => this.onRequest(req, res));
      // Streams such as `events` and `logs -f` may stay quiet for hours.
      server.requestTimeout = 0;
      server.headersTimeout = 60_000;
      server.keepAliveTimeout = 65_000;
      server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
      server.on('connection', (s) => {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
      });
      server.on('clientError', (err, socket) => {
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        this.opts.logger.debug({ err: err.message }, 'malformed client request dropped');
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        if (a.startsWith('unix://')) {
          const path = a.slice('unix://'.length);
          void unlink(path)
            .catch(() => undefined)
            .then(() => server.listen(path, () => resolve()));
        } else {
          const m = /^(.*):(\d+)$/.exec(a);
          if (!m) return reject(new Error(`listen address "${a}": expected host:port or unix:///path`));
          server.listen(Number(m[2]), m[1]!.replace(/^\[|\]$/g, ''), () => resolve());
        }
      });
      this.servers.push(server);
      this.opts.logger.info({ listen: a, upstream: describeUpstream(this.opts.upstream) }, 'Docker API proxy listening');
    }
  }

  /** The TCP port of the first TCP listener (useful when listening on port 0). */
  get port(): number | undefined {
    for (const s of this.servers) {
      const a = s.address();
      if (a && typeof a === 'object') return a.port;
    }
    return undefined;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.agent.destroy();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const counted = (route: string) => res.once('finish', () => this.opts.onRequest?.(route, res.statusCode));
    const decision = routeRequest(req.method ?? '', req.url ?? '/');
    if (decision.kind === 'refuse') {
      counted('refused');
      this.opts.logger.info({ method: req.method, url: req.url, err: decision.message }, 'request path refused; answering the client with the reason');
      sendDockerError(res, 400, `calico: ${decision.message}`);
      return;
    }
    for (const ic of this.interceptors) {
      if (decision.kind !== 'route' || ic.route !== decision.name) continue;
      counted(ic.name);
      const ctx = this.context(req, res, decision);
      ic.handle(ctx).catch((e: unknown) => {
        const pe = toProxyError(e);
        const log = pe.status >= 500 ? this.opts.logger.error.bind(this.opts.logger) : this.opts.logger.info.bind(this.opts.logger);
        log({ intercept: ic.name, url: req.url, status: pe.status, err: pe.message, stack: pe.status >= 500 ? pe.stack : undefined }, 'request refused; answering the client with the reason');
        sendDockerError(res, pe.status, pe.message);
      });
      return;
    }
    counted('passthrough');
    this.relay(req, res);
  }

  private context(req: IncomingMessage, res: ServerResponse, route: Routed): InterceptContext {
    let bodyP: Promise<Buffer> | undefined;
    const body = () => (bodyP ??= readBody(req, BODY_RULES[route.name].maxBytes));
    return {
      req,
      res,
      route,
      body,
      jsonBody: async () => {
        const raw = await body();
        const r = readRequestBody(route.name, raw);
        if (!r.ok) throw new ProxyError('BAD_REQUEST', `calico: ${r.message}`);
        return { raw, doc: r.value };
      },
      call: (method, path, b, headers) => this.call(method, path, b, headers),
      forward: async (replacement) => {
        const b = replacement ?? (await body());
        const headers = endToEndHeaders(req.rawHeaders);
        // The canonical spelling of the path: dockerd reads it exactly as the proxy did.
        return this.call(req.method ?? 'GET', route.path + route.query, b, headers);
      },
      passThrough: () => this.relay(req, res),
      reply: (r, replacement) => {
        const b = replacement ?? r.body;
        const headers: OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(r.headers)) {
          if (v === undefined || HOP_BY_HOP.has(k) || k === 'content-length') continue;
          headers[k] = v;
        }
        headers['content-length'] = b.length;
        res.writeHead(r.status, r.statusMessage, headers);
        res.end(b);
      },
    };
  }

  /** One buffered request to dockerd. */
  call(method: string, path: string, body?: Buffer, headers: OutgoingHttpHeaders = {}): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      const h: OutgoingHttpHeaders = { ...headers };
      for (const k of Object.keys(h)) if (k.toLowerCase() === 'content-length' || k.toLowerCase() === 'host') delete h[k];
      h.host = 'docker';
      if (body && body.length) h['content-length'] = body.length;
      else if (method !== 'GET' && method !== 'HEAD') h['content-length'] = 0;
      const up = httpRequest({ ...upstreamTarget(this.opts.upstream), agent: this.agent, method, path, headers: h }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () =>
          resolve({ status: r.statusCode ?? 502, statusMessage: r.statusMessage ?? '', headers: r.headers, body: Buffer.concat(chunks) }),
        );
        r.on('error', reject);
      });
      up.on('error', (e) => reject(new Error(`dockerd at ${describeUpstream(this.opts.upstream)} did not answer ${method} ${path}: ${e.message}`)));
      up.end(body);
    });
  }

  /** Streams a request through and its answer back, chunk by chunk. */
  private relay(req: IncomingMessage, res: ServerResponse): void {
    const headers = endToEndHeaders(req.rawHeaders);
    const up = httpRequest(
      { ...upstreamTarget(this.opts.upstream), agent: this.agent, method: req.method, path: req.url, headers },
      (upRes) => {
        const out = endToEndHeaders(upRes.rawHeaders);
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, out);
        // Clients of `events`, `logs -f`, `wait` need the headers before the first event.
        res.flushHeaders();
        upRes.pipe(res);
        upRes.on('error', () => res.destroy());
      },
    );
    up.on('error', (e) => {
      if (!res.headersSent) {
        this.opts.logger.warn({ url: req.url, err: e.message }, 'dockerd did not answer; told the client');
        sendDockerError(res, 502, `calico: cannot reach dockerd at ${describeUpstream(this.opts.upstream)}: ${e.message}`);
      } else res.destroy();
    });
    // A client that goes away (Ctrl-C on `logs -f`) ends the upstream stream too.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }

  /**
   * Hijacked connections (attach, exec start, run -i): the request goes upstream byte for byte,
   * dockerd's answer (101 UPGRADED, or an error) comes back as received, then both directions
   * are spliced, each half-closed on its own so that stdin EOF reaches the container.
   */
  private onUpgrade(req: IncomingMessage, client: Duplex, head: Buffer): void {
    // No intercepted route upgrades: spliced raw, such a request would skip its interceptor.
    const decision = routeRequest(req.method ?? '', req.url ?? '/');
    if (decision.kind !== 'other') {
      const message = decision.kind === 'refuse' ? `calico: ${decision.message}` : `calico: ${req.method} ${decision.name} does not upgrade the connection`;
      this.opts.logger.info({ url: req.url, err: message }, 'upgrade refused; answering the client with the reason');
      this.opts.onRequest?.('refused', 400);
      const body = JSON.stringify({ message });
      client.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    const upstream = connectUpstream(this.opts.upstream);
    // dockerd's status line (101, or an error) is spliced through as it is; counted from its first bytes.
    upstream.once('data', (c: Buffer) => this.opts.onRequest?.('upgrade', Number(/^HTTP\/1\.[01] (\d{3})/.exec(c.toString('latin1', 0, 16))?.[1] ?? 502)));
    this.sockets.add(upstream);
    upstream.on('close', () => this.sockets.delete(upstream));
    const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.on('connect', () => {
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) upstream.write(head);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    const fail = (e: Error) => {
      this.opts.logger.warn({ url: req.url, err: e.message }, 'hijacked stream failed; closing both sides');
      if (!client.destroyed && upstream.bytesRead === 0 && client.writable) {
        const body = JSON.stringify({ message: `calico: cannot reach dockerd: ${e.message}` });
        client.end(`HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      } else client.destroy();
      upstream.destroy();
    };
    upstream.on('error', fail);
    client.on('error', () => upstream.destroy());
  }
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const tooLarge = () => new ProxyError('TOO_LARGE', `calico: the request body is over ${max} bytes, the limit for this call`);
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) {
      req.resume();
      return reject(tooLarge());
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) {
        // Stop keeping it; the answer closes the connection.
        req.off('data', onData);
        req.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
