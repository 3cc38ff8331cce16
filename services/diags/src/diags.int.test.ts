import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureApiToken } from '@calico/datastore';
// biome-ignore lint/style/noRestrictedImports: this integration test runs diags against a whole dev cluster (a devDependency).
import { DevCluster, type DevHost } from '@calico/devcluster';
import { diagsUrlKey } from '@calico/keyspace';
import { exec, execOk, freePort, requireRoot, waitFor, type ExecResult, type ManagedProcess } from '@calico/testkit';
import { archiveStream } from './archive.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const SECRET = 'hunter2';

let cluster: DevCluster;
let work: string;
/** The cluster API token, as calico-master would have made it; every service and command here is given its file. */
let tokenFile: string;
let token: string;
let failed = false;
// The node's logs are its ManagedProcess logs in the host's folder; BIRD's files are in bird/ under it.
const dirsOf = (h: DevHost) => ({ run: join(work, `${h.name}-run`), log: h.ns.dir, state: dirname(h.bird.config) });
const common = (h: DevHost) => {
  const d = dirsOf(h);
  return [
    `--hostname=${h.name}`,
    `--etcd=${cluster.etcd.endpoints}`,
    `--docker=${cluster.dockerd.host}`,
    `--run-dir=${d.run}`,
    `--log-dir=${d.log}`,
    `--state-dir=${d.state}`,
    `--api-token-file=${tokenFile}`,
  ];
};
/** `calico-diags collect` in the root namespace (where the test's HTTP servers are) or in a host's. */
const collectCmd = (h: DevHost, args: string[], inHost = false, env?: NodeJS.ProcessEnv): Promise<ExecResult> => {
  const argv = [process.execPath, MAIN, 'collect', ...common(h), ...args];
  return exec(inHost ? h.ns.wrap(argv) : argv, { timeoutMs: 120_000, env: { ...process.env, ...env } });
};

/** Every file of an extracted tree as relative path → content. */
async function tree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(relative(dir, p), await readFile(p, 'utf8'));
    }
  };
  await walk(dir);
  return out;
}

async function extract(file: string): Promise<Map<string, string>> {
  const dir = await mkdtemp(join(work, 'x-'));
  await execOk(['tar', '-xzf', file, '-C', dir]);
  const [top, ...rest] = await readdir(dir);
  expect(rest).toEqual([]); // everything under one top folder
  expect(top).toMatch(/^calico-diags-(h\d|cluster)-\d{8}T\d{6}Z$/);
  expect(file.split('/').pop()!.startsWith(top!)).toBe(true);
  return tree(join(dir, top!));
}

function expectNoSecret(files: Map<string, string>): void {
  for (const [name, text] of files) expect(text.includes(SECRET), `${name} contains the secret`).toBe(false);
}

