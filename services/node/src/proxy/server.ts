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
import { createServer as createTlsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { lstat, unlink } from 'node:fs/promises';
import type { Logger } from '@calico/log';
import { clearStaleSocket, describeListen, parseListenAddress, secureSocket } from './listen.js';
import type { ListenAddress, ListenTls } from './listen.js';
import { describeUpstream, upstreamAgent, upstreamTarget, type Upstream } from './upstream.js';
import { ProxyError, sendDockerError, toProxyError } from './errors.js';
import { endToEndHeaders, HOP_BY_HOP, rawDockerError } from './headers.js';
import { DEFAULT_PROXY_LIMITS, Throttled, type ProxyLimits } from './limits.js';
import { handleUpgrade } from './upgrade.js';
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
  /**
   * Told of every answered request: its route (interceptor, "passthrough", "upgrade", "refused",
   * or "limit" for a timeout or the connection cap) and status.
   */
  onRequest?: (route: string, status: number) => void;
  /** Timeouts and the connection cap (DEFAULT_PROXY_LIMITS for what is not given). */
  limits?: Partial<ProxyLimits>;
  /** TLS on every TCP listener (unix sockets stay plain, as dockerd's do). */
  tls?: ListenTls;
}

/**
 * The Docker API on a socket of our own, indistinguishable from dockerd for everything it
 * does not intercept: responses stream chunk by chunk with headers flushed at once, uploads
 * stream through, and hijacked connections (attach, exec) are spliced byte for byte once
 * dockerd has upgraded them (upgrade.ts).
 */
export class DockerProxy {
  readonly servers: Server[] = [];
  readonly limits: ProxyLimits;
  private readonly agent: Agent;
  private readonly interceptors: Interceptor[];
  /** Every socket of ours (clients' and hijacked upstream ones), destroyed on close(). */
  private readonly sockets = new Set<Duplex>();
  /** Client connections open now, over every listener. */
  private readonly clients = new Set<Socket>();
  /** Client connections accepted over the cap: their first request gets a 503. */
  private readonly overCap = new WeakSet<Socket>();
  private readonly capLog = new Throttled(10_000);
  private readonly timeoutLog = new Throttled(10_000);
  private readonly tlsLog = new Throttled(10_000);
  /** Unix sockets we made (path and inode), removed by close() if still ours. */
  private readonly unixSockets: { path: string; ino: number }[] = [];
  /** Every listener and what it is, in the order listened. */
  readonly listening: { address: ListenAddress; tls: boolean; server: Server }[] = [];

  constructor(private readonly opts: DockerProxyOptions) {
    this.agent = opts.agent ?? upstreamAgent();
    this.interceptors = opts.interceptors ?? [];
    this.limits = { ...DEFAULT_PROXY_LIMITS, ...opts.limits };
  }

