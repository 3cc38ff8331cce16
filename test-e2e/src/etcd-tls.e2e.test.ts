import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bgpConfigMainJs, DevCluster, masterMainJs, nodeMainJs } from '@calico/devcluster';
import { diagsUrlKey } from '@calico/keyspace';
import { exec, requireRoot, TestCa, waitFor, type ExecResult, type ManagedProcess } from '@calico/testkit';
import { expectMatrix, startWorkload, type Workload } from './helpers.js';

const require = createRequire(import.meta.url);
const calicoctlJs = join(dirname(require.resolve('@calico/calicoctl/package.json')), 'dist', 'main.js');
const diagsJs = join(
  dirname(createRequire(require.resolve('@calico/calicoctl/package.json')).resolve('@calico/diags/package.json')),
  'dist',
  'main.js',
);
const DIAGS_PORT = 9098;
const NEEDS_CA = "needs the CA that signed etcd's certificate: --etcd-ca=<file> or ETCD_CA_CERT_FILE";
const HTTP_WITH_TLS = 'given, but --etcd names http://';

/**
 * etcd serving TLS only and asking every client for a certificate of its CA (`--client-cert-auth`,
 * peers too): calico-node with its agent, bgp-config, the master, diags and calicoctl all work
 * on it with --etcd-ca/--etcd-cert/--etcd-key; a client without a certificate, with one of
 * another CA, or over plain http is refused, and a service whose flags disagree with TLS exits.
 */
