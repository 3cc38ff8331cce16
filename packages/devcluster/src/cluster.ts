import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { apiCall, Datastore, readApiToken, resolveDatastoreConfig, type ApiClientTls } from '@calico/datastore';
import { cmdlineNamesFile, stopProcess } from '@calico/proc';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import {
  Cleanup,
  exec,
  freePort,
  ManagedProcess,
  Dockerd,
  Etcd,
  Fabric,
  ensureBusyboxImage,
  waitFor,
  TestCa,
  type CertFiles,
  type ExecResult,
  type NamespaceHost,
} from '@calico/testkit';

const require = createRequire(import.meta.url);

/** dist/main.js of @calico/node, wherever the workspace put it. */
export function nodeMainJs(): string {
  return join(dirname(require.resolve('@calico/node/package.json')), 'dist', 'main.js');
}

export function bgpConfigMainJs(): string {
  return join(dirname(require.resolve('@calico/bgp-config/package.json')), 'dist', 'main.js');
}

export function masterMainJs(): string {
  return join(dirname(require.resolve('@calico/master/package.json')), 'dist', 'main.js');
}

export interface DevClusterOptions {
  /** Host names, e.g. ["h1", "h2"]: each becomes a namespace host running calico-node. */
  hosts: string[];
  logLevel?: string;
  leaseTtlSeconds?: number;
  /** Run bgp-config and BIRD on every host, so that hosts learn each other's routes. */
  bgp?: boolean;
  /** etcd members (1 by default; 3 for a quorum that survives one loss). */
  etcdMembers?: number;
  /** Run calico-master too (in the root namespace, on the fabric). */
  master?: boolean;
  /**
   * The master serves https (--tls-cert/--tls-key, and --tls-ca for client certificates), from
   * a CA the cluster makes (`apiCa`); masterFetch then presents `apiClient`, a client
   * certificate of it, and no token.
   */
  masterTls?: boolean;
  /**
   * Run etcd and calico-master in a namespace host of their own on the fabric (`control`, the
   * first address) instead of the root namespace: there, workloads could reach them, which is
   * what a test of keeping them out needs. The root namespace reaches it over its fabric link.
   */
  controlHost?: boolean;
  /** More flags for every host's calico-node (e.g. `--proxy-header-timeout=2`). */
  nodeArgs?: string[];
  /** More environment for every host's calico-node (e.g. a PATH with stand-in tools first). */
  nodeEnv?: NodeJS.ProcessEnv;
  /**
   * Run dockerd in the fabric's namespace instead of the root one, so that networks it makes
   * (a bridge for `docker network create`) stay out of the root namespace.
   */
  dockerdInFabric?: boolean;
  /** More flags for dockerd (a benchmark gives it a TLS listener of its own). */
  dockerdArgs?: string[];
  /**
   * etcd over TLS only, with client certificates (`--client-cert-auth`, peers too): every
   * service started here, and the cluster's own Datastore, get `--etcd-ca/--etcd-cert/--etcd-key`.
   */
  etcdTls?: boolean;
}

export interface DevHost {
  name: string;
  ns: NamespaceHost;
  /** The node's Docker API proxy as a unix socket reachable from the root namespace. */
  proxySocket: string;
  node: ManagedProcess | undefined;
  bgpConfig: ManagedProcess | undefined;
  /** BIRD's files for this host: config, control socket, pid file, log. */
  bird: { config: string; socket: string; pid: string; log: string };
  /** birdc against this host's BIRD. */
  birdc(command: string): Promise<ExecResult>;
  /** The docker CLI through this host's proxy. */
  docker(args: readonly string[], input?: string): Promise<ExecResult>;
}

/**
 * dockerd (shared by all hosts, as several Docker hosts' daemons would be), etcd on the
 * fabric (198.18.0.1), and one namespace host per name with calico-node listening on its
 * own proxy socket. stop() removes all of it.
 */
export class DevCluster {
  readonly hosts = new Map<string, DevHost>();
  private readonly cleanup = new Cleanup();
  dockerd!: Dockerd;
  etcd!: Etcd;
  fabric!: Fabric;
  ds!: Datastore;
  image!: string;
  /** calico-master, when asked for; its API at masterUrl. */
  master: ManagedProcess | undefined;
  /** The namespace host etcd and the master run in, with controlHost. */
  control: NamespaceHost | undefined;
  masterUrl: string | undefined;
  /** With masterTls: the CA of the master's certificate and of the client certificates it takes. */
  apiCa: TestCa | undefined;
  /** With masterTls: a client certificate of apiCa (files), as calicoctl's --api-cert/--api-key take it. */
  apiClient: CertFiles | undefined;

  private constructor(private readonly opts: DevClusterOptions) {}

  static async start(opts: DevClusterOptions): Promise<DevCluster> {
    const c = new DevCluster(opts);
    try {
      await c.boot();
    } catch (e) {
      await c.stop().catch(() => undefined);
      throw e;
    }
    return c;
  }

