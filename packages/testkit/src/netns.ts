import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, execOk, type ExecOptions, type ExecResult } from './exec.js';
import { ManagedProcess } from './internal/process.js';
import { fabricIp } from './addresses.js';

/** Namespaces and links this testkit makes all start with this, then 4 hex digits. */
export const NETNS_PREFIX = 'ck';

export async function listNetns(): Promise<string[]> {
  const r = await exec(['ip', 'netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}

/**
 * A test host: a network namespace joined to the fabric by a veth (eth0, 198.18.0.x/24).
 * Its services run under `ip netns exec`; its processes are stopped by pid on destroy().
 */
export class NamespaceHost {
  private readonly procs: ManagedProcess[] = [];

  constructor(
    readonly name: string,
    readonly netns: string,
    readonly ip: string,
    readonly dir: string,
    private readonly fabric: Fabric,
  ) {}

  /** The argv prefix that runs a command in this host. */
  wrap(argv: readonly string[]): string[] {
    return ['ip', 'netns', 'exec', this.netns, ...argv];
  }

  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return exec(this.wrap(argv), opts);
  }

  execOk(argv: readonly string[], opts?: ExecOptions): Promise<string> {
    return execOk(this.wrap(argv), opts);
  }

  /** Starts a long-running process in this host; its output goes to <dir>/<name>.log. */
  spawn(name: string, argv: readonly string[], env?: NodeJS.ProcessEnv): ManagedProcess {
    const p = new ManagedProcess({ name, argv: this.wrap(argv), logFile: join(this.dir, `${name}.log`), env });
    this.procs.push(p);
    return p;
  }

  get processes(): readonly ManagedProcess[] {
    return this.procs;
  }

  /** What an e2e failure needs to explain itself: the host's kernel state and process logs. */
  async dump(): Promise<string> {
    const cmds = [
      ['ip', 'addr'],
      ['ip', 'route'],
      ['ip', '-6', 'route'],
      ['ip', 'neigh'],
      ['iptables-save', '-c'],
      ['ip6tables-save', '-c'],
      ['ipset', 'list'],
    ];
    const parts: string[] = [`===== host ${this.name} (netns ${this.netns}, ${this.ip}) =====`];
    for (const c of cmds) {
      const r = await this.exec(c);
      parts.push(`--- ${c.join(' ')} (exit ${r.code}) ---\n${r.stdout}${r.stderr}`);
    }
    for (const p of this.procs) parts.push(`--- log of ${p.opts.name} (pid ${p.pid}) ---\n${p.log().slice(-5000)}`);
    return parts.join('\n');
  }

  async stopProcesses(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop()));
  }

  async destroy(): Promise<void> {
    await this.stopProcesses();
    await exec(['ip', 'netns', 'del', this.netns]);
    await this.fabric.forget(this);
  }
}

/**
 * Namespace test hosts on one bridge that lives in its own namespace, so the root namespace
 * gets no address, route or link for the fabric at all.
 */
export class Fabric {
  readonly hosts: NamespaceHost[] = [];
  private counter = 0;

  private constructor(
    readonly id: string,
    readonly dir: string,
  ) {}

  get netns(): string {
    return `${this.id}-fab`;
  }

  /** A new fabric; `id` (letters and digits, at most 6) names its namespaces, random by default. */
  static async create(opts: { id?: string; dir?: string } = {}): Promise<Fabric> {
    if (opts.id !== undefined && !/^[a-z][a-z0-9]{0,5}$/.test(opts.id))
      throw new Error(`fabric id must be 1-6 of [a-z0-9], starting with a letter: ${opts.id}`);
    const id = opts.id ?? `${NETNS_PREFIX}${randomBytes(2).toString('hex')}`;
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), `calico-${id}-`)));
    if (opts.dir) await mkdir(opts.dir, { recursive: true });
    const f = new Fabric(id, dir);
    try {
      await execOk(['ip', 'netns', 'add', f.netns]);
      await execOk(['ip', '-n', f.netns, 'link', 'set', 'lo', 'up']);
      await execOk(['ip', '-n', f.netns, 'link', 'add', 'br0', 'type', 'bridge']);
      await execOk(['ip', '-n', f.netns, 'link', 'set', 'br0', 'up']);
    } catch (e) {
      await f.destroy();
      throw e;
    }
    return f;
  }

  /** Adds a host named <id>-<name>; hosts get 198.18.0.11, .12, … in creation order. */
  async addHost(name: string): Promise<NamespaceHost> {
    if (!/^[a-z0-9]{1,8}$/.test(name)) throw new Error(`host name must be 1-8 of [a-z0-9]: ${name}`);
    const n = ++this.counter;
    const netns = `${this.id}-${name}`;
    const dir = await mkdtemp(join(this.dir, `${name}-`));
    const host = new NamespaceHost(name, netns, fabricIp(n), dir, this);
    this.hosts.push(host);
    const peer = `p-${name}`;
    const steps = [
      ['ip', 'netns', 'add', netns],
      ['ip', '-n', netns, 'link', 'set', 'lo', 'up'],
      ['ip', '-n', netns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', peer, 'netns', this.netns],
      ['ip', '-n', this.netns, 'link', 'set', peer, 'master', 'br0', 'up'],
      ['ip', '-n', netns, 'addr', 'add', `${host.ip}/24`, 'dev', 'eth0'],
      ['ip', '-n', netns, 'link', 'set', 'eth0', 'up'],
    ];
    try {
      for (const s of steps) await execOk(s);
      // A host routes for its containers.
      await host.execOk(['sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    } catch (e) {
      await host.destroy();
      throw e;
    }
    return host;
  }

  /** The root namespace's one link to the fabric (198.18.0.1), made by linkRoot(). */
  rootLink: { ifname: string; ip: string } | undefined;

  /**
   * Joins the root namespace to the fabric with one veth and 198.18.0.1/24, so that services
   * started by the test process (etcd) and the test itself reach the hosts. Nothing else is
   * added in the root namespace: container ranges stay unrouted there.
   */
  async linkRoot(): Promise<string> {
    if (this.rootLink) return this.rootLink.ip;
    const ifname = `${this.id}-root`;
    const ip = '198.18.0.1';
    await execOk(['ip', 'link', 'add', ifname, 'type', 'veth', 'peer', 'name', 'p-root', 'netns', this.netns]);
    this.rootLink = { ifname, ip };
    await execOk(['ip', '-n', this.netns, 'link', 'set', 'p-root', 'master', 'br0', 'up']);
    await execOk(['ip', 'addr', 'add', `${ip}/24`, 'dev', ifname]);
    await execOk(['ip', 'link', 'set', ifname, 'up']);
    return ip;
  }

  /** Called by a host that was destroyed on its own. */
  async forget(h: NamespaceHost): Promise<void> {
    const i = this.hosts.indexOf(h);
    if (i >= 0) this.hosts.splice(i, 1);
  }

  async dump(): Promise<string> {
    return (await Promise.all(this.hosts.map((h) => h.dump()))).join('\n\n');
  }

  async destroy(): Promise<void> {
    for (const h of [...this.hosts]) await h.destroy();
    if (this.rootLink) await exec(['ip', 'link', 'del', this.rootLink.ifname]);
    this.rootLink = undefined;
    await exec(['ip', 'netns', 'del', this.netns]);
    await rm(this.dir, { recursive: true, force: true });
  }
}
