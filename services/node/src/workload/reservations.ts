import type { IpAssignment } from '@calico/keyspace';
import { PENDING_CONTAINER } from '../etcd/addresses.js';

/** One of this host's containers as dockerd lists it; endpoint and addresses from its labels, when it has ours. */
export interface ListedContainer {
  id: string;
  workload: { endpointId: string; addrs: readonly string[] } | null;
}

/** What the start-up reconcile does with one reservation of this host. */
export type ReservationRepair =
  /** Pending for a container that dockerd did create: it now names that container. */
  | { action: 'confirm'; addr: string; holder: IpAssignment; containerId: string }
  /** Pending for a create that never happened, or naming a container that is gone. */
  | { action: 'release'; addr: string; holder: IpAssignment; why: string };

/**
 * The repairs that leave every reservation of this host naming a container that exists. Valid
 * only while none of this node's own creates is in flight (a fresh node, before its proxy
 * serves): a create between reserve and dockerd's answer holds a pending reservation that no
 * listed container has yet. Other hosts' reservations are theirs to mend.
 */
export function reservationRepairs(
  host: string,
  reservations: ReadonlyMap<string, IpAssignment>,
  containers: readonly ListedContainer[],
): ReservationRepair[] {
  const present = new Set(containers.map((c) => c.id));
  const out: ReservationRepair[] = [];
  for (const [addr, holder] of reservations) {
    if (holder.host !== host) continue;
    if (holder.containerId === PENDING_CONTAINER) {
      const c = containers.find(
        (x) => x.workload !== null && x.workload.endpointId === holder.endpointId && x.workload.addrs.includes(addr),
      );
      out.push(
        c
          ? { action: 'confirm', addr, holder, containerId: c.id }
          : { action: 'release', addr, holder, why: 'pending for a container that dockerd never created' },
      );
    } else if (!present.has(holder.containerId)) {
      out.push({ action: 'release', addr, holder, why: 'its container is gone' });
    }
  }
  return out;
}
