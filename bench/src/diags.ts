// Benchmark of `calico-diags collect` on a namespace host with 200 real endpoints (containers
// started through calico-node's proxy, all in one group, so their chains and an ipset exist), and
// of cluster mode fetching that host's archive from its diags service. The baseline is the same
// commands and reads run bare in one shell (no redaction, no archive), in the same namespace.
// Prints figures; asserts nothing.
import { createRequire } from 'node:module';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ensureApiToken } from '@calico/datastore';
import { DevCluster } from '@calico/devcluster';
import { diagsUrlKey, groupMemberKey, groupRuleKey } from '@calico/keyspace';
import { LABELS } from '@calico/node';
import { waitFor } from '@calico/testkit';
import { fmtMs, median, row, timed } from './stats.js';

const require = createRequire(import.meta.url);
const DIAGS = join(dirname(require.resolve('@calico/diags/package.json')), 'dist', 'main.js');
const ENDPOINTS = Number(process.env.BENCH_ENDPOINTS ?? 200);
const BATCH = Number(process.env.BENCH_BATCH ?? 10);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const v4 = (n: number) => `198.19.${Math.floor(n / 250)}.${(n % 250) + 1}`;
const mb = (n: number) => `${(n / 1024 / 1024).toFixed(2)} MB`;

async function main(): Promise<void> {
  say('starting dockerd, etcd and one namespace host with calico-node, bgp-config and BIRD');
  const cluster = await DevCluster.start({ hosts: ['h1'], bgp: true, logLevel: 'warn' });
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => void cluster.stop().finally(() => process.exit(130)));
  const h1 = cluster.host('h1');
  const work = await mkdtemp(join(tmpdir(), 'bench-diags-'));
  // The cluster API token the service wants on GET /diags (calico-master would have made it).
  const tokenFile = join(work, 'etc', 'api-token');
  ensureApiToken(tokenFile);
  const common = [
    `--api-token-file=${tokenFile}`,
    '--hostname=h1',
    `--etcd=${cluster.etcd.endpoints}`,
    `--docker=${cluster.dockerd.host}`,
    `--run-dir=${join(work, 'run')}`,
    `--log-dir=${h1.ns.dir}`,
    `--state-dir=${dirname(h1.bird.config)}`,
  ];
  try {
    // 1. 200 endpoints, started through the proxy in parallel batches (one at a time takes ~4x longer).
    say(`starting ${ENDPOINTS} containers through the proxy, ${BATCH} at a time`);
    const ids: string[] = [];
    const setupMs = await timed(async () => {
      for (let i = 0; i < ENDPOINTS; i += BATCH) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(BATCH, ENDPOINTS - i) }, async (_, j) => {
            const r = await h1.docker([
              'run',
              '-d',
              '-e',
              `CALICO_IP=${v4(i + j)}`,
              '-e',
              'DB_PASSWORD=bench-secret',
              cluster.image,
              'sleep',
              '3600',
            ]);
            if (r.code !== 0) throw new Error(r.stderr);
            return r.stdout.trim();
          }),
        );
        ids.push(...batch);
      }
    });
    for (const id of ids) {
      const ep = (
        await cluster.dockerd.dockerOk(['inspect', '-f', `{{index .Config.Labels "${LABELS.endpoint}"}}`, id])
      ).trim();
      await cluster.ds.put(groupMemberKey('bench', ep), '');
    }
    await cluster.ds.put(
      groupRuleKey('bench', 'inbound', 1),
      JSON.stringify({ group: 'bench', cidr: null, protocol: null, port: null }),
    );
    await waitFor(
      'the agent to program every endpoint and the group',
      async () => {
        const save = await h1.ns.execOk(['iptables-save']);
        return (
          (save.match(/^:cali-tw-/gm)?.length ?? 0) >= ENDPOINTS &&
          (await h1.ns.execOk(['ipset', 'list'])).includes(v4(ENDPOINTS - 1))
        );
      },
      120_000,
    );

    // 2. Baseline: the same reads, bare, in one shell in the host's namespace.
    const bare = [
      'date -u; uptime; ps -eo pid,ppid,etimes,rss,args',
      'ip -4 addr; ip -6 addr; ip -d -s link; ip -4 route show table all; ip -6 route show table all; ip -4 neigh; ip -6 neigh',
      'iptables-save -c; ip6tables-save -c; ipset list',
      `birdc -r -s ${h1.bird.socket} show status; birdc -r -s ${h1.bird.socket} show protocols all; birdc -r -s ${h1.bird.socket} show route; cat ${h1.bird.config}`,
      `etcdctl --endpoints=${cluster.etcd.endpoints} get --prefix /calico/`,
      `docker -H ${cluster.dockerd.host} ps -a --no-trunc; docker -H ${cluster.dockerd.host} inspect $(docker -H ${cluster.dockerd.host} ps -aq --filter label=${LABELS.host}=h1)`,
      `cat ${h1.ns.dir}/*.log`,
    ].join('; ');
    const baseline: number[] = [];
    const collectMs: number[] = [];
    let summary: { durationMs: number; sources: { name: string; durationMs: number; bytes: number }[] } | undefined;
    const inside: number[] = [];
    let archiveBytes = 0;
    say(`collecting ${RUNS} times, each next to a bare run of the same commands`);
    for (let i = 0; i < RUNS; i++) {
      baseline.push(await timed(() => h1.ns.execOk(['sh', '-c', `{ ${bare}; } > /dev/null 2>&1`])));
      let out = '';
      collectMs.push(
        await timed(
          async () =>
            (out = await h1.ns.execOk([process.execPath, DIAGS, 'collect', ...common, `--output=${work}/`, '--json'])),
        ),
      );
      const file = (JSON.parse(out) as { file: string }).file;
      archiveBytes = (await stat(file)).size;
      const dir = await mkdtemp(join(work, 'x-'));
      await h1.ns.execOk(['tar', '-xzf', file, '-C', dir, '--strip-components=1']);
      summary = JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8')) as typeof summary;
      inside.push(summary!.durationMs);
      await rm(dir, { recursive: true });
      await rm(file);
    }
    const rawBytes = summary!.sources.reduce((n, s) => n + s.bytes, 0);

    // 3. Cluster mode: the same host through its diags service (collect + stream + unpack + repack).
    say('cluster mode: fetching that host through its diags service');
    const svc = h1.ns.spawn('calico-diags', [process.execPath, DIAGS, 'serve', ...common, `--listen=${h1.ns.ip}:9300`]);
    await waitFor(
      'diags service registered',
      async () => (await cluster.ds.get(diagsUrlKey('h1'))) !== undefined,
      20_000,
      () => svc.log(),
    );
    const clusterMs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      clusterMs.push(
        await timed(async () => {
          const out = await h1.ns.execOk([
            process.execPath,
            DIAGS,
            'collect',
            '--cluster',
            `--api-token-file=${tokenFile}`,
            `--etcd=${cluster.etcd.endpoints}`,
            `--output=${work}/`,
            '--json',
          ]);
          await rm((JSON.parse(out) as { file: string }).file);
        }),
      );
    }
    await svc.stop();

    const w = [48, 14, 14, 10];
    console.log(row(['benchmark', 'diags', 'baseline', 'ratio'], w));
    console.log(
      row(
        [
          `collect, ${ENDPOINTS} endpoints (median of ${RUNS})`,
          fmtMs(median(collectMs)),
          fmtMs(median(baseline)),
          `${(median(collectMs) / median(baseline)).toFixed(2)}x`,
        ],
        w,
      ),
    );
    console.log(row(['  of which running the sources (summary.json)', fmtMs(median(inside)), '', ''], w));
    console.log(
      row(
        [
          `cluster mode, 1 host (median of ${RUNS})`,
          fmtMs(median(clusterMs)),
          fmtMs(median(collectMs)),
          `${(median(clusterMs) / median(collectMs)).toFixed(2)}x`,
        ],
        w,
      ),
    );
    console.log(
      row(
        [
          'archive (.tar.gz) / content before gzip',
          mb(archiveBytes),
          mb(rawBytes),
          `${(rawBytes / archiveBytes).toFixed(1)}x`,
        ],
        w,
      ),
    );
    console.log(
      `setup: ${ENDPOINTS} containers through the proxy in ${(setupMs / 1000).toFixed(1)} s (${BATCH} at a time)`,
    );
    const slow = [...summary!.sources].sort((a, b) => b.durationMs - a.durationMs).slice(0, 6);
    console.log(
      `slowest sources (last run): ${slow.map((s) => `${s.name} ${s.durationMs} ms / ${mb(s.bytes)}`).join(', ')}`,
    );
    console.log(
      JSON.stringify({
        bench: 'diags',
        when: new Date().toISOString(),
        endpoints: ENDPOINTS,
        setup_ms: setupMs,
        collect_p50_ms: median(collectMs),
        sources_p50_ms: median(inside),
        baseline_p50_ms: median(baseline),
        cluster_p50_ms: median(clusterMs),
        archive_bytes: archiveBytes,
        content_bytes: rawBytes,
        sources: summary!.sources.map((s) => ({ name: s.name, ms: s.durationMs, bytes: s.bytes })),
      }),
    );
    for (let i = 0; i < ids.length; i += 50) await cluster.dockerd.docker(['rm', '-f', ...ids.slice(i, i + 50)]);
  } finally {
    await rm(work, { recursive: true, force: true });
    await cluster.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
