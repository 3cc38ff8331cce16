import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCa } from '@calico/testkit';
import {
  apiCall,
  apiClientTls,
  apiServerTls,
  authenticateRequest,
  httpsServerOptions,
  type ApiClientTls,
} from './apiTls.js';

/** authenticateRequest behind a real https server on loopback, with certificates made by openssl. */
describe('who a request over TLS comes from', () => {
  const TOKEN = 't'.repeat(43);
  let dir: string;
  let server: Server;
  let url: URL;
  let good: ApiClientTls;
  let stranger: ApiClientTls;
  let caOnly: ApiClientTls;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'calico-api-tls-'));
    const ca = await TestCa.create(join(dir, 'ca'), 'api-ca');
    const other = await TestCa.create(join(dir, 'other'), 'other-ca');
    const s = await ca.issue('server', { server: { ips: ['127.0.0.1'] } });
    const c = await ca.issue('orchestrator', { client: true });
    const o = await other.issue('stranger', { client: true });
    const tls = apiServerTls({ tlsCert: s.cert, tlsKey: s.key, tlsCa: ca.cert });
    if (!tls.ok || !tls.value) throw new Error(`server TLS: ${JSON.stringify(tls)}`);
    good = apiClientTls({ apiCa: ca.cert, apiCert: c.cert, apiKey: c.key }, {})!;
    stranger = { ca: await readFile(ca.cert), cert: await readFile(o.cert), key: await readFile(o.key) };
    caOnly = apiClientTls({ apiCa: ca.cert }, {})!;
    server = createServer(httpsServerOptions(tls.value), (req, res) => {
      res.end(JSON.stringify(authenticateRequest(req, TOKEN)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const who = async (o: Parameters<typeof apiCall>[1]) => JSON.parse((await apiCall(url, o)).body) as unknown;

  it('a certificate of the CA authenticates alone; the token does too; neither does not', async () => {
    expect(await who({ tls: good })).toEqual({ ok: true, by: 'certificate', subject: 'orchestrator' });
    expect(await who({ tls: caOnly, token: TOKEN })).toEqual({ ok: true, by: 'token' });
    expect(await who({ tls: caOnly })).toEqual({ ok: false, reason: 'no token and no client certificate' });
    expect(await who({ tls: caOnly, token: `${TOKEN}x` })).toEqual({
      ok: false,
      reason: 'the token is not the cluster API token',
    });
  });

  it('a certificate of another CA is refused, with the token too; the same token alone is taken', async () => {
    const refused = {
      ok: false,
      reason: expect.stringMatching(/^the client certificate is not one of this server's CA \(/),
      badCertificate: true,
    };
    expect(await who({ tls: stranger })).toEqual(refused);
    expect(await who({ tls: stranger, token: TOKEN })).toEqual(refused);
    expect(await who({ tls: caOnly, token: TOKEN })).toEqual({ ok: true, by: 'token' });
  });

  it('a client verifies the server: without the CA it refuses it; plain http gets no answer', async () => {
    await expect(apiCall(url, { token: TOKEN })).rejects.toThrow(/certificate/);
    const plain = new URL(url);
    plain.protocol = 'http:';
    await expect(apiCall(plain, { token: TOKEN, timeoutMs: 5_000 })).rejects.toThrow();
    // The control: the same call with the CA is answered.
    expect((await apiCall(url, { tls: caOnly, token: TOKEN })).status).toBe(200);
  });
});
