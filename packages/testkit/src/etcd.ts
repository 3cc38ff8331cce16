import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { ManagedProcess, waitFor } from './internal/process.js';
import { freePort } from './internal/ports.js';
import { execOk } from './exec.js';
import { TestCa } from './tls.js';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  logFile: string;
  process: ManagedProcess | undefined;
}

export interface EtcdOptions {
  /** Number of members; 1 by default, 3 for a quorum cluster. */
  members?: number;
  /** Where data and logs go; a new temporary folder by default (removed on stop). */
  dir?: string;
  /** Run each member in this network namespace (ip netns exec). */
  netns?: string;
  /** Address the members listen on; 127.0.0.1 by default. */
  listenIp?: string;
  binary?: string;
  /**
   * TLS only, with client certificates: https client and peer URLs, `--client-cert-auth` and
   * `--peer-client-cert-auth`, certificates from this CA (`true`: a CA of its own in the folder).
   */
  tls?: TestCa | true;
  /** With `tls: true`: how many days its certificates are valid (1; the demo, which stays up, more). */
  tlsDays?: number;
}

/** The files a client of a TLS etcd needs: the CA, and a client certificate of that CA. */
export interface EtcdClientTls {
  ca: string;
  cert: string;
  key: string;
}

/**
 * A real etcd (Debian's etcd-server) on free ports in a temporary folder. stop() ends the
 * members by pid and removes the folder; restart() keeps data and ports.
 */
export class Etcd {
  /** With tls: the CA, the members' certificate, and a client certificate for tests and services. */
  ca: TestCa | undefined;
  clientTls: EtcdClientTls | undefined;
  private memberTls: { cert: string; key: string } | undefined;

  private constructor(
    readonly dir: string,
    readonly members: EtcdMember[],
    private readonly opts: EtcdOptions,
    private readonly ownsDir: boolean,
  ) {}

  /**
   * The list --etcd and ETCD_ENDPOINTS take: host:port entries, or https:// URLs with tls (so that
   * a client without the TLS files is refused by its config rather than trying plain http).
   */
  get endpoints(): string {
    return this.members.map((m) => m.clientUrl.replace(/^http:\/\//, '')).join(',');
  }

  /** --etcd and, with tls, --etcd-ca/--etcd-cert/--etcd-key: what a service or calicoctl is given. */
  get clientFlags(): string[] {
    const t = this.clientTls;
    return [
      `--etcd=${this.endpoints}`,
      ...(t ? [`--etcd-ca=${t.ca}`, `--etcd-cert=${t.cert}`, `--etcd-key=${t.key}`] : []),
    ];
  }

  /** The etcdctl flags for the client certificate (none without tls). */
  get etcdctlTlsFlags(): string[] {
    const t = this.clientTls;
    return t ? [`--cacert=${t.ca}`, `--cert=${t.cert}`, `--key=${t.key}`] : [];
  }

  get clientUrls(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  get pids(): number[] {
    return this.members.flatMap((m) => (m.process?.running ? [m.process.pid] : []));
  }

  static async start(opts: EtcdOptions = {}): Promise<Etcd> {
    const count = opts.members ?? 1;
    const ownsDir = opts.dir === undefined;
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'calico-etcd-')));
    await mkdir(dir, { recursive: true });
    const ip = opts.listenIp ?? '127.0.0.1';
    const scheme = opts.tls ? 'https' : 'http';
    const members: EtcdMember[] = [];
    for (let i = 0; i < count; i++) {
      const name = `m${i + 1}`;
      members.push({
        name,
        clientUrl: `${scheme}://${ip}:${await freePort()}`,
        peerUrl: `${scheme}://${ip}:${await freePort()}`,
        dataDir: join(dir, `${name}.etcd`),
        logFile: join(dir, `${name}.log`),
        process: undefined,
      });
    }
    const etcd = new Etcd(dir, members, opts, ownsDir);
    try {
      if (opts.tls) await etcd.makeCertificates(ip);
      await etcd.startMembers(members, 'new');
    } catch (e) {
      await etcd.stop();
      throw e;
    }
    return etcd;
  }

  /**
   * One certificate for every member, for clients (serverAuth) and for the other members
   * (clientAuth on the peer URLs), naming the listen address; and one client certificate.
   */
  private async makeCertificates(ip: string): Promise<void> {
    const own = this.opts.tls === true;
    const ca = own
      ? await TestCa.create(join(this.dir, 'tls'), 'etcd-ca', { days: this.opts.tlsDays ?? 1 })
      : (this.opts.tls as TestCa);
    this.ca = ca;
    // A CA of its own holds only these; a shared one may issue for several clusters.
    const tag = own ? '' : `-${process.pid}-${Date.now() % 100000}`;
    const ips = [...new Set([ip, '127.0.0.1'])];
    this.memberTls = await ca.issue(`etcd-member${tag}`, { server: { ips, dns: ['localhost'] }, client: true });
    const client = await ca.issue(`etcd-client${tag}`, { client: true });
    this.clientTls = { ca: ca.cert, ...client };
  }

