import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, type CalicoClient } from '@calico/client';
import { createLogger } from '@calico/log';
import { createApiHandler } from './api.js';
import { createMetrics } from './metrics.js';

/** The handler over loopback with a fake client: the HTTP edge alone, no etcd. */
describe('API edge: errors, bodies and counting', () => {
  let server: Server;
  let base = '';
  const metrics = createMetrics({ view: () => null, inSync: () => false, gcPending: () => 0 });
  const grpcDown = Object.assign(new Error('14 UNAVAILABLE: connection refused'), { name: 'GRPCConnectFailedError' });
  const fake = {
    findGroup: async (g: string) => {
      if (g === 'boom') throw new TypeError('unexpected');
      if (g === 'down') throw grpcDown;
      throw new ClientError('AMBIGUOUS', `2 groups are named "${g}"`);
    },
    addGroup: async (name: string) => ({ id: 'g1', name, members: [], inbound: [], outbound: [] }),
    removeHost: async (host: string, opts: { removeEndpoints: boolean }) => {
      removals.push([host, opts.removeEndpoints]);
      throw new ClientError('CONFLICT', `host ${host} is alive`);
    },
  } as unknown as CalicoClient;
  const removals: [string, boolean][] = [];
  const TOKEN = 'k'.repeat(43);
  const auth = { authorization: `Bearer ${TOKEN}` };

  beforeAll(async () => {
    server = createServer(
      createApiHandler({
        client: fake,
        health: () => ({ ok: false, etcd: 'wait-for-datastore' }),
        metrics,
        logger: createLogger({ name: 't', level: 'silent' }),
        maxBodyBytes: 64,
        apiToken: TOKEN,
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const call = async (
    method: string,
    path: string,
    body?: string,
    headers: Record<string, string> = { ...auth, 'content-type': 'application/json' },
  ) => {
    const res = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body }) });
    return { status: res.status, json: (await res.json()) as unknown };
  };

  it.each<[string, string, string | undefined, number, unknown]>([
    ['GET', '/healthz', undefined, 503, { ok: false, etcd: 'wait-for-datastore' }],
    ['GET', '/v1/groups/x', undefined, 409, { error: { code: 'AMBIGUOUS', message: '2 groups are named "x"' } }],
    ['GET', '/v1/groups/boom', undefined, 500, { error: { code: 'INTERNAL', message: 'unexpected' } }],
    [
      'GET',
      '/v1/groups/down',
      undefined,
      503,
      { error: { code: 'UNAVAILABLE', message: expect.stringMatching(/^etcd did not answer/) } },
    ],
    ['POST', '/v1/groups', '{"name": "web"}', 201, { id: 'g1', name: 'web', members: [], inbound: [], outbound: [] }],
    [
      'POST',
      '/v1/groups',
      '{"name": "web"',
      400,
      { error: { code: 'INVALID', message: expect.stringMatching(/^request body is not JSON/) } },
    ],
    [
      'POST',
      '/v1/groups',
      undefined,
      400,
      { error: { code: 'INVALID', message: 'request body is empty: send a JSON object' } },
    ],
    [
      'POST',
      '/v1/groups',
      JSON.stringify({ name: 'x'.repeat(100) }),
      413,
      { error: { code: 'PAYLOAD_TOO_LARGE', message: 'request body is larger than 64 bytes' } },
    ],
    [
      'GET',
      '/v1/groups/%zz',
      undefined,
      400,
      { error: { code: 'INVALID', message: 'path segment "%zz" is not valid percent-encoding' } },
    ],
    [
      'GET',
      '//v1/groups',
      undefined,
      404,
      { error: { code: 'NOT_FOUND', message: 'no route GET //v1/groups (docs/master-api.md lists them)' } },
    ],
    [
      'PATCH',
      '/v1/pools',
      undefined,
      405,
      { error: { code: 'METHOD_NOT_ALLOWED', message: 'PATCH is not allowed on /v1/pools; use GET or POST' } },
    ],
  ])('%s %s → %i', async (method, path, body, status, json) => {
    expect(await call(method, path, body)).toEqual({ status, json });
  });

  it('every route but GET /healthz wants the token; the same call with it is answered', async () => {
    const unauthorized = {
      status: 401,
      json: {
        error: {
          code: 'UNAUTHORIZED',
          message: expect.stringMatching(/^this API needs "Authorization: Bearer <token>"/),
        },
      },
    };
    for (const path of ['/v1/groups/x', '/metrics', '/no/such/route']) {
      expect(await call('GET', path, undefined, {})).toEqual(unauthorized);
      expect(await call('GET', path, undefined, { authorization: `Bearer ${TOKEN}x` })).toEqual(unauthorized);
      expect(await call('GET', path, undefined, { authorization: `Basic ${TOKEN}` })).toEqual(unauthorized);
    }
    const res = await fetch(`${base}/v1/groups/x`);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="calico-master"');
    expect(await call('POST', '/v1/groups', '{"name": "web"}', { 'content-type': 'application/json' })).toEqual(
      unauthorized,
    );
    // Control: the token opens the same routes; /healthz needs none.
    expect(await call('GET', '/v1/groups/x', undefined, auth)).toMatchObject({ status: 409 });
    expect(await call('POST', '/v1/groups', '{"name": "web"}')).toMatchObject({ status: 201 });
    expect(await call('GET', '/healthz', undefined, {})).toMatchObject({ status: 503 });
  });

  it('a body that is not sent as application/json is a 415 (a cross-site form post cannot make one)', async () => {
    const form = { ...auth, 'content-type': 'application/x-www-form-urlencoded' };
    const refused = {
      status: 415,
      json: {
        error: {
          code: 'UNSUPPORTED_MEDIA_TYPE',
          message: 'a POST body must be sent as "Content-Type: application/json"',
        },
      },
    };
    expect(await call('POST', '/v1/groups', '{"name": "web"}', form)).toEqual(refused);
    expect(await call('POST', '/v1/groups', '{"name": "web"}', { ...auth, 'content-type': 'text/plain' })).toEqual(
      refused,
    );
    expect(await call('POST', '/v1/groups', '{"name": "web"}', auth)).toEqual(refused);
    // Control: the same body as JSON, with or without a charset, is taken.
    expect(
      await call('POST', '/v1/groups', '{"name": "web"}', {
        ...auth,
        'content-type': 'Application/JSON; charset=utf-8',
      }),
    ).toMatchObject({ status: 201 });
  });

  it('DELETE /v1/hosts/{host}: a bad name or query is a 400 that never reaches the client; a good one does', async () => {
    expect(await call('DELETE', '/v1/hosts/H2')).toEqual({
      status: 400,
      json: {
        error: { code: 'INVALID', message: expect.stringMatching(/^host name "H2" is not valid; use lowercase/) },
      },
    });
    expect(await call('DELETE', '/v1/hosts/h2%2Falive')).toMatchObject({ status: 400 });
    expect(await call('DELETE', '/v1/hosts/h2?removeEndpoints=yes')).toEqual({
      status: 400,
      json: { error: { code: 'INVALID', message: 'removeEndpoints "yes" must be true or false' } },
    });
    expect(removals).toEqual([]);
    // Control: a good name and query reach the client, whose refusal is answered as it says.
    expect(await call('DELETE', '/v1/hosts/h2?removeEndpoints=true')).toEqual({
      status: 409,
      json: { error: { code: 'CONFLICT', message: 'host h2 is alive' } },
    });
    expect(removals).toEqual([['h2', true]]);
  });

  it('counts requests by route template and status', async () => {
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^calico_master_api_requests_total\{route="\/v1\/groups\/\{group\}",code="409"\} 2$/m);
    expect(text).toMatch(/^calico_master_api_requests_total\{route="\/healthz",code="503"\} 2$/m);
  });
});