  private async boot(): Promise<void> {
    const inFabric = this.opts.dockerdInFabric === true;
    // Teardown runs backwards: dockerd stops before the namespace it runs in goes.
    if (inFabric) {
      this.fabric = await Fabric.create();
      this.cleanup.defer('fabric', () => this.fabric.destroy());
    }
    const where = inFabric ? { netns: this.fabric.netns } : {};
    this.dockerd = await Dockerd.start({ ...where, args: this.opts.dockerdArgs ?? [] });
    this.cleanup.defer('dockerd', () => this.dockerd.stop());
    this.image = await ensureBusyboxImage(this.dockerd.host);
    if (!inFabric) {
      this.fabric = await Fabric.create();
      this.cleanup.defer('fabric', () => this.fabric.destroy());
    }
    const rootIp = await this.fabric.linkRoot();
    if (this.opts.controlHost) this.control = await this.fabric.addHost('control');
    const control = this.control;
    this.etcd = await Etcd.start({
      listenIp: control?.ip ?? rootIp,
      members: this.opts.etcdMembers ?? 1,
      ...(control ? { netns: control.netns } : {}),
      ...(this.opts.etcdTls ? { tls: true as const } : {}),
    });
    this.cleanup.defer('etcd', () => this.etcd.stop());
    const t = this.etcd.clientTls;
    this.ds = new Datastore(
      resolveDatastoreConfig({ etcd: this.etcd.endpoints, etcdCa: t?.ca, etcdCert: t?.cert, etcdKey: t?.key, env: {} }),
    );
    this.cleanup.defer('datastore client', () => this.ds.close());
    for (const name of this.opts.hosts) {
      const ns = await this.fabric.addHost(name);
      const proxySocket = join(ns.dir, 'docker-proxy.sock');
      const birdDir = join(ns.dir, 'bird');
      const bird = {
        config: join(birdDir, 'bird.conf'),
        socket: join(birdDir, 'bird.ctl'),
        pid: join(birdDir, 'bird.pid'),
        log: join(birdDir, 'bird.log'),
      };
      const h: DevHost = {
        name,
        ns,
        proxySocket,
        node: undefined,
        bgpConfig: undefined,
        bird,
        docker: (args, input) => this.dockerd.docker(args, { host: `unix://${proxySocket}`, input }),
        birdc: (command) => exec(['birdc', '-s', bird.socket, ...command.split(' ')]),
      };
      this.hosts.set(name, h);
      // BIRD daemonizes: it is stopped by the pid in its pid file, after everything else of the host.
      this.cleanup.defer(`BIRD of ${name}`, () => this.stopBird(name));
      // Teardown runs backwards: the host's services stop first, so that nothing restarts BIRD.
      this.cleanup.defer(`services of ${name}`, () => ns.stopProcesses());
      await this.startNode(name);
      if (this.opts.bgp) await this.startBgpConfig(name);
    }
    if (this.opts.master) await this.startMaster();
  }

  /** Starts (or restarts) calico-master on the fabric's root address; resolves once it answers. */
  async startMaster(): Promise<ManagedProcess> {
    const ip = this.control?.ip ?? this.fabric.rootLink!.ip;
    // A new namespace has nothing listening: any port that is free here is free there.
    const port = (this.masterPort ??= await freePort(this.control ? '127.0.0.1' : ip));
    const tlsArgs: string[] = [];
    if (this.opts.masterTls) {
      this.apiCa ??= await TestCa.create(join(this.fabric.dir, 'api-tls'), 'calico-api-ca');
      const server = await this.apiCa.issue('calico-master', { server: { ips: [ip] } });
      this.apiClient ??= await this.apiCa.issue('calicoctl', { client: true });
      tlsArgs.push(`--tls-cert=${server.cert}`, `--tls-key=${server.key}`, `--tls-ca=${this.apiCa.cert}`);
    }
    const argv = [
      process.execPath,
      masterMainJs(),
      `--ip=${ip}`,
      `--listen=${ip}:${port}`,
      ...this.etcdFlags,
      `--api-token-file=${this.apiTokenFile}`,
      `--log-level=${this.opts.logLevel ?? 'info'}`,
      ...tlsArgs,
    ];
    const p = this.control
      ? this.control.spawn('calico-master', argv)
      : new ManagedProcess({ name: 'calico-master', argv, logFile: join(this.fabric.dir, 'calico-master.log') });
    if (!this.master) this.cleanup.defer('calico-master', () => this.master?.stop() ?? Promise.resolve());
    this.master = p;
    this.masterUrl = `${tlsArgs.length ? 'https' : 'http'}://${ip}:${port}/`;
    await waitFor(
      'calico-master to answer',
      async () => {
        if (!p.running) throw new Error('calico-master exited');
        const health = apiCall(new URL('healthz', this.masterUrl), { tls: this.apiClientTls() });
        return (await health.catch(() => undefined))?.status === 200;
      },
      30_000,
      () => p.log().slice(-3000),
    );
    return p;
  }

  private masterPort: number | undefined;

  /** --etcd, and with etcdTls the client certificate's flags: what every service and calicoctl get here. */
  get etcdFlags(): string[] {
    return this.etcd.clientFlags;
  }

  /** The cluster API token's file, in the fabric's folder (never /etc/calico); the master makes it. */
  get apiTokenFile(): string {
    return join(this.fabric.dir, 'api-token');
  }

