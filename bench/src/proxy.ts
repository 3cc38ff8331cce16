// Benchmark of the node's Docker API proxy against dockerd itself, measured side by side in
// one run on one machine: networked `docker run -d` through the proxy vs `docker run -d
// --net none` straight to dockerd; `ps` and `inspect` API calls (1,000 each) and the same
// through the CLI; `docker logs` of a 100 MB stream; the cost of TLS: CLI `docker ps` through
// the proxy with --tlsverify vs dockerd's own --tlsverify listener. Prints ratios; asserts nothing.
import { request, Agent } from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevCluster } from '@calico/devcluster';
import { TestCa, freePort } from '@calico/testkit';
import { fmtMs, median, percentile, ratio, row, timed } from './stats.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 30);
const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const CLI_CALLS = Number(process.env.BENCH_CLI_CALLS ?? 1000);
const LOG_MB = Number(process.env.BENCH_LOG_MB ?? 100);
const TLS_CALLS = Number(process.env.BENCH_TLS_CALLS ?? 500);

function httpGet(agent: Agent, socketPath: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, agent, headers: { host: 'docker' } }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => (n += c.length));
      res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`${path}: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

async function main(): Promise<void> {
  const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);
  // One CA for both TLS listeners; dockerd's own on loopback, next to its unix socket.
  const tlsDir = await mkdtemp(join(tmpdir(), 'calico-bench-tls-'));
  const ca = await TestCa.create(tlsDir);
  const dockerdCert = await ca.issue('dockerd', { server: { ips: ['127.0.0.1'] } });
  const certPath = await ca.dockerCertPath(join(tlsDir, 'client'));
  const dockerdTlsPort = await freePort();
  say('starting dockerd (with a --tlsverify listener), etcd and one namespace host with calico-node');
  const cluster = await DevCluster.start({
    hosts: ['h1'],
    logLevel: 'warn',
    dockerdArgs: [
      `--host=tcp://127.0.0.1:${dockerdTlsPort}`,
      '--tlsverify',
      `--tlscacert=${ca.cert}`,
      `--tlscert=${dockerdCert.cert}`,
      `--tlskey=${dockerdCert.key}`,
    ],
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => void cluster.stop().finally(() => process.exit(130)));
  }
  const h1 = cluster.host('h1');
  const direct = (args: string[]) => cluster.dockerd.docker(args);
  const results: Record<string, unknown> = {};
  try {
    // 1. docker run -d: networked through the proxy vs --net none direct, interleaved.
    say(`docker run -d, ${RUNS} each, interleaved`);
    const tDirect: number[] = [];
    const tProxy: number[] = [];
    const ids: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      tDirect.push(
        await timed(async () =>
          ids.push((await direct(['run', '-d', '--net', 'none', cluster.image, 'sleep', '600'])).stdout.trim()),
        ),
      );
      tProxy.push(
        await timed(async () => {
          const r = await h1.docker([
            'run',
            '-d',
            '-e',
            `CALICO_IP=198.19.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`,
            cluster.image,
            'sleep',
            '600',
          ]);
          if (r.code !== 0) throw new Error(r.stderr);
          ids.push(r.stdout.trim());
        }),
      );
    }
    results.run = {
      direct_p50_ms: median(tDirect),
      proxy_p50_ms: median(tProxy),
      ratio_p50: median(tProxy) / median(tDirect),
    };

    // 2. ps and inspect over the API (keep-alive, as orchestrators call it), interleaved, and
    // through the floor: the leanest Node relay that reads requests with node:http (relayFloor.ts).
    const target = ids[ids.length - 1]!;
    const dAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    const pAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    const fAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    const floorSocket = join(tlsDir, 'floor.sock');
    const floor = spawn(
      process.execPath,
      [new URL('./relayFloor.js', import.meta.url).pathname, cluster.dockerd.socketPath, floorSocket],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      floor.stdout.once('data', () => resolve());
      floor.once('exit', (code) => reject(new Error(`relayFloor exited (${code})`)));
    });
    for (const [name, path] of [
      ['ps', '/v1.41/containers/json'],
      ['inspect', `/v1.41/containers/${target}/json`],
    ] as const) {
      say(`${name} over the API, ${CALLS} calls each`);
      const d: number[] = [];
      const p: number[] = [];
      const f: number[] = [];
      for (let i = 0; i < CALLS; i++) {
        d.push(await timed(() => httpGet(dAgent, cluster.dockerd.socketPath, path)));
        p.push(await timed(() => httpGet(pAgent, h1.proxySocket, path)));
        f.push(await timed(() => httpGet(fAgent, floorSocket, path)));
      }
      results[`${name}_api`] = {
        direct_p50_ms: median(d),
        proxy_p50_ms: median(p),
        ratio_p50: median(p) / median(d),
        direct_p99_ms: percentile(d, 99),
        proxy_p99_ms: percentile(p, 99),
        ratio_p99: percentile(p, 99) / percentile(d, 99),
        floor_p50_ms: median(f),
        floor_ratio_p50: median(f) / median(d),
        proxy_over_floor_p50: median(p) / median(f),
      };
      say(`${name} with the docker CLI, ${CLI_CALLS} calls each`);
      const dc: number[] = [];
      const pc: number[] = [];
      const args = name === 'ps' ? ['ps', '-q'] : ['inspect', target];
      for (let i = 0; i < CLI_CALLS; i++) {
        dc.push(await timed(() => direct(args)));
        pc.push(await timed(() => h1.docker(args)));
      }
      results[`${name}_cli`] = {
        direct_p50_ms: median(dc),
        proxy_p50_ms: median(pc),
        ratio_p50: median(pc) / median(dc),
        direct_p99_ms: percentile(dc, 99),
        proxy_p99_ms: percentile(pc, 99),
        ratio_p99: percentile(pc, 99) / percentile(dc, 99),
      };
    }
    dAgent.destroy();
    pAgent.destroy();
    fAgent.destroy();
    floor.kill();

    // 3. The cost of TLS: the node restarted with --tlsverify on its fabric address; `docker ps`
    // with DOCKER_TLS_VERIFY through it and to dockerd's own TLS listener, interleaved.
    const proxyCert = await ca.issue('proxy', { server: { ips: [h1.ns.ip] } });
    await cluster.stopNode('h1');
    const tlsArgs = [
      '--tlsverify',
      `--tlscacert=${ca.cert}`,
      `--tlscert=${proxyCert.cert}`,
      `--tlskey=${proxyCert.key}`,
    ];
    await cluster.startNode('h1', { args: [`--listen=tcp://${h1.ns.ip}:2376`, ...tlsArgs] });
    const tlsEnv = { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certPath };
    const viaTls = (host: string) => async () => {
      const r = await cluster.dockerd.docker(['ps', '-q'], { host, env: tlsEnv });
      if (r.code !== 0) throw new Error(`docker ps over TLS to ${host}: ${r.stderr}`);
    };
    say(`docker ps with DOCKER_TLS_VERIFY, ${TLS_CALLS} calls each`);
    const dt: number[] = [];
    const pt: number[] = [];
    for (let i = 0; i < TLS_CALLS; i++) {
      dt.push(await timed(viaTls(`tcp://127.0.0.1:${dockerdTlsPort}`)));
      pt.push(await timed(viaTls(`tcp://${h1.ns.ip}:2376`)));
    }
    results.ps_cli_tls = {
      direct_p50_ms: median(dt),
      proxy_p50_ms: median(pt),
      ratio_p50: median(pt) / median(dt),
      direct_p99_ms: percentile(dt, 99),
      proxy_p99_ms: percentile(pt, 99),
      ratio_p99: percentile(pt, 99) / percentile(dt, 99),
    };

    // 4. docker logs of a large stream.
    say(`docker logs of a ${LOG_MB} MB stream`);
    const logger = (
      await direct([
        'run',
        '-d',
        '--net',
        'none',
        cluster.image,
        'sh',
        '-c',
        `head -c ${LOG_MB * 1_000_000} /dev/zero | tr '\\0' 'x' | fold -w 99`,
      ])
    ).stdout.trim();
    await direct(['wait', logger]);
    const ld: number[] = [];
    const lp: number[] = [];
    for (let i = 0; i < 3; i++) {
      ld.push(
        await timed(() =>
          direct(['logs', logger]).then((r) => {
            if (r.stdout.length < LOG_MB * 1_000_000) throw new Error('short log');
          }),
        ),
      );
      lp.push(
        await timed(() =>
          h1.docker(['logs', logger]).then((r) => {
            if (r.stdout.length < LOG_MB * 1_000_000) throw new Error('short log');
          }),
        ),
      );
    }
    const mbps = (ms: number) => (LOG_MB * 1e6) / 1e6 / (ms / 1000);
    results.logs = {
      direct_MBps: mbps(median(ld)),
      proxy_MBps: mbps(median(lp)),
      ratio_throughput: median(ld) / median(lp),
    };
    ids.push(logger);
    for (let i = 0; i < ids.length; i += 50) await direct(['rm', '-f', ...ids.slice(i, i + 50)]);

    const w = [22, 14, 14, 10, 14, 14, 10];
    console.log(row(['benchmark', 'direct p50', 'proxy p50', 'ratio', 'direct p99', 'proxy p99', 'ratio'], w));
    const r = results as Record<string, Record<string, number>>;
    console.log(
      row(
        [
          `run -d (${RUNS})`,
          fmtMs(r.run!.direct_p50_ms!),
          fmtMs(r.run!.proxy_p50_ms!),
          ratio(r.run!.proxy_p50_ms!, r.run!.direct_p50_ms!),
        ],
        w,
      ),
    );
    for (const k of ['ps_api', 'inspect_api', 'ps_cli', 'inspect_cli', 'ps_cli_tls']) {
      const x = r[k]!;
      const n = k.endsWith('api') ? CALLS : k.endsWith('tls') ? TLS_CALLS : CLI_CALLS;
      console.log(
        row(
          [
            `${k} (${n})`,
            fmtMs(x.direct_p50_ms!),
            fmtMs(x.proxy_p50_ms!),
            ratio(x.proxy_p50_ms!, x.direct_p50_ms!),
            fmtMs(x.direct_p99_ms!),
            fmtMs(x.proxy_p99_ms!),
            ratio(x.proxy_p99_ms!, x.direct_p99_ms!),
          ],
          w,
        ),
      );
    }
    for (const k of ['ps_api', 'inspect_api']) {
      const x = r[k]!;
      console.log(
        row(
          [
            `${k} floor`,
            fmtMs(x.direct_p50_ms!),
            fmtMs(x.floor_p50_ms!),
            ratio(x.floor_p50_ms!, x.direct_p50_ms!),
            'proxy / floor',
            ratio(x.proxy_p50_ms!, x.floor_p50_ms!),
          ],
          w,
        ),
      );
    }
    console.log(
      row(
        [
          `logs ${LOG_MB} MB`,
          `${r.logs!.direct_MBps!.toFixed(0)} MB/s`,
          `${r.logs!.proxy_MBps!.toFixed(0)} MB/s`,
          `${r.logs!.ratio_throughput!.toFixed(3)}x thr`,
        ],
        w,
      ),
    );
    console.log(JSON.stringify({ bench: 'proxy', when: new Date().toISOString(), results }));
  } finally {
    await cluster.stop();
    await rm(tlsDir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
