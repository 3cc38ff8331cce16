/**
 * The HTTP JSON API: node:http, a route table, and handlers that only translate HTTP to
 * CalicoClient calls (the same operations calicoctl performs), so both behave alike.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CalicoClient, HostInfo } from '@calico/client';
import { authenticateRequest, type SyncStatus } from '@calico/datastore';
import type { Logger } from '@calico/log';
import { ApiError, toApiError } from './errors.js';
import type { MasterMetrics } from './metrics.js';
import { matchRoute, type Route } from './router.js';
import {
  parseCheckQuery,
  parseDirection,
  parseGroupBody,
  parseHostParam,
  parseJsonObject,
  parseMemberBody,
  parsePoolBody,
  parsePoolParam,
  parseRuleBody,
  parseRemoveHostQuery,
  parseRuleIndex,
} from './validate.js';

export interface ApiDeps {
  client: CalicoClient;
  /** ok: the master's synced copy of etcd can be trusted; etcd: its syncer's status. Answers /healthz without asking etcd. */
  health: () => { ok: boolean; etcd: SyncStatus };
  metrics: MasterMetrics;
  logger: Logger;
  /** Down hosts → since when (ms) as the master saw it, null when it does not know. */
  hostsDown?: () => ReadonlyMap<string, number | null>;
  /** Largest request body accepted (bytes); 1 MiB by default. */
  maxBodyBytes?: number;
  /**
   * The cluster API token: every route but GET /healthz wants `Authorization: Bearer <it>`, or,
   * over https with a CA, a client certificate of that CA.
   */
  apiToken: string;
  /** Replaces that check (the master's bench-only switch); by default authenticateRequest. */
  authenticate?: (req: IncomingMessage) => { ok: true } | { ok: false; reason: string };
  /** Client certificates of a CA are taken (https with --tls-ca): the 401 says so. */
  clientCertificates?: boolean;
}

/** Routes anyone may call: load balancers and `calicoctl master` ask whether the master is up. */
const OPEN_ROUTES = new Set(['GET /healthz']);
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** `application/json`, with or without parameters (charset): anything else is not JSON to us. */
function isJsonContentType(header: string | undefined): boolean {
  return (header ?? '').split(';')[0]!.trim().toLowerCase() === 'application/json';
}

export interface RequestContext {
  params: Record<string, string>;
  query: URLSearchParams;
  /** The body as a JSON object (read on demand). */
  body: () => Promise<Record<string, unknown>>;
}

export interface Reply {
  status: number;
  body: unknown;
  /** A text body with this content type instead of JSON (the metrics page). */
  contentType?: string;
  headers?: Record<string, string>;
}

export type Handler = (ctx: RequestContext) => Promise<Reply>;

const ok = (body: unknown): Reply => ({ status: 200, body });
const created = (body: unknown, location?: string): Reply => ({
  status: 201,
  body,
  ...(location ? { headers: { location } } : {}),
});

