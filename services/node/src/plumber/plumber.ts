import { readdir, access, readFile } from 'node:fs/promises';
import type { Logger } from '@calico/log';
import { runTool, toolTimeoutMs } from '@calico/proc';
import { isIP } from '@calico/keyspace';
import { HOST_IF_LINK_LOCAL, HOST_IF_MAC, HOST_IF_PREFIX, WORKLOAD_ROUTE_PROTO, hostIfName } from './names.js';

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

/**
 * The whole plumbing of one workload as one shell script, so that it costs the node a single
 * process spawn: the veth (its container side created straight in the container's netns as
 * eth0), the host side's sysctls (proxy ARP without delay, forwarding, strict reverse-path
 * filter; for IPv6 proxy NDP, no DAD, no RAs), the host routes, then inside the container the
 * addresses, link and default routes, the routes last because the wait program starts the
 * workload as soon as they exist. The host routes carry WORKLOAD_ROUTE_PROTO: BIRD exports
 * only routes with it. Every value in it is validated, nothing is quoted in.
 */
export function plumbScript(spec: PlumbSpec, procSys = '/proc/sys', opts: { keep?: boolean } = {}): string {
  const hostIf = hostIfName(spec.endpointId);
  if (!Number.isInteger(spec.pid) || spec.pid <= 0) throw new PlumbError(`bad pid ${spec.pid}`);
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(spec.mac)) throw new PlumbError(`bad MAC ${spec.mac}`);
  for (const a of spec.addrs) if (isIP(a) === 0 || !/^[0-9a-f.:]+$/.test(a)) throw new PlumbError(`bad address ${a}`);
  const v4 = spec.addrs.filter((a) => isIP(a) === 4);
  const v6 = spec.addrs.filter((a) => isIP(a) === 6);
  const sys = (path: string, v: string) => `echo ${v} > ${procSys}/${path}`;
  const route = (a: string, len: number) => `route replace ${a}/${len} dev ${hostIf} proto ${WORKLOAD_ROUTE_PROTO}`;
  const host = [`link set ${hostIf} up`, ...v4.map((a) => route(a, 32)), ...v6.map((a) => route(a, 128))];
  // replace, not add: the same lines converge a veth kept from before without touching it.
  const inside = [
    ...v4.map((a) => `addr replace ${a}/32 dev eth0`),
    ...v6.map((a) => `addr replace ${a}/128 dev eth0 nodad`),
    'link set eth0 up',
    ...(v4.length ? ['route replace default dev eth0'] : []),
    ...(v6.length ? [`route replace ::/0 via ${HOST_IF_LINK_LOCAL} dev eth0`] : []),
  ];
  // Docker turns IPv6 off in a --net=none container; an IPv6 workload needs it on.
  // Sysctl files answer for the writer's network namespace, so the same folder serves inside.
  const insidePre = v6.length
    ? `echo 0 > ${procSys}/net/ipv6/conf/all/disable_ipv6; echo 0 > ${procSys}/net/ipv6/conf/eth0/disable_ipv6; `
    : '';
  const sysctls = [
    sys(`net/ipv4/conf/${hostIf}/proxy_arp`, '1'),
    sys(`net/ipv4/neigh/${hostIf}/proxy_delay`, '0'),
    sys(`net/ipv4/conf/${hostIf}/forwarding`, '1'),
    sys(`net/ipv4/conf/${hostIf}/rp_filter`, '1'),
    ...(v6.length
      ? [
          sys(`net/ipv6/conf/${hostIf}/disable_ipv6`, '0'),
          sys(`net/ipv6/conf/${hostIf}/accept_dad`, '0'),
          sys(`net/ipv6/conf/${hostIf}/proxy_ndp`, '1'),
          sys(`net/ipv6/conf/${hostIf}/forwarding`, '1'),
          sys(`net/ipv6/conf/${hostIf}/accept_ra`, '0'),
        ]
      : []),
  ];
  const add = `link add ${hostIf} address ${HOST_IF_MAC} type veth peer name eth0 address ${spec.mac} netns ${spec.pid}`;
  const batch = (lines: string[]) => `printf '${lines.join('\\n')}\\n' | ip -batch -`;
  // Each process costs a container's start a few ms, so IPv4 takes one `ip` on the host: the
  // sysctls may follow the link's coming up, as nothing can arrive before eth0 is up inside.
  // IPv6 needs them first (no DAD on the host side's link-local, IPv6 on for its routes).
  // A kept veth's neighbour entries go: the host learns the workload's MAC afresh (a packet
  // waits for the answer, none is lost) rather than trusting what it saw before.
  const hostSide = opts.keep
    ? [...sysctls, batch([`neigh flush dev ${hostIf}`, ...host])]
    : v6.length
      ? [`ip ${add}`, ...sysctls, batch(host)]
      : [batch([add, ...host]), ...sysctls];
  const enter = `nsenter --net=/proc/${spec.pid}/ns/net`;
  return [
    'set -e',
    // A leftover host side (a previous run of this container, a failed attempt) goes first.
    ...(opts.keep ? [] : [`[ ! -e /sys/class/net/${hostIf} ] || ip link del ${hostIf} 2>/dev/null || true`]),
    ...hostSide,
    `printf '${inside.join('\\n')}\\n' | ${insidePre ? `${enter} sh -c '${insidePre}exec ip -batch -'` : `${enter} ip -batch -`}`,
  ].join('\n');
}

