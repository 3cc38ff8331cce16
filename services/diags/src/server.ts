import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import {
  authenticateRequest,
  httpsServerOptions,
  silentLogger,
  type ApiServerTls,
  type Datastore,
  type LeaseKeeper,
  type Logger,
} from '@calico/datastore';
import { diagsUrlKey, encodeUrl } from '@calico/keyspace';
import { archiveBaseName, archiveStream } from './archive.js';
import type { Collection } from './collect.js';

export interface DiagsServerOptions {
  host: string;
  port: number;
  /** Collects this host's diags; called once per GET /diags. */
  collect: () => Promise<Collection>;
  /**
   * The cluster API token GET /diags must carry (Authorization: Bearer); read on each request, so
   * a token copied to the host later needs no restart. Throws when it cannot be read.
   */
  apiToken: () => string;
  /** https with these files; with a CA, a client certificate of it authenticates as the token does. */
  tls?: ApiServerTls | undefined;
  /** Requests that may wait while one collection runs (2); more are answered 503 with Retry-After. */
  maxWaiting?: number;
  logger?: Logger;
}

/** Seconds a client turned away by a full queue is told to wait: about one collection. */
const RETRY_AFTER_S = 10;

/**
 * A host's diags over HTTP: `GET /diags` collects on request and streams the host's .tar.gz;
 * `GET /healthz` answers "ok". GET /diags needs the cluster API token. Requests are served one
 * collection at a time with a bounded queue, so a burst of requests cannot run dozens of
 * iptables-save at once on the host, nor pile up collections in memory.
 */
export class DiagsServer {
  private server: Server | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private pendingCount = 0;
  private readonly log: Logger;

  constructor(private readonly opts: DiagsServerOptions) {
    this.log = opts.logger ?? silentLogger;
  }

  async start(): Promise<string> {
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    const tls = this.opts.tls;
    let s: Server;
    if (tls) {
      const https = createHttpsServer(httpsServerOptions(tls), handler);
      // Plain http to the https port, or a client that refuses our certificate: no request is read.
      let last = 0;
      https.on('tlsClientError', (err, socket) => {
        if (Date.now() - last < 10_000) return;
        last = Date.now();
        const context = { peer: socket.remoteAddress, err: err.message };
        this.log.warn(context, 'TLS handshake refused (at most one line per 10 s)');
      });
      s = https;
    } else s = createServer(handler);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.server = s;
    return this.url;
  }

  /** Requests for a collection: the one running and those waiting for it. */
  get pending(): number {
    return this.pendingCount;
  }

  /** http(s)://<address>:<port>/ as it is bound (the real port when 0 was asked for). */
  get url(): string {
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (!a) throw new Error('diags server not started');
    const host = a.family === 'IPv6' || a.address.includes(':') ? `[${a.address}]` : a.address;
    return `${this.opts.tls ? 'https' : 'http'}://${host}:${a.port}/`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (req.method !== 'GET' || path !== '/diags') {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ message: "GET /diags for this host's archive, GET /healthz" }));
      return;
    }
    const json = (status: number, message: string, headers: Record<string, string> = {}) =>
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify({ message }));
    let token: string | undefined;
    let tokenError: unknown;
    try {
      token = this.opts.apiToken();
    } catch (e) {
      tokenError = e;
    }
    const auth = authenticateRequest(req, token);
    if (!auth.ok && tokenError !== undefined && !auth.badCertificate && req.headers.authorization !== undefined) {
      this.log.error({ err: String(tokenError) }, 'cannot read the cluster API token; answered 503');
      json(503, `this host's diags service cannot check the API token: ${(tokenError as Error).message}`);
      return;
    }
    if (!auth.ok) {
      const context = { peer: req.socket.remoteAddress, why: auth.reason };
      this.log.warn(context, 'GET /diags without the cluster API token or a client certificate; answered 401');
      const cert = this.opts.tls?.ca ? ', or a client certificate of the diags CA (--tls-ca)' : '';
      const why =
        'GET /diags needs "Authorization: Bearer <token>" with the cluster API token ' +
        `(/etc/calico/api-token, made by calico-master)${cert}; ${auth.reason}`;
      json(401, why, { 'www-authenticate': 'Bearer realm="calico-diags"' });
      return;
    }
    if (this.pendingCount > (this.opts.maxWaiting ?? 2)) {
      this.log.warn({ peer: req.socket.remoteAddress, pending: this.pendingCount }, 'diags queue full; answered 503');
      const why = `a collection is running and ${this.pendingCount - 1} more wait; try again later`;
      json(503, why, { 'retry-after': String(RETRY_AFTER_S) });
      return;
    }
    const t = performance.now();
    let c: Collection;
    this.pendingCount++;
    try {
      const run = this.queue.then(() => this.opts.collect());
      this.queue = run.catch(() => undefined);
      c = await run.finally(() => this.pendingCount--);
    } catch (e) {
      this.log.error({ err: String(e) }, 'collecting diags failed; answered 500, the service goes on');
      json(500, `collecting diags failed: ${(e as Error).message}`);
      return;
    }
    const top = archiveBaseName(c.host, c.createdAt);
    res.writeHead(200, {
      'content-type': 'application/gzip',
      'content-disposition': `attachment; filename="${top}.tar.gz"`,
      'x-calico-host': c.host,
    });
    try {
      await pipeline(archiveStream(top, { entries: c.entries }, c.createdAt), res);
      this.log.info(
        { peer: req.socket.remoteAddress, ms: Math.round(performance.now() - t), failed: c.summary.failed },
        'diags sent',
      );
    } catch (e) {
      // The client went away or the archive broke mid-stream: its tar will say so; we carry on.
      this.log.warn({ peer: req.socket.remoteAddress, err: String(e) }, 'diags stream ended early');
    }
  }
}

/**
 * Publishes `/calico/host/<host>/diags_url` under a lease: kept alive while the service runs,
 * revoked on a clean stop, and gone by itself one TTL after a crash.
 */
export async function registerDiagsUrl(
  ds: Datastore,
  host: string,
  url: string,
  ttlSeconds = 30,
): Promise<LeaseKeeper> {
  const keeper = ds.leaseKeeper({ ttlSeconds });
  await keeper.start();
  await keeper.put(diagsUrlKey(host), encodeUrl(url));
  return keeper;
}
