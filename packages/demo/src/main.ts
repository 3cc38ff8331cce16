#!/usr/bin/env node
// calico-demo up|down: see the README. Everything it starts is recorded in a state file, so
// that "down" (or a second "up") removes exactly that, by pid and by name.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { CalicoClient } from '@calico/client';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import { recordProcess, stopProcess, type ProcessRecord } from '@calico/proc';
import {
  Dockerd,
  Etcd,
  Fabric,
  ensureBusyboxImage,
  exec,
  listNetns,
  unmountUnder,
  waitFor,
  type ExecResult,
} from '@calico/testkit';

const require = createRequire(import.meta.url);
const calicoctlJs = join(dirname(require.resolve('@calico/calicoctl/package.json')), 'dist', 'main.js');

const ROOT = process.env.CALICO_DEMO_DIR ?? '/var/lib/calico-demo';
const STATE = join(ROOT, 'state.json');
const FABRIC_ID = 'cdemo';
const HOSTS = ['h1', 'h2'] as const;
const MASTER_LISTEN = '198.18.0.1:7600';
/** The cluster API token: the demo's own, never the machine's /etc/calico; the master makes it. */
const TOKEN_FILE = join(ROOT, 'etc', 'api-token');

interface DemoState {
  dockerdPid: number;
  /** dockerd and etcd as recorded at start (pid, start time, command line), so that down signals only them. */
  dockerdProc?: ProcessRecord | null;
  etcdProcs?: ProcessRecord[];
  dockerdDir: string;
  dockerHost: string;
  etcdPids: number[];
  etcdDir: string;
  etcdEndpoints: string;
  /** --etcd and the client certificate's --etcd-ca/--etcd-cert/--etcd-key (none in an older state). */
  etcdFlags?: string[];
  fabricId: string;
  rootLink: string | null;
  netns: string[];
  hosts: { name: string; netns: string; ip: string; dir: string }[];
}

const say = (s: string) => process.stdout.write(`${s}\n`);
const step = (n: number, total: number, s: string) => say(`[${n}/${total}] ${s}`);

function hostDir(name: string): string {
  return join(ROOT, 'hosts', name);
}

function calicoctlIn(netns: string | null, name: string | null, args: string[], etcd: string[]): Promise<ExecResult> {
  const dirs = name
    ? [
        `--hostname=${name}`,
        `--run-dir=${join(hostDir(name), 'run')}`,
        `--log-dir=${join(hostDir(name), 'log')}`,
        `--state-dir=${join(hostDir(name), 'state')}`,
      ]
    : [];
  const argv = [process.execPath, calicoctlJs, ...args, ...etcd, `--api-token-file=${TOKEN_FILE}`, ...dirs];
  return exec(netns ? ['ip', 'netns', 'exec', netns, ...argv] : argv, { timeoutMs: 180_000 });
}

async function must(what: string, p: Promise<ExecResult>): Promise<ExecResult> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  return r;
}

