import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createRequire } from 'node:module';
import {
  Dockerd,
  Etcd,
  Fabric,
  exec,
  findLeftovers,
  pidAlive,
  requireRoot,
  snapshotSystem,
  waitFor,
  type ExecResult,
  type NamespaceHost,
  type SystemSnapshot,
} from '@calico/testkit';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import { decodeHostAlive, hostAliveKey } from '@calico/keyspace';
import { checkProcess, readCmdline, readProcStat, recordProcess, type ProcessRecord } from '@calico/proc';

const require = createRequire(import.meta.url);
const calicoctlJs = join(dirname(require.resolve('@calico/calicoctl/package.json')), 'dist', 'main.js');
const SERVICES = ['calico-bgp-config', 'calico-diags', 'calico-node'];
/** How calicoctl names a supervisor that has exited: reaped, or a zombie nobody reaped. */
const EXITED = '(has exited \\(a zombie, not yet reaped\\)|is not running)';
const STALE = 'removed its stale pid and state files';

interface State {
  services: Record<string, { pid: number | null; startTicks?: number; cmdline?: string[]; restarts: number }>;
}

/**
 * kill -9 of the supervisor and of a host's services, then `calicoctl node` at once: it starts
 * them again (a dead, zombie or reused supervisor pid is not "already running"), never doubles a
 * service the dead supervisor left running, and `calicoctl status` tells the truth the same way.
 */
