// Benchmark of what authentication costs the master API. Two calico-masters on one etcd, each
// started by bench/dist/masterRunner.js as calico-master's main.ts starts it, and each with a second,
// plain-http listener that serves the same API with no check (MasterDeps.unauthenticatedApi, which
// no flag reaches): the baseline, in the same process as the check it is compared with.
//   http master  token over http (as calico-master runs by default) | its unchecked listener
//   tls master   --tls-cert/--tls-key/--tls-ca: https with the token, and with a client certificate
//                instead | its unchecked listener
// The unchecked listeners of the two masters, compared with each other, are the control: what
// two processes doing the same thing differ by. The same reads and writes go to every client,
// interleaved call by call (the order rotates), over one keep-alive connection per client as an
// orchestrator makes them. Prints p50/p99 and ratios; asserts nothing.
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiCall, readApiToken, type ApiCallOptions } from '@calico/datastore';
import { Etcd, ManagedProcess, TestCa, freePort, waitFor } from '@calico/testkit';
import { fmtMs, percentile, ratio, row } from './stats.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const WRITES = Number(process.env.BENCH_WRITES ?? 500);
const GROUPS = Number(process.env.BENCH_GROUPS ?? 100);
const RUNNER = new URL('./masterRunner.js', import.meta.url).pathname;
const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);

/** One way of calling the API: a master, a connection, and what the call carries. */
interface Client {
  name: string;
  base: string;
  opts: ApiCallOptions;
}

