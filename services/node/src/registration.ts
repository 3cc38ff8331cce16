import type { Datastore, LeaseKeeper } from '@calico/datastore';
import { LeaseConflictError } from '@calico/datastore';
import {
  bird6IpKey,
  birdIpKey,
  decodeHostAlive,
  encodeBirdIp,
  encodeBird6Ip,
  encodeHostAlive,
  hostAliveKey,
  hostsPrefix,
  parseKey,
} from '@calico/keyspace';
import type { Logger } from '@calico/log';

export class RegistrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegistrationError';
  }
}

export interface RegistrationOptions {
  host: string;
  ip: string;
  ip6?: string | undefined;
  ttlSeconds?: number;
}

/**
 * Puts this host in the cluster: a liveness key bound to a lease (gone when the node is),
 * and the seed's bird_ip. Two live nodes with the same host name or the same address (a
 * cloned VM) would steal each other's routes, so a second one refuses to start.
 */
export async function registerHost(ds: Datastore, opts: RegistrationOptions, logger: Logger): Promise<LeaseKeeper> {
  const ttlSeconds = opts.ttlSeconds ?? 10;
  const snap = await ds.getPrefix(hostsPrefix);
  const alive = new Set<string>();
  const birdIps = new Map<string, string>();
  for (const kv of snap.kvs) {
    const k = parseKey(kv.key);
    if (k.kind === 'hostAlive' && decodeHostAlive(kv.key, kv.value).ok) alive.add(k.host);
    if (k.kind === 'birdIp' || k.kind === 'bird6Ip') birdIps.set(`${k.host}|${kv.value.trim()}`, k.host);
  }
  for (const [hostAndIp, other] of birdIps) {
    const ip = hostAndIp.slice(other.length + 1);
    if (other !== opts.host && alive.has(other) && (ip === opts.ip || ip === opts.ip6)) {
      throw new RegistrationError(
        `address ${ip} is already used by live host "${other}": give this node another --ip (cloned machine?)`,
      );
    }
  }
  const keeper = ds.leaseKeeper({
    ttlSeconds,
    onStatus: (held, reason) =>
      held
        ? logger.info({ host: opts.host }, 'host liveness held')
        : logger.warn({ host: opts.host, reason }, 'host liveness lost; re-registering as soon as etcd answers'),
  });
  await keeper.start();
  const ttl = opts.ttlSeconds ?? 10;
  // A node that crashed a moment ago still holds its lease for up to one TTL: wait that out
  // before deciding that another live node has the name.
  const deadline = Date.now() + (ttl + 2) * 1000;
  for (let announced = false; ; ) {
    try {
      await keeper.claim(
        hostAliveKey(opts.host),
        encodeHostAlive({ since: new Date().toISOString(), pid: process.pid }),
      );
      break;
    } catch (e) {
      if (e instanceof LeaseConflictError && Date.now() < deadline) {
        if (!announced)
          logger.warn(
            { host: opts.host, ttl },
            `host name "${opts.host}" is held by a live lease; waiting up to ${ttl + 2} s in case it is this node's previous run`,
          );
        announced = true;
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      await keeper.stop({ keepKeys: true });
      if (e instanceof LeaseConflictError) {
        throw new RegistrationError(
          `host name "${opts.host}" is already in use by a live node: give this node another --hostname (cloned machine?), or stop the other one`,
        );
      }
      throw e;
    }
  }
  await ds.put(birdIpKey(opts.host), encodeBirdIp(opts.ip));
  if (opts.ip6) await ds.put(bird6IpKey(opts.host), encodeBird6Ip(opts.ip6));
  logger.info(
    { host: opts.host, ip: opts.ip, ip6: opts.ip6 },
    'host registered: bird_ip written, liveness held by a lease',
  );
  return keeper;
}
