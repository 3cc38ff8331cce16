import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import {
  Dockerd,
  Etcd,
  Fabric,
  ensureBusyboxImage,
  exec,
  requireRoot,
  type ExecResult,
  type NamespaceHost,
} from '@calico/testkit';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';

const require = createRequire(import.meta.url);
export const calicoctlJs = join(dirname(require.resolve('@calico/calicoctl/package.json')), 'dist', 'main.js');

/**
 * What the scenarios driven by calicoctl share: one dockerd, etcd on the root side of a fabric,
 * namespace hosts h1 and h2, and calicoctl run in a host's namespace as a person on that host
 * would run it, each host with its own run, log and state folders under one temporary folder.
 * stop() shows the fabric and the services' logs when a test failed, resets every host and
 * removes all of it.
 */
export class CalicoctlHosts {
  failed = false;
  readonly hosts: Record<string, NamespaceHost> = {};

  private constructor(
    readonly dir: string,
    readonly dockerd: Dockerd,
    readonly image: string,
    readonly fabric: Fabric,
    readonly etcd: Etcd,
    readonly ds: Datastore,
    /** Flags every calicoctl run gets (besides host name, etcd and folders). */
    private readonly flags: (dir: string) => string[],
  ) {}

  static async start(prefix: string, flags: (dir: string) => string[] = () => []): Promise<CalicoctlHosts> {
    requireRoot();
    const dir = await mkdtemp(join(tmpdir(), prefix));
    const dockerd = await Dockerd.start();
    const image = await ensureBusyboxImage(dockerd.host);
    const fabric = await Fabric.create();
    const rootIp = await fabric.linkRoot();
    const etcd = await Etcd.start({ listenIp: rootIp });
    const ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    const c = new CalicoctlHosts(dir, dockerd, image, fabric, etcd, ds, flags);
    c.hosts.h1 = await fabric.addHost('h1');
    c.hosts.h2 = await fabric.addHost('h2');
    return c;
  }

  dirsOf(h: string): string[] {
    return [
      `--run-dir=${join(this.dir, h, 'run')}`,
      `--log-dir=${join(this.dir, h, 'log')}`,
      `--state-dir=${join(this.dir, h, 'state')}`,
    ];
  }

  calicoctl(h: string, args: string[]): Promise<ExecResult> {
    return this.hosts[h]!.exec(
      [
        process.execPath,
        calicoctlJs,
        ...args,
        `--hostname=${h}`,
        `--etcd=${this.etcd.endpoints}`,
        ...this.flags(this.dir),
        ...this.dirsOf(h),
      ],
      { timeoutMs: 120_000 },
    );
  }

  /** For afterEach: a failed test makes stop() show what it found. */
  note(ctx: { task: { result?: { state?: string } } }): void {
    if (ctx.task.result?.state === 'fail') this.failed = true;
  }

  /** beforeTeardown runs after every host's reset and before etcd and dockerd go. */
  async stop(beforeTeardown: () => Promise<unknown> = async () => undefined): Promise<void> {
    if (this.failed) {
      console.error(await this.fabric.dump());
      for (const h of Object.keys(this.hosts))
        console.error((await exec(['sh', '-c', `tail -n 40 ${join(this.dir, h, 'log')}/*.log`])).stdout);
    }
    // Whatever a failed test left running: reset stops it.
    for (const h of Object.keys(this.hosts)) await this.calicoctl(h, ['reset']).catch(() => undefined);
    await beforeTeardown().catch(() => undefined);
    this.ds.close();
    await this.fabric.destroy();
    await this.etcd.stop();
    await this.dockerd.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