/**
 * How long one plumbing script (or `ip link del`) may take: it is a few ms; past this something
 * hangs (nsenter into a namespace that is going away, a stuck netlink call), and the start fails.
 */
export const PLUMB_TIMEOUT_MS = 20_000;

/** Runs a command; rejects with a PlumbError that names it and carries its stderr. */
async function run(argv: string[], timeoutMs: number): Promise<string> {
  const r = await runTool(argv, { timeoutMs });
  if (r.error) throw new PlumbError(r.error.message, { cause: r.error });
  return r.stdout.toString('utf8');
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
    /** Told of every plumbing, how long it took and whether it worked (metrics). */
    private readonly onPlumb: (ms: number, ok: boolean) => void = () => undefined,
    /** Each tool's timeout; CALICO_TOOL_TIMEOUT_MS overrides the default (tests). */
    private readonly timeoutMs = toolTimeoutMs(PLUMB_TIMEOUT_MS),
  ) {}

  async plumb(spec: PlumbSpec): Promise<{ hostIf: string }> {
    const hostIf = hostIfName(spec.endpointId);
    const t0 = performance.now();
    try {
      await run(['sh', '-c', plumbScript(spec, this.procSys)], this.timeoutMs);
      this.onPlumb(performance.now() - t0, true);
    } catch (e) {
      this.onPlumb(performance.now() - t0, false);
      await this.removeHostIf(hostIf).catch(() => undefined);
      throw e instanceof PlumbError ? e : new PlumbError(String(e), { cause: e });
    }
    this.logger.debug({ endpoint: spec.endpointId, hostIf, pid: spec.pid, addrs: spec.addrs }, 'workload plumbed');
    return { hostIf };
  }

  /**
   * Converges a workload plumbed before (by a previous run of the node) in place: the same
   * settings, addresses and routes, written so that nothing that is already right changes.
   * Only for a veth whose peer is the container's eth0 (peerIsEth0).
   */
  async keep(spec: PlumbSpec): Promise<void> {
    const t0 = performance.now();
    try {
      await run(['sh', '-c', plumbScript(spec, this.procSys, { keep: true })], this.timeoutMs);
      this.onPlumb(performance.now() - t0, true);
    } catch (e) {
      this.onPlumb(performance.now() - t0, false);
      throw e instanceof PlumbError ? e : new PlumbError(String(e), { cause: e });
    }
  }

  /**
   * Whether the endpoint's host side is up and its peer is eth0 in the network namespace of
   * `pid`: what plumb() left, still whole. A veth goes when the namespace of either end does,
   * so a host side whose peer index is that eth0's can only be the one plumbed into it.
   */
  async peerIsEth0(endpointId: string, pid: number): Promise<boolean> {
    const hostIf = hostIfName(endpointId);
    const read = (path: string) => readFile(path, 'utf8').catch(() => '');
    const [iflink, operstate, igmp] = await Promise.all([
      read(`/sys/class/net/${hostIf}/iflink`),
      read(`/sys/class/net/${hostIf}/operstate`),
      // Lists the namespace's interfaces that are up, with their indexes.
      read(`/proc/${pid}/net/igmp`),
    ]);
    const eth0 = /^(\d+)\s+eth0\s*:/m.exec(igmp)?.[1];
    return eth0 !== undefined && iflink.trim() === eth0 && operstate.trim() === 'up';
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
    await run(['ip', 'link', 'del', hostIf], this.timeoutMs).catch((e: unknown) => {
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