/** A local upload server: records what it receives, answers with answer(). */
async function uploadServer(
  answer: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void,
): Promise<{ url: string; got: { method: string; body: Buffer; type: string | undefined }[]; server: Server }> {
  const got: { method: string; body: Buffer; type: string | undefined }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      got.push({ method: req.method ?? '', body, type: req.headers['content-type'] });
      answer(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/upload`, got, server };
}
const closeServer = (s: Server) => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r())));

beforeAll(async () => {
  requireRoot();
  work = await mkdtemp(join(tmpdir(), 'diags-int-'));
  tokenFile = join(work, 'etc', 'api-token');
  token = ensureApiToken(tokenFile).token;
  cluster = await DevCluster.start({ hosts: ['h1', 'h2'], bgp: true, logLevel: 'info' });
  const [h1, h2] = [cluster.host('h1'), cluster.host('h2')];
  const run = async (h: DevHost, args: string[]) => {
    const r = await h.docker(['run', '-d', ...args]);
    if (r.code !== 0) throw new Error(r.stderr);
    return r.stdout.trim();
  };
  const db = await run(h1, [
    '--name',
    'db',
    '-e',
    'CALICO_IP=198.19.0.2',
    '-e',
    `DB_PASSWORD=${SECRET}`,
    '-e',
    'PLAIN=visible',
    cluster.image,
    'sleep',
    '3600',
  ]);
  await run(h2, ['--name', 'far', '-e', 'CALICO_IP=198.19.1.2', cluster.image, 'sleep', '3600']);
  // A group that names db, so h1 has an ipset of its own to show.
  const endpoint = (
    await cluster.dockerd.dockerOk(['inspect', '-f', '{{index .Config.Labels "org.projectcalico.endpoint"}}', db])
  ).trim();
  await cluster.ds.put('/calico/network/group/g-diags/name', 'diags');
  await cluster.ds.put(`/calico/network/group/g-diags/member/${endpoint}`, '');
  await cluster.ds.put(
    '/calico/network/group/g-diags/rule/inbound/1',
    JSON.stringify({ group: 'g-diags', cidr: null, protocol: null, port: null }),
  );
  // A secret in the keyspace: its value must not be in the dump.
  await cluster.ds.put('/calico/config/DiagsTestPassword', SECRET);
  // What calicoctl's supervisor and an operator leave in the host's directories.
  const d = dirsOf(h1);
  await mkdir(d.run, { recursive: true });
  await writeFile(
    join(d.run, 'node.state.json'),
    JSON.stringify({
      role: 'node',
      pid: 1,
      startedAt: new Date().toISOString(),
      services: { 'calico-node': { pid: 2, restarts: 0, startedAt: null, lastExit: null } },
      argv: ['--etcd-key', '/etc/calico/etcd.key'],
      token: 'state-token-1234',
    }),
  );
  await writeFile(
    join(d.log, 'operator.log'),
    `started by: docker run -e DB_PASSWORD=${SECRET} busybox\nthen: calico-node --etcd-key=/etc/calico/etcd.key\n`,
  );
  await writeFile(
    join(d.log, 'etcd-client.key'),
    `-----BEGIN PRIVATE KEY-----\nMIIEv${SECRET}\n-----END PRIVATE KEY-----\n`,
  );
  await waitFor(
    'h1 learns far over BGP',
    async () => (await h1.ns.execOk(['ip', 'route', 'show', 'proto', 'bird'])).includes('198.19.1.2 via 198.18.0.12'),
    30_000,
  );
  await waitFor(
    "db's group in h1's ipsets",
    async () => (await h1.ns.execOk(['ipset', 'list', '-n'])).includes('cali4g-'),
    30_000,
  );
});

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  if (failed && cluster) console.error(await cluster.dump());
  await cluster?.ds.delete('/calico/config/DiagsTestPassword').catch(() => undefined);
  await cluster?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('calico-diags collect on a namespace host', () => {
  it("collects the host's state file by file, with every secret redacted", async () => {
    const h1 = cluster.host('h1');
    const r = await collectCmd(h1, [`--output=${work}/`, '--json'], true);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      file: string;
      bytes: number;
      failed: string[];
      absent: string[];
      upload: { skipped: string };
    };
    expect(out.failed).toEqual([]);
    expect(out.absent).toEqual(['agent-status']);
    expect(out.upload.skipped).toMatch(/no --upload-url/);
    expect((await stat(out.file)).size).toBe(out.bytes);
    const files = await extract(out.file);

    const summary = JSON.parse(files.get('summary.json')!) as {
      host: string;
      sources: { name: string; status: string; bytes: number; durationMs: number; error?: string; notes?: string[] }[];
    };
    expect(summary.host).toBe('h1');
    for (const s of summary.sources) {
      expect(s.durationMs, s.name).toBeGreaterThanOrEqual(0);
      if (s.name === 'agent-status')
        expect(s).toMatchObject({
          status: 'absent',
          bytes: 0,
          error: expect.stringContaining('agent-status.json does not exist'),
        });
      else expect(s.status, `${s.name}: ${s.error}`).toBe('ok');
    }
    expect(summary.sources.find((s) => s.name === 'logs')!.notes).toContain(
      'etcd-client.key: left out (looks like a key file)',
    );

    // File by file: present, non-empty, and showing this host (the commands ran in its namespace).
    const want: [string, RegExp][] = [
      ['system/date.txt', /\d{4}-\d\d-\d\dT/],
      ['system/hostname.txt', /calico: h1/],
      ['system/versions.json', /"running": "BIRD 2\.[\s\S]*"etcd": "3\.[\s\S]*"server": "\d+\./],
      ['system/processes.txt', /calico-node|bird/],
      ['network/ip4-addr.txt', new RegExp(`inet ${h1.ns.ip.replace(/\./g, '\\.')}/24`)],
      ['network/ip6-addr.txt', /inet6|^$/],
      ['network/link.txt', /cali[0-9a-f]{11}/],
      ['network/ip4-route.txt', /198\.19\.0\.2 dev cali[\s\S]*198\.19\.1\.2 via 198\.18\.0\.12 dev eth0 proto bird/],
      ['network/ip6-route.txt', /fe80::|ff00::/],
      ['network/ip4-neigh.txt', /198\.18\.0\.12/],
      ['iptables/iptables-save.txt', /^\[\d+:\d+\] -A FORWARD .*-j cali-FORWARD/m],
      ['iptables/ip6tables-save.txt', /cali-FORWARD/],
      ['iptables/ipset-list.txt', /Name: cali4g-[\s\S]*198\.19\.0\.2/],
      ['bird/status.txt', /BIRD 2\.[\s\S]*up and running/],
      ['bird/protocols.txt', /BGP[\s\S]*Established[\s\S]*Neighbor address: 198\.18\.0\.12/],
      ['bird/routes.txt', /198\.19\.1\.2\/32/],
      ['bird/bird.conf', /protocol kernel/],
      ['node/node.state.json', /"role": "node"/],
      ['etcd/calico.json', /"\/calico\/host\/h1\/bird_ip": "198\.18\.0\.11"/],
      ['docker/ps.txt', /db$/m],
      ['docker/inspect.json', /"CALICO_IP=198\.19\.0\.2"/],
      ['logs/calico-node.log', /"name":"calico-node"/],
      ['logs/calico-bgp-config.log', /bird/i],
      ['logs/operator.log', /started by/],
    ];
    for (const [name, re] of want) {
      const text = files.get(name);
      expect(text, `${name} is missing`).toBeDefined();
      if (name !== 'network/ip6-addr.txt') expect(text!.length, `${name} is empty`).toBeGreaterThan(0);
      expect(text, name).toMatch(re);
    }
    expect(files.has('node/agent-status.json')).toBe(false);
    expect([...files.keys()].filter((f) => /\.key$/.test(f))).toEqual([]);

    // Redaction: structured where the shape is known…
    const inspect = JSON.parse(files.get('docker/inspect.json')!) as {
      Name: string;
      Config: { Env: string[]; Labels: Record<string, string> };
    }[];
    expect(inspect.map((c) => c.Name)).toEqual(['/db']); // only h1's Calico containers
    expect(inspect[0]!.Config.Env).toEqual(
      expect.arrayContaining(['DB_PASSWORD=[redacted]', 'PLAIN=visible', 'CALICO_IP=198.19.0.2']),
    );
    const keys = (JSON.parse(files.get('etcd/calico.json')!) as { keys: Record<string, string> }).keys;
    expect(keys['/calico/config/DiagsTestPassword']).toBe('[redacted]');
    expect(keys['/calico/network/group/g-diags/name']).toBe('diags');
    const state = JSON.parse(files.get('node/node.state.json')!) as { argv: string[]; token: string };
    expect(state).toMatchObject({ argv: ['--etcd-key', '[redacted]'], token: '[redacted]' });
    // …and as text in logs and command lines.
    expect(files.get('logs/operator.log')).toBe(
      'started by: docker run -e DB_PASSWORD=[redacted] busybox\nthen: calico-node --etcd-key=[redacted]\n',
    );
    expectNoSecret(files);
  });

  it('prints the archive only on stdout and no progress in a pipe', async () => {
    const r = await collectCmd(cluster.host('h1'), [`--output=${work}/quiet.tar.gz`, '--no-upload'], true);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^archive: \S+quiet\.tar\.gz \([\d.]+ kB; 24 sources: 23 ok, 1 absent, 0 failed; see summary\.json\)\nnot uploaded \(--no-upload\)\n$/,
    );
    expect(r.stderr).toBe('');
  });

  it('records a failing source and still delivers the rest', async () => {
    // BIRD's socket moved away: the BIRD sources fail, everything else is collected.
    const r = await collectCmd(
      cluster.host('h2'),
      [`--output=${work}/`, '--json', `--state-dir=${work}/nothing-here`],
      true,
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { file: string; failed: string[]; absent: string[] };
    expect(out.failed).toEqual(['bird-status', 'bird-protocols', 'bird-routes']);
    expect(out.absent).toEqual(['bird-conf', 'node-state', 'agent-status']);
    const files = await extract(out.file);
    const s = JSON.parse(files.get('summary.json')!) as { sources: { name: string; status: string; error?: string }[] };
    expect(s.sources.find((x) => x.name === 'bird-routes')).toMatchObject({
      status: 'error',
      error: expect.stringContaining('Unable to connect to server control socket'),
    });
    expect(files.get('network/ip4-addr.txt')).toContain('198.18.0.12/24');
    expect(files.get('iptables/iptables-save.txt')).toContain('cali-FORWARD');
  });
});

describe('upload', () => {
  it('PUTs the archive and prints the URL the server answered; the bytes are the local file', async () => {
    const srv = await uploadServer((_req, res) => res.writeHead(201, { location: '/files/abc123' }).end());
    try {
      const r = await collectCmd(cluster.host('h1'), [`--output=${work}/`, `--upload-url=${srv.url}`, '--insecure']);
      expect(r.code, r.stderr).toBe(0);
      const [, file] = /^archive: (\S+)/m.exec(r.stdout)!;
      expect(r.stdout).toContain(`\nurl: ${new URL('/files/abc123', srv.url).href}\n`);
      expect(srv.got).toHaveLength(1);
      expect(srv.got[0]!.method).toBe('PUT');
      expect(srv.got[0]!.type).toBe('application/gzip');
      expect(srv.got[0]!.body.equals(await readFile(file!))).toBe(true);
    } finally {
      await closeServer(srv.server);
    }
  });

  it('POSTs an existing archive (the retry form), with the URL from CALICO_DIAGS_UPLOAD_URL and from the JSON answer', async () => {
    const file = `${work}/quiet.tar.gz`;
    const srv = await uploadServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url: 'http://127.0.0.1/d/xyz' })),
    );
    try {
      const r = await collectCmd(
        cluster.host('h1'),
        [`--upload-file=${file}`, '--upload-method=post', '--insecure'],
        false,
        { CALICO_DIAGS_UPLOAD_URL: srv.url },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^archive: .*quiet\.tar\.gz \([\d.]+ kB\)\nurl: http:\/\/127\.0\.0\.1\/d\/xyz\n$/);
      expect(srv.got.map((g) => g.method)).toEqual(['POST']);
      expect(srv.got[0]!.body.equals(await readFile(file))).toBe(true);
    } finally {
      await closeServer(srv.server);
    }
  });

  it('keeps the file after 4 failed tries (HTTP 500) and prints the calicoctl command that retries; that command works', async () => {
    const srv = await uploadServer((_req, res) => res.writeHead(500).end('disk full'));
    try {
      const r = await collectCmd(cluster.host('h1'), [
        `--output=${work}/`,
        `--upload-url=${srv.url}`,
        '--insecure',
        '--json',
      ]);
      expect(r.code).toBe(6);
      // The server refused every one of the 4 tries.
      expect(srv.got.map((g) => g.method)).toEqual(['PUT', 'PUT', 'PUT', 'PUT']);
      type Try = { attempt: number; startedAt: string; error: string; retryInMs?: number };
      const out = JSON.parse(r.stdout) as { file: string; upload: { tries: Try[] } };
      const file = out.file;
      // The tries as the command recorded them: each failed with the server's answer, then paused
      // 0.5, 1 and 2 s, and each began no sooner than that pause after the one before.
      const { tries } = out.upload;
      expect(tries.map((t) => [t.attempt, t.error, t.retryInMs])).toEqual([
        [1, 'HTTP 500 Internal Server Error: disk full', 500],
        [2, 'HTTP 500 Internal Server Error: disk full', 1000],
        [3, 'HTTP 500 Internal Server Error: disk full', 2000],
        [4, 'HTTP 500 Internal Server Error: disk full', undefined],
      ]);
      for (const [i, t] of tries.slice(1).entries()) {
        const before = tries[i]!;
        const gap = Date.parse(t.startedAt) - Date.parse(before.startedAt);
        expect(gap, `try ${t.attempt}`).toBeGreaterThanOrEqual(before.retryInMs!);
      }
      expect(r.stderr).toContain('upload failed after 4 tries: HTTP 500 Internal Server Error: disk full');
      expect(r.stderr).toContain(
        `the archive is kept at ${file}; to retry the upload: calicoctl diags --upload-file=${file} --upload-url=${srv.url} --insecure\n`,
      );
      expect((await stat(file)).size).toBeGreaterThan(0);
      // The same retry, through calico-diags (calicoctl's diags command runs the same code).
      const ok = await uploadServer((_req, res) => res.writeHead(201).end());
      try {
        const again = await collectCmd(cluster.host('h1'), [
          `--upload-file=${file}`,
          `--upload-url=${ok.url}`,
          '--insecure',
        ]);
        expect(again.code, again.stderr).toBe(0);
        expect(again.stdout).toContain(`url: ${ok.url}\n`);
        expect(ok.got[0]!.body.equals(await readFile(file))).toBe(true);
      } finally {
        await closeServer(ok.server);
      }
    } finally {
      await closeServer(srv.server);
    }
  });

  it('keeps the file when nothing listens', async () => {
    const url = `http://127.0.0.1:${await freePort()}/upload`;
    const r = await collectCmd(cluster.host('h1'), [
      `--output=${work}/`,
      `--upload-url=${url}`,
      '--upload-method=post',
      '--insecure',
    ]);
    expect(r.code).toBe(6);
    const [, file] = /^archive: (\S+)/m.exec(r.stdout)!;
    expect(r.stderr).toMatch(/upload failed after 4 tries: .*ECONNREFUSED/);
    expect(r.stderr).toContain(
      `to retry the upload: calicoctl diags --upload-file=${file} --upload-url=${url} --upload-method=post --insecure`,
    );
    expect((await stat(file!)).isFile()).toBe(true);
  });

  it('refuses bad options with exit 2', async () => {
    for (const args of [
      ['--upload-method=patch'],
      ['--upload-url=ftp://x/'],
      ['--upload-file=/nonexistent.tar.gz', '--upload-url=https://127.0.0.1:1/'],
    ]) {
      const r = await collectCmd(cluster.host('h1'), args);
      expect(r.code, args.join(' ')).toBe(2);
    }
  });

  it('refuses plain http without --insecure, collecting and sending nothing, naming the URL masked', async () => {
    const srv = await uploadServer((_req, res) => res.writeHead(201).end());
    try {
      const url = `${srv.url}?sv=1&sig=SIGNATURE-VALUE`;
      const before = await readdir(work);
      const r = await collectCmd(cluster.host('h1'), [`--output=${work}/`, `--upload-url=${url}`]);
      expect(r.code).toBe(2);
      const masked = `${srv.url}?sv=1&sig=[redacted]`;
      expect(r.stderr).toContain(
        `upload URL "${masked}" is plain http: the archive would travel unencrypted; use https`,
      );
      expect(r.stdout + r.stderr).not.toContain('SIGNATURE-VALUE');
      expect(srv.got).toEqual([]);
      expect(await readdir(work)).toEqual(before);
      // The control: with --insecure the same command collects and uploads, and still shows the URL masked.
      const ok = await collectCmd(cluster.host('h1'), [`--output=${work}/`, `--upload-url=${url}`, '--insecure']);
      expect(ok.code, ok.stderr).toBe(0);
      expect(srv.got.map((g) => g.method)).toEqual(['PUT']);
      expect(ok.stderr).toContain(`warning: uploading over plain http (--insecure): ${masked} and the archive travel`);
      expect(ok.stdout).toContain(`url: ${masked}\n`);
      expect(ok.stdout + ok.stderr).not.toContain('SIGNATURE-VALUE');
    } finally {
      await closeServer(srv.server);
    }
  });
});

