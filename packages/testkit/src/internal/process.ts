import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';

export interface ManagedProcessOptions {
  name: string;
  argv: readonly string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * A long-running child we started. It runs in its own process group so that stop() can
 * reach helpers it forks (containerd under dockerd) without touching anything else.
 */
export class ManagedProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(readonly opts: ManagedProcessOptions) {
    const [cmd, ...args] = opts.argv;
    if (!cmd) throw new Error(`${opts.name}: empty command`);
    const fd = openSync(opts.logFile, 'a');
    try {
      this.child = spawn(cmd, args, {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        stdio: ['ignore', fd, fd],
        detached: true,
      });
    } finally {
      closeSync(fd);
    }
    if (this.child.pid === undefined) throw new Error(`${opts.name}: could not start ${cmd}`);
    this.pid = this.child.pid;
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        this.exitCode = code;
        resolve(code);
      });
      this.child.once('error', () => {
        this.exitCode = null;
        resolve(null);
      });
    });
    // A test runner that exits must not wait on our children.
    this.child.unref();
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  log(): string {
    try {
      return readFileSync(this.opts.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Resolves with the exit code, or undefined if still running after timeoutMs. */
  async waitExit(timeoutMs: number): Promise<number | null | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), timeoutMs);
    });
    const r = await Promise.race([this.exited, timeout]);
    if (timer) clearTimeout(timer);
    return r;
  }

  /** SIGTERM, then SIGKILL to the whole group if it has not gone after graceMs. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    signalGroup(this.pid, 'SIGTERM');
    if ((await this.waitExit(graceMs)) === undefined && this.running) {
      signalGroup(this.pid, 'SIGKILL');
      await this.waitExit(5_000);
    }
    // Whatever the leader left in its group (it may have exited first) goes too.
    signalGroup(this.pid, 'SIGKILL');
  }

  /** Kills without grace, as a crash would. */
  async kill(): Promise<void> {
    signalGroup(this.pid, 'SIGKILL');
    await this.waitExit(5_000);
  }
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** Polls until check() resolves true; rejects with describe() after timeoutMs. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  describe?: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 25;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not ready yet
    }
    if (Date.now() > deadline) {
      const extra = describe ? `\n${describe()}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 250);
  }
}