  /** With masterTls: apiCa to verify the master, apiClient to present; else undefined. */
  apiClientTls(): ApiClientTls | undefined {
    if (!this.apiCa) return undefined;
    const c = this.apiClient;
    const client = c ? { cert: readFileSync(c.cert), key: readFileSync(c.key) } : {};
    return { ca: readFileSync(this.apiCa.cert), ...client };
  }

  /**
   * A call to the master API as calicoctl makes it: with the cluster token over http; over https
   * (masterTls) with the client certificate instead.
   */
  async masterFetch(
    path: string,
    init: { method?: string; body?: string; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    if (!this.masterUrl) throw new Error('no calico-master in this cluster (start it with master: true)');
    const url = new URL(path.replace(/^\//, ''), this.masterUrl);
    const tls = this.apiClientTls();
    const r = await apiCall(url, {
      ...init,
      ...(tls ? { tls } : { token: readApiToken(this.apiTokenFile) }),
    });
    const headers = new Headers();
    for (const [k, v] of Object.entries(r.headers)) {
      if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
    }
    return new Response(r.status === 204 ? null : r.body, { status: r.status, headers });
  }

  /** Starts (or restarts) bgp-config with --run-bird in the host; resolves once BIRD answers. */
  async startBgpConfig(name: string): Promise<ManagedProcess> {
    const h = this.host(name);
    const p = h.ns.spawn('calico-bgp-config', [
      process.execPath,
      bgpConfigMainJs(),
      `--hostname=${name}`,
      ...this.etcdFlags,
      `--state-dir=${dirname(h.bird.config)}`,
      '--run-bird',
      `--log-level=${this.opts.logLevel ?? 'info'}`,
    ]);
    h.bgpConfig = p;
    await waitFor(
      `BIRD on ${name} to answer`,
      async () => {
        if (!p.running) throw new Error('bgp-config exited');
        return (await h.birdc('show status')).stdout.includes('Daemon is up and running');
      },
      30_000,
      () => p.log().slice(-4000),
    );
    return p;
  }

  async stopBgpConfig(name: string): Promise<void> {
    await this.host(name).bgpConfig?.stop();
  }

  /** The pid BIRD wrote, or undefined. */
  async birdPid(name: string): Promise<number | undefined> {
    const pid = Number((await readFile(this.host(name).bird.pid, 'utf8').catch(() => '')).trim());
    return pid > 0 ? pid : undefined;
  }

  /** Stops the host's BIRD, proven by its command line naming its pid file (see @calico/proc). */
  async stopBird(name: string): Promise<void> {
    const pid = await this.birdPid(name);
    if (!pid) return;
    const r = await stopProcess({ pid }, { cmdlineMatches: cmdlineNamesFile(this.host(name).bird.pid) });
    if (r === 'stuck') throw new Error(`BIRD ${pid} of ${name} did not exit`);
  }

  host(name: string): DevHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} in this cluster`);
    return h;
  }

  /**
   * Starts (or restarts) calico-node in the host and waits until its proxy answers (it listens
   * only once the policy is programmed); `{ ready: false }` returns at once. `args` are added
   * to the cluster's `nodeArgs` for this start.
   */
  async startNode(name: string, opts: { ready?: boolean; args?: string[] } = {}): Promise<ManagedProcess> {
    const h = this.host(name);
    const p = h.ns.spawn(
      `calico-node`,
      [
        process.execPath,
        nodeMainJs(),
        `--hostname=${name}`,
        `--ip=${h.ns.ip}`,
        ...this.etcdFlags,
        `--docker=${this.dockerd.host}`,
        `--listen=unix://${h.proxySocket}`,
        '--listen=127.0.0.1:2375',
        `--lease-ttl=${this.opts.leaseTtlSeconds ?? 5}`,
        `--log-level=${this.opts.logLevel ?? 'info'}`,
        ...(this.opts.nodeArgs ?? []),
        ...(opts.args ?? []),
      ],
      this.opts.nodeEnv ? { ...process.env, ...this.opts.nodeEnv } : undefined,
    );
    h.node = p;
    if (opts.ready === false) return p;
    await waitFor(
      `calico-node on ${name} to be ready`,
      async () => {
        if (!p.running) throw new Error('exited');
        // The proxy listens only after registration and reconcile: answering means ready.
        return (await h.docker(['version', '--format', '{{.Server.Version}}'])).code === 0;
      },
      30_000,
      () => p.log().slice(-4000),
    );
    return p;
  }

  async stopNode(name: string): Promise<void> {
    await this.host(name).node?.stop();
  }

  /** Kernel state of every host and the /calico keyspace, for a failure to explain itself. */
  async dump(): Promise<string> {
    const keys = await this.etcd
      .etcdctl(['get', '--prefix', '/calico'])
      .catch((e: unknown) => `etcdctl failed: ${String(e)}`);
    return `${await this.fabric.dump()}\n===== /calico =====\n${keys}\n===== dockerd log =====\n${this.dockerd.logs().slice(-5000)}`;
  }

  async stop(): Promise<void> {
    await this.cleanup.run();
  }
}
