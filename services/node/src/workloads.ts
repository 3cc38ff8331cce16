import type Docker from 'dockerode';
import type { Logger } from '@calico/log';
import { encodeIpAssignment, type IpAssignment } from '@calico/keyspace';
import { LABELS } from './workload/createRequest.js';
import type { Plumber } from './plumber/plumber.js';
import { hostIfName } from './plumber/names.js';
import type { EndpointStore } from './etcd/endpoints.js';
import { PENDING_CONTAINER, type AddressRegistry } from './etcd/addresses.js';
import { reservationRepairs, type ListedContainer } from './workload/reservations.js';

/** A workload whose addresses are not (all) reserved for it: it is not networked. */
export class AddressConflictError extends Error {
  override name = 'AddressConflictError';
  constructor(
    readonly containerId: string,
    readonly conflicts: string[],
  ) {
    super(`container ${containerId.slice(0, 12)} is not networked: ${conflicts.join('; ')}`);
  }
}

/** What the proxy stamped on a container at create time. */
export interface WorkloadLabels {
  endpointId: string;
  addrs: string[];
  mac: string;
}

/** The labels of one of this host's workloads, or null for containers that are not ours. */
export function workloadLabels(labels: Record<string, string> | undefined | null, host: string): WorkloadLabels | null {
  if (!labels || labels[LABELS.host] !== host) return null;
  const endpointId = labels[LABELS.endpoint];
  const addrs = (labels[LABELS.addrs] ?? '').split(',').filter(Boolean);
  const mac = labels[LABELS.mac];
  if (!endpointId || !mac || addrs.length === 0) return null;
  return { endpointId, addrs, mac };
}

/**
 * The lifecycle of this host's workloads, one place for the proxy, the docker events watcher
 * and the start-up reconcile: running → plumbed and active; stopped → inactive; removed →
 * keys, memberships and addresses released. Work on one container is serialised.
 */
export class Workloads {
  private readonly locks = new Map<string, Promise<unknown>>();
  /** container id → pid we last plumbed, so a repeated start event costs nothing. */
  private readonly plumbedPid = new Map<string, number>();
  /** Full container id → labels, for containers known to be ours (saves an inspect on start). */
  private readonly known = new Map<string, WorkloadLabels>();
  /** Reservations already moved from "pending" to their container. */
  private readonly confirmed = new Set<string>();

  constructor(
    private readonly host: string,
    private readonly docker: Docker,
    private readonly plumber: Plumber,
    private readonly endpoints: EndpointStore,
    private readonly addresses: AddressRegistry,
    private readonly logger: Logger,
  ) {}

  /** Called by the proxy once dockerd has created one of our containers. */
  remember(containerId: string, w: WorkloadLabels, reservationConfirmed: boolean): void {
    this.known.set(containerId, w);
    if (reservationConfirmed) this.confirmed.add(containerId);
  }

  knownLabels(containerId: string): WorkloadLabels | undefined {
    return this.known.get(containerId);
  }

  owns(labels: Record<string, string> | undefined | null): boolean {
    return workloadLabels(labels, this.host) !== null;
  }

