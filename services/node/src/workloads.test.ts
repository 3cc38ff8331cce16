import { describe, expect, it } from 'vitest';
import type Docker from 'dockerode';
import { createLogger } from '@calico/log';
import type { IpAssignment } from '@calico/keyspace';
import { Workloads } from './workloads.js';
import { LABELS } from './workload/createRequest.js';
import { hostIfName } from './plumber/names.js';
import type { Plumber } from './plumber/plumber.js';
import type { EndpointStore } from './etcd/endpoints.js';
import type { AddressRegistry } from './etcd/addresses.js';

const logger = createLogger({ name: 'workloads-test', level: 'silent' });
const EID = '0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a';
const ID = 'a'.repeat(64);
const ADDR = '198.19.0.1';

/** dockerd as the reconcile sees it: one container of ours that a late start turns running. */
class FakeDocker {
  running = false;
  exists = false;
  listed = 0;
  labels = { [LABELS.host]: 'h1', [LABELS.endpoint]: EID, [LABELS.addrs]: ADDR, [LABELS.mac]: '02:00:00:00:00:01' };
  async listContainers(): Promise<Partial<Docker.ContainerInfo>[]> {
    this.listed++;
    return this.exists ? [{ Id: ID, Labels: this.labels, State: this.running ? 'running' : 'created' }] : [];
  }
  getContainer(id: string) {
    return {
      inspect: async () => {
        if (!this.exists || id !== ID) throw Object.assign(new Error('no such container'), { statusCode: 404 });
        return {
          Id: ID,
          Name: '/w',
          Config: { Labels: this.labels },
          State: { Running: this.running, Pid: this.running ? 4242 : 0 },
        };
      },
    };
  }
}

class FakePlumber {
  readonly ifs = new Set<string>();
  /** Host sides whose peer is eth0 in the given pid's namespace. */
  readonly peers = new Map<string, number>();
  readonly calls: string[] = [];
  async plumb(s: { endpointId: string; pid: number }) {
    this.calls.push('plumb');
    this.ifs.add(hostIfName(s.endpointId));
    this.peers.set(hostIfName(s.endpointId), s.pid);
    return { hostIf: hostIfName(s.endpointId) };
  }
  async keep(_s: { endpointId: string }) {
    this.calls.push('keep');
  }
  async peerIsEth0(endpointId: string, pid: number) {
    return this.ifs.has(hostIfName(endpointId)) && this.peers.get(hostIfName(endpointId)) === pid;
  }
  async isPlumbed(endpointId: string) {
    return this.ifs.has(hostIfName(endpointId));
  }
  async unplumb(endpointId: string) {
    this.ifs.delete(hostIfName(endpointId));
  }
  async removeHostIf(ifname: string) {
    this.ifs.delete(ifname);
  }
  async ownedInterfaces() {
    return [...this.ifs].sort();
  }
}

class FakeEndpoints {
  readonly eps = new Map<string, { endpointId: string; addrs: string[]; state: string }>();
  /** Runs once before the first list(): what docker events did meanwhile. */
  beforeList: (() => Promise<void>) | undefined;
  async write(e: { containerId: string; endpointId: string; addrs: string[]; state: string }) {
    this.eps.set(e.containerId, { endpointId: e.endpointId, addrs: e.addrs, state: e.state });
  }
  async list() {
    const hook = this.beforeList;
    this.beforeList = undefined;
    await hook?.();
    return new Map([...this.eps].map(([id, e]) => [id, [{ endpointId: e.endpointId, addrs: e.addrs }]]));
  }
  async remove(containerId: string) {
    return this.eps.delete(containerId) ? 1 : 0;
  }
  async dropMemberships() {
    return [];
  }
  async recordedAddrs() {
    return null;
  }
  readonly refusals = new Map<string, string>();
  async refuse(containerId: string, reason: string) {
    this.refusals.set(containerId, reason);
  }
  async clearRefusal(containerId: string) {
    this.refusals.delete(containerId);
  }
  async refused() {
    return [...this.refusals.keys()];
  }
}

