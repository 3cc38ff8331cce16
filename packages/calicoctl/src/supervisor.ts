import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, writeFileSync, mkdirSync, rmSync, readFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';

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

export interface SupervisorState {
  role: string;
  pid: number;
  startedAt: string;
  services: Record<string, { pid: number | null; restarts: number; startedAt: string | null; lastExit: string | null }>;
}

export const pidFile = (runDir: string, role: string) => join(runDir, `${role}.supervisor.pid`);
export const stateFile = (runDir: string, role: string) => join(runDir, `${role}.state.json`);

export function readSupervisor(runDir: string, role: string): { pid: number; alive: boolean; state: SupervisorState | null } | null {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile(runDir, role), 'utf8').trim());
  } catch {
    return null;
  }
  let alive = false;
  try {
    process.kill(pid, 0);
    alive = true;
  } catch {
    alive = false;
  }
  let state: SupervisorState | null = null;
  try {
    state = JSON.parse(readFileSync(stateFile(runDir, role), 'utf8')) as SupervisorState;
  } catch {
    state = null;
  }
  return { pid, alive, state };
}

/**
 * Runs the services of one role and keeps them running: a service that exits is started
 * again after a growing pause (reset once it has stayed up a while). SIGTERM stops them all,
 * then the daemons they started, and removes the pid file.
 */
export async function supervise(spec: SupervisorSpec): Promise<void> {
  mkdirSync(spec.runDir, { recursive: true });
  mkdirSync(spec.logDir, { recursive: true });
  const log = (msg: string) => appendFileSync(join(spec.logDir, 'supervisor.log'), `${new Date().toISOString()} ${msg}\n`);
  writeFileSync(pidFile(spec.runDir, spec.role), `${process.pid}\n`);
  const state: SupervisorState = { role: spec.role, pid: process.pid, startedAt: new Date().toISOString(), services: {} };
  const save = () => writeFileSync(stateFile(spec.runDir, spec.role), JSON.stringify(state, null, 2));
  const children = new Map<string, ChildProcess>();
  let stopping = false;

  const start = (svc: ServiceSpec, backoff: number) => {
    const fd = openSync(join(spec.logDir, `${svc.name}.log`), 'a');
    const child = spawn(svc.argv[0]!, svc.argv.slice(1), { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    children.set(svc.name, child);
    const s = (state.services[svc.name] ??= { pid: null, restarts: 0, startedAt: null, lastExit: null });
    s.pid = child.pid ?? null;
    s.startedAt = new Date().toISOString();
    save();
    log(`started ${svc.name} (pid ${child.pid})`);
    const startedAt = Date.now();
    child.once('exit', (code, signal) => {
      s.pid = null;
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
      const waits = [...children.values()].filter((c) => c.exitCode === null && c.signalCode === null).map(
        (c) =>
          new Promise<void>((r) => {
            c.once('exit', () => r());
            c.kill('SIGTERM');
            setTimeout(() => c.kill('SIGKILL'), 10_000).unref();
          }),
      );
      void Promise.all(waits).then(() => {
        for (const f of spec.daemonPidFiles) stopDaemon(f, log);
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

function stopDaemon(file: string, log: (m: string) => void): void {
  let pid: number;
  try {
    pid = Number(readFileSync(file, 'utf8').trim());
  } catch {
    return;
  }
  if (!pid) return;
  try {
    process.kill(pid, 'SIGTERM');
    log(`stopped daemon pid ${pid} (${file})`);
  } catch {
    // already gone
  }
}
