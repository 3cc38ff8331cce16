import { spawn, type ChildProcess } from 'node:child_process';
import {
  openSync,
  closeSync,
  writeFileSync,
  mkdirSync,
  rmSync,
  readFileSync,
  appendFileSync,
  renameSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  checkProcess,
  cmdlineNamesFile,
  provenRecord,
  recordProcess,
  stopProcess,
  type CheckOptions,
  type Liveness,
  type ProcOptions,
  type ProcessRecord,
} from '@calico/proc';

export interface ServiceSpec {
  name: string;
  argv: string[];
}

export interface SupervisorSpec {
  /** "node" or "master": names the pid and state files. */
  role: string;
  runDir: string;
  logDir: string;
  services: ServiceSpec[];
  /** Files holding pids of daemons our services start (BIRD), stopped with us. */
  daemonPidFiles: string[];
}

export interface ServiceState {
  pid: number | null;
  /** The running process's start time and command line (see @calico/proc), to know it again. */
  startTicks?: number | undefined;
  cmdline?: string[] | undefined;
  restarts: number;
  startedAt: string | null;
  lastExit: string | null;
}

export interface SupervisorState {
  role: string;
  pid: number;
  startedAt: string;
  services: Record<string, ServiceState>;
  /** The spec's daemonPidFiles, so that a later calicoctl can stop them if we die. */
  daemonPidFiles?: string[] | undefined;
}

export const pidFile = (runDir: string, role: string) => join(runDir, `${role}.supervisor.pid`);
export const stateFile = (runDir: string, role: string) => join(runDir, `${role}.state.json`);

/** Readers never see half a file: write beside it, then rename over it. */
function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/**
 * The pid file holds the supervisor's record as JSON ({ pid, startTicks, cmdline }); an older
 * version wrote the bare pid.
 */
export function parsePidFile(text: string): ProcessRecord | null {
  const t = text.trim();
  if (/^\d+$/.test(t)) return { pid: Number(t) };
  try {
    const v = JSON.parse(t) as Partial<ProcessRecord>;
    if (typeof v.pid !== 'number' || !Number.isInteger(v.pid) || v.pid <= 0) return null;
    return {
      pid: v.pid,
      ...(typeof v.startTicks === 'number' ? { startTicks: v.startTicks } : {}),
      ...(Array.isArray(v.cmdline) && v.cmdline.every((a) => typeof a === 'string') ? { cmdline: v.cmdline } : {}),
    };
  } catch {
    return null;
  }
}

/** `calicoctl _supervise <spec>` of this role and run directory: how an older pid file is proven. */
export function isSupervisorCmdline(argv: string[], role: string, runDir: string): boolean {
  const i = argv.indexOf('_supervise');
  if (i < 0) return false;
  try {
    const spec = JSON.parse(argv[i + 1] ?? '') as Partial<SupervisorSpec>;
    return spec.role === role && spec.runDir === runDir;
  } catch {
    return false;
  }
}

export interface ServiceLiveness {
  name: string;
  /** When alive, the full record (start time, command line) even if the file held a pid only. */
  record: ProcessRecord;
  liveness: Liveness;
}

export interface SupervisorStatus {
  pid: number;
  record: ProcessRecord;
  liveness: Liveness;
  /** Alive and the process we started (see @calico/proc). */
  alive: boolean;
  state: SupervisorState | null;
  /** Each recorded service with a pid, and its liveness: only those alive (ours) may be signalled. */
  services: ServiceLiveness[];
}

export interface InspectOptions extends ProcOptions {
  /**
   * For service entries of an older state file (a pid only): whether a command line is that
   * service's. Without it such an entry is never taken for ours.
   */
  serviceMatches?: ((name: string, argv: string[]) => boolean) | undefined;
}

