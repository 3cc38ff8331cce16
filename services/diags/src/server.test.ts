import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Collection } from './collect.js';
import { DiagsServer } from './server.js';

const TOKEN = 't'.repeat(43);
const auth = { authorization: `Bearer ${TOKEN}` };

/** A collection that finishes when the test says so, to hold the queue in a known state. */
function gatedCollect() {
  const gates: (() => void)[] = [];
  let running = 0;
  let most = 0;
  const collect = async (): Promise<Collection> => {
    running++;
    most = Math.max(most, running);
    await new Promise<void>((r) => gates.push(r));
    running--;
    const summary = { failed: [] } as unknown as Collection['summary'];
    return {
      host: 'h1',
      createdAt: new Date('2026-12-01T00:00:00Z'),
      entries: [{ name: 'summary.json', data: Buffer.from('{}') }],
      summary,
    };
  };
  return { collect, gates, most: () => most };
}

describe('DiagsServer: the token and a bounded queue', () => {
  const gated = gatedCollect();
  let tokenError: Error | undefined;
  const server = new DiagsServer({
    host: '127.0.0.1',
    port: 0,
    collect: gated.collect,
    maxWaiting: 2,
    apiToken: () => {
      if (tokenError) throw tokenError;
      return TOKEN;
    },
  });
  let url = '';
  beforeAll(async () => {
    url = new URL('diags', await server.start()).href;
  });
  afterAll(() => server.stop());

  const until = async (cond: () => boolean) => {
    while (!cond()) await new Promise((r) => setTimeout(r, 5));
  };

  it('answers 401 without the token or with a wrong one, and collects with it', async () => {
    for (const headers of [{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: TOKEN }] as Record<
      string,
      string
    >[]) {
      const r = await fetch(url, { headers });
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer realm="calico-diags"');
    }
    expect(gated.gates).toHaveLength(0);
    const ok = fetch(url, { headers: auth });
    await until(() => gated.gates.length === 1);
    gated.gates.shift()!();
    const r = await ok;
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/gzip');
    await r.arrayBuffer();
  });

  it('runs one collection at a time, lets 2 wait, and answers 503 with Retry-After beyond', async () => {
    const first = [fetch(url, { headers: auth }), fetch(url, { headers: auth }), fetch(url, { headers: auth })];
    await until(() => server.pending === 3 && gated.gates.length === 1);
    // One runs, two wait: the fourth and fifth are turned away at once.
    for (let i = 0; i < 2; i++) {
      const r = await fetch(url, { headers: auth });
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('10');
      expect(((await r.json()) as { message: string }).message).toBe(
        'a collection is running and 2 more wait; try again later',
      );
    }
    for (let done = 0; done < 3; done++) {
      await until(() => gated.gates.length === 1);
      gated.gates.shift()!();
    }
    for (const r of await Promise.all(first)) {
      expect(r.status).toBe(200);
      await r.arrayBuffer();
    }
    expect(gated.most()).toBe(1);
    // Control: with the queue drained, the same request is served again.
    const again = fetch(url, { headers: auth });
    await until(() => gated.gates.length === 1);
    gated.gates.shift()!();
    expect((await again).status).toBe(200);
  });

  it('answers 503 naming the reason when the token file cannot be read', async () => {
    tokenError = new Error('no API token file at /x');
    const r = await fetch(url, { headers: auth });
    tokenError = undefined;
    expect(r.status).toBe(503);
    expect(((await r.json()) as { message: string }).message).toBe(
      "this host's diags service cannot check the API token: no API token file at /x",
    );
  });

  it('keeps /healthz open', async () => {
    expect((await fetch(new URL('healthz', url))).status).toBe(200);
  });
});