  /**
   * Listens on each address ("tcp://host:port", "host:port", "unix:///path"). TCP listeners
   * serve TLS when the proxy has it; a unix socket is made mode 0660, group docker when there
   * is one, replacing only a stale socket that nobody answers on.
   */
  async listen(addrs: (string | ListenAddress)[]): Promise<void> {
    const l = this.limits;
    const tls = this.opts.tls;
    for (const given of addrs) {
      let a: ListenAddress;
      if (typeof given === 'string') {
        const r = parseListenAddress(given);
        if (!r.ok) throw new Error(r.error);
        a = r.value;
      } else a = given;
      const withTls = tls !== undefined && a.kind === 'tcp';
      const httpOpts = {
        keepAlive: true,
        // How often node:http looks for request heads over the header timeout.
        connectionsCheckingInterval: Math.min(1_000, Math.max(100, l.headerTimeoutMs / 4)),
      };
      const handler = (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res);
      const server: Server = withTls
        ? createTlsServer(
            {
              ...httpOpts,
              cert: tls.cert,
              key: tls.key,
              ...(tls.ca ? { ca: tls.ca } : {}),
              // --tlsverify: no certificate of the CA, no handshake (and so no request at all).
              requestCert: tls.verify,
              rejectUnauthorized: tls.verify,
              // A handshake is a request head of its own: the same bound keeps slow ones from pinning us.
              handshakeTimeout: l.headerTimeoutMs,
              // As node:http's own server: a hijacked stream is half-closed one direction at a
              // time (stdin's end after close_notify), never both at once.
              allowHalfOpen: true,
            },
            handler,
          )
        : createServer(httpOpts, handler);
      // Streams such as `events` and `logs -f` may stay quiet for hours: no timeout on a whole
      // request. The head has its own; a body is watched where it is read (relay, readBody).
      server.requestTimeout = 0;
      server.headersTimeout = l.headerTimeoutMs;
      server.keepAliveTimeout = l.idleTimeoutMs;
      // A backstop past the cap: connections beyond twice it are dropped without an answer.
      server.maxConnections = 2 * l.maxConnections;
      server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head));
      // Every raw connection is ours to destroy on close; a client counts once it speaks HTTP
      // to us (after the handshake on TLS), and that is the socket its requests arrive on.
      server.on('connection', (s: Socket) => this.track(s));
      server.on(withTls ? 'secureConnection' : 'connection', (s: Socket) => this.onConnection(s));
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket));
      if (withTls) server.on('tlsClientError', (err: Error, socket: Duplex) => this.onTlsClientError(err, socket));
      if (a.kind === 'unix') await clearStaleSocket(a.path);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        if (a.kind === 'unix') {
          // Made 0660 from the start (bind is synchronous here), never briefly open to all.
          const umask = process.umask(0o117);
          try {
            server.listen(a.path, () => resolve());
          } finally {
            process.umask(umask);
          }
        } else server.listen(a.port, a.host, () => resolve());
      });
      let socketInfo: Awaited<ReturnType<typeof secureSocket>> | undefined;
      if (a.kind === 'unix') {
        this.unixSockets.push({ path: a.path, ino: (await lstat(a.path)).ino });
        socketInfo = await secureSocket(a.path);
        if (socketInfo.groupError) {
          this.opts.logger.warn(
            { listen: describeListen(a), err: socketInfo.groupError },
            'proxy socket keeps our own group; only that group and root may use it',
          );
        }
      }
      this.servers.push(server);
      this.listening.push({ address: a, tls: withTls, server });
      this.opts.logger.info(
        {
          listen: describeListen(a),
          tls: withTls ? (tls.verify ? 'verify client certificates' : 'server certificate only') : 'none',
          ...(socketInfo
            ? { mode: socketInfo.mode.toString(8), gid: socketInfo.gid ?? 'our own (no docker group)' }
            : {}),
          upstream: describeUpstream(this.opts.upstream),
          limits: this.limits,
        },
        'Docker API proxy listening',
      );
    }
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
  }

  /** A TLS client refused at the handshake (no certificate of the CA, or no TLS at all). */
  private onTlsClientError(err: Error, socket: Duplex): void {
    socket.destroy();
    const n = this.tlsLog.note();
    if (n !== undefined) {
      this.opts.logger.info(
        { err: err.message, sinceLastLine: n },
        'TLS handshake refused; the client got no connection',
      );
    }
  }

  private onConnection(s: Socket): void {
    this.track(s);
    this.clients.add(s);
    s.on('close', () => this.clients.delete(s));
    if (this.clients.size <= this.limits.maxConnections) return;
    // Answered at its first request, not now: a client that reads an answer before it has
    // sent its request (Go's HTTP client) drops it as unsolicited and never shows it.
    this.overCap.add(s);
    const n = this.capLog.note();
    if (n !== undefined) {
      this.opts.logger.warn(
        { open: this.clients.size, max: this.limits.maxConnections, refusedSinceLastLine: n },
        'connection cap reached: new connections are answered 503 until some close (--proxy-max-connections)',
      );
    }
  }

  private capMessage(): string {
    return (
      `calico: the Docker API proxy has ${this.clients.size} connections open, over its limit of ` +
      `${this.limits.maxConnections} (--proxy-max-connections); try again later`
    );
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    // A response under way owns the connection (node:http's own rule): it is only closed.
    const busy = (socket as Duplex & { _httpMessage?: unknown })._httpMessage !== undefined;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      this.opts.onRequest?.('limit', 408);
      const n = this.timeoutLog.note();
      if (n !== undefined) {
        this.opts.logger.info(
          { timeoutMs: this.limits.headerTimeoutMs, sinceLastLine: n },
          'a request head did not arrive whole in time; answered 408 and closed the connection',
        );
      }
      const msg = `calico: the request head did not arrive whole within ${this.limits.headerTimeoutMs / 1000} s`;
      if (socket.writable && !busy) socket.end(rawDockerError(408, 'Request Timeout', msg));
      else socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    if (socket.writable && !busy) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
    else socket.destroy();
    this.opts.logger.debug({ err: err.message }, 'malformed client request dropped');
  }

  /** The TCP port of the first TCP listener (useful when listening on port 0). */
  get port(): number | undefined {
    return this.ports()[0];
  }

  /** The TCP ports of the listeners, in order (plain and TLS). */
  ports(opts: { tls?: boolean } = {}): number[] {
    const out: number[] = [];
    for (const l of this.listening) {
      if (opts.tls !== undefined && l.tls !== opts.tls) continue;
      const a = l.server.address();
      if (a && typeof a === 'object') out.push(a.port);
    }
    return out;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.agent.destroy();
    // node:net unlinks a socket it bound when it closes; this covers the rest, and only our own
    // (the same inode: a socket someone made there since is not ours to remove).
    for (const u of this.unixSockets.splice(0)) {
      const st = await lstat(u.path).catch(() => undefined);
      if (st?.isSocket() && st.ino === u.ino) await unlink(u.path).catch(() => undefined);
    }
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const counted = (route: string) => res.once('finish', () => this.opts.onRequest?.(route, res.statusCode));
    if (this.overCap.has(req.socket)) {
      counted('limit');
      res.shouldKeepAlive = false;
      sendDockerError(res, 503, this.capMessage());
      return;
    }
    const decision = routeRequest(req.method ?? '', req.url ?? '/');
    if (decision.kind === 'refuse') {
      counted('refused');
      this.opts.logger.info(
        { method: req.method, url: req.url, err: decision.message },
        'request path refused; answering the client with the reason',
      );
      sendDockerError(res, 400, `calico: ${decision.message}`);
      return;
    }
    for (const ic of this.interceptors) {
      if (decision.kind !== 'route' || ic.route !== decision.name) continue;
      counted(ic.name);
      const ctx = this.context(req, res, decision);
      ic.handle(ctx).catch((e: unknown) => {
        const pe = toProxyError(e);
        const log =
          pe.status >= 500
            ? this.opts.logger.error.bind(this.opts.logger)
            : this.opts.logger.info.bind(this.opts.logger);
        log(
          {
            intercept: ic.name,
            url: req.url,
            status: pe.status,
            err: pe.message,
            stack: pe.status >= 500 ? pe.stack : undefined,
          },
          'request refused; answering the client with the reason',
        );
        if (pe.status === 413 && !req.complete) answerThenDrain(req, res, pe.message);
        else sendDockerError(res, pe.status, pe.message);
      });
      return;
    }
    counted('passthrough');
    this.relay(req, res);
  }

  private context(req: IncomingMessage, res: ServerResponse, route: Routed): InterceptContext {
    let bodyP: Promise<Buffer> | undefined;
    const body = () => (bodyP ??= readBody(req, BODY_RULES[route.name].maxBytes, this.limits.bodyIdleTimeoutMs));
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
      for (const k of Object.keys(h))
        if (k.toLowerCase() === 'content-length' || k.toLowerCase() === 'host') delete h[k];
      h.host = 'docker';
      if (body?.length) h['content-length'] = body.length;
      else if (method !== 'GET' && method !== 'HEAD') h['content-length'] = 0;
      const up = httpRequest(
        { ...upstreamTarget(this.opts.upstream), agent: this.agent, method, path, headers: h },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () =>
            resolve({
              status: r.statusCode ?? 502,
              statusMessage: r.statusMessage ?? '',
              headers: r.headers,
              body: Buffer.concat(chunks),
            }),
          );
          r.on('error', reject);
        },
      );
      up.on('error', (e) =>
        reject(
          new Error(
            `dockerd at ${describeUpstream(this.opts.upstream)} did not answer ${method} ${path}: ${e.message}`,
          ),
        ),
      );
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
    let stalledBody = false;
    up.on('error', (e) => {
      if (stalledBody) return;
      if (!res.headersSent) {
        this.opts.logger.warn({ url: req.url, err: e.message }, 'dockerd did not answer; told the client');
        sendDockerError(
          res,
          502,
          `calico: cannot reach dockerd at ${describeUpstream(this.opts.upstream)}: ${e.message}`,
        );
      } else res.destroy();
    });
    // A client that goes away (Ctrl-C on `logs -f`) ends the upstream stream too.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    const idleMs = this.limits.bodyIdleTimeoutMs;
    watchBodyIdle(req, idleMs, () => {
      // dockerd gets a cut-off upload, which it drops; the client is told why, if it can be.
      stalledBody = true;
      this.noteBodyTimeout(req);
      req.unpipe(up);
      up.destroy();
      if (res.headersSent) res.destroy();
      else sendDockerError(res, 408, stalled(idleMs).message);
    });
    req.pipe(up);
  }

  private noteBodyTimeout(req: IncomingMessage): void {
    const n = this.timeoutLog.note();
    if (n === undefined) return;
    this.opts.logger.info(
      { url: req.url, timeoutMs: this.limits.bodyIdleTimeoutMs, sinceLastLine: n },
      'a request body stalled; answered 408 and closed the connection',
    );
  }

  /** A request with `Connection: Upgrade`: see handleUpgrade. */
  private onUpgrade(req: IncomingMessage, client: Socket, head: Buffer): void {
    if (this.overCap.has(client)) {
      this.opts.onRequest?.('limit', 503);
      client.on('error', () => undefined);
      client.end(rawDockerError(503, 'Service Unavailable', this.capMessage()));
      return;
    }
    handleUpgrade(
      {
        upstream: this.opts.upstream,
        logger: this.opts.logger,
        bodyIdleTimeoutMs: this.limits.bodyIdleTimeoutMs,
        track: (s) => {
          this.sockets.add(s);
          s.on('close', () => this.sockets.delete(s));
        },
        onAnswer: (route, status) => this.opts.onRequest?.(route, status),
      },
      req,
      client,
      head,
    );
  }
}

