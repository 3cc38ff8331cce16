import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { readCmdline, readProcStat } from './liveness.js';

/** Every tool gets this long unless its caller says otherwise. */
export const DEFAULT_TOOL_TIMEOUT_MS = 30_000;

/** Set only by tests, to make every tool of a service give up sooner (see docs/node.md). */
export const TOOL_TIMEOUT_ENV = 'CALICO_TOOL_TIMEOUT_MS';

export interface ToolOptions {
  /**
   * stdin: text or bytes (more than a pipe holds goes as a file), or a stream piped in.
   * Without it the tool reads /dev/null.
   */
  input?: string | Buffer | NodeJS.ReadableStream | undefined;
  /** How long the tool (and whatever it started) may run before its process group is killed. */
  timeoutMs?: number | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /** Drop stdout rather than keep it (a tool that writes much nobody reads). */
  ignoreStdout?: boolean | undefined;
}

export interface ToolResult {
  argv: readonly string[];
  /** The exit code; null when the tool was killed by a signal or never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
  /** Why the run failed (no start, an exit other than 0, a signal, a timeout, a failed input); null if none. */
  error: ToolError | null;
}

export type ToolFailure = 'not-started' | 'exit' | 'signal' | 'timeout' | 'input';

export class ToolError extends Error {
  constructor(
    message: string,
    readonly kind: ToolFailure,
    readonly argv: readonly string[],
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ToolError';
  }
}

/**
 * The timeout for a kind of tool: `defaultMs`, or the CALICO_TOOL_TIMEOUT_MS of the
 * environment when it is set. Read once, where a service builds its edges, so that a bad
 * value stops the service at start.
 */
export function toolTimeoutMs(defaultMs: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[TOOL_TIMEOUT_ENV];
  if (raw === undefined || raw === '') return defaultMs;
  const ms = Number(raw);
  if (!/^[0-9]+$/.test(raw) || ms < 1) {
    throw new Error(`${TOOL_TIMEOUT_ENV}=${JSON.stringify(raw)} is not a positive number of milliseconds`);
  }
  return ms;
}

/** Inputs bigger than a pipe holds go through a file. */
const PIPE_BYTES = 64 * 1024;
/** After the kill, how long to wait for the pipes to close before giving up on them. */
const CLOSE_GRACE_MS = 2_000;
const MESSAGE_STDERR = 2_000;
let inputFiles = 0;