export function apiRoutes(deps: ApiDeps): Route<Handler>[] {
  const c = deps.client;
  /** When a down host went down, as the master saw it (ISO), or null. */
  const downSince = (host: string): string | null => {
    const t = deps.hostsDown?.().get(host);
    return t === undefined || t === null ? null : new Date(t).toISOString();
  };
  const hostResource = (h: HostInfo) => ({ ...h, downSince: h.state === 'down' ? downSince(h.name) : null });
  const r = (method: Route<Handler>['method'], path: string, handler: Handler): Route<Handler> => ({
    method,
    path,
    handler,
  });
  return [
    r('GET', '/healthz', async () => {
      const h = deps.health();
      return { status: h.ok ? 200 : 503, body: h };
    }),
    r('GET', '/metrics', async () => ({
      status: 200,
      body: await deps.metrics.registry.metrics(),
      contentType: deps.metrics.registry.contentType,
    })),

    r('GET', '/v1/groups', async () => {
      const v = await c.groupsView();
      return ok({ revision: v.revision, groups: await c.listGroups(v) });
    }),
    r('POST', '/v1/groups', async (ctx) => {
      const b = parseGroupBody(await ctx.body());
      const g = await c.addGroup(b.name, b.id !== undefined ? { id: b.id } : {});
      return created(g, `/v1/groups/${encodeURIComponent(g.id)}`);
    }),
    r('GET', '/v1/groups/{group}', async ({ params }) => ok(await c.findGroup(params.group!))),
    r('DELETE', '/v1/groups/{group}', async ({ params }) => ok(await c.removeGroup(params.group!))),

    r('GET', '/v1/groups/{group}/rules', async ({ params }) => {
      const g = await c.findGroup(params.group!);
      return ok({
        groupId: g.id,
        name: g.name,
        inbound: g.inbound,
        outbound: g.outbound,
        inboundDefault: 'deny',
        outboundDefault: 'deny',
      });
    }),
    r('POST', '/v1/groups/{group}/rules/{direction}', async ({ params, body }) => {
      const direction = parseDirection(params.direction!);
      const rule = parseRuleBody(await body());
      const res = await c.addRule(params.group!, direction, rule);
      return created(
        { ...res, direction },
        `/v1/groups/${encodeURIComponent(res.groupId)}/rules/${direction}/${res.index}`,
      );
    }),
    r('DELETE', '/v1/groups/{group}/rules/{direction}/{index}', async ({ params }) => {
      const direction = parseDirection(params.direction!);
      const index = parseRuleIndex(params.index!);
      return ok({ ...(await c.removeRule(params.group!, direction, index)), direction, index });
    }),

    r('POST', '/v1/groups/{group}/members', async ({ params, body }) => {
      const t = parseMemberBody(await body());
      if ('endpoint' in t) {
        // An endpoint id only: never fall back to reading it as a container name.
        if (!(await c.hasEndpoint(t.endpoint))) {
          throw new ApiError(
            'NOT_FOUND',
            `no endpoint has the id "${t.endpoint}" (GET /v1/endpoints lists them; to add a membership before its endpoint exists, write the member key directly)`,
          );
        }
        return created(await c.addToGroup(t.endpoint, params.group!));
      }
      const w = await c.findContainer(t.container);
      return created(await c.addToGroup(w.containerId, params.group!));
    }),
    r('DELETE', '/v1/groups/{group}/members/{target}', async ({ params }) =>
      ok(await c.removeFromGroup(params.target!, params.group!)),
    ),

    r('GET', '/v1/hosts', async () => {
      const v = await c.view();
      return ok({ revision: v.revision, hosts: v.hosts.map(hostResource) });
    }),
    r('GET', '/v1/hosts/{host}', async ({ params }) => {
      const name = parseHostParam(params.host!);
      const v = await c.view();
      const h = v.hosts.find((x) => x.name === name);
      if (!h) throw new ApiError('NOT_FOUND', `no host "${name}" (GET /v1/hosts lists them)`);
      return ok({ revision: v.revision, ...hostResource(h) });
    }),
    r('DELETE', '/v1/hosts/{host}', async ({ params, query }) => {
      const name = parseHostParam(params.host!);
      return ok(await c.removeHost(name, parseRemoveHostQuery(query)));
    }),
    r('GET', '/v1/endpoints', async () => {
      const v = await c.view();
      return ok({ revision: v.revision, workloads: v.workloads });
    }),
    r('GET', '/v1/check', async ({ query }) => {
      const q = parseCheckQuery(query);
      return ok(await c.check(q.src, q.dst, { protocol: q.protocol, port: q.port }));
    }),

    r('GET', '/v1/pools', async () => {
      const v = await c.view();
      return ok({ revision: v.revision, ...v.pools });
    }),
    r('POST', '/v1/pools', async ({ body }) => {
      const p = await c.addPool(parsePoolBody(await body()).cidr);
      return created(p, `/v1/pools/${encodeURIComponent(p.cidr)}`);
    }),
    r('DELETE', '/v1/pools/{cidr}', async ({ params }) => ok(await c.removePool(parsePoolParam(params.cidr!)))),

    r('GET', '/v1/problems', async () => {
      const v = await c.view();
      const notices = v.notices.map((n) => (n.kind === 'host-down' ? { ...n, since: downSince(n.host) } : n));
      return ok({ revision: v.revision, problems: v.problems, notices });
    }),
  ];
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () =>
      size > limit
        ? reject(new ApiError('PAYLOAD_TOO_LARGE', `request body is larger than ${limit} bytes`))
        : resolve(Buffer.concat(chunks).toString('utf8')),
    );
    req.on('error', reject);
  });
}