describe('calicoctl node after its supervisor was killed', () => {
  let dockerd: Dockerd;
  let etcd: Etcd;
  let fabric: Fabric;
  let ds: Datastore;
  let h1: NamespaceHost;
  let dir: string;
  let before: SystemSnapshot;
  let failed = false;
  /** Every pid this file saw started (services, supervisors, BIRD, its own helpers). */
  const pids = new Set<number>();
  const dirs: string[] = [];
  const helpers: ChildProcess[] = [];

  const run = (...p: string[]) => join(dir, 'h1', 'run', ...p);
  const birdPidFile = () => join(dir, 'h1', 'state', 'bird.pid');
  const calicoctl = (args: string[]): Promise<ExecResult> =>
    h1.exec(
      [
        process.execPath,
        calicoctlJs,
        ...args,
        '--hostname=h1',
        `--etcd=${etcd.endpoints}`,
        `--run-dir=${run()}`,
        `--log-dir=${join(dir, 'h1', 'log')}`,
        `--state-dir=${join(dir, 'h1', 'state')}`,
      ],
      { timeoutMs: 120_000 },
    );
  const startNode = () => calicoctl(['node', `--ip=${h1.ip}`, `--docker=${dockerd.host}`]);

  const supervisor = async (): Promise<ProcessRecord> => {
    const r = JSON.parse(await readFile(run('node.supervisor.pid'), 'utf8')) as ProcessRecord;
    pids.add(r.pid);
    return r;
  };
  const services = async (): Promise<Record<string, ProcessRecord>> => {
    const st = JSON.parse(await readFile(run('node.state.json'), 'utf8')) as State;
    const out: Record<string, ProcessRecord> = {};
    for (const [name, s] of Object.entries(st.services)) {
      if (s.pid === null) continue;
      out[name] = { pid: s.pid, startTicks: s.startTicks, cmdline: s.cmdline };
      pids.add(s.pid);
    }
    return out;
  };
  const birdPid = async () => {
    const pid = Number((await readFile(birdPidFile(), 'utf8')).trim());
    pids.add(pid);
    return pid;
  };
  const alive = (r: ProcessRecord) => checkProcess(r).alive;
  /** kill -9 by pid, then wait until the process has exited (gone, or a zombie nobody reaps). */
  const kill9 = async (what: string, r: ProcessRecord) => {
    expect(alive(r), `${what} pid ${r.pid} alive before the kill`).toBe(true);
    process.kill(r.pid, 'SIGKILL');
    await waitFor(`${what} (pid ${r.pid}) to exit`, () => !alive(r), 10_000);
  };
  /** Processes on this machine whose command line has this argument. */
  const processesWith = async (arg: string) => {
    const out: number[] = [];
    for (const e of await readdir('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      if (readCmdline(Number(e))?.includes(arg) && pidAlive(Number(e))) out.push(Number(e));
    }
    return out.sort();
  };
  const birdUp = async () =>
    (await h1.exec(['birdc', '-s', join(dir, 'h1', 'state', 'bird.ctl'), 'show', 'status'])).stdout.includes(
      'up and running',
    );
  /** The pid in this host's liveness key, or undefined while it has none. */
  const alivePid = async () => {
    const key = hostAliveKey('h1');
    const v = await ds.get(key);
    if (v === undefined) return undefined;
    const d = decodeHostAlive(key, v);
    return d.ok ? d.value.pid : undefined;
  };
  const expectRunning = async () => {
    const sup = await supervisor();
    const svc = await services();
    expect(Object.keys(svc).sort()).toEqual(SERVICES);
    expect(alive(sup)).toBe(true);
    for (const [name, r] of Object.entries(svc)) expect(alive(r), `${name} pid ${r.pid}`).toBe(true);
    let last: number | undefined;
    await waitFor(
      'the liveness key to name the running calico-node',
      async () => (last = await alivePid()) === svc['calico-node']!.pid,
      30_000,
      () => `key pid ${last}`,
    );
    const st = await calicoctl(['status', '--json']);
    expect(st.code, st.stdout + st.stderr).toBe(0);
    const j = JSON.parse(st.stdout) as {
      node: string;
      reason: string | null;
      services: { name: string; pid: number | null; state: string }[];
    };
    expect(j.node).toBe('running');
    expect(j.reason).toBeNull();
    expect(j.services.map((s) => [s.name, s.pid, s.state]).sort()).toEqual(
      SERVICES.map((n) => [n, svc[n]!.pid, 'running']),
    );
    return { sup, svc };
  };
  /** A second `calicoctl node` while everything is up: "already running", and nothing started. */
  const expectAlreadyRunning = async (sup: ProcessRecord, svc: Record<string, ProcessRecord>) => {
    const again = await startNode();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`calico-node is already running on h1 (supervisor pid ${sup.pid})`);
    expect(await supervisor()).toEqual(sup);
    expect(await services()).toEqual(svc);
  };

  beforeAll(async () => {
    requireRoot();
    before = await snapshotSystem();
    dir = await mkdtemp(join(tmpdir(), 'calico-sup-e2e-'));
    dirs.push(dir);
    dockerd = await Dockerd.start();
    pids.add(dockerd.pid);
    dirs.push(dockerd.dir);
    fabric = await Fabric.create();
    dirs.push(fabric.dir);
    const rootIp = await fabric.linkRoot();
    etcd = await Etcd.start({ listenIp: rootIp });
    for (const p of etcd.pids) pids.add(p);
    dirs.push(etcd.dir);
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    h1 = await fabric.addHost('h1');
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && dir) console.error((await exec(['sh', '-c', `tail -n 30 ${join(dir, 'h1', 'log')}/*.log`])).stdout);
    for (const h of helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
    // Whatever a failed test left running: node stop finds it by its records.
    if (h1) await calicoctl(['node', 'stop']).catch(() => undefined);
    ds?.close();
    await fabric?.destroy();
    await etcd?.stop();
    await dockerd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("starts the host's services; run again while they are up, it says already running, starts nothing", async () => {
    const r = await startNode();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('calico-node is running on h1');
    const { sup, svc } = await expectRunning();
    await expectAlreadyRunning(sup, svc);
  });

  it('services a killed supervisor left running are stopped, not doubled; BIRD is adopted', async () => {
    const sup = await supervisor();
    const old = await services();
    const bird = await birdPid();
    await kill9('the supervisor', sup);
    for (const r of Object.values(old)) expect(alive(r)).toBe(true);
    const st = await calicoctl(['status']);
    expect(st.code).toBe(1);
    expect(st.stdout).toMatch(
      new RegExp(`^host h1: calico-node NOT running \\(supervisor pid ${sup.pid} ${EXITED}\\)$`, 'm'),
    );
    const left = SERVICES.map((n) => `${n} (pid ${old[n]!.pid})`).join(', ');
    expect(st.stdout).toContain(`left running by the dead supervisor: ${left}`);

    const r = await startNode();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain(`removed its stale pid and state files; stopped what it left running: ${left}\n`);
    expect(r.stdout).toContain('calico-node is running on h1');
    for (const [n, o] of Object.entries(old)) expect(alive(o), `the old ${n} (pid ${o.pid})`).toBe(false);
    const { sup: sup2, svc } = await expectRunning();
    expect(sup2.pid).not.toBe(sup.pid);
    for (const n of SERVICES) expect(svc[n]!.pid).not.toBe(old[n]!.pid);
    // One of each: the one calico-node of h1, and the BIRD that was already running.
    expect(await processesWith(`--status-file=${run('agent-status.json')}`)).toEqual([svc['calico-node']!.pid]);
    expect(await processesWith(birdPidFile())).toEqual([bird]);
    expect(await birdUp()).toBe(true);
  });

  it('kill -9 of the supervisor, every service and BIRD, then calicoctl node at once: all start again', async () => {
    const sup = await supervisor();
    const old = await services();
    const bird = await birdPid();
    const leaseHolder = await alivePid();
    expect(leaseHolder).toBe(old['calico-node']!.pid);
    await kill9('the supervisor', sup);
    for (const [n, r] of Object.entries(old)) await kill9(n, r);
    await kill9('BIRD', recordProcess(bird) ?? { pid: bird });
    // What fooled the old check: an exited supervisor nobody reaped still takes signal 0.
    const zombie = readProcStat(sup.pid)?.state === 'Z';
    if (zombie) expect(() => process.kill(sup.pid, 0)).not.toThrow();

    const r = await startNode();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^calico-node on h1: supervisor pid ${sup.pid} ${EXITED}; ${STALE}$`, 'm'));
    expect(r.stdout).not.toContain('stopped what it left running');
    expect(r.stdout).toContain('calico-node is running on h1');
    const { sup: sup2, svc } = await expectRunning();
    expect(sup2.pid).not.toBe(sup.pid);
    const bird2 = await birdPid();
    expect(bird2).not.toBe(bird);
    expect(await processesWith(birdPidFile())).toEqual([bird2]);
    expect(await birdUp()).toBe(true);
    await expectAlreadyRunning(sup2, svc);
    console.log(
      `supervisor pid ${sup.pid} after kill -9: ${zombie ? 'a zombie (not reaped by its parent)' : 'reaped'}`,
    );
  });

  it('a zombie supervisor: dead to the check, not to kill(pid, 0); status says so; node starts', async () => {
    expect((await calicoctl(['node', 'stop'])).stdout).toContain('calico-node on h1 stopped');
    // A parent that does not reap: its child, killed, stays a zombie until the parent goes.
    const parent = spawn(
      'perl',
      [
        '-e',
        '$|=1; my $c = fork(); if (!$c) { exec("sleep", "1000") } print "$c\\n"; ' +
          '$SIG{TERM} = sub { waitpid($c, 0); exit 0 }; sleep 1 while 1;',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    helpers.push(parent);
    pids.add(parent.pid!);
    const zpid = await new Promise<number>((resolve) => {
      let out = '';
      parent.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) resolve(Number(out.split('\n')[0]));
      });
    });
    pids.add(zpid);
    await waitFor('the child to run sleep', () => readCmdline(zpid)?.[0] === 'sleep', 5_000);
    const rec = recordProcess(zpid)!;
    expect(checkProcess(rec)).toEqual({ alive: true, pid: zpid });
    process.kill(zpid, 'SIGKILL');
    await waitFor('the child to be a zombie', () => readProcStat(zpid)?.state === 'Z', 5_000);
    expect(checkProcess(rec)).toMatchObject({ alive: false, reason: 'zombie' });
    expect(() => process.kill(zpid, 0)).not.toThrow();

    await writeFile(run('node.supervisor.pid'), `${JSON.stringify(rec)}\n`);
    const st = await calicoctl(['status']);
    expect(st.code).toBe(1);
    expect(st.stdout).toContain(
      `calico-node NOT running (supervisor pid ${zpid} has exited (a zombie, not yet reaped))`,
    );
    const r = await startNode();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain(
      `calico-node on h1: supervisor pid ${zpid} has exited (a zombie, not yet reaped); ${STALE}\n`,
    );
    const { sup } = await expectRunning();
    expect(sup.pid).not.toBe(zpid);

    parent.kill('SIGTERM');
    await waitFor(
      'the zombie reaped by its parent',
      () => readProcStat(zpid) === null && parent.exitCode !== null,
      10_000,
    );
  });

  it('a reused supervisor pid, or an older pid file of another program: not running, left alone', async () => {
    const other = spawn('sleep', ['1000'], { stdio: 'ignore' });
    helpers.push(other);
    pids.add(other.pid!);
    const theirs = recordProcess(other.pid!)!;
    const fakeSupervisor = [
      process.execPath,
      calicoctlJs,
      '_supervise',
      JSON.stringify({ role: 'node', runDir: run() }),
    ];
    for (const [what, pidFileText, why] of [
      [
        'reused',
        JSON.stringify({ pid: theirs.pid, startTicks: theirs.startTicks! - 1, cmdline: fakeSupervisor }),
        'pid reused: another start time',
      ],
      ['older', `${theirs.pid}\n`, 'no start time recorded, and its command line is not ours'],
    ] as const) {
      expect((await calicoctl(['node', 'stop'])).stdout, what).toContain('calico-node on h1 stopped');
      await writeFile(run('node.supervisor.pid'), `${pidFileText}\n`);
      // The dead supervisor "left" a calico-node whose pid is now the other program's.
      const state = {
        role: 'node',
        pid: theirs.pid,
        startedAt: '',
        services: {
          'calico-node': {
            pid: theirs.pid,
            startTicks: theirs.startTicks! + 1,
            cmdline: ['node'],
            restarts: 0,
            startedAt: null,
            lastExit: null,
          },
        },
      };
      await writeFile(run('node.state.json'), JSON.stringify(state));
      // The old check was fooled: the pid answers signal 0.
      expect(() => process.kill(theirs.pid, 0)).not.toThrow();
      const st = await calicoctl(['status']);
      expect(st.code, what).toBe(1);
      expect(st.stdout).toContain(
        `calico-node NOT running (supervisor pid ${theirs.pid} is not the process we started (${why}))`,
      );
      const r = await startNode();
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toContain(
        `calico-node on h1: supervisor pid ${theirs.pid} is not the process we started (${why}); ${STALE}\n`,
      );
      expect(r.stdout).not.toContain('stopped what it left running');
      await expectRunning();
      expect(alive(theirs), `${what}: the other program is untouched`).toBe(true);
    }
    other.kill('SIGKILL');
    await waitFor('the other program to exit', () => other.exitCode !== null || other.signalCode !== null, 5_000);
  });

  it('calicoctl master after kill -9 of its supervisor and service starts it again', async () => {
    const runDir = join(dir, 'master', 'run');
    const api = `${fabric.rootLink!.ip}:7656`;
    const master = (args: string[]) =>
      exec(
        [
          process.execPath,
          calicoctlJs,
          'master',
          ...args,
          `--etcd=${etcd.endpoints}`,
          `--run-dir=${runDir}`,
          `--log-dir=${join(dir, 'master', 'log')}`,
        ],
        {
          timeoutMs: 90_000,
        },
      );
    const records = async () => {
      const sup = JSON.parse(await readFile(join(runDir, 'master.supervisor.pid'), 'utf8')) as ProcessRecord;
      const st = JSON.parse(await readFile(join(runDir, 'master.state.json'), 'utf8')) as State;
      const s = st.services['calico-master']!;
      pids.add(sup.pid);
      pids.add(s.pid!);
      return { sup, svc: { pid: s.pid!, startTicks: s.startTicks, cmdline: s.cmdline } };
    };
    const up = await master([`--ip=${fabric.rootLink!.ip}`, `--listen=${api}`]);
    expect(up.code, up.stderr + up.stdout).toBe(0);
    const first = await records();
    await kill9('the master supervisor', first.sup);
    await kill9('calico-master', first.svc);
    const again = await master([`--ip=${fabric.rootLink!.ip}`, `--listen=${api}`]);
    expect(again.code, again.stderr + again.stdout).toBe(0);
    expect(again.stdout).toMatch(
      new RegExp(`^calico-master: supervisor pid ${first.sup.pid} ${EXITED}; ${STALE}$`, 'm'),
    );
    expect(again.stdout).toContain(`calico-master is running: API http://${api}/`);
    const second = await records();
    expect(alive(second.sup) && alive(second.svc)).toBe(true);
    expect(second.svc.pid).not.toBe(first.svc.pid);
    const twice = await master([`--ip=${fabric.rootLink!.ip}`, `--listen=${api}`]);
    expect(twice.stdout).toContain(`calico-master is already running (supervisor pid ${second.sup.pid})`);
    expect((await master(['stop'])).stdout).toContain('calico-master stopped');
    expect(alive(second.sup) || alive(second.svc)).toBe(false);
  });

  it('node stop stops every service and BIRD; teardown leaves no process, namespace, interface or folder', async () => {
    await birdPid();
    await services();
    await supervisor();
    const stop = await calicoctl(['node', 'stop']);
    expect(stop.stdout).toContain('calico-node on h1 stopped');
    const status = await calicoctl(['status']);
    expect(status.code).toBe(1);
    expect(status.stdout).toContain('calico-node NOT running');
    ds.close();
    await fabric.destroy();
    await etcd.stop();
    await dockerd.stop();
    await rm(dir, { recursive: true, force: true });
    expect(pids.size).toBeGreaterThan(10);
    expect(await findLeftovers({ before, pids: [...pids], dirs })).toEqual([]);
  });
});
