import { canonicalIP, cidrContains, isIP, parseCidr, parseIPv4, parseIPv6 } from '@calico/keyspace';

/** What a create request asks for: no Calico networking, the next free pool address, or one address. */
export type CalicoIpRequest =
  | { kind: 'none' }
  | { kind: 'auto'; family: 4 | 6 }
  | { kind: 'addr'; addr: string; family: 4 | 6 };

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

export const CALICO_IP_ENV = 'CALICO_IP';

/**
 * Reads CALICO_IP from a create request's Env (["K=V", …]). Docker lets the last of repeated
 * variables win; two different CALICO_IP values are refused instead, since either guess
 * could hand a container an address the orchestrator did not mean.
 */
export function calicoIpFromEnv(env: unknown): Parsed<CalicoIpRequest> {
  if (env === undefined || env === null) return { ok: true, value: { kind: 'none' } };
  if (!Array.isArray(env)) return { ok: false, message: 'Env must be a list of "NAME=value" strings' };
  const values = new Set<string>();
  let present = false;
  for (const e of env) {
    if (typeof e !== 'string') continue;
    if (e === CALICO_IP_ENV || e.startsWith(`${CALICO_IP_ENV}=`)) {
      present = true;
      values.add(e.slice(CALICO_IP_ENV.length + 1));
    }
  }
  if (!present) return { ok: true, value: { kind: 'none' } };
  if (values.size > 1) {
    return {
      ok: false,
      message: `CALICO_IP is given ${values.size} times with different values (${[...values].map((v) => JSON.stringify(v)).join(', ')}): give it once`,
    };
  }
  return parseCalicoIp([...values][0] ?? '');
}

export function parseCalicoIp(raw: string): Parsed<CalicoIpRequest> {
  const v = raw.trim();
  const shown = JSON.stringify(raw);
  if (v === '') return { ok: false, message: 'CALICO_IP is empty: give an IPv4 or IPv6 address, or "auto"' };
  if (v.toLowerCase() === 'auto' || v.toLowerCase() === 'auto4')
    return { ok: true, value: { kind: 'auto', family: 4 } };
  if (v.toLowerCase() === 'auto6') return { ok: true, value: { kind: 'auto', family: 6 } };
  if (v.includes('/')) {
    const c = parseCidr(v);
    return {
      ok: false,
      message: c
        ? `CALICO_IP=${shown} is a network, not an address: give one address without a prefix length (the container gets it as /${c.family === 4 ? 32 : 128})`
        : `CALICO_IP=${shown} is not an IPv4 or IPv6 address, nor "auto"`,
    };
  }
  const family = isIP(v);
  if (family === 0) {
    if (/^\d+(\.\d+){3}$/.test(v)) {
      return {
        ok: false,
        message: `CALICO_IP=${shown} is not a valid IPv4 address: each of the four numbers must be 0-255, without leading zeros`,
      };
    }
    return { ok: false, message: `CALICO_IP=${shown} is not an IPv4 or IPv6 address, nor "auto"` };
  }
  const addr = canonicalIP(v)!;
  const why = notUnicast(addr, family);
  if (why) return { ok: false, message: `CALICO_IP=${shown} cannot be given to a container: ${why}` };
  return { ok: true, value: { kind: 'addr', addr, family } };
}

/** A container address must be an ordinary unicast address; says why not, or undefined. */
function notUnicast(addr: string, family: 4 | 6): string | undefined {
  if (family === 4) {
    const b = parseIPv4(addr)!;
    const [a, second] = [b[0]!, b[1]!];
    if (a === 0) return 'addresses in 0.0.0.0/8 mean "this network"';
    if (a === 127) return 'it is a loopback address';
    if (a >= 224 && a <= 239) return 'it is a multicast address';
    if (a >= 240)
      return addr === '255.255.255.255' ? 'it is the broadcast address' : 'it is in the reserved range 240.0.0.0/4';
    if (a === 169 && second === 254) return 'it is a link-local address';
    return undefined;
  }
  const b = parseIPv6(addr)!;
  if (b.every((x) => x === 0)) return 'it is the unspecified address ::';
  if (addr === '::1') return 'it is the loopback address';
  if (b[0] === 0xff) return 'it is a multicast address';
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return 'it is a link-local address';
  return undefined;
}

/** Addresses of the cluster's own machinery, and the pools, that a create is checked against. */
export interface ReservedAddresses {
  /** This host's own addresses: its interfaces, --ip and --ip6. */
  hostAddrs: readonly string[];
  /** Every host's management address (bird_ip, bird6_ip) → that host. */
  birdIps: ReadonlyMap<string, string>;
  /** The etcd endpoints' addresses (those given as IP literals). */
  etcdAddrs: readonly string[];
  /** /calico/master/ip. */
  masterAddrs: readonly string[];
  /** IP pools of both families (CIDRs). */
  pools: readonly string[];
}

/**
 * Why a container may not have addr (canonical), given the cluster's own addresses, or
 * undefined. An address of the hosts, etcd or the master would let a workload take over their
 * traffic (its /32 is exported by BGP and wins over any shorter route). When pools of the
 * address's family exist, an address outside all of them is refused too; without pools (the
 * seed's way) any other unicast address is the orchestrator's to give.
 */
export function reservedAddressRefusal(addr: string, family: 4 | 6, r: ReservedAddresses): string | undefined {
  const same = (list: readonly string[]) => list.some((a) => canonicalIP(a) === addr);
  const why = (s: string) => `CALICO_IP=${addr} cannot be given to a container: ${s}`;
  if (same(r.hostAddrs)) return why('it is an address of this host');
  for (const [a, host] of r.birdIps) {
    if (canonicalIP(a) === addr) return why(`it is the management address (bird_ip) of host "${host}"`);
  }
  if (same(r.etcdAddrs)) return why('it is the address of an etcd endpoint');
  if (same(r.masterAddrs)) return why('it is the address of the Calico master');
  const pools = r.pools.filter((p) => parseCidr(p)?.family === family);
  if (pools.length && !pools.some((p) => cidrContains(p, addr))) {
    return why(`it is outside every IPv${family} pool (${pools.join(', ')}); choose an address in one of them`);
  }
  return undefined;
}
