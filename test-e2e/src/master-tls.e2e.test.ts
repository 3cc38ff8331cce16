import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { apiCall, readApiToken, type ApiClientTls } from '@calico/datastore';
import { DevCluster } from '@calico/devcluster';
import { decodeUrl, diagsUrlKey } from '@calico/keyspace';
import { exec, requireRoot, TestCa, waitFor, type ManagedProcess } from '@calico/testkit';

const require = createRequire(import.meta.url);
const calicoctlJs = join(dirname(require.resolve('@calico/calicoctl/package.json')), 'dist', 'main.js');
const diagsJs = join(
  dirname(createRequire(require.resolve('@calico/calicoctl/package.json')).resolve('@calico/diags/package.json')),
  'dist',
  'main.js',
);

/**
 * The master API and a host's diags service over https with client certificates, on real
 * processes: a certificate of the cluster's CA authenticates a request as the token does, the
 * token still works over TLS, and no credential, a certificate of another CA or plain http gets
 * nothing. calicoctl status and diags --cluster work against them with a certificate alone.
 */
describe('the master API and diags over TLS with client certificates', () => {
  let cluster: DevCluster;
  let dir: string;
  let diags: ManagedProcess | undefined;
  let diagsUrl = '';
  let token = '';
  /** The cluster's CA, to verify the servers; with it, a client certificate of that CA or of another. */
  let caOnly: ApiClientTls;
  let good: ApiClientTls;
  let otherCa: ApiClientTls;
  let failed = false;

  const h1 = () => cluster.host('h1');
  const master = (path: string) => new URL(path, cluster.masterUrl);
  /** calicoctl in the root namespace, with no readable token file unless one is given. */
  const calicoctl = (args: string[], tokenFile = join(dir, 'no-such-token')) =>
    exec(
      [
        process.execPath,
        calicoctlJs,
        ...args,
        '--hostname=h1',
        `--etcd=${cluster.etcd.endpoints}`,
        `--api-token-file=${tokenFile}`,
        `--run-dir=${join(dir, 'ctl', 'run')}`,
        `--log-dir=${join(dir, 'ctl', 'log')}`,
        `--state-dir=${join(dir, 'ctl', 'state')}`,
      ],
      { timeoutMs: 60_000 },
    );
  const clientFlags = () => [
    `--api-ca=${cluster.apiCa!.cert}`,
    `--api-cert=${cluster.apiClient!.cert}`,
    `--api-key=${cluster.apiClient!.key}`,
  ];

  beforeAll(async () => {
    requireRoot();
    dir = await mkdtemp(join(tmpdir(), 'calico-master-tls-'));
    cluster = await DevCluster.start({ hosts: ['h1'], master: true, masterTls: true });
    token = readApiToken(cluster.apiTokenFile);
    const ca = await readFile(cluster.apiCa!.cert);
    caOnly = { ca };
    good = { ca, cert: await readFile(cluster.apiClient!.cert), key: await readFile(cluster.apiClient!.key) };
    const other = await TestCa.create(join(dir, 'other-ca'), 'other-ca');
    const stranger = await other.issue('stranger', { client: true });
    otherCa = { ca, cert: await readFile(stranger.cert), key: await readFile(stranger.key) };
    // h1's diags service, https with a server certificate of the cluster's CA for h1's address.
    const server = await cluster.apiCa!.issue('diags-h1', { server: { ips: [h1().ns.ip] } });
    diags = h1().ns.spawn('calico-diags', [
      process.execPath,
      diagsJs,
      'serve',
      '--hostname=h1',
      `--listen=${h1().ns.ip}:7601`,
      `--tls-cert=${server.cert}`,
      `--tls-key=${server.key}`,
      `--tls-ca=${cluster.apiCa!.cert}`,
      `--api-token-file=${cluster.apiTokenFile}`,
      `--etcd=${cluster.etcd.endpoints}`,
      `--docker=${cluster.dockerd.host}`,
      `--run-dir=${join(dir, 'run')}`,
      `--log-dir=${join(dir, 'log')}`,
      `--state-dir=${join(dir, 'state')}`,
    ]);
    await waitFor(
      'diags to register its URL',
      async () => {
        const v = await cluster.ds.get(diagsUrlKey('h1'));
        const u = v === undefined ? undefined : decodeUrl(diagsUrlKey('h1'), v);
        if (u?.ok) diagsUrl = u.value;
        return u?.ok === true;
      },
      20_000,
      () => diags!.log().slice(-2000),
    );
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) console.error(`${cluster.master?.log().slice(-3000)}\n${diags?.log().slice(-3000)}`);
    await diags?.stop();
    if (cluster)
      await calicoctl(['master', 'stop', `--run-dir=${join(dir, 'ctl-master', 'run')}`]).catch(() => undefined);
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('publishes https URLs for the master and the diags service', () => {
    expect(cluster.masterUrl).toMatch(/^https:\/\/198\.18\.0\.1:\d+\/$/);
    expect(diagsUrl).toBe(`https://${h1().ns.ip}:7601/`);
  });

  it('master: a client certificate of the CA reads and writes without the token; nothing else does', async () => {
    // The control: the certificate alone is served, for a read and a write.
    const read = await apiCall(master('v1/groups'), { tls: good });
    expect(read.status, read.body).toBe(200);
    const write = await apiCall(master('v1/groups'), {
      tls: good,
      method: 'POST',
      body: JSON.stringify({ name: 'by-cert' }),
      headers: { 'content-type': 'application/json' },
    });
    expect(write.status, write.body).toBe(201);
    // Neither a token nor a certificate: 401, and the write it would have made is not made.
    const none = await apiCall(master('v1/groups'), {
      tls: caOnly,
      method: 'POST',
      body: JSON.stringify({ name: 'by-nobody' }),
      headers: { 'content-type': 'application/json' },
    });
    expect(none.status).toBe(401);
    expect(none.body).toContain('no token and no client certificate');
    // A certificate of another CA: 401 with the reason, and with the token too (a presented certificate must verify).
    const stranger = await apiCall(master('v1/groups'), { tls: otherCa });
    expect(stranger.status).toBe(401);
    expect(stranger.body).toContain("the client certificate is not one of this server's CA");
    expect((await apiCall(master('v1/groups'), { tls: otherCa, token })).status).toBe(401);
    const names = ((await apiCall(master('v1/groups'), { tls: good })).body.match(/"name":"by-[a-z]+"/g) ?? []).sort();
    expect(names).toEqual(['"name":"by-cert"']);
  });

  it('master: the token still works over TLS, and plain http to the https port gets no answer', async () => {
    const r = await apiCall(master('v1/hosts'), { tls: caOnly, token });
    expect(r.status, r.body).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ hosts: [expect.objectContaining({ name: 'h1', state: 'up' })] });
    const plain = new URL(master('v1/hosts'));
    plain.protocol = 'http:';
    await expect(apiCall(plain, { token, timeoutMs: 5_000 })).rejects.toThrow();
    // And a client that does not trust the master's CA refuses the master.
    await expect(apiCall(master('v1/hosts'), { token, timeoutMs: 5_000 })).rejects.toThrow(/certificate/);
  });

  it('diags: the certificate or the token over TLS collects; no credential, another CA or plain http does not', async () => {
    const url = new URL('diags', diagsUrl);
    const byCert = await apiCall(url, { tls: good, timeoutMs: 60_000 });
    expect(byCert.status).toBe(200);
    expect(byCert.headers['content-type']).toBe('application/gzip');
    const byToken = await apiCall(url, { tls: caOnly, token, timeoutMs: 60_000 });
    expect(byToken.status).toBe(200);
    const none = await apiCall(url, { tls: caOnly });
    expect(none.status).toBe(401);
    expect(none.body).toContain('no token and no client certificate');
    const stranger = await apiCall(url, { tls: otherCa });
    expect(stranger.status).toBe(401);
    expect(stranger.body).toContain("the client certificate is not one of this server's CA");
    const plain = new URL(url);
    plain.protocol = 'http:';
    await expect(apiCall(plain, { token, timeoutMs: 5_000 })).rejects.toThrow();
  });

  it('calicoctl status asks the TLS master with a client certificate alone', async () => {
    const asked = async () => {
      const m = (await (await cluster.masterFetch('metrics')).text()).match(
        /^calico_master_api_requests_total\{route="\/v1\/hosts",code="200"\} (\d+)$/m,
      );
      return Number(m?.[1] ?? 0);
    };
    const before = await asked();
    const st = await calicoctl(['status', '--json', ...clientFlags()]);
    const j = JSON.parse(st.stdout) as { master: string; hosts: { name: string; state: string }[] };
    expect(j.master).toBe(`reachable at ${cluster.masterUrl}`);
    expect(j.hosts).toEqual([expect.objectContaining({ name: 'h1', state: 'up' })]);
    expect(await asked()).toBe(before + 1);
    // Controls: without the certificate (and no token) its API is not asked; without the CA the
    // master's certificate does not verify.
    const noCert = JSON.parse((await calicoctl(['status', '--json', `--api-ca=${cluster.apiCa!.cert}`])).stdout) as {
      master: string;
    };
    expect(noCert.master).toMatch(/^reachable at https:.*; its API is not asked \(no API token file at /);
    const noCa = JSON.parse((await calicoctl(['status', '--json'])).stdout) as { master: string };
    expect(noCa.master).toMatch(/^not answering at https:\/\/.*certificate/);
    expect(await asked()).toBe(before + 1);
  });

  it('calicoctl diags --cluster fetches the TLS diags service with a client certificate alone', async () => {
    const out = join(dir, 'diags-out');
    await exec(['mkdir', '-p', out]);
    const r = await calicoctl(['diags', '--cluster', '--no-upload', `--output=${out}/`, '--json', ...clientFlags()]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { hosts: { host: string; status: string }[]; file: string };
    expect(report.hosts).toEqual([{ host: 'h1', status: 'ok' }]);
    const listing = (await exec(['tar', '-tzf', report.file])).stdout;
    expect(listing).toMatch(/\/h1\/summary\.json$/m);
    // The control: with neither the token nor a certificate it stops before fetching anything.
    const refused = await calicoctl([
      'diags',
      '--cluster',
      '--no-upload',
      `--output=${out}/`,
      `--api-ca=${cluster.apiCa!.cert}`,
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('--cluster sends the cluster API token (or a client certificate, --api-cert)');
  });

  // Last: this master publishes its own api_url over the cluster's.
  it('calicoctl master --tls-* starts a master that serves https and takes the certificate', async () => {
    const ip = cluster.fabric.rootLink!.ip;
    const server = await cluster.apiCa!.issue('ctl-master', { server: { ips: [ip] } });
    const runDirs = [`--run-dir=${join(dir, 'ctl-master', 'run')}`, `--log-dir=${join(dir, 'ctl-master', 'log')}`];
    const tokenFile = join(dir, 'ctl-master', 'api-token');
    const tls = [`--tls-cert=${server.cert}`, `--tls-key=${server.key}`, `--tls-ca=${cluster.apiCa!.cert}`];
    // A flag without its partner stops calicoctl before anything starts.
    const half = await calicoctl(
      ['master', `--ip=${ip}`, `--listen=${ip}:7656`, `--tls-cert=${server.cert}`, ...runDirs],
      tokenFile,
    );
    expect(half.code).toBe(2);
    expect(half.stderr).toContain('https needs --tls-cert and --tls-key together (given: --tls-cert)');
    const r = await calicoctl(['master', `--ip=${ip}`, `--listen=${ip}:7656`, ...tls, ...runDirs], tokenFile);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain(`calico-master is running: API https://${ip}:7656/`);
    const url = new URL(`https://${ip}:7656/v1/groups`);
    expect((await apiCall(url, { tls: good })).status).toBe(200);
    expect((await apiCall(url, { tls: caOnly })).status).toBe(401);
    expect((await apiCall(url, { tls: caOnly, token: readApiToken(tokenFile) })).status).toBe(200);
    const stop = await calicoctl(['master', 'stop', ...runDirs], tokenFile);
    expect(stop.stdout).toContain('calico-master stopped');
  });
});
