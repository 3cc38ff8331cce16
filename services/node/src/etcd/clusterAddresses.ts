import { networkInterfaces } from 'node:os';
import type { Datastore, Syncer } from '@calico/datastore';
import {
  decodeBird6Ip,
  decodeBirdIp,
  decodeMasterIp,
  hostsPrefix,
  isIP,
  masterIpKey,
  parseKey,
} from '@calico/keyspace';
import type { ReservedAddresses } from '../workload/calicoIp.js';
import type { AddressRegistry } from './addresses.js';

const isBirdIpKey = (key: string) => key.endsWith('/bird_ip') || key.endsWith('/bird6_ip');

/**
 * The addresses a container may not take, read at the edge: every host's bird_ip from a syncer
 * of the host keys (filtered to those), this host's interfaces as the kernel has them now, the
 * etcd endpoints, and the master's address and the pools read at each create.
 */
export class ClusterAddresses {
  private readonly syncer: Syncer;

  constructor(
    private readonly ds: Datastore,
    private readonly addresses: AddressRegistry,
    private readonly own: readonly string[],
  ) {
    this.syncer = ds.syncer(hostsPrefix, { onUpdates: () => undefined }, { filter: isBirdIpKey });
  }

  /** Resolves once every host's bird_ip has been read. */
  async start(): Promise<void> {
    this.syncer.start();
    // etcd may be away at start-up: the node waits for it, as it does for the agent's sync.
    for (;;) {
      try {
        return await this.syncer.waitInSync(30_000);
      } catch {
        continue;
      }
    }
  }

  stop(): Promise<void> {
    return this.syncer.stop();
  }

  async current(): Promise<ReservedAddresses> {
    const [v4, v6, master] = await Promise.all([
      this.addresses.pools(4),
      this.addresses.pools(6),
      this.ds.get(masterIpKey()),
    ]);
    const birdIps = new Map<string, string>();
    for (const [key, value] of this.syncer.state) {
      const k = parseKey(key);
      if (k.kind !== 'birdIp' && k.kind !== 'bird6Ip') continue;
      const d = k.kind === 'birdIp' ? decodeBirdIp(key, value) : decodeBird6Ip(key, value);
      if (d.ok) birdIps.set(d.value, k.host);
    }
    const m = master === undefined ? undefined : decodeMasterIp(masterIpKey(), master);
    const interfaces = Object.values(networkInterfaces())
      .flatMap((l) => l ?? [])
      .map((i) => i.address.replace(/%.*$/, ''));
    return {
      hostAddrs: [...this.own, ...interfaces],
      birdIps,
      etcdAddrs: this.ds.config.endpoints.flatMap((e) => {
        const h = new URL(e).hostname.replace(/^\[|\]$/g, '');
        return isIP(h) ? [h] : [];
      }),
      masterAddrs: m?.ok ? [m.value] : [],
      pools: [...v4, ...v6],
    };
  }
}
