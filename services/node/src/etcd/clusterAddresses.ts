import { networkInterfaces } from 'node:os';
import type { Datastore } from '@calico/datastore';
import { decodeMasterIp, isIP, masterIpKey } from '@calico/keyspace';
import type { ReservedAddresses } from '../workload/calicoIp.js';
import type { AddressRegistry } from './addresses.js';

/** Every host's bird_ip and bird6_ip, kept by a sync that reads them anyway (the policy agent's). */
export interface BirdIpSource {
  /** address → host */
  birdIps(): ReadonlyMap<string, string>;
  /** Resolves once the first full snapshot has been read. */
  whenSynced(): Promise<void>;
}

/**
 * The addresses a container may not take, read at the edge: every host's bird_ip from the
 * agent's sync, this host's interfaces as the kernel has them now, the etcd endpoints, and the
 * master's address and the pools read at each create.
 */
export class ClusterAddresses {
  constructor(
    private readonly ds: Datastore,
    private readonly addresses: AddressRegistry,
    private readonly own: readonly string[],
    private readonly birdIps: BirdIpSource,
  ) {}

  /** Resolves once every host's bird_ip has been read (etcd may be away at start: it waits). */
  start(): Promise<void> {
    return this.birdIps.whenSynced();
  }

  async current(): Promise<ReservedAddresses> {
    const [v4, v6, master] = await Promise.all([
      this.addresses.pools(4),
      this.addresses.pools(6),
      this.ds.get(masterIpKey()),
    ]);
    const m = master === undefined ? undefined : decodeMasterIp(masterIpKey(), master);
    const interfaces = Object.values(networkInterfaces())
      .flatMap((l) => l ?? [])
      .map((i) => i.address.replace(/%.*$/, ''));
    return {
      hostAddrs: [...this.own, ...interfaces],
      birdIps: this.birdIps.birdIps(),
      etcdAddrs: this.ds.config.endpoints.flatMap((e) => {
        const h = new URL(e).hostname.replace(/^\[|\]$/g, '');
        return isIP(h) ? [h] : [];
      }),
      masterAddrs: m?.ok ? [m.value] : [],
      pools: [...v4, ...v6],
    };
  }
}