async function up(): Promise<void> {
  if (existsSync(STATE)) {
    say('A demo cluster is already running: taking it down first, so this run starts clean.');
    await down();
  }
  const total = 6;
  await mkdir(ROOT, { recursive: true });
  step(1, total, 'starting dockerd with its own socket, data and exec roots (no bridge, no iptables)…');
  const dockerd = await Dockerd.start({ dir: join(ROOT, 'docker') });
  const image = await ensureBusyboxImage(dockerd.host, 'busybox');
  step(2, total, 'making two namespace hosts on a fabric (198.18.0.0/24) and starting etcd on it…');
  const fabric = await Fabric.create({ id: FABRIC_ID, dir: join(ROOT, 'fabric') });
  const rootIp = await fabric.linkRoot();
  const hosts = [];
  for (const h of HOSTS) hosts.push(await fabric.addHost(h));
  // TLS only, with client certificates: a CA and certificates made now, in ROOT/etcd/tls.
  const etcd = await Etcd.start({ dir: join(ROOT, 'etcd'), listenIp: rootIp, tls: true, tlsDays: 365 });
  const etcdFlags = etcd.clientFlags;
  const state: DemoState = {
    dockerdPid: dockerd.pid,
    dockerdProc: recordProcess(dockerd.pid),
    etcdProcs: etcd.pids.flatMap((pid) => recordProcess(pid) ?? []),
    dockerdDir: dockerd.dir,
    dockerHost: dockerd.host,
    etcdPids: etcd.pids,
    etcdDir: etcd.dir,
    etcdEndpoints: etcd.endpoints,
    etcdFlags,
    fabricId: fabric.id,
    rootLink: fabric.rootLink?.ifname ?? null,
    netns: [fabric.netns, ...hosts.map((h) => h.netns)],
    hosts: hosts.map((h) => ({ name: h.name, netns: h.netns, ip: h.ip, dir: hostDir(h.name) })),
  };
  // Recorded before anything else starts, so that "down" can always clean up.
  await writeFile(STATE, JSON.stringify(state, null, 2));

  step(
    3,
    total,
    `starting calico-master on ${MASTER_LISTEN} and calico-node (proxy, agent, bgp-config, BIRD) on each host…`,
  );
  await must(
    'calicoctl master',
    calicoctlIn(
      null,
      null,
      [
        'master',
        `--ip=${rootIp}`,
        `--listen=${MASTER_LISTEN}`,
        `--run-dir=${join(ROOT, 'master', 'run')}`,
        `--log-dir=${join(ROOT, 'master', 'log')}`,
      ],
      etcdFlags,
    ),
  );
  for (const h of state.hosts) {
    await must(
      `calicoctl node on ${h.name}`,
      calicoctlIn(h.netns, h.name, ['node', `--ip=${h.ip}`, `--docker=${dockerd.host}`], etcdFlags),
    );
    say(`      ${h.name} (${h.ip}) is up`);
  }

  step(4, total, "starting workloads through each host's Docker API proxy with CALICO_IP…");
  const docker = (h: string, args: string[]) =>
    dockerd.docker(args, { host: `unix://${join(hostDir(h), 'run', 'docker.sock')}` });
  const workloads = [
    { name: 'A', host: 'h1', ip: '198.19.1.1' },
    { name: 'B', host: 'h1', ip: '198.19.1.2' },
    { name: 'C', host: 'h1', ip: '198.19.1.3' },
    { name: 'D', host: 'h2', ip: '198.19.2.4' },
    { name: 'E', host: 'h2', ip: '198.19.2.5' },
  ];
  for (const w of workloads) {
    await must(
      `docker run ${w.name}`,
      docker(w.host, [
        'run',
        '-d',
        '--name',
        `workload-${w.name}`,
        '-e',
        `CALICO_IP=${w.ip}`,
        image,
        'sleep',
        'infinity',
      ]),
    );
    say(`      docker run -e CALICO_IP=${w.ip} --name workload-${w.name}   (on ${w.host})`);
  }

  step(5, total, 'creating the groups A+C+E, B and D with calicoctl…');
  const ctl = (args: string[]) => must(`calicoctl ${args.join(' ')}`, calicoctlIn('cdemo-h1', 'h1', args, etcdFlags));
  for (const g of ['GROUP_A_C_E', 'GROUP_B', 'GROUP_D']) await ctl(['addgroup', g]);
  for (const [c, g] of [
    ['A', 'GROUP_A_C_E'],
    ['C', 'GROUP_A_C_E'],
    ['E', 'GROUP_A_C_E'],
    ['B', 'GROUP_B'],
    ['D', 'GROUP_D'],
  ] as const)
    await ctl(['addtogroup', `workload-${c}`, g]);

  step(6, total, 'asking calicoctl check who may ping whom, then measuring it (one ping per pair)…');
  // Expected is what the policy in etcd means (calicoctl check, i.e. explain()), not a list
  // written here; the guide's own answer is checked against it.
  const t = etcd.clientTls!;
  const ds = new Datastore(
    resolveDatastoreConfig({ etcd: etcd.endpoints, etcdCa: t.ca, etcdCert: t.cert, etcdKey: t.key, env: {} }),
  );
  const expected = new Set<string>();
  try {
    const client = new CalicoClient(ds);
    for (const a of workloads) {
      for (const b of workloads)
        if (a !== b && (await client.check(a.ip, b.ip, { protocol: 'icmp' })).allowed)
          expected.add(`${a.name}>${b.name}`);
    }
  } finally {
    ds.close();
  }
  const guide = ['A>C', 'A>E', 'C>A', 'C>E', 'E>A', 'E>C'];
  const asGuide = expected.size === guide.length && guide.every((p) => expected.has(p));
  const observe = async () => {
    const seen = new Map<string, boolean>();
    await Promise.all(
      workloads.flatMap((a) =>
        workloads
          .filter((b) => b !== a)
          .map(async (b) => {
            const r = await dockerd.docker(['exec', `workload-${a.name}`, 'ping', '-c', '1', '-W', '1', b.ip]);
            seen.set(`${a.name}>${b.name}`, r.code === 0);
          }),
      ),
    );
    return seen;
  };
  let seen = await observe();
  const matches = (m: Map<string, boolean>) => [...m].every(([k, v]) => v === expected.has(k));
  // Routes and rules take a few seconds to spread; give them up to 30 s.
  await waitFor('the matrix to settle', async () => matches((seen = await observe())), 30_000).catch(() => undefined);
  say('');
  say('      expected / observed   (y = reaches, . = does not)');
  say(`      from\\to ${workloads.map((w) => `  ${w.name}  `).join('')}`);
  for (const a of workloads) {
    const cells = workloads.map((b) =>
      a === b
        ? '  -  '
        : ` ${expected.has(`${a.name}>${b.name}`) ? 'y' : '.'}/${seen.get(`${a.name}>${b.name}`) ? 'y' : '.'} `,
    );
    say(`      ${a.name} (${a.host})  ${cells.join('')}`);
  }
  const ok = matches(seen);
  say('');
  say(ok ? '      All 20 pairs match calicoctl check.' : '      MISMATCH: observed differs from expected (see above).');
  say(
    asGuide
      ? '      As the guide says: A reaches C and E (E across hosts over BGP); B and D reach no one.'
      : `      NOTE: calicoctl check differs from the guide's A+C+E matrix (${guide.join(' ')}).`,
  );
  say('');
  say('The cluster is left running. To use it:');
  for (const h of state.hosts) {
    say(`  ${h.name}: DOCKER_HOST=unix://${join(h.dir, 'run', 'docker.sock')} docker ps`);
    say(`      or: ip netns exec ${h.netns} docker -H tcp://127.0.0.1:2375 ps`);
    say(
      `      calicoctl status --hostname=${h.name} ${etcdFlags.join(' ')} --api-token-file=${TOKEN_FILE} --run-dir=${join(h.dir, 'run')} --state-dir=${join(h.dir, 'state')}   (run it with: ip netns exec ${h.netns} …)`,
    );
  }
  say(`  calicoctl showgroups --detailed ${etcdFlags.join(' ')}`);
  say(
    `  etcd (TLS only, client certificates): etcdctl --endpoints=${etcd.endpoints} ${etcd.etcdctlTlsFlags.join(' ')} get --prefix /calico`,
  );
  say(`  master API: curl -H "Authorization: Bearer $(cat ${TOKEN_FILE})" http://${MASTER_LISTEN}/v1/groups`);
  say('  take it all down: bash scripts/demo.sh down');
  if (!ok) process.exitCode = 1;
}