/** The liveness of a record and, when alive, its full record (see provenRecord). */
function check(rec: ProcessRecord, o: CheckOptions): { record: ProcessRecord; liveness: Liveness } {
  const liveness = checkProcess(rec, o);
  const full = liveness.alive ? provenRecord(rec, o) : null;
  // Alive a moment ago but not now: check again for the reason.
  if (liveness.alive && !full) return { record: rec, liveness: checkProcess(rec, o) };
  return { record: full ?? rec, liveness };
}

function readState(runDir: string, role: string): SupervisorState | null {
  try {
    return JSON.parse(readFileSync(stateFile(runDir, role), 'utf8')) as SupervisorState;
  } catch {
    return null;
  }
}

/**
 * What the pid and state files say of a role's supervisor and its services, each checked with
 * the one liveness rule of @calico/proc. null when no pid file exists.
 */
export function readSupervisor(runDir: string, role: string, o: InspectOptions = {}): SupervisorStatus | null {
  let record: ProcessRecord | null;
  try {
    record = parsePidFile(readFileSync(pidFile(runDir, role), 'utf8'));
  } catch {
    return null;
  }
  record ??= { pid: 0 };
  const sup = check(record, { ...o, cmdlineMatches: (argv) => isSupervisorCmdline(argv, role, runDir) });
  const state = readState(runDir, role);
  const services: ServiceLiveness[] = [];
  for (const [name, s] of Object.entries(state?.services ?? {})) {
    if (!s.pid) continue;
    const rec: ProcessRecord = { pid: s.pid, startTicks: s.startTicks, cmdline: s.cmdline };
    services.push({ name, ...check(rec, { ...o, cmdlineMatches: (argv) => o.serviceMatches?.(name, argv) ?? false }) });
  }
  return { pid: record.pid, ...sup, alive: sup.liveness.alive, state, services };
}

export interface Cleanup {
  /** Services and daemons that were alive and ours, and have been stopped: "calico-node (pid 12)". */
  stopped: string[];
}

/**
 * After the supervisor died: stops what it left running (services, and with `daemons` the
 * daemons it would have stopped) by pid, only those proven ours, then removes its pid and state
 * files. Services are stopped rather than adopted: a supervisor restarts only its own children
 * (it learns of their exit from the kernel), so an adopted one could only be watched by
 * polling, and its log descriptors and restart count would be the dead supervisor's. BIRD is
 * left to bgp-config, which adopts a BIRD that answers on its socket (it must survive
 * restarts: stopping it would withdraw this host's routes).
 */
export async function cleanStale(
  s: SupervisorStatus,
  runDir: string,
  role: string,
  o: ProcOptions & { daemons?: boolean } = {},
): Promise<Cleanup> {
  if (s.alive) throw new Error(`the ${role} supervisor (pid ${s.pid}) is alive; not cleaning its files`);
  const stopped: string[] = [];
  await Promise.all(
    s.services
      .filter((svc) => svc.liveness.alive)
      .map(async (svc) => {
        const r = await stopProcess(svc.record, o);
        if (r !== 'not-running') stopped.push(`${svc.name} (pid ${svc.record.pid})`);
      }),
  );
  if (o.daemons) {
    for (const file of s.state?.daemonPidFiles ?? []) {
      const pid = readPid(file);
      if (!pid) continue;
      const r = await stopProcess({ pid }, { ...o, cmdlineMatches: cmdlineNamesFile(file) });
      if (r !== 'not-running') stopped.push(`daemon pid ${pid} (${file})`);
    }
  }
  rmSync(pidFile(runDir, role), { force: true });
  rmSync(stateFile(runDir, role), { force: true });
  return { stopped: stopped.sort() };
}