/** The request listener: route, run, answer JSON (errors as {"error": {code, message}}), count. */
export function createApiHandler(deps: ApiDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const routes = apiRoutes(deps);
  const limit = deps.maxBodyBytes ?? 1024 * 1024;
  return (req, res) => {
    const started = Date.now();
    let route = 'unmatched';
    // Prefixed rather than resolved against a base, so a path like //x stays a path.
    const url = new URL(`http://calico-master${req.url?.startsWith('/') ? req.url : '/'}`);
    const answer = async (): Promise<Reply> => {
      try {
        // Before routing, so that without the token not even the list of routes is learnt.
        const open = OPEN_ROUTES.has(`${req.method} ${url.pathname}`);
        const check = deps.authenticate ?? ((r: IncomingMessage) => authenticateRequest(r, deps.apiToken));
        const auth = open ? { ok: true as const } : check(req);
        if (!auth.ok) {
          const cert = deps.clientCertificates ? ", or a client certificate of the master's CA (--tls-ca)" : '';
          const e = new ApiError(
            'UNAUTHORIZED',
            'this API needs "Authorization: Bearer <token>" with the cluster API token ' +
              `(the file /etc/calico/api-token, or --api-token-file, on the master)${cert}; ${auth.reason}`,
          );
          const headers = { 'www-authenticate': 'Bearer realm="calico-master"', connection: 'close' };
          return { status: e.status, body: e.toJSON(), headers };
        }
        const m = matchRoute(routes, req.method ?? 'GET', url.pathname);
        if (m.kind === 'not-found')
          throw new ApiError('NOT_FOUND', `no route ${req.method} ${url.pathname} (docs/master-api.md lists them)`);
        if (m.kind === 'method-not-allowed') {
          route = m.path;
          const e = new ApiError(
            'METHOD_NOT_ALLOWED',
            `${req.method} is not allowed on ${m.path}; use ${m.allow.join(' or ')}`,
          );
          return { status: e.status, body: e.toJSON(), headers: { allow: m.allow.join(', ') } };
        }
        route = m.route.path;
        // A browser may post a form cross-site without asking first; it cannot send application/json so.
        if (BODY_METHODS.has(req.method ?? '') && !isJsonContentType(req.headers['content-type'])) {
          throw new ApiError(
            'UNSUPPORTED_MEDIA_TYPE',
            `a ${req.method} body must be sent as "Content-Type: application/json"`,
          );
        }
        let body: Promise<Record<string, unknown>> | undefined;
        return await m.route.handler({
          params: m.params,
          query: url.searchParams,
          body: () => (body ??= readBody(req, limit).then(parseJsonObject)),
        });
      } catch (err) {
        const e = toApiError(err);
        if (e.code === 'INTERNAL')
          deps.logger.error(
            { method: req.method, path: url.pathname, err: e.cause instanceof Error ? e.cause.stack : String(e.cause) },
            'API request failed unexpectedly; answered 500',
          );
        return { status: e.status, body: e.toJSON() };
      }
    };
    void answer()
      .then((reply) => {
        const text = reply.contentType ? String(reply.body) : `${JSON.stringify(reply.body)}\n`;
        res.writeHead(reply.status, {
          'content-type': reply.contentType ?? 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(text),
          ...reply.headers,
        });
        res.end(text);
        // Drain an unread body so a keep-alive connection stays usable.
        if (!req.readableEnded) req.resume();
        deps.metrics.apiRequests.inc({ route, code: String(reply.status) });
        deps.logger.debug(
          { method: req.method, path: url.pathname, route, status: reply.status, ms: Date.now() - started },
          'API request',
        );
      })
      .catch((e: unknown) => {
        // Only a reply that cannot be written gets here; the client has most likely gone.
        deps.logger.warn(
          { method: req.method, path: url.pathname, err: String(e) },
          'could not write the API reply; dropping the connection',
        );
        res.destroy();
      });
  };
}