  private argv(m: EtcdMember, state: 'new' | 'existing'): string[] {
    const cluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const base = [
      this.opts.binary ?? 'etcd',
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=${m.clientUrl}`,
      `--advertise-client-urls=${m.clientUrl}`,
      `--listen-peer-urls=${m.peerUrl}`,
      `--initial-advertise-peer-urls=${m.peerUrl}`,
      `--initial-cluster=${cluster}`,
      `--initial-cluster-state=${state}`,
      '--initial-cluster-token=calico-test',
      '--log-level=warn',
      '--logger=zap',
      // Tests restart members and expect them back quickly.
      '--heartbeat-interval=50',
      '--election-timeout=500',
      ...this.tlsArgs(),
    ];
    return this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...base] : base;
  }

  private tlsArgs(): string[] {
    const t = this.memberTls;
    if (!t || !this.ca) return [];
    const ca = this.ca.cert;
    return [
      `--cert-file=${t.cert}`,
      `--key-file=${t.key}`,
      `--trusted-ca-file=${ca}`,
      '--client-cert-auth',
      `--peer-cert-file=${t.cert}`,
      `--peer-key-file=${t.key}`,
      `--peer-trusted-ca-file=${ca}`,
      '--peer-client-cert-auth',
    ];
  }

  private async startMembers(members: EtcdMember[], state: 'new' | 'existing'): Promise<void> {
    for (const m of members) {
      m.process = new ManagedProcess({ name: `etcd ${m.name}`, argv: this.argv(m, state), logFile: m.logFile });
    }
    await Promise.all(members.map((m) => this.waitHealthy(m)));
  }

  private async waitHealthy(m: EtcdMember): Promise<void> {
    await waitFor(
      `etcd ${m.name} at ${m.clientUrl} to be healthy`,
      async () => {
        if (!m.process?.running) throw new Error('exited');
        return (await this.health(m)) === true;
      },
      30_000,
      () => `etcd ${m.name} log (${m.logFile}):\n${m.process?.log().slice(-3000) ?? ''}`,
    ).catch((e: unknown) => {
      if (m.process && !m.process.running) {
        throw new Error(`etcd ${m.name} exited during start; log:\n${m.process.log().slice(-3000)}`);
      }
      throw e;
    });
  }

  /** GET /health of one member; false when it does not answer. */
  health(m: EtcdMember): Promise<boolean> {
    if (this.opts.netns || this.clientTls) {
      const argv = ['etcdctl', `--endpoints=${m.clientUrl}`, ...this.etcdctlTlsFlags, 'endpoint', 'health'];
      return execOk(this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...argv] : argv, {
        env: { ...process.env, ETCDCTL_API: '3' },
      })
        .then(() => true)
        .catch(() => false);
    }
    return new Promise((resolve) => {
      const req = request(`${m.clientUrl}/health`, { timeout: 1000 }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(res.statusCode === 200 && body.includes('true')));
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => {
        req.destroy();
        resolve(false);
      });
      req.end();
    });
  }

  /** Runs etcdctl (v3 API) against this cluster. */
  etcdctl(args: readonly string[]): Promise<string> {
    const argv = ['etcdctl', `--endpoints=${this.clientUrls.join(',')}`, ...this.etcdctlTlsFlags, ...args];
    return execOk(this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...argv] : argv, {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
  }

  /** Stops member i (all when omitted) by pid, keeping its data. */
  async stopMember(i?: number): Promise<void> {
    const targets = i === undefined ? this.members : [this.members[i]!];
    await Promise.all(targets.map((m) => m.process?.stop()));
  }

  /** Kills member i (all when omitted) with SIGKILL, as a crash would. */
  async killMember(i?: number): Promise<void> {
    const targets = i === undefined ? this.members : [this.members[i]!];
    await Promise.all(targets.map((m) => m.process?.kill()));
  }

  /** Starts stopped members again on the same ports and data. */
  async startMember(i?: number): Promise<void> {
    const targets = (i === undefined ? this.members : [this.members[i]!]).filter((m) => !m.process?.running);
    await this.startMembers(targets, 'existing');
  }

  async restart(): Promise<void> {
    await this.stopMember();
    await this.startMember();
  }

  logs(): string {
    return this.members.map((m) => `--- etcd ${m.name} ---\n${m.process?.log() ?? ''}`).join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.process?.stop()));
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }
}