function readPid(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

/**
 * Runs the services of one role and keeps them running: a service that exits is started
 * again after a growing pause (reset once it has stayed up a while). SIGTERM stops them all,
 * then the daemons they started, and removes the pid file. The pid file and the state file
 * record each process's start time and command line, so that calicoctl can tell a live one
 * from a zombie or a reused pid.
 */
export async function supervise(spec: SupervisorSpec): Promise<void> {
  mkdirSync(spec.runDir, { recursive: true });
  mkdirSync(spec.logDir, { recursive: true });
  const log = (msg: string) =>
    appendFileSync(join(spec.logDir, 'supervisor.log'), `${new Date().toISOString()} ${msg}\n`);
  const other = readSupervisor(spec.runDir, spec.role);
  if (other?.alive && other.pid !== process.pid) {
    // Two "calicoctl node" at once: the first supervisor keeps the host.
    log(`another ${spec.role} supervisor (pid ${other.pid}) is running; exiting`);
    return;
  }
  const me = recordProcess(process.pid) ?? { pid: process.pid };
  writeFileAtomic(pidFile(spec.runDir, spec.role), `${JSON.stringify(me)}\n`);
  const state: SupervisorState = {
    role: spec.role,
    pid: process.pid,
    startedAt: new Date().toISOString(),
    services: {},
    daemonPidFiles: spec.daemonPidFiles,
  };
  const save = () => writeFileAtomic(stateFile(spec.runDir, spec.role), JSON.stringify(state, null, 2));
  const children = new Map<string, ChildProcess>();
  let stopping = false;

  const start = (svc: ServiceSpec, backoff: number) => {
    const fd = openSync(join(spec.logDir, `${svc.name}.log`), 'a');
    const child = spawn(svc.argv[0]!, svc.argv.slice(1), { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    children.set(svc.name, child);
    const s = (state.services[svc.name] ??= { pid: null, restarts: 0, startedAt: null, lastExit: null });
    // spawn returns once the child has exec'd, so /proc already shows its own command line.
    const rec = child.pid ? recordProcess(child.pid) : null;
    s.pid = child.pid ?? null;
    s.startTicks = rec?.startTicks;
    s.cmdline = rec?.cmdline;
    s.startedAt = new Date().toISOString();
    save();
    log(`started ${svc.name} (pid ${child.pid})`);
    const startedAt = Date.now();
    child.once('exit', (code, signal) => {
      s.pid = null;
      s.startTicks = undefined;
      s.cmdline = undefined;
      s.lastExit = `${new Date().toISOString()} code=${code} signal=${signal}`;
      save();
      if (stopping) return;
      // A service that stayed up a minute gets a fresh backoff.
      const next = Date.now() - startedAt > 60_000 ? 250 : Math.min(backoff * 2, 10_000);
      log(`${svc.name} exited (code ${code}, signal ${signal}); restarting in ${next} ms`);
      s.restarts++;
      setTimeout(() => {
        if (!stopping) start(svc, next);
      }, next);
    });
  };

  for (const svc of spec.services) start(svc, 250);

  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log(`${sig}: stopping ${[...children.keys()].join(', ')}`);
      const waits = [...children.values()]
        .filter((c) => c.exitCode === null && c.signalCode === null)
        .map(
          (c) =>
            new Promise<void>((r) => {
              c.once('exit', () => r());
              c.kill('SIGTERM');
              setTimeout(() => c.kill('SIGKILL'), 10_000).unref();
            }),
        );
      void Promise.all(waits)
        .then(() => Promise.all(spec.daemonPidFiles.map((f) => stopDaemon(f, log))))
        .then(() => {
          rmSync(pidFile(spec.runDir, spec.role), { force: true });
          save();
          log('stopped');
          resolve();
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

async function stopDaemon(file: string, log: (m: string) => void): Promise<void> {
  const pid = readPid(file);
  if (!pid) return;
  const r = await stopProcess({ pid }, { cmdlineMatches: cmdlineNamesFile(file) });
  if (r === 'not-running') log(`daemon of ${file} (pid ${pid}) is not running, or not ours; left alone`);
  else log(`stopped daemon pid ${pid} (${file}): ${r}`);
}
