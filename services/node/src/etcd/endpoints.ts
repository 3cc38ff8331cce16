import {
  encodeAddrs,
  encodeMac,
  encodeState,
  endpointAddrsKey,
  endpointMacKey,
  endpointStateKey,
  groupsPrefix,
  parseKey,
  workloadPrefix,
  workloadsPrefix,
  decodeAddrs,
  encodeWorkloadName,
  workloadNameKey,
  refusedWorkloadKey,
  refusedWorkloadsPrefix,
} from '@calico/keyspace';
import type { Datastore } from '@calico/datastore';

export interface EndpointRecord {
  host: string;
  containerId: string;
  endpointId: string;
  addrs: string[];
  mac: string;
  state: 'active' | 'inactive';
  /** Docker's name of the container, so that tools can find it by name on any host. */
  name?: string;
}

/** The seed's endpoint keys for this host's workloads: addrs, mac, state. */
export class EndpointStore {
  constructor(
    private readonly ds: Datastore,
    readonly host: string,
  ) {}

  /** Writes all three keys in one transaction, so readers never see half an endpoint. */
  async write(e: Omit<EndpointRecord, 'host'>): Promise<void> {
    const name = e.name?.replace(/^\//, '');
    await this.ds.batch([
      ...(name ? [{ put: workloadNameKey(this.host, e.containerId), value: encodeWorkloadName(name) }] : []),
      { put: endpointAddrsKey(this.host, e.containerId, e.endpointId), value: encodeAddrs(e.addrs) },
      { put: endpointMacKey(this.host, e.containerId, e.endpointId), value: encodeMac(e.mac) },
      { put: endpointStateKey(this.host, e.containerId, e.endpointId), value: encodeState(e.state) },
    ]);
  }

  /** Records why a container with our labels is not networked, for the master and calicoctl status. */
  async refuse(containerId: string, reason: string): Promise<void> {
    await this.ds.put(refusedWorkloadKey(this.host, containerId), reason.replace(/[\r\n]+/g, ' ').slice(0, 2000));
  }

  async clearRefusal(containerId: string): Promise<void> {
    await this.ds.delete(refusedWorkloadKey(this.host, containerId));
  }

  /** Container ids this host's node refused to network. */
  async refused(): Promise<string[]> {
    const prefix = refusedWorkloadsPrefix(this.host);
    return (await this.ds.getPrefix(prefix)).kvs.map((kv) => kv.key.slice(prefix.length));
  }

  /** The addresses recorded for one endpoint of a container, or null when none are. */
  async recordedAddrs(containerId: string, endpointId: string): Promise<string[] | null> {
    const key = endpointAddrsKey(this.host, containerId, endpointId);
    const v = await this.ds.get(key);
    if (v === undefined) return null;
    const d = decodeAddrs(key, v);
    return d.ok ? d.value.map((a) => a.addr) : null;
  }

  /** Removes the workload's directory: every endpoint of the container. */
  async remove(containerId: string): Promise<number> {
    return this.ds.deleteDir(workloadPrefix(this.host, containerId));
  }

  /** Endpoints recorded for this host: container id → endpoint ids and addresses. */
  async list(): Promise<Map<string, { endpointId: string; addrs: string[] }[]>> {
    const snap = await this.ds.getPrefix(workloadsPrefix(this.host));
    const out = new Map<string, { endpointId: string; addrs: string[] }[]>();
    const seen = new Set<string>();
    for (const kv of snap.kvs) {
      const k = parseKey(kv.key);
      if (!('containerId' in k) || !('endpointId' in k)) continue;
      const id = `${k.containerId}/${k.endpointId}`;
      const list = out.get(k.containerId) ?? [];
      out.set(k.containerId, list);
      let entry = list.find((x) => x.endpointId === k.endpointId);
      if (!entry && !seen.has(id)) {
        seen.add(id);
        entry = { endpointId: k.endpointId, addrs: [] };
        list.push(entry);
      }
      if (k.kind === 'endpointAddrs' && entry) {
        const d = decodeAddrs(kv.key, kv.value);
        if (d.ok) entry.addrs = d.value.map((a) => a.addr);
      }
    }
    return out;
  }

  /** Deletes the endpoint's memberships in every group; returns the groups it left. */
  async dropMemberships(endpointId: string): Promise<string[]> {
    const snap = await this.ds.getPrefix(groupsPrefix);
    const left: string[] = [];
    const ops: { delete: string }[] = [];
    for (const kv of snap.kvs) {
      const k = parseKey(kv.key);
      if (k.kind === 'groupMember' && k.endpointId === endpointId) {
        ops.push({ delete: kv.key });
        left.push(k.groupId);
      }
    }
    if (ops.length) await this.ds.batch(ops);
    return left;
  }
}
