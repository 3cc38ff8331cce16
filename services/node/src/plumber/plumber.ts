import { writeFile, readdir, access } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import type { Logger } from '@calico/log';
import { isIP } from '@calico/keyspace';
import { HOST_IF_LINK_LOCAL, HOST_IF_MAC, HOST_IF_PREFIX, hostIfName } from './names.js';

export interface PlumbSpec {
  endpointId: string;
  /** The container's init pid; its network namespace gets eth0. */
  pid: number;
  addrs: string[];
  mac: string;
}

export class PlumbError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PlumbError';
  }
}

/** Runs a command, feeding stdin; rejects with its stderr on failure. */
function run(argv: string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', (e) => reject(new PlumbError(`${argv[0]}: ${e.message}`)));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new PlumbError(`${argv.join(' ')} failed (exit ${code}): ${err.trim() || out.trim()}`))));
    p.stdin.on('error', () => undefined);
    p.stdin.end(input);
  });
}

/**
 * Gives a container its network: a veth whose host side (cali…) stays in the node's network
 * namespace and whose other side appears in the container as eth0, the address as /32 or /128,
 * a default route, and on the host a route to the address. The host answers the container's
 * ARP for everything by proxy ARP; for IPv6 the container's gateway is the host side's
 * link-local address. Kernel work is batched: one `ip -batch` on each side.
 */
export class Plumber {
  constructor(
    private readonly logger: Logger,
    private readonly procSys = '/proc/sys',
  ) {}

  async plumb(spec: PlumbSpec): Promise<{ hostIf: string }> {
    const hostIf = hostIfName(spec.endpointId);
    const v4 = spec.addrs.filter((a) => isIP(a) === 4);
    const v6 = spec.addrs.filter((a) => isIP(a) === 6);
    // A leftover host side (a previous run of this container, or a failed attempt) goes first.
    await this.removeHostIf(hostIf);
    try {
      await run(['ip', 'link', 'add', hostIf, 'address', HOST_IF_MAC, 'type', 'veth', 'peer', 'name', 'eth0', 'address', spec.mac, 'netns', String(spec.pid)]);
      await this.hostSysctls(hostIf, v6.length > 0);
      const host = [`link set ${hostIf} up`, ...v4.map((a) => `route replace ${a}/32 dev ${hostIf}`), ...v6.map((a) => `route replace ${a}/128 dev ${hostIf}`)];
      await run(['ip', '-batch', '-'], `${host.join('\n')}\n`);
      // Inside the container: addresses, link up, then the default routes last, since the
      // wait program starts the workload as soon as they exist.
      const inside = [
        ...v4.map((a) => `addr add ${a}/32 dev eth0`),
        ...v6.map((a) => `addr add ${a}/128 dev eth0 nodad`),
        'link set eth0 up',
        ...(v4.length ? ['route add default dev eth0'] : []),
        ...(v6.length ? [`route add ::/0 via ${HOST_IF_LINK_LOCAL} dev eth0`] : []),
      ];
      const script = [
        // Docker turns IPv6 off in a --net=none container; an IPv6 workload needs it on.
        ...(v6.length ? ['echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6', 'echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6'] : []),
        'exec ip -batch -',
      ].join('; ');
      await run(['nsenter', `--net=/proc/${spec.pid}/ns/net`, 'sh', '-c', script], `${inside.join('\n')}\n`);
    } catch (e) {
      await this.removeHostIf(hostIf);
      throw e instanceof PlumbError ? e : new PlumbError(String(e), { cause: e });
    }
    this.logger.debug({ endpoint: spec.endpointId, hostIf, pid: spec.pid, addrs: spec.addrs }, 'workload plumbed');
    return { hostIf };
  }

  private async hostSysctls(hostIf: string, v6: boolean): Promise<void> {
    const w = (path: string, v: string) => writeFile(`${this.procSys}/${path}`, v);
    await Promise.all([
      w(`net/ipv4/conf/${hostIf}/proxy_arp`, '1'),
      w(`net/ipv4/neigh/${hostIf}/proxy_delay`, '0'),
      w(`net/ipv4/conf/${hostIf}/forwarding`, '1'),
      // Strict reverse-path check: the container may only send from addresses routed to it.
      w(`net/ipv4/conf/${hostIf}/rp_filter`, '1'),
    ]);
    if (v6) {
      await w(`net/ipv6/conf/${hostIf}/disable_ipv6`, '0');
      await Promise.all([
        w(`net/ipv6/conf/${hostIf}/accept_dad`, '0'),
        w(`net/ipv6/conf/${hostIf}/proxy_ndp`, '1'),
        w(`net/ipv6/conf/${hostIf}/forwarding`, '1'),
        w(`net/ipv6/conf/${hostIf}/accept_ra`, '0'),
      ]);
    }
  }

  /** Whether the endpoint's host side exists (the container side goes with it). */
  async isPlumbed(endpointId: string): Promise<boolean> {
    return access(`/sys/class/net/${hostIfName(endpointId)}`).then(
      () => true,
      () => false,
    );
  }

  /** Deleting the host side deletes the pair, and its routes go with it. */
  async unplumb(endpointId: string): Promise<void> {
    await this.removeHostIf(hostIfName(endpointId));
  }

  async removeHostIf(hostIf: string): Promise<void> {
    if (!hostIf.startsWith(HOST_IF_PREFIX)) throw new PlumbError(`refusing to delete ${hostIf}: not ours`);
    try {
      await access(`/sys/class/net/${hostIf}`);
    } catch {
      return;
    }
    await run(['ip', 'link', 'del', hostIf]).catch((e: unknown) => {
      // Gone between the check and the delete: that is what we wanted.
      if (!String(e).includes('Cannot find device')) throw e;
    });
  }

  /** Host-side interfaces this node owns. */
  async ownedInterfaces(): Promise<string[]> {
    const all = await readdir('/sys/class/net');
    return all.filter((n) => n.startsWith(HOST_IF_PREFIX)).sort();
  }
}