class FakeAddresses {
  readonly held = new Map<string, IpAssignment>();
  async holder(addr: string) {
    return this.held.get(addr) ?? null;
  }
  async transfer(addr: string, _from: string, to: IpAssignment) {
    this.held.set(addr, to);
    return true;
  }
  async list(family: 4 | 6) {
    return new Map([...this.held].filter(([a]) => (family === 4) === !a.includes(':')));
  }
  async release(addr: string, pred: (h: IpAssignment) => boolean) {
    const h = this.held.get(addr);
    if (!h || !pred(h)) return false;
    return this.held.delete(addr);
  }
}

function setup() {
  const docker = new FakeDocker();
  const plumber = new FakePlumber();
  const endpoints = new FakeEndpoints();
  const addresses = new FakeAddresses();
  const w = new Workloads(
    'h1',
    docker as unknown as Docker,
    plumber as unknown as Plumber,
    endpoints as unknown as EndpointStore,
    addresses as unknown as AddressRegistry,
    logger,
  );
  return { docker, plumber, endpoints, addresses, w };
}

describe('Workloads.reconcile while dockerd finishes what the previous node forwarded', () => {
  it('keeps the network of a container whose start lands after the first listing', async () => {
    const { docker, plumber, endpoints, addresses, w } = setup();
    docker.exists = true;
    addresses.held.set(ADDR, { host: 'h1', containerId: ID, endpointId: EID });
    // Listed as created; then dockerd finishes the start and the start event networks it.
    endpoints.beforeList = async () => {
      docker.running = true;
      expect(await w.ensureRunning(ID)).toBe(true);
    };
    const summary = await w.reconcile();
    expect(summary).toMatchObject({ stopped: 1, released: 0, veths: 0 });
    expect(plumber.ifs).toEqual(new Set([hostIfName(EID)]));
    expect(endpoints.eps.get(ID)?.state).toBe('active');
    expect(addresses.held.get(ADDR)?.containerId).toBe(ID);
    expect(docker.listed).toBe(2);
  });

  it('keeps what a container created and started after the first listing holds', async () => {
    const { docker, plumber, endpoints, addresses, w } = setup();
    // The create was in flight in dockerd: its reservation is still pending.
    addresses.held.set(ADDR, { host: 'h1', containerId: 'pending', endpointId: EID });
    endpoints.beforeList = async () => {
      docker.exists = true;
      docker.running = true;
      expect(await w.ensureRunning(ID)).toBe(true);
    };
    const summary = await w.reconcile();
    expect(summary).toMatchObject({ running: 0, stopped: 0, released: 0, veths: 0 });
    expect(plumber.ifs).toEqual(new Set([hostIfName(EID)]));
    expect(endpoints.eps.get(ID)?.state).toBe('active');
    expect(addresses.held.get(ADDR)).toEqual({ host: 'h1', containerId: ID, endpointId: EID });
  });

  it('control: what a container that is gone held goes, veth, endpoint and reservation', async () => {
    const { docker, plumber, endpoints, addresses, w } = setup();
    docker.exists = false;
    plumber.ifs.add(hostIfName(EID));
    await endpoints.write({ containerId: ID, endpointId: EID, addrs: [ADDR], state: 'active' });
    addresses.held.set(ADDR, { host: 'h1', containerId: ID, endpointId: EID });
    addresses.held.set('198.19.0.2', {
      host: 'h1',
      containerId: 'pending',
      endpointId: '0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b',
    });
    const summary = await w.reconcile();
    expect(summary).toMatchObject({ released: 1, reservations: { confirmed: 0, released: 1 } });
    expect(plumber.ifs.size).toBe(0);
    expect(endpoints.eps.size).toBe(0);
    expect(addresses.held.size).toBe(0);
  });
});