/**
 * Calls onIdle when the client sends nothing of a body being read for ms. A read held back by
 * the proxy's side (a paused stream: dockerd is slow to take the upload) is not the client's.
 */
function watchBodyIdle(req: IncomingMessage, ms: number, onIdle: () => void): void {
  if (req.complete) return;
  const timer = setTimeout(() => {
    if (req.complete || req.destroyed) return;
    if (req.isPaused() || req.readableLength > 0) return void timer.refresh();
    onIdle();
  }, ms);
  const refresh = () => timer.refresh();
  const stop = () => {
    clearTimeout(timer);
    req.off('data', refresh);
  };
  req.on('data', refresh);
  req.once('end', stop);
  req.once('close', stop);
}

/** How much of an oversize body is read and dropped after its 413, and for how long at most. */
const DRAIN_BYTES = 64 * 1024 * 1024;
const DRAIN_MS = 10_000;
/** A client that has stopped sending (it read the 413) is let go after this much quiet. */
const DRAIN_QUIET_MS = 500;

/**
 * A 413 while the client is still sending: closing at once would leave its bytes unread, and
 * the kernel answers unread bytes on close with a reset that discards the 413 before the client
 * reads it. So the rest of the body is read and dropped (within bounds) and only then does the
 * connection end. Node would close it right after the answer when the client asked for
 * `Connection: close`, so the answer is marked keep-alive and the end is ours.
 */
