import type { Datastore, SyncBatch, Syncer, SyncStatus } from '@calico/datastore';
import { configKey, endpointPrefix, hostPrefix, hostsPrefix, calicoRoot, networkPrefix } from '@calico/keyspace';
import type { Logger } from '@calico/log';
import {
  ControlPlaneKeys,
  PolicyModel,
  controlPlaneTargets,
  endpointPolicy,
  type ControlPlaneTarget,
  type ModelUpdate,
} from '@calico/policy';
import { hostIfName } from '../plumber/names.js';
import { Dataplane, type ApplyStats } from './dataplane.js';
import type { KernelBackend } from './kernel.js';
import {
  controlSetMembers,
  renderDispatch,
  renderEndpoint,
  renderRawChains,
  renderStaticChains,
  type EndpointToHostAction,
  type Family,
} from './desired.js';
import { CHAIN, controlSetName, groupSetName } from './names.js';

export const ENDPOINT_TO_HOST_KEY = configKey('EndpointToHostAction');

export interface PolicyAgentOptions {
  host: string;
  /** Needed by start(); without one, feed the agent through handleBatch() and handleStatus() (tests). */
  ds?: Datastore;
  kernel: KernelBackend;
  logger: Logger;
  /** Used until /calico/config/EndpointToHostAction says otherwise. */
  endpointToHost?: EndpointToHostAction;
  /** Reread the kernel and repair it this often (ms); 0 turns it off. */
  dataplaneResyncMs?: number;
  /** Safety-net full resync of the datastore (ms). */
  datastoreResyncMs?: number;
  /** etcd's endpoints, part of the control plane workloads are kept from; by default the datastore's. */
  etcdEndpoints?: readonly string[];
  /**
   * Asks etcd for its members' client and peer URLs (control plane too: the node may be given
   * one member of three); by default the datastore's member list. Asked at start and after
   * each full sync; a failure keeps what was known.
   */
  etcdMembers?: () => Promise<{ clientURLs: string[]; peerURLs: string[] }[]>;
  /** Told of every kernel apply (metrics). */
  onApply?: (ms: number, ok: boolean) => void;
}

interface Rendered {
  hostIf: string;
  chains: Record<Family, Set<string>>;
  sets: Map<string, { family: Family; groupId: string }>;
  addrs: string[];
}

export interface AgentStatus {
  syncStatus: SyncStatus;
  everInSync: boolean;
  /** The first full sync has reached the kernel. */
  programmed: boolean;
  /** When the agent last came in sync after a full snapshot or resync (ms since the epoch). */
  lastFullSyncAt: number | null;
  localEndpoints: number;
  ipsets: number;
  applies: number;
  lastApply: (ApplyStats & { at: string; ms: number }) | null;
  lastError: string | null;
  problems: { key: string; errors: string[] }[];
}

/** What the hooks lead to before the first full sync: every packet to or from a workload drops. */
function closedChains(): [Family, 'filter', string, string[]][] {
  return ([4, 6] as const).flatMap(
    (family) =>
      [
        [family, 'filter', CHAIN.forward, ['-i cali+ -j DROP', '-o cali+ -j DROP']],
        [family, 'filter', CHAIN.input, ['-i cali+ -j DROP']],
      ] as [Family, 'filter', string, string[]][],
  );
}

/** /calico/host/<host>/bird_ip or bird6_ip: one segment between the host directory and the leaf. */
function isBirdIpKey(key: string): boolean {
  return (
    (key.endsWith('/bird_ip') || key.endsWith('/bird6_ip')) &&
    key.startsWith(hostsPrefix) &&
    key.indexOf('/', hostsPrefix.length) === key.lastIndexOf('/')
  );
}

/**
 * Of other hosts the agent needs only the endpoints' addresses and states (they fill group
 * ipsets) and the hosts' bird_ip and bird6_ip (addresses no container may take, and with
 * diags_url the control plane workloads are kept from); their MACs and
 * everything else under their host directories would only cost memory.
 */
export function agentKeyFilter(host: string): (key: string) => boolean {
  const own = hostPrefix(host);
  return (key) => {
    // Once per key of a snapshot: most are other hosts' addrs and state, told by their last letter first.
    const last = key.charCodeAt(key.length - 1);
    if ((last === 115 /* s */ && key.endsWith('/addrs')) || (last === 101 /* e */ && key.endsWith('/state')))
      return true;
    if (last === 112 /* p */ && isBirdIpKey(key)) return true;
    if (last === 108 /* l */ && key.endsWith('/diags_url')) return true;
    return !key.startsWith(hostsPrefix) || key.startsWith(own);
  };
}

