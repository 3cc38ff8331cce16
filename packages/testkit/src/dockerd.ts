import { mkdir, mkdtemp, rm, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManagedProcess, waitFor } from './internal/process.js';
import { exec, execOk, type ExecResult } from './exec.js';
import { unmountUnder } from './mounts.js';

export interface DockerdOptions {
  /** Folder for socket, data-root, exec-root and log; a new temporary folder by default. */
  dir?: string;
  binary?: string;
  /** The docker CLI used by docker(); the first `docker` on PATH by default. */
  cli?: string;
  /**
   * Run dockerd inside this network namespace: host-network containers then share that
   * namespace (a test host), not the machine's.
   */
  netns?: string;
  /** More flags for dockerd (e.g. a TLS listener: `--host=tcp://…`, `--tlsverify`, …). */
  args?: string[];
}

/**
 * A real dockerd with its own data-root, exec-root and unix socket, no bridge, no iptables:
 * it never touches the machine's networking, so tests may own all of that.
 */
export class Dockerd {
  private constructor(
    readonly dir: string,
    public process: ManagedProcess,
    private readonly opts: DockerdOptions,
    private readonly ownsDir: boolean,
  ) {}

  get socketPath(): string {
    return join(this.dir, 'docker.sock');
  }

  /** The DOCKER_HOST value for this daemon. */
  get host(): string {
    return `unix://${this.socketPath}`;
  }

  get pid(): number {
    return this.process.pid;
  }

  static async start(opts: DockerdOptions = {}): Promise<Dockerd> {
    const ownsDir = opts.dir === undefined;
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'calico-dockerd-')));
    await mkdir(dir, { recursive: true });
    const argv = [
      // nsenter, not "ip netns exec": that one remounts /sys, hiding the cgroup mounts dockerd needs.
      ...(opts.netns ? ['nsenter', `--net=/run/netns/${opts.netns}`] : []),
      opts.binary ?? 'dockerd',
      `--host=unix://${join(dir, 'docker.sock')}`,
      `--data-root=${join(dir, 'data')}`,
      `--exec-root=${join(dir, 'exec')}`,
      `--pidfile=${join(dir, 'docker.pid')}`,
      '--bridge=none',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-masq=false',
      '--ip-forward=false',
      '--userland-proxy=false',
      '--log-level=warn',
      ...(opts.args ?? []),
    ];
    const proc = new ManagedProcess({ name: 'dockerd', argv, logFile: join(dir, 'dockerd.log') });
    const d = new Dockerd(dir, proc, opts, ownsDir);
    try {
      await d.waitReady();
    } catch (e) {
      await d.stop();
      throw e;
    }
    return d;
  }

  private async waitReady(): Promise<void> {
    const proc = this.process;
    await waitFor(
      `dockerd at ${this.host}`,
      async () => {
        if (!proc.running) throw new Error('exited');
        return (await this.docker(['version', '--format', '{{.Server.Version}}'])).code === 0;
      },
      60_000,
      () => proc.log().slice(-3000),
    );
  }

  /**
   * Stops dockerd (its containers stop with it) and starts it again on the same data, as a
   * daemon upgrade or crash would; containers with a restart policy come back on their own.
   */
  async restart(): Promise<void> {
    await this.process.stop(20_000);
    this.process = new ManagedProcess({
      name: 'dockerd',
      argv: this.process.opts.argv,
      logFile: this.process.opts.logFile,
    });
    await this.waitReady();
  }

  /** Runs the real docker CLI against this daemon (or `host`, with more of its environment in `env`). */
  docker(
    args: readonly string[],
    opts: { input?: string | Buffer; host?: string; env?: NodeJS.ProcessEnv } = {},
  ): Promise<ExecResult> {
    return exec([this.opts.cli ?? 'docker', ...args], {
      env: { ...process.env, DOCKER_HOST: opts.host ?? this.host, ...opts.env },
      input: opts.input,
      timeoutMs: 120_000,
    });
  }

  async dockerOk(args: readonly string[], opts: { input?: string | Buffer } = {}): Promise<string> {
    return execOk([this.opts.cli ?? 'docker', ...args], {
      env: { ...process.env, DOCKER_HOST: this.host },
      input: opts.input,
      timeoutMs: 120_000,
    });
  }

  logs(): string {
    return this.process.log();
  }

  /** Removes every container, then stops dockerd by pid and removes its folder. */
  async stop(): Promise<void> {
    if (this.process.running) {
      const ids = (await this.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
      if (ids.length) await this.docker(['rm', '-f', ...ids]);
      await this.process.stop(20_000);
    }
    // A killed dockerd can leave its overlay and netns mounts behind; they are ours to undo.
    await unmountUnder(this.dir);
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** The pid dockerd wrote (same as ours unless something odd happened). */
  async pidFromFile(): Promise<number | undefined> {
    const f = join(this.dir, 'docker.pid');
    if (!existsSync(f)) return undefined;
    return Number((await readFile(f, 'utf8')).trim());
  }
}