describe('a node restart', () => {
  it("keeps a running workload's veth whose peer is its eth0, and converges it in place", async () => {
    const before = setup();
    before.docker.exists = true;
    before.docker.running = true;
    before.addresses.held.set(ADDR, { host: 'h1', containerId: ID, endpointId: EID });
    await before.endpoints.write({ containerId: ID, endpointId: EID, addrs: [ADDR], state: 'active' });
    expect(await before.w.ensureRunning(ID)).toBe(true);
    expect(before.plumber.calls).toEqual(['plumb']);
    // The next run of the node: the kernel still has the veth, the node's memory is new.
    const after = new Workloads(
      'h1',
      before.docker as unknown as Docker,
      before.plumber as unknown as Plumber,
      before.endpoints as unknown as EndpointStore,
      before.addresses as unknown as AddressRegistry,
      logger,
    );
    expect(await after.ensureRunning(ID)).toBe(true);
    expect(before.plumber.calls).toEqual(['plumb', 'keep']);
    expect(before.endpoints.eps.get(ID)?.state).toBe('active');
    // Remembered now: the next event finds it fresh and touches nothing.
    expect(await after.ensureRunning(ID)).toBe(true);
    expect(before.plumber.calls).toEqual(['plumb', 'keep']);
  });

  it("control: a veth that is not the container's (gone, or its peer elsewhere) is plumbed anew", async () => {
    const { docker, plumber, addresses, endpoints, w } = setup();
    docker.exists = true;
    docker.running = true;
    addresses.held.set(ADDR, { host: 'h1', containerId: ID, endpointId: EID });
    await endpoints.write({ containerId: ID, endpointId: EID, addrs: [ADDR], state: 'active' });
    // A host side left from the container's previous run (another namespace).
    plumber.ifs.add(hostIfName(EID));
    plumber.peers.set(hostIfName(EID), 1111);
    expect(await w.ensureRunning(ID)).toBe(true);
    expect(plumber.calls).toEqual(['plumb']);
    expect(await w.ensureRunning(ID, { force: true })).toBe(true);
    expect(plumber.calls).toEqual(['plumb', 'plumb']);
  });
});

describe('labels are not authority', () => {
  const COPY = 'c'.repeat(64);

  it("a copy carrying a workload's labels (docker commit + run) stops and goes without touching that workload", async () => {
    const { docker, plumber, endpoints, addresses, w } = setup();
    docker.exists = true;
    docker.running = true;
    addresses.held.set(ADDR, { host: 'h1', containerId: ID, endpointId: EID });
    expect(await w.ensureRunning(ID)).toBe(true);
    const held = { ifs: new Set(plumber.ifs), eps: new Map(endpoints.eps), addrs: new Map(addresses.held) };
    await w.stopped(COPY, docker.labels);
    await w.removed(COPY, docker.labels);
    expect({ ifs: plumber.ifs, eps: endpoints.eps, addrs: addresses.held }).toEqual(held);
    // Control: the workload's own stop and removal take down exactly those.
    await w.stopped(ID, docker.labels);
    expect(plumber.ifs.size).toBe(0);
    expect(endpoints.eps.get(ID)?.state).toBe('inactive');
    await w.removed(ID, docker.labels);
    expect(endpoints.eps.size).toBe(0);
    expect(addresses.held.size).toBe(0);
  });

  it("a pending reservation is the container's only when this node's own create remembered it", async () => {
    const { addresses, docker, w } = setup();
    addresses.held.set(ADDR, { host: 'h1', containerId: 'pending', endpointId: EID });
    await w.removed(COPY, docker.labels);
    expect(addresses.held.size).toBe(1);
    w.remember(ID, { endpointId: EID, addrs: [ADDR], mac: '02:00:00:00:00:01' }, false);
    await w.removed(ID, docker.labels);
    expect(addresses.held.size).toBe(0);
  });

  it('a container whose address another holds is not plumbed, is recorded as refused, and the record goes with it', async () => {
    const { docker, plumber, endpoints, addresses, w } = setup();
    docker.exists = true;
    docker.running = true;
    addresses.held.set(ADDR, { host: 'h1', containerId: 'b'.repeat(64), endpointId: EID });
    await expect(w.ensureRunning(ID)).rejects.toThrow(
      /address 198.19.0.1 is reserved by container bbbbbbbbbbbb on host h1/,
    );
    expect(plumber.ifs.size).toBe(0);
    expect(endpoints.eps.size).toBe(0);
    expect([...endpoints.refusals]).toEqual([
      [ID, 'address 198.19.0.1 is reserved by container bbbbbbbbbbbb on host h1'],
    ]);
    await w.removed(ID, docker.labels);
    expect(endpoints.refusals.size).toBe(0);
    expect(addresses.held.size).toBe(1);
  });
});