/**
 * Felix's job for one host: the datastore syncer feeds the pure policy model; each change
 * re-renders only the endpoints and groups it touched; the dataplane writes the difference.
 * Until the first snapshot has arrived nothing is written, and when etcd goes away the
 * kernel keeps what it has (fail static) while the periodic kernel resync still repairs it.
 */
export class PolicyAgent {
  readonly model = new PolicyModel();
  /** The keys that say where the control plane is (bird_ip, diags_url, the master's). */
  readonly controlKeys = new ControlPlaneKeys();
  readonly dataplane: Dataplane;
  /** The control-plane set's members need recomputing. */
  private controlDirty = true;
  private controlTargets: ControlPlaneTarget[] = [];
  /** What etcd last said of its members' URLs. */
  private etcdMembers: { clients: string[]; peers: string[] } = { clients: [], peers: [] };
  private membersAsked: Promise<void> | undefined;
  private syncer: Syncer | undefined;
  private everInSync = false;
  private programmed = false;
  private lastFullSyncAt: number | null = null;
  /** A snapshot or resync is under way: the next in-sync completes a full sync. */
  private fullSyncPending = true;
  private markProgrammed!: () => void;
  private readonly programmedPromise = new Promise<void>((r) => (this.markProgrammed = r));
  private syncStatus: SyncStatus = 'resyncing';
  private endpointToHost: EndpointToHostAction;
  private readonly rendered = new Map<string, Rendered>();
  private readonly setRefs = new Map<string, { family: Family; groupId: string; refs: number }>();
  private readonly dirtyEndpoints = new Set<string>();
  private readonly dirtyGroups = new Set<string>();
  /** Addresses whose conntrack entries go once the next apply is in the kernel. */
  private readonly flushAfterApply = new Set<string>();
  /** Local endpoints left out of the dataplane because their id cannot name an interface. */
  private readonly unnamable = new Map<string, { key: string; errors: string[] }>();
  private staticDirty = true;
  /** The model was loaded without change tracking: render every local endpoint and ipset. */
  private renderAll = false;
  private kernelRead = false;
  private dispatchDirty = true;
  private dispatchChains: Record<Family, Set<string>> = { 4: new Set(), 6: new Set() };
  private scheduled = false;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private markSynced!: () => void;
  private readonly syncedPromise = new Promise<void>((r) => (this.markSynced = r));
  private applies = 0;
  private lastApply: AgentStatus['lastApply'] = null;
  private lastError: string | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: PolicyAgentOptions) {
    this.dataplane = new Dataplane(opts.kernel, opts.logger);
    this.endpointToHost = opts.endpointToHost ?? 'drop';
  }

  /** The control plane as last written to the kernel's sets. */
  controlPlane(): readonly ControlPlaneTarget[] {
    return this.controlTargets;
  }

  private etcdEndpoints(): readonly string[] {
    return [...(this.opts.etcdEndpoints ?? this.opts.ds?.config?.endpoints ?? []), ...this.etcdMembers.clients];
  }

  /** Asks etcd for its members' URLs (one question at a time); a change refreshes the control-plane sets. */
  refreshEtcdMembers(): Promise<void> {
    const ds = this.opts.ds;
    const fromDs = ds?.client ? async () => (await ds.client.cluster.memberList({})).members : undefined;
    const ask = this.opts.etcdMembers ?? fromDs;
    if (!ask || this.membersAsked) return this.membersAsked ?? Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5_000);
    });
    this.membersAsked = Promise.race([ask(), timeout])
      .then((members) => {
        const clients = members.flatMap((m) => m.clientURLs).sort();
        const peers = members.flatMap((m) => m.peerURLs).sort();
        const known = this.etcdMembers;
        if (clients.join() === known.clients.join() && peers.join() === known.peers.join()) return;
        this.etcdMembers = { clients, peers };
        this.controlDirty = true;
        this.schedule();
      })
      .catch((e: unknown) => {
        const msg = 'etcd did not list its members; the control plane keeps the etcd addresses known so far';
        this.opts.logger.warn({ err: String(e) }, msg);
      })
      .finally(() => {
        clearTimeout(timer);
        this.membersAsked = undefined;
      });
    return this.membersAsked;
  }

  /**
   * Before anything else on a start. A kernel with none of our hooks (empty, as after a reboot)
   * gets them at once, leading to chains that drop every packet to or from a workload
   * interface, so that nothing passes unfiltered until the first full sync replaces them. A
   * kernel that has them keeps what it has (fail static across a restart of the node).
   */
  async installHooks(): Promise<'installed' | 'kept'> {
    this.kernelRead = true;
    await this.dataplane.resync();
    if (this.dataplane.hooked()) {
      this.opts.logger.info('kernel has our hooks; keeping its rules until the first full sync');
      return 'kept';
    }
    for (const [family, table, chain, lines] of closedChains()) this.dataplane.setChain(family, table, chain, lines);
    await this.dataplane.apply();
    this.opts.logger.info(
      'kernel had none of our hooks: installed them, dropping all workload traffic until the first full sync',
    );
    return 'installed';
  }

  /** Resolves once the first full sync is in the kernel. */
  whenProgrammed(): Promise<void> {
    return this.programmedPromise;
  }

  start(): this {
    if (!this.opts.ds) throw new Error('PolicyAgent.start() needs a datastore (options.ds)');
    for (const e of this.etcdEndpoints()) {
      if (controlPlaneTargets({ etcdEndpoints: [e], masterIp: null, masterApiUrl: null, hosts: [] }).length === 0) {
        const msg = 'etcd endpoint is a name, not an address: workloads are not kept from it; give etcd as ip:port';
        this.opts.logger.warn({ endpoint: e }, msg);
      }
    }
    this.syncer = this.opts.ds
      .syncer(
        calicoRoot,
        { onUpdates: (b) => this.handleBatch(b), onStatus: (s, r) => this.handleStatus(s, r) },
        {
          resyncIntervalMs: this.opts.datastoreResyncMs ?? 5 * 60_000,
          keepValues: false,
          filter: agentKeyFilter(this.opts.host),
          // Hosts and groups are read side by side.
          splitAt: [hostsPrefix, networkPrefix],
        },
      )
      .start();
    const every = this.opts.dataplaneResyncMs ?? 30_000;
    if (every > 0) {
      this.timer = setInterval(() => void this.resyncKernel(), every);
      this.timer.unref();
    }
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.syncer?.stop();
    await this.running;
  }

  /** Whether the first snapshot has been taken (cheap: for polling). */
  get hasSynced(): boolean {
    return this.everInSync;
  }

  status(): AgentStatus {
    return {
      syncStatus: this.syncStatus,
      everInSync: this.everInSync,
      programmed: this.programmed,
      lastFullSyncAt: this.lastFullSyncAt,
      localEndpoints: this.rendered.size,
      ipsets: this.setRefs.size,
      applies: this.applies,
      lastApply: this.lastApply,
      lastError: this.lastError,
      problems: [...this.model.problems(), ...this.unnamable.values()].map((p) => ({
        key: p.key,
        errors: [...p.errors],
      })),
    };
  }

  /** What diags collects as the agent's own view: sync status, desired against applied, local endpoints. */
  report(host: string): object {
    const st = this.status();
    return {
      version: 1,
      host,
      writtenAt: new Date().toISOString(),
      datastore: {
        status: st.syncStatus,
        everInSync: st.everInSync,
        lastFullSyncAt: st.lastFullSyncAt && new Date(st.lastFullSyncAt).toISOString(),
        problems: st.problems.map((p) => ({ path: p.key, errors: p.errors })),
      },
      programmed: st.programmed,
      dataplane: { applies: st.applies, lastApply: st.lastApply, lastError: st.lastError, ...this.dataplane.summary() },
      endpoints: [...this.rendered.entries()].map(([eid, r]) => ({
        endpoint: eid,
        interface: r.hostIf,
        addrs: r.addrs,
        ipsets: [...r.sets.keys()],
      })),
    };
  }

  /** Resolves when everything received so far is in the kernel. */
  async idle(): Promise<void> {
    await this.syncer?.drain();
    if (!this.scheduled && !this.running && !this.hasWork()) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private hasWork(): boolean {
    // Out of sync (after having been in sync) the model's changes wait; repairs of what is programmed do not.
    const dirty =
      this.dirtyEndpoints.size > 0 ||
      this.dirtyGroups.size > 0 ||
      this.staticDirty ||
      this.dispatchDirty ||
      this.controlDirty;
    const modelWork = this.syncStatus === 'in-sync' && dirty;
    return this.everInSync && (modelWork || this.dataplane.pending);
  }

  /** The syncer's status callback (public so that tests can drive the agent without etcd). */
  handleStatus(s: SyncStatus, reason: string): void {
    const was = this.syncStatus;
    this.syncStatus = s;
    if (s === 'resyncing') this.fullSyncPending = true;
    else if (s === 'in-sync' && this.fullSyncPending) {
      this.fullSyncPending = false;
      this.lastFullSyncAt = Date.now();
      void this.refreshEtcdMembers();
    }
    if (s === 'in-sync' && !this.everInSync) {
      this.everInSync = true;
      this.markSynced();
      this.opts.logger.info({ reason }, 'datastore in sync; programming the dataplane');
      this.schedule();
    } else if (s === 'in-sync' && was !== 'in-sync') {
      this.opts.logger.info({ reason }, 'datastore back in sync; writing what changed meanwhile');
      this.schedule();
    } else if (s !== 'in-sync' && this.everInSync) {
      this.opts.logger.warn({ status: s, reason }, 'datastore not in sync; the dataplane stays as it is until it is');
    }
  }

  /** The syncer's update callback (public so that tests can drive the agent without etcd). */
  handleBatch(batch: SyncBatch): void {
    if (!this.kernelRead) {
      // Read what the kernel holds while the snapshot streams in (the first write needs both),
      // once the first keys are here: earlier, the readers' processes would slow etcd's first answers.
      this.kernelRead = true;
      this.dataplane
        .resync()
        .catch((e: unknown) =>
          this.opts.logger.warn(
            { err: String(e) },
            'reading the kernel at start failed; the first write reads it again',
          ),
        );
    }
    for (const u of batch.updates) {
      if (this.controlKeys.apply(u)) this.controlDirty = true;
      else if (u.key === ENDPOINT_TO_HOST_KEY) {
        const v = u.type === 'put' ? u.value.trim().toLowerCase() : '';
        const next: EndpointToHostAction =
          v === 'accept' || v === 'policy' || v === 'drop' ? v : (this.opts.endpointToHost ?? 'drop');
        if (u.type === 'put' && next !== v)
          this.opts.logger.warn(
            { key: u.key, value: u.value },
            'unknown EndpointToHostAction; expected accept, drop or policy; keeping the default',
          );
        if (next !== this.endpointToHost) {
          this.endpointToHost = next;
          this.staticDirty = true;
        }
      }
    }
    // The model ignores the config key, so the batch goes in as it came (a copy would cost a snapshot's worth of objects).
    const updates: readonly ModelUpdate[] = batch.updates;
    if (!this.everInSync) {
      // Nothing is programmed from the model before the first snapshot is whole, and then
      // everything is rendered: no need to work out what each update touched.
      this.model.load(updates);
      this.renderAll = true;
      return;
    }
    const touched = this.model.applyAll(updates);
    for (const e of touched.endpoints) this.dirtyEndpoints.add(e);
    for (const g of touched.groups) this.dirtyGroups.add(g);
    this.schedule();
  }

  /** Every host's bird_ip and bird6_ip as read so far: address → host. */
  birdIps(): ReadonlyMap<string, string> {
    return this.controlKeys.birdIps();
  }

  /** Resolves once the first full snapshot has been read (the bird_ips with it). */
  whenSynced(): Promise<void> {
    return this.syncedPromise;
  }

  private schedule(): void {
    if (this.scheduled || this.stopped || !this.everInSync) return;
    this.scheduled = true;
    // Coalesce everything that arrives in the same turn of the event loop.
    setImmediate(() => {
      this.scheduled = false;
      if (this.running) {
        void this.running.then(() => this.schedule());
        return;
      }
      this.running = this.flush().finally(() => {
        this.running = undefined;
        if (this.hasWork() && !this.retryTimer) this.schedule();
        else if (!this.hasWork()) for (const w of this.idleWaiters.splice(0)) w();
      });
    });
  }

  private async resyncKernel(): Promise<void> {
    if (!this.everInSync || this.stopped) return;
    try {
      await this.running;
      await this.dataplane.resync();
      this.schedule();
    } catch (e) {
      this.opts.logger.warn(
        { err: String(e) },
        'reading the kernel for the periodic resync failed; trying again next period',
      );
    }
  }

  private renderChanges(): void {
    const host = this.opts.host;
    if (this.staticDirty) {
      for (const family of [4, 6] as const) {
        for (const [c, lines] of renderStaticChains(family, this.endpointToHost))
          this.dataplane.setChain(family, 'filter', c, lines);
        for (const [c, lines] of renderRawChains(family)) this.dataplane.setChain(family, 'raw', c, lines);
      }
      this.staticDirty = false;
    }
    if (this.controlDirty) {
      // Set members only: the chains that match the set never change with it.
      this.controlTargets = controlPlaneTargets(this.controlKeys.input(this.etcdEndpoints(), this.etcdMembers.peers));
      for (const family of [4, 6] as const) {
        const members = controlSetMembers(this.controlTargets, family);
        this.dataplane.setIpset(controlSetName(family), family, members, 'hash:ip,port');
      }
      this.controlDirty = false;
    }
    const setsToRefresh = new Set<string>();
    if (this.renderAll) {
      for (const eid of this.model.endpointIdsOn(host)) this.dirtyEndpoints.add(eid);
      for (const eid of [...this.rendered.keys(), ...this.unnamable.keys()]) this.dirtyEndpoints.add(eid);
      for (const ref of this.setRefs.values()) this.dirtyGroups.add(ref.groupId);
      this.renderAll = false;
    }
    for (const eid of this.dirtyEndpoints) {
      const before = this.rendered.get(eid);
      // Most touched endpoints live on other hosts: skip them before building their views.
      if (!before && this.model.hostOf(eid) !== host && !this.unnamable.has(eid)) continue;
      const ep = this.model.endpoint(eid);
      const hostIf =
        ep && ep.host === host ? this.interfaceOf(eid, endpointPrefix(ep.host, ep.containerId, eid)) : null;
      if (!ep || ep.host !== host) this.unnamable.delete(eid);
      if (!ep || hostIf === null) {
        if (before) {
          this.unrender(eid, before);
          this.dispatchDirty = true;
          for (const a of before.addrs) this.flushAfterApply.add(a);
        }
        continue;
      }
      const policy = endpointPolicy(this.model, eid);
      const next: Rendered = {
        hostIf,
        chains: { 4: new Set(), 6: new Set() },
        sets: new Map(),
        addrs: [...ep.addrs.v4, ...ep.addrs.v6],
      };
      // Whether a family's policy for it lost something (only then do its flows need cutting).
      const narrowed = { 4: false, 6: false };
      for (const family of [4, 6] as const) {
        const r = renderEndpoint(
          { endpointId: eid, hostIf, mac: ep.mac, v4: ep.addrs.v4, v6: ep.addrs.v6, policy },
          family,
        );
        for (const [c, lines] of r.chains) {
          const old = this.dataplane.chainLines(family, 'filter', c);
          if (this.dataplane.setChain(family, 'filter', c, lines) && old && narrows(old, lines))
            narrowed[family] = true;
          next.chains[family].add(c);
        }
        for (const [name, groupId] of r.sets) next.sets.set(name, { family, groupId });
      }
      if (before) {
        for (const family of [4, 6] as const) {
          for (const c of before.chains[family])
            if (!next.chains[family].has(c) && this.dataplane.setChain(family, 'filter', c, null))
              narrowed[family] = true;
          // A family's dispatch lists the workloads with chains in it.
          if (before.chains[family].size > 0 !== next.chains[family].size > 0) this.dispatchDirty = true;
        }
        // Its policy lost something: its flows meet the new rules from their next packet on (a
        // rule taken away cuts what only it allowed), and an address it no longer has keeps
        // nothing. A policy that only gained allows cuts nothing, and costs no conntrack call.
        for (const a of next.addrs) if (narrowed[a.includes(':') ? 6 : 4]) this.flushAfterApply.add(a);
        for (const a of before.addrs) if (!next.addrs.includes(a)) this.flushAfterApply.add(a);
      } else this.dispatchDirty = true;
      for (const [name, s] of next.sets) {
        if (before?.sets.has(name)) continue;
        const ref = this.setRefs.get(name);
        if (ref) ref.refs++;
        else {
          this.setRefs.set(name, { ...s, refs: 1 });
          setsToRefresh.add(name);
        }
      }
      if (before) for (const name of before.sets.keys()) if (!next.sets.has(name)) this.deref(name);
      this.rendered.set(eid, next);
    }
    this.dirtyEndpoints.clear();
    if (this.dispatchDirty) {
      for (const family of [4, 6] as const) {
        const ifs: string[] = [];
        for (const r of this.rendered.values()) if (r.chains[family].size > 0) ifs.push(r.hostIf);
        const chains = renderDispatch(ifs);
        for (const [c, lines] of chains) this.dataplane.setChain(family, 'filter', c, lines);
        // The tree's shape follows the interfaces: branches that went are removed.
        for (const c of this.dispatchChains[family])
          if (!chains.has(c)) this.dataplane.setChain(family, 'filter', c, null);
        this.dispatchChains[family] = new Set(chains.keys());
      }
      this.dispatchDirty = false;
    }
    for (const gid of this.dirtyGroups)
      for (const family of [4, 6] as const) setsToRefresh.add(groupSetName(gid, family));
    this.dirtyGroups.clear();
    for (const name of setsToRefresh) {
      const ref = this.setRefs.get(name);
      // An address that leaves a set: the flows it allowed with it are forgotten too.
      if (ref)
        for (const a of this.dataplane.setIpset(name, ref.family, this.model.groupAddrs(ref.groupId, ref.family)))
          this.flushAfterApply.add(a);
    }
  }

  /** The workload's interface, or null (logged, and listed in status()) when its id cannot name one. */
  private interfaceOf(eid: string, key: string): string | null {
    try {
      const name = hostIfName(eid);
      this.unnamable.delete(eid);
      return name;
    } catch (e) {
      if (!this.unnamable.has(eid))
        this.opts.logger.warn(
          { key, err: String(e) },
          'endpoint id cannot name a workload interface; leaving the endpoint out of the dataplane',
        );
      this.unnamable.set(eid, {
        key,
        errors: [`${key}: ${e instanceof Error ? e.message : String(e)}; the endpoint gets no chains`],
      });
      return null;
    }
  }

  private deref(name: string): void {
    const ref = this.setRefs.get(name);
    if (!ref) return;
    if (--ref.refs <= 0) {
      this.setRefs.delete(name);
      this.dataplane.setIpset(name, ref.family, null);
    }
  }

  private unrender(eid: string, r: Rendered): void {
    for (const family of [4, 6] as const)
      for (const c of r.chains[family]) this.dataplane.setChain(family, 'filter', c, null);
    for (const name of r.sets.keys()) this.deref(name);
    this.rendered.delete(eid);
  }

  private async flush(): Promise<void> {
    if (this.syncStatus === 'in-sync') this.renderChanges();
    if (!this.dataplane.pending) return;
    const t0 = performance.now();
    try {
      const stats = await this.dataplane.apply();
      this.opts.onApply?.(performance.now() - t0, true);
      if (this.flushAfterApply.size > 0) {
        // After the rules: a flow forgotten before them could be picked up again under the old ones.
        const addrs = [...this.flushAfterApply];
        this.flushAfterApply.clear();
        await this.opts.kernel
          .conntrackFlush(addrs)
          .catch((e: unknown) =>
            this.opts.logger.warn(
              { err: String(e), addrs: addrs.length },
              'conntrack entries of changed flows could not be deleted; they run out on their own',
            ),
          );
      }
      this.applies++;
      this.failures = 0;
      this.lastError = null;
      this.lastApply = { ...stats, at: new Date().toISOString(), ms: +(performance.now() - t0).toFixed(1) };
      if (!this.programmed && this.syncStatus === 'in-sync') {
        this.programmed = true;
        this.markProgrammed();
        this.opts.logger.info(
          { ...this.lastApply, localEndpoints: this.rendered.size },
          'dataplane programmed from the first full sync; applying changes as they come',
        );
      } else if (stats.kernelCalls > 0) this.opts.logger.debug({ ...this.lastApply }, 'dataplane updated');
    } catch (e) {
      this.opts.onApply?.(performance.now() - t0, false);
      this.lastError = String(e);
      const delay = Math.min(100 * 2 ** this.failures++, 5_000);
      this.opts.logger.warn({ err: String(e), retryInMs: delay }, `dataplane update failed; retrying in ${delay} ms`);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.schedule();
      }, delay);
    }
  }
}

/**
 * Whether a chain's new rules allow less than its old ones: a rule went, or a rule came that
 * is not an allow (`-j RETURN`), such as an anti-spoof DROP. Allows only added widen it.
 */
export function narrows(old: readonly string[], next: readonly string[]): boolean {
  const now = new Set(next);
  if (old.some((l) => !now.has(l))) return true;
  const had = new Set(old);
  return next.some((l) => !had.has(l) && !l.endsWith('-j RETURN'));
}