describe('cluster mode', () => {
  const services = new Map<string, ManagedProcess>();
  const serve = async (name: string) => {
    const h = cluster.host(name);
    const p = h.ns.spawn(`calico-diags-${Date.now()}`, [
      process.execPath,
      MAIN,
      'serve',
      ...common(h),
      `--listen=${h.ns.ip}:9300`,
      '--lease-ttl=30',
    ]);
    services.set(name, p);
    await waitFor(
      `${name}'s diags service registered`,
      async () => {
        if (!p.running) throw new Error(p.log());
        return (await cluster.ds.get(diagsUrlKey(name))) === `http://${h.ns.ip}:9300/`;
      },
      20_000,
      () => p.log(),
    );
  };
  afterAll(async () => {
    for (const p of services.values()) await p.stop();
    for (const k of ['/calico/host/h3/diags_url', '/calico/host/h4/alive']) await cluster.ds.delete(k);
  });

  it('gathers every host into one archive; hosts that do not answer are named and the rest delivered', async () => {
    await serve('h1');
    await serve('h2');
    // h2's service dies without a goodbye (its registration outlives it by a lease TTL); h3 accepts but never
    // answers; h4 runs no diags service at all.
    await services.get('h2')!.kill();
    const hang = createServer(() => undefined);
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
    await cluster.ds.put('/calico/host/h3/diags_url', `http://127.0.0.1:${(hang.address() as AddressInfo).port}/`);
    await cluster.ds.put('/calico/host/h4/alive', JSON.stringify({ since: new Date().toISOString() }));
    try {
      // h3 never answers: only its --host-timeout ends the wait for it (the command is killed at 60 s).
      const argv = [
        'collect',
        '--cluster',
        `--etcd=${cluster.etcd.endpoints}`,
        `--api-token-file=${tokenFile}`,
        '--host-timeout=5',
        `--output=${work}/`,
        '--json',
      ];
      const r = await exec([process.execPath, MAIN, ...argv], { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { kind: string; file: string; failed: string[] };
      expect(out.kind).toBe('cluster');
      expect(out.failed).toEqual(['h2', 'h3', 'h4']);
      expect(out.file).toMatch(/calico-diags-cluster-\d{8}T\d{6}Z\.tar\.gz$/);
      const files = await extract(out.file);
      const summary = JSON.parse(files.get('summary.json')!) as {
        kind: string;
        hosts: {
          host: string;
          status: string;
          url: string | null;
          error?: string;
          bytes: number;
          failedSources?: string[];
        }[];
      };
      const by = Object.fromEntries(summary.hosts.map((h) => [h.host, h]));
      expect(by.h1).toMatchObject({ status: 'ok', url: 'http://198.18.0.11:9300/', failedSources: [] });
      expect(by.h1!.bytes).toBeGreaterThan(1000);
      expect(by.h2).toMatchObject({
        status: 'error',
        url: 'http://198.18.0.12:9300/',
        error: expect.stringContaining('ECONNREFUSED'),
      });
      expect(by.h3).toMatchObject({ status: 'error', error: 'no complete answer within 5 s' });
      expect(by.h4).toMatchObject({
        status: 'missing',
        url: null,
        error: expect.stringContaining('no diags service registered'),
      });
      // h1's folder is the same host archive as collected locally; the others have none.
      expect(JSON.parse(files.get('h1/summary.json')!)).toMatchObject({ kind: 'host', host: 'h1', failed: [] });
      expect(files.get('h1/network/ip4-addr.txt')).toContain('198.18.0.11/24');
      expect(files.get('h1/bird/protocols.txt')).toContain('Established');
      expect([...files.keys()].filter((f) => /^h[234]\//.test(f))).toEqual([]);
      expectNoSecret(files);
    } finally {
      await closeServer(hang);
    }
  });

  it('--max-host-bytes: an oversize host is named with the reason and left out; the rest is collected', async () => {
    // h3 "serves" a host archive holding 3 MiB of random bytes: it does not compress, so it is over a 1 MiB bound.
    const big = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/gzip' });
      const entries = [
        { name: 'summary.json', data: Buffer.from('{"kind":"host","host":"h3","failed":[]}') },
        { name: 'logs/big.bin', data: randomBytes(3 * 1024 * 1024) },
      ];
      void pipeline(archiveStream('calico-diags-h3-20261201T000000Z', { entries }), res).catch(() => undefined);
    });
    await new Promise<void>((r) => big.listen(0, '127.0.0.1', () => r()));
    await cluster.ds.put('/calico/host/h3/diags_url', `http://127.0.0.1:${(big.address() as AddressInfo).port}/`);
    const collectCluster = async (extra: string[]) => {
      const etcd = `--etcd=${cluster.etcd.endpoints}`;
      const argv = [
        'collect',
        '--cluster',
        etcd,
        `--api-token-file=${tokenFile}`,
        '--host-timeout=30',
        `--output=${work}/`,
        '--json',
      ];
      const r = await exec([process.execPath, MAIN, ...argv, ...extra], { timeoutMs: 90_000 });
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { file: string; failed: string[] };
      const files = await extract(out.file);
      type Host = { host: string; status: string; error?: string; bytes: number };
      const summary = JSON.parse(files.get('summary.json')!) as { hosts: Host[] };
      return { out, files, by: Object.fromEntries(summary.hosts.map((h) => [h.host, h])) };
    };
    try {
      const bounded = await collectCluster(['--max-host-bytes=1M']);
      const reason = 'the archive is over 1048576 bytes (--max-host-bytes); what arrived is left out';
      expect(bounded.by.h3).toMatchObject({ status: 'error', error: reason });
      expect(bounded.out.failed).toContain('h3');
      expect([...bounded.files.keys()].filter((f) => f.startsWith('h3/'))).toEqual([]);
      expect(bounded.by.h1).toMatchObject({ status: 'ok' });
      expect(bounded.files.get('h1/network/ip4-addr.txt')).toContain('198.18.0.11/24');
      // The control: under the default bound (256 MiB) the same h3 is collected, big file and all.
      const roomy = await collectCluster([]);
      expect(roomy.by.h3).toMatchObject({ status: 'ok' });
      expect(roomy.files.get('h3/logs/big.bin')?.length).toBeGreaterThan(0);
      expect(roomy.by.h1).toMatchObject({ status: 'ok' });
    } finally {
      await closeServer(big);
    }
  });

  it('GET /diags is a 401 without the cluster token or with a wrong one, and the archive with it', async () => {
    const url = new URL('diags', (await cluster.ds.get(diagsUrlKey('h1')))!);
    for (const headers of [
      {},
      { authorization: `Bearer ${token.slice(1)}x` },
      { authorization: `Basic ${token}` },
    ] as Record<string, string>[]) {
      const r = await fetch(url, { headers });
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer realm="calico-diags"');
      expect(((await r.json()) as { message: string }).message).toMatch(
        /^GET \/diags needs "Authorization: Bearer <token>"/,
      );
    }
    // Control: the same request with the token gets h1's archive.
    const ok = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-calico-host')).toBe('h1');
    expect((await ok.arrayBuffer()).byteLength).toBeGreaterThan(1000);
    // /healthz stays open, for whoever checks the service is up.
    expect((await fetch(new URL('healthz', url))).status).toBe(200);
  });

  it('--cluster without a readable token file says so and collects nothing', async () => {
    const missing = join(work, 'no-such-token');
    const argv = [
      'collect',
      '--cluster',
      `--etcd=${cluster.etcd.endpoints}`,
      `--api-token-file=${missing}`,
      `--output=${work}/`,
    ];
    const r = await exec([process.execPath, MAIN, ...argv], { timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "--cluster sends the cluster API token (or a client certificate, --api-cert) to every host's diags service: " +
        `no API token file at ${missing}`,
    );
    expect(r.stdout).toBe('');
  });

  it('a service that stops cleanly removes its registration', async () => {
    await services.get('h1')!.stop();
    await waitFor('h1 diags_url gone', async () => (await cluster.ds.get(diagsUrlKey('h1'))) === undefined, 5_000);
  });
});