function answerThenDrain(req: IncomingMessage, res: ServerResponse, message: string): void {
  const socket = req.socket;
  let read = 0;
  let quiet: NodeJS.Timeout | undefined;
  const finish = () => {
    clearTimeout(cap);
    clearTimeout(quiet);
    socket.end();
    setTimeout(() => socket.destroy(), 1_000).unref();
  };
  const cap = setTimeout(() => socket.destroy(), DRAIN_MS);
  cap.unref();
  const rearm = () => {
    clearTimeout(quiet);
    quiet = setTimeout(finish, DRAIN_QUIET_MS);
    quiet.unref();
  };
  req.on('data', (c: Buffer) => {
    read += c.length;
    if (read > DRAIN_BYTES) socket.destroy();
    else rearm();
  });
  req.once('end', finish);
  req.resume();
  rearm();
  const body = JSON.stringify({ message });
  res.shouldKeepAlive = true;
  res.writeHead(413, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function stalled(ms: number): ProxyError {
  return new ProxyError('TIMEOUT', `calico: the request body stalled: no bytes for ${ms / 1000} s`);
}

function readBody(req: IncomingMessage, max: number, idleMs: number): Promise<Buffer> {
  const tooLarge = () =>
    new ProxyError('TOO_LARGE', `calico: the request body is over ${max} bytes, the limit for this call`);
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
    watchBodyIdle(req, idleMs, () => {
      req.off('data', onData);
      reject(stalled(idleMs));
    });
  });
}