/** The command for a message: one line, long arguments (a shell script) cut short. */
export function describeArgv(argv: readonly string[]): string {
  const one = argv.map((a) => {
    const flat = a.replace(/\s*\n\s*/g, '; ');
    const cut = flat.length > 160 ? `${flat.slice(0, 160)}…` : flat;
    return /[\s']/.test(cut) ? `'${cut.replace(/'/g, `'\\''`)}'` : cut;
  });
  const text = one.join(' ');
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}

const tail = (s: string) => {
  const t = s.trim();
  return t.length > MESSAGE_STDERR ? `…${t.slice(-MESSAGE_STDERR)}` : t;
};

/** The processes in a process group and their command lines (what hung), leader first. */
export function groupMembers(pgid: number, procRoot = '/proc'): { pid: number; command: string }[] {
  let pids: number[];
  try {
    pids = readdirSync(procRoot)
      .filter((n) => /^[0-9]+$/.test(n))
      .map(Number);
  } catch {
    return [];
  }
  const o = { procRoot };
  return pids
    .filter((pid) => readProcStat(pid, o)?.pgrp === pgid)
    .sort((a, b) => (a === pgid ? -1 : b === pgid ? 1 : a - b))
    .map((pid) => {
      const argv = readCmdline(pid, o);
      return { pid, command: argv?.length ? describeArgv(argv) : `(${readProcStat(pid, o)?.comm ?? '?'})` };
    });
}

/**
 * A big input is handed over as a file: through a pipe, the tool would wait for this process
 * to write the rest, which it does only between its own tasks. The open descriptor keeps the
 * content for the child; no name is left behind.
 */
function inputFile(input: string | Buffer): number {
  const path = join(tmpdir(), `calico-tool-${process.pid}-${++inputFiles}`);
  try {
    writeFileSync(path, input, { flag: 'wx', mode: 0o600 });
    return openSync(path, 'r');
  } finally {
    rmSync(path, { force: true });
  }
}

/**
 * Process groups of tools still running. A tool in a group of its own outlives the service
 * that started it (a kill of the service's group misses it), so when the service exits they go.
 */
const running = new Set<number>();
let exitHook = false;
function track(pgid: number): void {
  running.add(pgid);
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const g of running) {
      try {
        process.kill(-g, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
}

/**
 * Runs a tool to its end and says how it went; never rejects. The tool runs in a process group
 * of its own, so that on timeout SIGKILL reaches whatever it started too (`sh -c` scripts:
 * nsenter, ip): a hung tool costs its caller `timeoutMs`, never more.
 */
export function runTool(argv: readonly string[], opts: ToolOptions = {}): Promise<ToolResult> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('runTool: empty command');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const input = opts.input;
  const text = typeof input === 'string' || Buffer.isBuffer(input) ? input : undefined;
  const stream = input !== undefined && text === undefined ? (input as NodeJS.ReadableStream) : undefined;
  const what = describeArgv(argv);
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const finish = (code: number | null, signal: NodeJS.Signals | null, timedOut: boolean, error: ToolError | null) => {
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({ argv, code, signal, stdout: Buffer.concat(out), stderr, timedOut, error });
    };
    const notStarted = (e: unknown) => {
      // A stream nobody will read is ended, so that its source (a download) is not left open.
      (stream as { destroy?: () => void } | undefined)?.destroy?.();
      const msg = `${what} could not start: ${(e as Error).message}`;
      finish(null, null, false, new ToolError(msg, 'not-started', argv, '', { cause: e }));
    };

    let stdin: number | 'pipe' | 'ignore' = text?.length || stream ? 'pipe' : 'ignore';
    let child: ChildProcess;
    try {
      if (text && text.length > PIPE_BYTES) stdin = inputFile(text);
      const stdio = [stdin, opts.ignoreStdout ? 'ignore' : 'pipe', 'pipe'] as const;
      child = spawn(cmd, args, { stdio: [...stdio], env: opts.env ?? process.env, detached: true });
    } catch (e) {
      notStarted(e);
      return;
    } finally {
      if (typeof stdin === 'number') closeSync(stdin);
    }
    if (child.pid !== undefined) track(child.pid);
    child.stdout?.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    let settled = false;
    let killedFor: { why: 'timeout'; members: string[] } | { why: 'input'; cause: Error } | undefined;
    let closeTimer: NodeJS.Timeout | undefined;

    const settle = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      if (child.pid !== undefined) running.delete(child.pid);
      clearTimeout(timer);
      clearTimeout(closeTimer);
      const stderr = Buffer.concat(err).toString('utf8');
      const said = tail(stderr);
      const saying = said ? `: ${said}` : '';
      const fail = (msg: string, kind: ToolFailure, cause?: Error) =>
        new ToolError(msg, kind, argv, stderr, cause ? { cause } : undefined);
      let error: ToolError | null = null;
      if (killedFor?.why === 'timeout') {
        const hung = killedFor.members.length ? `; still running then: ${killedFor.members.join(', ')}` : '';
        const killed = `${what} timed out after ${timeoutMs} ms and was killed with its process group`;
        error = fail(`${killed}${hung}; stderr so far: ${said || '(none)'}`, 'timeout');
      } else if (killedFor?.why === 'input') {
        error = fail(`${what}: its input failed (${killedFor.cause.message}); killed`, 'input', killedFor.cause);
      } else if (code === null && signal) error = fail(`${what} was killed by ${signal}${saying}`, 'signal');
      else if (code !== 0) error = fail(`${what} exited ${code}${saying}`, 'exit');
      finish(code, signal, killedFor?.why === 'timeout', error);
    };
    const killGroup = () => {
      // The group's id is the leader's pid. Until 'close', a pipe of ours is still open in some
      // member, so the group exists and its id cannot have been handed to another process.
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // ESRCH: nothing left in it.
      }
      // A member stuck in the kernel (D state) or one that left the group may hold our pipes.
      closeTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        settle(child.exitCode, child.signalCode);
      }, CLOSE_GRACE_MS);
    };
    const timer = setTimeout(() => {
      const leader = child.pid;
      if (settled || killedFor || leader === undefined) return;
      const members = groupMembers(leader).map((m) =>
        m.pid === leader ? `itself (pid ${m.pid})` : `${m.pid} ${m.command}`,
      );
      killedFor = { why: 'timeout', members };
      killGroup();
    }, timeoutMs);
    child.on('error', (e) => {
      // Only a failed start comes here with no pid; a failed kill of a started child is not an end.
      if (child.pid !== undefined || settled) return;
      settled = true;
      clearTimeout(timer);
      notStarted(e);
    });
    child.on('close', (code, signal) => settle(code, signal));
    if (child.stdin) {
      let stdinBroke = false;
      child.stdin.on('error', () => (stdinBroke = true));
      if (stream) {
        // Only the source's own failure is the input's: a tool that ended first (it failed, it
        // timed out, it read all it needed) breaks the pipe, pipeline passes that error on to
        // the source, and the tool's own end says more.
        stream.on('error', (e: Error) => {
          if (settled || killedFor || stdinBroke) return;
          killedFor = { why: 'input', cause: e };
          killGroup();
        });
        pipeline(stream, child.stdin).catch(() => undefined);
      } else child.stdin.end(text);
    }
  });
}

/** runTool for callers that want stdout as text and a failure as a ToolError. */
export async function runToolOk(argv: readonly string[], opts: ToolOptions = {}): Promise<string> {
  const r = await runTool(argv, opts);
  if (r.error) throw r.error;
  return r.stdout.toString('utf8');
}