async function call(c: Client, method: string, path: string, body?: unknown): Promise<{ ms: number; json: unknown }> {
  const opts: ApiCallOptions = { ...c.opts, method };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers = { 'content-type': 'application/json' };
  }
  const t = process.hrtime.bigint();
  const r = await apiCall(new URL(path, c.base), opts);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status >= 300) throw new Error(`${c.name}: ${method} ${path}: ${r.status} ${r.body}`);
  return { ms, json: JSON.parse(r.body) as unknown };
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'calico-bench-master-'));
  const procs: ManagedProcess[] = [];
  let etcd: Etcd | undefined;
  const agents: (HttpAgent | HttpsAgent)[] = [];
  const stop = async () => {
    for (const p of procs) await p.stop();
    await etcd?.stop();
    for (const a of agents) a.destroy();
    await rm(work, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => void stop().finally(() => process.exit(130)));
  }
  const load0 = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  try {
    say(
      'starting etcd and two masters on loopback, each with an unchecked listener: the token over http, and TLS with a client CA',
    );
    etcd = await Etcd.start({ dir: join(work, 'etcd') });
    const ca = await TestCa.create(join(work, 'tls'));
    const server = await ca.issue('master', { server: { ips: ['127.0.0.1'] } });
    const client = await ca.issue('orchestrator', { client: true });
    const tokenFile = join(work, 'api-token');
    const start = async (name: string, extra: string[] = []): Promise<{ base: string; bare: string }> => {
      const port = await freePort('127.0.0.1');
      const barePort = await freePort('127.0.0.1');
      const argv = [
        process.execPath,
        RUNNER,
        String(barePort),
        '--ip=127.0.0.1',
        `--listen=127.0.0.1:${port}`,
        `--etcd=${etcd!.endpoints}`,
        `--api-token-file=${tokenFile}`,
        '--log-level=warn',
        ...extra,
      ];
      const p = new ManagedProcess({ name, argv, logFile: join(work, `${name}.log`) });
      procs.push(p);
      const base = `${extra.length ? 'https' : 'http'}://127.0.0.1:${port}/`;
      const tls = { ca: await readFile(ca.cert) };
      await waitFor(
        `master ${name} to answer`,
        async () => {
          if (!p.running) throw new Error(`master ${name} exited`);
          return (
            (await apiCall(new URL('healthz', base), { tls }).then(
              (r) => r.status,
              () => 0,
            )) === 200
          );
        },
        30_000,
        () => p.log().slice(-2000),
      );
      return { base, bare: `http://127.0.0.1:${barePort}/` };
    };
    // The http master first: it makes the token file the other reads.
    const httpMaster = await start('http');
    const tlsFlags = [`--tls-cert=${server.cert}`, `--tls-key=${server.key}`, `--tls-ca=${ca.cert}`];
    const tlsMaster = await start('tls', tlsFlags);
    const tokenBase = httpMaster.base;
    const tlsBase = tlsMaster.base;
    const token = readApiToken(tokenFile);
    const caPem = await readFile(ca.cert);
    const certTls = { ca: caPem, cert: await readFile(client.cert), key: await readFile(client.key) };
    const http = () => {
      const a = new HttpAgent({ keepAlive: true, maxSockets: 1 });
      agents.push(a);
      return a;
    };
    const https = (tls: object) => {
      const a = new HttpsAgent({ keepAlive: true, maxSockets: 1, ...tls });
      agents.push(a);
      return a;
    };
    const clients: Client[] = [
      { name: 'none', base: httpMaster.bare, opts: { agent: http() } },
      { name: 'token', base: tokenBase, opts: { agent: http(), token } },
      { name: 'tls-none', base: tlsMaster.bare, opts: { agent: http() } },
      { name: 'tls+token', base: tlsBase, opts: { agent: https({ ca: caPem }), token } },
      { name: 'tls+cert', base: tlsBase, opts: { agent: https(certTls) } },
    ];
    // Control: without credentials each master refuses on its API, and answers on its unchecked listener.
    const refused = await apiCall(new URL('v1/groups', tokenBase));
    const refusedTls = await apiCall(new URL('v1/groups', tlsBase), { tls: { ca: caPem } });
    const bareStatus = [
      (await apiCall(new URL('v1/groups', httpMaster.bare))).status,
      (await apiCall(new URL('v1/groups', tlsMaster.bare))).status,
    ];
    say(
      `without credentials: http master ${refused.status}, TLS master ${refusedTls.status}; their unchecked listeners ${bareStatus.join(', ')}`,
    );
    if (refused.status !== 401 || refusedTls.status !== 401 || bareStatus.some((x) => x !== 200))
      throw new Error('the masters do not check as they should; nothing measured');

    say(`seeding ${GROUPS} groups; warming up each client`);
    for (let i = 0; i < GROUPS; i++) await call(clients[1]!, 'POST', 'v1/groups', { name: `seed-${i}` });
    for (const c of clients) for (let i = 0; i < 50; i++) await call(c, 'GET', 'v1/groups');

    const samples = new Map<string, Map<string, number[]>>();
    const add = (what: string, c: Client, ms: number) => {
      const byClient = samples.get(what) ?? new Map<string, number[]>();
      samples.set(what, byClient);
      const s = byClient.get(c.name) ?? [];
      byClient.set(c.name, s);
      s.push(ms);
    };
    /** The clients in an order that moves by one each round, so none is always first. */
    const rotated = (i: number) => clients.map((_, k) => clients[(i + k) % clients.length]!);

    say(`reads: GET /v1/groups and GET /v1/groups/{name}, ${CALLS} each per client, interleaved`);
    for (let i = 0; i < CALLS; i++) {
      for (const c of rotated(i)) add('GET /v1/groups', c, (await call(c, 'GET', 'v1/groups')).ms);
      const one = `v1/groups/seed-${i % GROUPS}`;
      for (const c of rotated(i)) add('GET /v1/groups/{name}', c, (await call(c, 'GET', one)).ms);
    }
    say(`writes: POST /v1/groups then DELETE /v1/groups/{id}, ${WRITES} each per client, interleaved`);
    for (let i = 0; i < WRITES; i++) {
      for (const c of rotated(i)) {
        const made = await call(c, 'POST', 'v1/groups', { name: `bench-${c.name}-${i}` });
        add('POST /v1/groups', c, made.ms);
        const id = (made.json as { id: string }).id;
        add('DELETE /v1/groups/{id}', c, (await call(c, 'DELETE', `v1/groups/${encodeURIComponent(id)}`)).ms);
      }
    }

    const results: Record<string, Record<string, { p50_ms: number; p99_ms: number; n: number }>> = {};
    for (const [what, byClient] of samples) {
      results[what] = Object.fromEntries(
        [...byClient].map(([name, s]) => [name, { p50_ms: percentile(s, 50), p99_ms: percentile(s, 99), n: s.length }]),
      );
    }
    const pair = (x: { p50_ms: number; p99_ms: number }) => `${fmtMs(x.p50_ms)} / ${fmtMs(x.p99_ms)}`;
    const ratios = (x: { p50_ms: number; p99_ms: number }, b: { p50_ms: number; p99_ms: number }) =>
      `${ratio(x.p50_ms, b.p50_ms)} / ${ratio(x.p99_ms, b.p99_ms)}`;
    const w = [24, 20, 20, 18, 20];
    const load1 = loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
    console.log(`p50 / p99 of each call; ratios p50 / p99. Load averages: ${load0} at the start, ${load1} at the end`);
    console.log(
      row(
        ['call', 'no check (http)', 'token (http)', 'token / no check', 'control: no check, tls master / http master'],
        w,
      ),
    );
    for (const [what, r] of Object.entries(results)) {
      console.log(
        row([what, pair(r.none!), pair(r.token!), ratios(r.token!, r.none!), ratios(r['tls-none']!, r.none!)], w),
      );
    }
    console.log('');
    const w2 = [24, 20, 18, 20, 18, 18];
    console.log(
      row(
        ['call (tls master)', 'https + token', 'vs its no check', 'https + cert', 'vs its no check', 'cert / token'],
        w2,
      ),
    );
    for (const [what, r] of Object.entries(results)) {
      const [bare, tlsTok, tlsCert] = [r['tls-none']!, r['tls+token']!, r['tls+cert']!];
      console.log(
        row(
          [what, pair(tlsTok), ratios(tlsTok, bare), pair(tlsCert), ratios(tlsCert, bare), ratios(tlsCert, tlsTok)],
          w2,
        ),
      );
    }
    console.log(
      JSON.stringify({
        bench: 'master',
        when: new Date().toISOString(),
        calls: CALLS,
        writes: WRITES,
        groups: GROUPS,
        load: { start: load0, end: load1 },
        refusedWithout: { token: refused.status, tls: refusedTls.status, uncheckedListeners: bareStatus },
        results,
      }),
    );
  } finally {
    await stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
