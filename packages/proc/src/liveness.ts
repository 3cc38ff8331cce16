import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * What we keep of a process we started, to know it again later. A pid alone proves nothing:
 * a killed process that nobody has reaped yet (a zombie) still has its pid, and once reaped the
 * pid can be handed to another program. The start time cannot repeat for one pid within a boot.
 */
export interface ProcessRecord {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
  startTicks?: number | undefined;
  /** /proc/<pid>/cmdline split on NUL: a second proof, and the only one an older record has. */
  cmdline?: string[] | undefined;
}

export type Liveness =
  | { alive: true; pid: number }
  | { alive: false; pid: number; reason: 'gone' | 'zombie' | 'reused'; detail: string };

export interface ProcOptions {
  /** Where procfs is mounted; tests point it at a crafted tree. */
  procRoot?: string | undefined;
}

export interface CheckOptions extends ProcOptions {
  /**
   * For a record without a start time or command line (written by an older version): the
   * process counts as ours only if its command line passes this test. Without it, never.
   */
  cmdlineMatches?: ((argv: string[]) => boolean) | undefined;
}

export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, T, t, Z (zombie), X (dead), … */
  state: string;
  ppid: number;
  /** The process group (field 5). */
  pgrp: number;
  startTicks: number;
}

/** Reads one /proc/<pid>/stat line; null when it is not one. */
export function parseProcStat(text: string): ProcStat | null {
  // comm (field 2) is in parentheses and may itself hold spaces and ')': split after the last one.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 1 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  const rest = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
  const state = rest[0] ?? '';
  const ppid = Number(rest[1]);
  const pgrp = Number(rest[2]);
  const startTicks = Number(rest[19]);
  if (!Number.isInteger(pid) || pid <= 0 || !/^[A-Za-z]$/.test(state) || !Number.isInteger(startTicks)) return null;
  return { pid, comm: text.slice(open + 1, close), state, ppid, pgrp, startTicks };
}

const root = (o: ProcOptions | undefined) => o?.procRoot ?? '/proc';
const validPid = (pid: number) => Number.isInteger(pid) && pid > 0;

export function readProcStat(pid: number, o?: ProcOptions): ProcStat | null {
  if (!validPid(pid)) return null;
  try {
    return parseProcStat(readFileSync(join(root(o), String(pid), 'stat'), 'utf8'));
  } catch {
    return null;
  }
}

/** The argv of a process as the kernel has it; null when it cannot be read. */
export function readCmdline(pid: number, o?: ProcOptions): string[] | null {
  if (!validPid(pid)) return null;
  try {
    const text = readFileSync(join(root(o), String(pid), 'cmdline'), 'utf8');
    const argv = text.split('\0');
    if (argv[argv.length - 1] === '') argv.pop();
    return argv;
  } catch {
    return null;
  }
}

const exited = (s: ProcStat) => s.state === 'Z' || s.state === 'X' || s.state === 'x';

/** The process exists and has not exited (a zombie has). Says nothing of whose it is. */
export function processExists(pid: number, o?: ProcOptions): boolean {
  const s = readProcStat(pid, o);
  return s !== null && !exited(s);
}

/** What to record of a process just started (or of ourselves); null when it is already gone. */
export function recordProcess(pid: number, o?: ProcOptions): ProcessRecord | null {
  const s = readProcStat(pid, o);
  if (!s || exited(s)) return null;
  const cmdline = readCmdline(pid, o);
  return { pid, startTicks: s.startTicks, ...(cmdline ? { cmdline } : {}) };
}

/**
 * A daemon that writes its own pid file (BIRD's `-P <file>`) is proven by its command line
 * naming that file, as an argument or as `--flag=<file>`.
 */
export const cmdlineNamesFile =
  (file: string) =>
  (argv: string[]): boolean =>
    argv.slice(1).some((a) => a === file || a.endsWith(`=${file}`));

const sameArgv = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Whether the recorded process is alive and is the one we started: it exists, is not a zombie
 * or dead, its start time equals the recorded one, and its command line equals the recorded one.
 * A record with neither (an older pid file) is alive only if `cmdlineMatches` accepts the
 * process's command line.
 */
export function checkProcess(rec: ProcessRecord, o?: CheckOptions): Liveness {
  const pid = rec.pid;
  const s = readProcStat(pid, o);
  if (!s) return { alive: false, pid, reason: 'gone', detail: `pid ${pid} is not running` };
  if (exited(s))
    return { alive: false, pid, reason: 'zombie', detail: `pid ${pid} has exited (a zombie, not yet reaped)` };
  const notOurs = (why: string): Liveness => ({
    alive: false,
    pid,
    reason: 'reused',
    detail: `pid ${pid} is not the process we started (${why})`,
  });
  if (rec.startTicks !== undefined && s.startTicks !== rec.startTicks) return notOurs('pid reused: another start time');
  const argv = readCmdline(pid, o);
  if (rec.cmdline !== undefined) {
    if (!argv || !sameArgv(argv, rec.cmdline)) return notOurs('pid reused: another command line');
    return { alive: true, pid };
  }
  if (rec.startTicks !== undefined) return { alive: true, pid };
  if (argv && o?.cmdlineMatches?.(argv)) return { alive: true, pid };
  return notOurs('no start time recorded, and its command line is not ours');
}

/**
 * Sends a signal to the recorded process only if it is still ours. (Between the check and the
 * kill the pid could in theory change hands; Node has no pidfd to close that gap.)
 */
export function signalIfOurs(rec: ProcessRecord, signal: NodeJS.Signals, o?: CheckOptions): boolean {
  if (!checkProcess(rec, o).alive) return false;
  try {
    process.kill(rec.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Resolves true once the recorded process is no longer alive (gone, a zombie, or another one). */
export async function waitNotAlive(rec: ProcessRecord, timeoutMs: number, o?: CheckOptions): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!checkProcess(rec, o).alive) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The full record (start time and command line) of a recorded process that is alive and ours,
 * so that what follows (signals, waits) needs no weaker proof; null when it is not.
 */
export function provenRecord(rec: ProcessRecord, o?: CheckOptions): ProcessRecord | null {
  if (!checkProcess(rec, o).alive) return null;
  const now = recordProcess(rec.pid, o);
  return now && (rec.startTicks === undefined || now.startTicks === rec.startTicks) ? now : null;
}

/**
 * Stops the recorded process if it is ours: SIGTERM, then SIGKILL after `graceMs`. Says what
 * happened: 'not-running' (gone, a zombie, or not ours: nothing was sent), 'stopped' (exited
 * on SIGTERM), 'killed', or 'stuck' (still alive after SIGKILL, e.g. in uninterruptible sleep).
 */
export async function stopProcess(
  rec: ProcessRecord,
  opts: CheckOptions & { graceMs?: number } = {},
): Promise<'not-running' | 'stopped' | 'killed' | 'stuck'> {
  const proven = provenRecord(rec, opts);
  if (!proven) return 'not-running';
  const o = { procRoot: opts.procRoot };
  if (!signalIfOurs(proven, 'SIGTERM', o)) return 'not-running';
  if (await waitNotAlive(proven, opts.graceMs ?? 10_000, o)) return 'stopped';
  signalIfOurs(proven, 'SIGKILL', o);
  return (await waitNotAlive(proven, 5_000, o)) ? 'killed' : 'stuck';
}