async function down(): Promise<void> {
  if (!existsSync(STATE)) {
    say('No demo cluster is running (nothing recorded); nothing to remove.');
    return;
  }
  const st = JSON.parse(await readFile(STATE, 'utf8')) as DemoState;
  const etcdFlags = st.etcdFlags ?? [`--etcd=${st.etcdEndpoints}`];
  say('Taking the demo cluster down…');
  for (const h of st.hosts) {
    const r = await calicoctlIn(h.netns, h.name, ['reset'], etcdFlags);
    say(`  ${r.stdout.trim() || `reset ${h.name}: ${r.stderr.trim()}`}`);
  }
  await calicoctlIn(null, null, ['master', 'stop', `--run-dir=${join(ROOT, 'master', 'run')}`], etcdFlags);
  const containers = (
    await exec(['docker', 'ps', '-aq'], { env: { ...process.env, DOCKER_HOST: st.dockerHost } })
  ).stdout
    .split('\n')
    .filter(Boolean);
  if (containers.length)
    await exec(['docker', 'rm', '-f', ...containers], { env: { ...process.env, DOCKER_HOST: st.dockerHost } });
  say(`  removed ${containers.length} container(s)`);
  // A pid in a file may since belong to another program: each is signalled only while it is
  // still the process recorded (a state of an older demo has bare pids: then its command line
  // must name the demo's own folder).
  const namesDir = (dir: string) => (argv: string[]) =>
    argv.some((a) => a.includes(`=${dir}/`) || a.startsWith(`${dir}/`));
  const stops: [string, ProcessRecord[], string][] = [
    ['dockerd', st.dockerdProc ? [st.dockerdProc] : [{ pid: st.dockerdPid }], st.dockerdDir],
    ['etcd', st.etcdProcs ?? st.etcdPids.map((pid) => ({ pid })), st.etcdDir],
  ];
  for (const [what, recs, dir] of stops) {
    for (const rec of recs) {
      const r = await stopProcess(rec, { graceMs: 20_000, cmdlineMatches: namesDir(dir) });
      if (r === 'stuck') say(`  ${what} (pid ${rec.pid}) is still there after SIGKILL`);
    }
    say(`  stopped ${what}`);
  }
  await unmountUnder(st.dockerdDir);
  const present = await listNetns();
  for (const ns of st.netns) if (present.includes(ns)) await exec(['ip', 'netns', 'del', ns]);
  if (st.rootLink) await exec(['ip', 'link', 'del', st.rootLink]);
  say(`  removed ${st.netns.length} namespace(s) and the fabric link`);
  await rm(ROOT, { recursive: true, force: true });
  say(`  removed ${ROOT} (etcd data, with every key, and dockerd's data)`);
}

const cmd = process.argv[2] ?? 'up';
try {
  if (cmd === 'up') await up();
  else if (cmd === 'down') await down();
  else {
    console.error('usage: calico-demo [up|down]');
    process.exitCode = 2;
  }
} catch (e) {
  console.error(`demo: ${(e as Error).message}`);
  console.error('Run "bash scripts/demo.sh down" to remove whatever was started.');
  process.exitCode = 1;
}