describe('a TLS-only etcd with client certificates', () => {
  let cluster: DevCluster;
  let dir: string;
  let other: TestCa;
  const procs: ManagedProcess[] = [];
  const wl: Record<string, Workload> = {};
  let failed = false;

  const h1 = () => cluster.host('h1');
  const h2 = () => cluster.host('h2');
  const tls = () => cluster.etcd.clientTls!;
  const url = () => cluster.etcd.clientUrls[0]!;
  /** calicoctl as a person on h1 runs it; `etcd` replaces the cluster's etcd flags. */
  const calicoctl = (args: string[], etcd: string[] = cluster.etcdFlags): Promise<ExecResult> =>
    h1().ns.exec(
      [process.execPath, calicoctlJs, ...args, '--hostname=h1', ...etcd, `--api-token-file=${cluster.apiTokenFile}`],
      { timeoutMs: 60_000 },
    );
  const etcdctl = (flags: string[], args: string[], endpoint = url()): Promise<ExecResult> =>
    exec(['etcdctl', `--endpoints=${endpoint}`, '--dial-timeout=2s', '--command-timeout=4s', ...flags, ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
      timeoutMs: 30_000,
    });
  const value = async (key: string) => (await cluster.ds.get(key)) ?? null;

  beforeAll(async () => {
    requireRoot();
    dir = await mkdtemp(join(tmpdir(), 'calico-etcd-tls-'));
    other = await TestCa.create(join(dir, 'other-ca'), 'other-ca');
    cluster = await DevCluster.start({ hosts: ['h1', 'h2'], bgp: true, master: true, etcdTls: true });
    const diags = h2().ns.spawn('calico-diags', [
      process.execPath,
      diagsJs,
      'serve',
      '--hostname=h2',
      `--listen=${h2().ns.ip}:${DIAGS_PORT}`,
      ...cluster.etcdFlags,
      `--docker=${cluster.dockerd.host}`,
      `--api-token-file=${cluster.apiTokenFile}`,
      `--run-dir=${join(dir, 'run')}`,
      `--log-dir=${join(dir, 'log')}`,
      `--state-dir=${join(dir, 'state')}`,
    ]);
    procs.push(diags);
    const registered = async () => (await value(diagsUrlKey('h2'))) !== null;
    await waitFor('diags to register in etcd', registered, 20_000, () => diags.log().slice(-2000));
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    for (const p of procs) await p.stop();
    if (failed && cluster) {
      console.error(await cluster.dump());
      for (const p of procs) console.error(`--- ${p.opts.name} ---\n${p.log().slice(-3000)}`);
      console.error(`--- etcd ---\n${cluster.etcd.logs().slice(-3000)}`);
    }
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('etcd serves https only and asks for client certificates', () => {
    expect(cluster.etcd.clientUrls.every((u) => u.startsWith('https://'))).toBe(true);
    expect(cluster.etcd.members.every((m) => m.peerUrl.startsWith('https://'))).toBe(true);
    const argv = cluster.etcd.members[0]!.process!.opts.argv;
    expect(argv).toContain('--client-cert-auth');
    expect(argv).toContain('--peer-client-cert-auth');
  });

  it('runs the getting-started scenario on it: proxy, agent, BGP peers from etcd, calicoctl', async () => {
    const plan = [
      ['A', h1(), '198.19.1.1'],
      ['B', h1(), '198.19.1.2'],
      ['C', h1(), '198.19.1.3'],
      ['D', h2(), '198.19.2.4'],
      ['E', h2(), '198.19.2.5'],
    ] as const;
    for (const [name, host, addr] of plan) wl[name] = await startWorkload(cluster, host, name, addr);
    const all = Object.values(wl);
    await expectMatrix(cluster, all, []);
    // Groups and members through calicoctl over TLS, as the guide has them.
    for (const g of ['GROUP_A_C_E', 'GROUP_B', 'GROUP_D']) {
      const r = await calicoctl(['addgroup', g]);
      expect(r.code, r.stderr).toBe(0);
    }
    const members = [
      ['A', 'GROUP_A_C_E'],
      ['C', 'GROUP_A_C_E'],
      ['E', 'GROUP_A_C_E'],
      ['B', 'GROUP_B'],
      ['D', 'GROUP_D'],
    ] as const;
    for (const [w, g] of members) {
      const r = await calicoctl(['addtogroup', wl[w]!.id, g]);
      expect(r.code, r.stderr).toBe(0);
    }
    expect((await calicoctl(['showgroups'])).stdout).toMatch(/GROUP_A_C_E\s+3/);
    await expectMatrix(cluster, all, ['A->C', 'A->E', 'C->A', 'C->E', 'E->A', 'E->C'], 30_000);
    // A rule: B takes pings from D.
    const rule = await calicoctl(['rule', 'add', 'GROUP_B', 'inbound', '--group=GROUP_D', '--protocol=icmp']);
    expect(rule.code, rule.stderr).toBe(0);
    const outD = await calicoctl(['rule', 'add', 'GROUP_D', 'outbound', '--group=GROUP_B', '--protocol=icmp']);
    expect(outD.code, outD.stderr).toBe(0);
    await expectMatrix(cluster, all, ['A->C', 'A->E', 'C->A', 'C->E', 'D->B', 'E->A', 'E->C'], 30_000);
    const ok = await calicoctl(['check', wl.D!.addr, wl.B!.addr, '--protocol=icmp']);
    expect(ok.stdout).toMatch(/^ALLOWED/);
    const no = await calicoctl(['check', wl.A!.addr, wl.D!.addr, '--protocol=icmp']);
    expect(no.code).toBe(1);
    expect(no.stdout).toMatch(/^DENIED/);
    // bgp-config took each host's peer from etcd; the session is up.
    expect(await h1().ns.execOk(['cat', h1().bird.config])).toContain(`neighbor ${h2().ns.ip} `);
    expect(await h2().ns.execOk(['cat', h2().bird.config])).toContain(`neighbor ${h1().ns.ip} `);
    const session = async () => (await h1().birdc('show protocols')).stdout.includes('Established');
    await waitFor('h1 and h2 in BGP session', session, 30_000);
    const st = await calicoctl(['status', '--json']);
    const j = JSON.parse(st.stdout) as { etcd: string; master: string };
    expect(j.etcd).toBe('reachable');
    expect(j.master).toMatch(/^reachable at /);
  });

  it('a client with no certificate is refused and writes nothing; with one the same write lands', async () => {
    const key = '/calico/tls-probe/no-cert';
    const noCert = await etcdctl([`--cacert=${tls().ca}`], ['put', key, 'x']);
    expect(noCert.code).not.toBe(0);
    expect(await value(key)).toBeNull();
    const ctl = await calicoctl(['addgroup', 'NO_CERT'], [`--etcd=${cluster.etcd.endpoints}`, `--etcd-ca=${tls().ca}`]);
    expect(ctl.code).not.toBe(0);
    expect((await calicoctl(['showgroups'])).stdout).not.toContain('NO_CERT');
    // The controls: the same calls with the client certificate.
    expect((await etcdctl(cluster.etcd.etcdctlTlsFlags, ['put', key, 'x'])).code).toBe(0);
    expect(await value(key)).toBe('x');
    expect((await calicoctl(['addgroup', 'NO_CERT'])).code).toBe(0);
    expect((await calicoctl(['showgroups'])).stdout).toContain('NO_CERT');
  });

  it('a certificate of another CA is refused, by etcd and for calicoctl', async () => {
    const stranger = await other.issue('stranger', { client: true });
    const key = '/calico/tls-probe/other-ca';
    const r = await etcdctl(
      [`--cacert=${tls().ca}`, `--cert=${stranger.cert}`, `--key=${stranger.key}`],
      ['put', key, 'x'],
    );
    expect(r.code).not.toBe(0);
    const flags = [`--etcd=${cluster.etcd.endpoints}`, `--etcd-ca=${tls().ca}`];
    flags.push(`--etcd-cert=${stranger.cert}`, `--etcd-key=${stranger.key}`);
    expect((await calicoctl(['addgroup', 'OTHER_CA'], flags)).code).not.toBe(0);
    expect(await value(key)).toBeNull();
    expect((await calicoctl(['showgroups'])).stdout).not.toContain('OTHER_CA');
    // The control: etcd's own CA's certificate, through the same calls.
    expect((await etcdctl(cluster.etcd.etcdctlTlsFlags, ['put', key, 'x'])).code).toBe(0);
    expect(await value(key)).toBe('x');
  });

  it('plain http to the https port gets nothing', async () => {
    const plain = url().replace(/^https:/, 'http:');
    const key = '/calico/tls-probe/plain';
    expect((await etcdctl([], ['put', key, 'x'], plain)).code).not.toBe(0);
    const health = await fetch(`${plain}/health`, { signal: AbortSignal.timeout(5_000) }).then(
      (res) => res.status,
      (e: unknown) => String(e),
    );
    expect(health).not.toBe(200);
    const ctl = await calicoctl(['addgroup', 'PLAIN'], [`--etcd=${plain}`]);
    expect(ctl.code).not.toBe(0);
    expect(await value(key)).toBeNull();
    expect((await calicoctl(['showgroups'])).stdout).not.toContain('PLAIN');
    // The control: the same endpoint over https with the certificate.
    expect((await etcdctl(cluster.etcd.etcdctlTlsFlags, ['endpoint', 'health'])).code).toBe(0);
  });

  it('each service and calicoctl, given TLS files and http:// or https:// and no CA, exits saying so', async () => {
    const plain = url().replace(/^https:/, 'http:');
    const files = [`--etcd-ca=${tls().ca}`, `--etcd-cert=${tls().cert}`, `--etcd-key=${tls().key}`];
    const httpWithTls = [`--etcd=${plain}`, ...files];
    const httpsNoCa = [`--etcd=${url()}`, `--etcd-cert=${tls().cert}`, `--etcd-key=${tls().key}`];
    const sock = join(dir, 'h9-proxy.sock');
    const ip = h1().ns.ip;
    const token = `--api-token-file=${join(dir, 'h9-token')}`;
    const services: Record<string, string[]> = {
      'calico-node': [
        nodeMainJs(),
        '--hostname=h9',
        `--ip=${ip}`,
        `--docker=${cluster.dockerd.host}`,
        `--listen=unix://${sock}`,
      ],
      'calico-bgp-config': [bgpConfigMainJs(), '--hostname=h9', `--state-dir=${join(dir, 'h9-bird')}`],
      'calico-master': [masterMainJs(), `--ip=${ip}`, `--listen=${ip}:7699`, token],
      'calico-diags': [diagsJs, 'serve', '--hostname=h9', `--listen=${ip}:${DIAGS_PORT}`, token],
    };
    for (const [name, argv] of Object.entries(services)) {
      for (const [flags, reason] of [
        [httpWithTls, HTTP_WITH_TLS],
        [httpsNoCa, NEEDS_CA],
      ] as const) {
        const r = await h1().ns.exec([process.execPath, ...argv, ...flags], { timeoutMs: 20_000 });
        expect({ name, code: r.code }).toEqual({ name, code: 2 });
        expect(r.stderr).toContain(`${name}: etcd`);
        expect(r.stderr).toContain(reason);
      }
    }
    for (const [flags, reason] of [
      [httpWithTls, HTTP_WITH_TLS],
      [httpsNoCa, NEEDS_CA],
    ] as const) {
      const r = await calicoctl(['addgroup', 'REFUSED'], flags);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(reason);
    }
    // Nothing of h9 reached etcd, nor the refused group; the control: h1's services, started with
    // the same flags and the right TLS, are in etcd.
    const { kvs } = await cluster.ds.getPrefix('/calico/');
    expect(kvs.filter((kv) => kv.key.includes('/h9'))).toEqual([]);
    expect(kvs.some((kv) => kv.key.startsWith('/calico/host/h1/'))).toBe(true);
    expect(await value(diagsUrlKey('h2'))).not.toBeNull();
    expect((await calicoctl(['showgroups'])).stdout).not.toContain('REFUSED');
    expect(h1().node?.running).toBe(true);
  });
});