  /** Runs fn after any earlier work on the same container. */
  serial<T>(containerId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(containerId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(containerId, tail);
    void tail.then(() => {
      if (this.locks.get(containerId) === tail) this.locks.delete(containerId);
    });
    return next;
  }

  /**
   * Makes a running container's network match its labels: plumbs it if its netns has no
   * veth from us yet (a new start, a restart, a node restart), then records it as active.
   * Returns false when the container is not ours or not running.
   */
  ensureRunning(containerId: string, opts: { force?: boolean } = {}): Promise<boolean> {
    return this.serial(containerId, async () => {
      let info: Docker.ContainerInspectInfo;
      try {
        info = await this.docker.getContainer(containerId).inspect();
      } catch (e) {
        // Gone already (a start event handled before the proxy's own start networked it, and a
        // short --rm container ran and went; or someone removed it): nothing is left to network.
        if ((e as { statusCode?: number }).statusCode === 404) return false;
        throw e;
      }
      const w = workloadLabels(info.Config.Labels, this.host);
      if (!w) return false;
      const id = info.Id;
      if (!info.State.Running || !info.State.Pid) {
        await this.markStopped(id, w);
        return false;
      }
      const pid = info.State.Pid;
      const fresh = this.plumbedPid.get(id) === pid && (await this.plumber.isPlumbed(w.endpointId));
      this.known.set(id, w);
      if (!fresh || opts.force) {
        const t0 = performance.now();
        // Nothing is plumbed for an address that is not this workload's (a conflict throws).
        await this.reserveOrRefuse(id, w);
        let tPlumbed = t0;
        let tRecorded = t0;
        const spec = { endpointId: w.endpointId, pid, addrs: w.addrs, mac: w.mac };
        // A node restart finds its workloads' veths in place: converged where they are, their
        // traffic never stops; anything less than whole is plumbed anew.
        const kept = !opts.force && (await this.plumber.peerIsEth0(w.endpointId, pid));
        // The kernel and etcd are independent here: do both at once. If plumbing fails the
        // caller marks the endpoint inactive again.
        await Promise.all([
          (kept ? this.plumber.keep(spec) : this.plumber.plumb(spec)).then(() => (tPlumbed = performance.now())),
          this.endpoints
            .write({
              containerId: id,
              endpointId: w.endpointId,
              addrs: w.addrs,
              mac: w.mac,
              state: 'active',
              name: info.Name,
            })
            .then(() => (tRecorded = performance.now())),
        ]);
        this.plumbedPid.set(id, pid);
        const ms = { plumb: +(tPlumbed - t0).toFixed(1), etcd: +(tRecorded - t0).toFixed(1) };
        const how = kept ? 'workload network kept from before and converged in place' : 'workload networked';
        this.logger.info(
          { container: id.slice(0, 12), endpoint: w.endpointId, addrs: w.addrs, pid, ms },
          `${how}; its endpoint recorded as active`,
        );
        return true;
      }
      await this.reserveOrRefuse(id, w);
      await this.endpoints.write({
        containerId: id,
        endpointId: w.endpointId,
        addrs: w.addrs,
        mac: w.mac,
        state: 'active',
        name: info.Name,
      });
      return true;
    });
  }

  /** ensureReservation; a conflict is recorded in etcd, where the master and calicoctl status list it. */
  private async reserveOrRefuse(containerId: string, w: WorkloadLabels): Promise<void> {
    try {
      await this.ensureReservation(containerId, w);
    } catch (e) {
      if (e instanceof AddressConflictError) {
        this.known.delete(containerId);
        const ctx = { container: containerId.slice(0, 12), endpoint: w.endpointId, err: e.message };
        const msg = 'a container with Calico labels that no reservation backs is not networked; listed as a problem';
        this.logger.warn(ctx, msg);
        await this.endpoints.refuse(containerId, e.conflicts.join('; '));
      }
      throw e;
    }
  }

  /** A stopped container keeps its endpoint (a restart brings it back) but sends nothing. */
  stopped(containerId: string, labels: Record<string, string> | undefined): Promise<void> {
    const w = workloadLabels(labels, this.host);
    if (!w) return Promise.resolve();
    return this.serial(containerId, () => this.markStopped(containerId, w));
  }

  /** Marks one of our containers stopped given its labels (after a failed start). */
  markStoppedKnown(containerId: string, w: WorkloadLabels): Promise<void> {
    return this.serial(containerId, () => this.markStopped(containerId, w));
  }

  /**
   * Whether this container is the workload its labels name: it was plumbed or confirmed here,
   * etcd records its endpoint, a reservation names it, or it is this node's own create whose
   * reservation is still pending. Labels alone are no proof: a copy (`docker commit` and run)
   * or a forgery carries the endpoint id of another workload, whose veth, memberships and
   * addresses its stop or removal must not touch.
   */
  private async holds(containerId: string, w: WorkloadLabels): Promise<boolean> {
    if (this.confirmed.has(containerId) || this.plumbedPid.has(containerId)) return true;
    if (await this.endpoints.recordedAddrs(containerId, w.endpointId)) return true;
    for (const a of w.addrs) {
      const h = await this.addresses.holder(a);
      if (h?.host !== this.host) continue;
      if (h.containerId === containerId) return true;
      const ownCreate = h.containerId === PENDING_CONTAINER && this.known.has(containerId);
      if (ownCreate && h.endpointId === w.endpointId) return true;
    }
    return false;
  }

  private async markStopped(containerId: string, w: WorkloadLabels): Promise<void> {
    if (!(await this.holds(containerId, w))) {
      const ctx = { container: containerId.slice(0, 12), endpoint: w.endpointId, addrs: w.addrs };
      this.logger.warn(
        ctx,
        'a container with Calico labels that no reservation names stopped; its endpoint left alone',
      );
      return;
    }
    this.plumbedPid.delete(containerId);
    await this.plumber.unplumb(w.endpointId);
    await this.endpoints.write({
      containerId,
      endpointId: w.endpointId,
      addrs: w.addrs,
      mac: w.mac,
      state: 'inactive',
    });
    this.logger.info(
      { container: containerId.slice(0, 12), endpoint: w.endpointId },
      'workload stopped; endpoint kept as inactive until it starts again or is removed',
    );
  }

  /** A removed container: its endpoint keys, group memberships and addresses go. */
  removed(containerId: string, labels: Record<string, string> | undefined): Promise<void> {
    const w = workloadLabels(labels, this.host);
    if (!w) return Promise.resolve();
    return this.serial(containerId, async () => {
      if (await this.holds(containerId, w)) return this.release(containerId, w.endpointId, w.addrs);
      this.known.delete(containerId);
      await this.endpoints.clearRefusal(containerId);
      const ctx = { container: containerId.slice(0, 12), endpoint: w.endpointId, addrs: w.addrs };
      this.logger.warn(
        ctx,
        'a container with Calico labels that no reservation names was removed; endpoint left alone',
      );
    });
  }

  /** Releases what a gone container held; used by remove events and by the reconcile. */
  async release(containerId: string, endpointId: string, addrs: string[]): Promise<void> {
    this.plumbedPid.delete(containerId);
    this.known.delete(containerId);
    this.confirmed.delete(containerId);
    await this.plumber.unplumb(endpointId);
    await this.endpoints.remove(containerId);
    const groups = await this.endpoints.dropMemberships(endpointId);
    for (const a of addrs) {
      const mine = (h: IpAssignment) =>
        h.containerId === containerId || (h.containerId === PENDING_CONTAINER && h.endpointId === endpointId);
      await this.addresses.release(a, (h) => h.host === this.host && mine(h));
    }
    this.logger.info(
      { container: containerId.slice(0, 12), endpoint: endpointId, addrs, groups },
      'workload removed; endpoint, memberships and addresses released',
    );
  }

  /**
   * Every address of a workload must be reserved for it before it is networked. A reservation
   * still marked pending (the node died between create and confirm) moves to the container. A
   * missing one (lost while the node was away) is made again, when etcd records this
   * container's endpoint with the address: the labels alone are no proof. One that another
   * container holds is a conflict: the workload is not networked, and the error says who.
   */
  private async ensureReservation(containerId: string, w: WorkloadLabels): Promise<void> {
    if (this.confirmed.has(containerId)) return;
    const mine = { host: this.host, containerId, endpointId: w.endpointId };
    const conflicts: string[] = [];
    for (const a of w.addrs) {
      for (let attempt = 0; ; attempt++) {
        const h = await this.addresses.holder(a);
        if (h && h.host === this.host && h.containerId === containerId) break;
        // Only from pending: a reservation that names another container is that container's,
        // whatever endpoint a copy of its labels claims.
        if (h && h.host === this.host && h.containerId === PENDING_CONTAINER && h.endpointId === w.endpointId) {
          if (await this.addresses.transfer(a, encodeIpAssignment(h), mine)) break;
        } else if (h) {
          conflicts.push(
            `address ${a} is reserved by ${h.containerId ? `container ${h.containerId.slice(0, 12)}` : 'another endpoint'} on host ${h.host}`,
          );
          break;
        } else {
          const recorded = await this.endpoints.recordedAddrs(containerId, w.endpointId);
          if (!recorded?.includes(a)) {
            conflicts.push(`address ${a} has no reservation, and etcd records no endpoint of this container with it`);
            break;
          }
          const r = await this.addresses.reserve(a, mine);
          if (r.ok) {
            this.logger.warn(
              { container: containerId.slice(0, 12), endpoint: w.endpointId, addr: a },
              'reservation was missing; reserved the address again for its running workload',
            );
            break;
          }
        }
        // The reservation changed between the read and the write: look again.
        if (attempt >= 3)
          throw new Error(
            `the reservation of ${a} keeps changing; not networking container ${containerId.slice(0, 12)}`,
          );
      }
    }
    if (conflicts.length) throw new AddressConflictError(containerId, conflicts);
    this.confirmed.add(containerId);
  }

  /**
   * Start-up reconcile, before the proxy serves: every container of ours is plumbed or marked
   * stopped; then whatever this host holds for a container that is gone goes: endpoints,
   * reservations (see reservationRepairs: a node killed between reserve and create leaves one
   * pending) and veths. dockerd may still be finishing creates and starts that the previous
   * node forwarded, and docker events plumb those meanwhile, so what is held is read first and
   * the containers listed after it: anything held before the listing whose container is not
   * in it is gone for good.
   */
  async reconcile(): Promise<{
    running: number;
    stopped: number;
    released: number;
    reservations: { confirmed: number; released: number };
    veths: number;
  }> {
    const label = { all: true, filters: { label: [`${LABELS.host}=${this.host}`] } };
    let running = 0;
    let stopped = 0;
    for (const c of await this.docker.listContainers(label)) {
      try {
        if (await this.ensureRunning(c.Id)) running++;
        else stopped++;
      } catch (e) {
        this.logger.error(
          { container: c.Id.slice(0, 12), err: String(e) },
          'reconcile could not network this workload; the next start event will try again',
        );
      }
    }
    const recorded = await this.endpoints.list();
    const held = new Map([...(await this.addresses.list(4)), ...(await this.addresses.list(6))]);
    const interfaces = await this.plumber.ownedInterfaces();
    const list = await this.docker.listContainers(label);
    const present = new Set(list.map((c) => c.Id));
    let released = 0;
    for (const [containerId, eps] of recorded) {
      if (present.has(containerId)) continue;
      for (const ep of eps) {
        await this.serial(containerId, () => this.release(containerId, ep.endpointId, ep.addrs));
        released++;
      }
    }
    const reservations = await this.repairReservations(held, list);
    for (const containerId of await this.endpoints.refused()) {
      if (!present.has(containerId)) await this.endpoints.clearRefusal(containerId);
    }
    // A stopped container's veth went with its network namespace; one whose endpoint belongs
    // to no container is stale. Those of listed containers are their lifecycle's to keep.
    const owned = new Set(
      list.flatMap((c) => {
        const w = workloadLabels(c.Labels, this.host);
        return w ? [hostIfName(w.endpointId)] : [];
      }),
    );
    let veths = 0;
    for (const ifname of interfaces) {
      if (!owned.has(ifname)) {
        await this.plumber.removeHostIf(ifname);
        veths++;
        this.logger.info({ hostIf: ifname }, 'removed a stale workload interface');
      }
    }
    return { running, stopped, released, reservations, veths };
  }

  private async repairReservations(
    held: ReadonlyMap<string, IpAssignment>,
    list: readonly Docker.ContainerInfo[],
  ): Promise<{ confirmed: number; released: number }> {
    const containers: ListedContainer[] = list.map((c) => ({
      id: c.Id,
      workload: workloadLabels(c.Labels, this.host),
    }));
    let confirmed = 0;
    let released = 0;
    for (const r of reservationRepairs(this.host, held, containers)) {
      const ctx = { addr: r.addr, endpoint: r.holder.endpointId, container: r.holder.containerId.slice(0, 12) };
      if (r.action === 'confirm') {
        const to = { host: this.host, containerId: r.containerId, endpointId: r.holder.endpointId };
        if (await this.serial(r.containerId, () => this.addresses.transfer(r.addr, encodeIpAssignment(r.holder), to))) {
          confirmed++;
          this.logger.info(
            { ...ctx, container: r.containerId.slice(0, 12) },
            "reservation left pending by a create is now its container's",
          );
        }
      } else {
        // Only if it is still exactly what was read: never anyone else's.
        const same = (h: IpAssignment) =>
          h.host === r.holder.host && h.containerId === r.holder.containerId && h.endpointId === r.holder.endpointId;
        if (await this.addresses.release(r.addr, same)) {
          released++;
          this.logger.info(ctx, `released a reservation: ${r.why}`);
        }
      }
    }
    return { confirmed, released };
  }
}
