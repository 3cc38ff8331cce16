import { randomUUID } from 'node:crypto';
import type { Datastore, PrefixSnapshot } from '@calico/datastore';
import {
  calicoRoot,
  canonicalCidr,
  decodeGroupName,
  decodeWorkloadName,
  encodeDefault,
  encodeGroupName,
  encodeIpPool,
  encodeMember,
  encodeRule,
  groupDefaultKey,
  groupMemberKey,
  groupNameKey,
  groupPrefix,
  groupsPrefix,
  groupRuleKey,
  hostAliveKey,
  hostNameError,
  hostPrefix,
  hostsPrefix,
  ipPoolKey,
  parseCidr,
  parseKey,
  workloadsPrefix,
  type Direction,
  type RuleInput,
} from '@calico/keyspace';
import { PolicyError, controlPlaneTargets, explain, type Group, type Verdict } from '@calico/policy';
import { ClientError } from './errors.js';
import { indexHosts, planHostRemoval, type HostRemovalPlan } from './hosts.js';
import { buildView, type ClusterView, type WorkloadInfo } from './view.js';

/** gRPC errors are long; people need the cause. */
function shortReason(e: unknown): string {
  const m = String((e as Error)?.message ?? e);
  if (/ECONNREFUSED/.test(m)) return 'connection refused (is etcd running there?)';
  if (/ETIMEDOUT|DEADLINE_EXCEEDED|deadline/i.test(m)) return 'timed out';
  if (/EHOSTUNREACH|ENETUNREACH/.test(m)) return 'host unreachable';
  if (/ENOTFOUND|EAI_AGAIN/.test(m)) return 'unknown host name';
  return m.split('. ')[0] ?? m;
}

const isNamed = (d: { ok: true; value: string } | { ok: false }, name: string) => d.ok && d.value === name;

/** Between a host's directory and a container id. */
const WORKLOADS = '/workload/docker/';

/** What dockerd names a container by: 64 hex digits. */
const FULL_CONTAINER_ID = /^[0-9a-f]{64}$/;

function describeRemoval(r: Removed): string {
  const { workloads, memberships, reservations, keys } = r;
  const addrs = `${reservations} address reservation(s)`;
  return `${workloads} workload(s), ${memberships} membership(s), ${addrs}, ${keys} key(s)`;
}

/** A container as finding it tells: where it runs and its endpoints, not their groups (no group is read). */
export type ContainerInfo = Omit<WorkloadInfo, 'endpoints'> & {
  endpoints: Omit<WorkloadInfo['endpoints'][number], 'groups'>[];
};

/**
 * Where the client reads: etcd by default. The master passes its synced copy, which also keeps
 * an index of group names. Writes always go to etcd.
 */
export interface ClusterReads {
  getPrefix(prefix: string): Promise<PrefixSnapshot>;
  /** The ids of the groups of that name, from an index; undefined: not known here, read the groups. */
  groupIdsNamed?(name: string): Promise<string[] | undefined>;
}

export interface GroupInfo {
  id: string;
  name: string | null;
  members: string[];
  inbound: { index: number; rule: RuleInput }[];
  outbound: { index: number; rule: RuleInput }[];
}

type Removed = { workloads: number; endpoints: number; memberships: number; reservations: number; keys: number };

/** What removing a host removed; keys counts every etcd key deleted. */
export interface HostRemoval {
  host: string;
  removed: Removed;
}

const noneRemoved = (): Removed => ({ workloads: 0, endpoints: 0, memberships: 0, reservations: 0, keys: 0 });

/** etcd refuses a transaction of more than 128 operations (its default --max-txn-ops). */
const MAX_TXN_OPS = 128;

type DeleteOp = { key: string } | { prefix: string };

function groupInfo(g: Group): GroupInfo {
  const rules = (refs: Group['inbound']) =>
    refs.map((r) => ({
      index: r.index,
      rule: { group: r.rule.group, cidr: r.rule.cidr, protocol: r.rule.protocol, port: r.rule.port },
    }));
  return {
    id: g.groupId,
    name: g.name,
    members: [...g.members],
    inbound: rules(g.inbound),
    outbound: rules(g.outbound),
  };
}

/**
 * The operations people and orchestrators perform, as raw key writes under /calico/ (the
 * seed's way), so they work whether or not the master is up. Each read is one snapshot of what the
 * operation needs (a group, the groups, the hosts; the whole cluster for lists and check).
 */
export class CalicoClient {
  /**
   * host: the host this client runs on (calicoctl's --hostname). A container given by its full id,
   * or an endpoint id, is looked for among that host's workloads first: ids are unique, so the
   * answer is the one every host's keys would give, from one host's keys.
   */
  constructor(
    readonly ds: Datastore,
    private readonly opts: { host?: string | undefined; reads?: ClusterReads | undefined } = {},
  ) {
    this.reads = opts.reads ?? ds;
  }

  private readonly reads: ClusterReads;

  private async readPrefix(prefix: string): Promise<PrefixSnapshot> {
    try {
      return await this.reads.getPrefix(prefix);
    } catch (e) {
      throw new ClientError(
        'UNAVAILABLE',
        `cannot reach etcd at ${this.ds.config.endpoints.join(',')}: ${shortReason(e)}`,
      );
    }
  }

  /** All of /calico/, for the operations that need the whole cluster (lists, check, status). */
  async view(): Promise<ClusterView> {
    return this.viewOf(calicoRoot);
  }

  /**
   * The keys under one prefix alone (one group, the groups, the hosts): what an operation needs.
   * etcd walks a range's keys for every read of it, so a narrow prefix is what makes a read of
   * one group cheap on a cluster of hundreds of thousands of keys.
   */
  private async viewOf(prefix: string): Promise<ClusterView> {
    const snap = await this.readPrefix(prefix);
    return buildView(snap.kvs, snap.revision);
  }

  /** Every group's keys and nothing else: what the group operations read. */
  groupsView(): Promise<ClusterView> {
    return this.viewOf(groupsPrefix);
  }

  /** Whether an endpoint of that id exists on some host (its keys alone are viewed). */
  async hasEndpoint(endpointId: string): Promise<boolean> {
    return (await this.containersView(endpointId)).model.endpoint(endpointId) !== undefined;
  }

  /**
   * The workloads that a query could name, on every host: by full id, id prefix, name or endpoint
   * id. Every host's keys are read (a name or a prefix can match anywhere), but only those
   * workloads' keys are viewed, so the view costs what they hold.
   */
  private async containersView(query: string): Promise<ClusterView> {
    const snap = await this.readPrefix(hostsPrefix);
    const q = query.replace(/^\//, '');
    const endpoint = `endpoint/${query}/`;
    // Each key's workload directory (`/calico/host/<h>/workload/docker/<cid>`), found once: with
    // hundreds of thousands of keys, splitting each would cost more than the read.
    const dirs: (string | undefined)[] = new Array(snap.kvs.length);
    const wanted = new Set<string>();
    snap.kvs.forEach(({ key, value }, i) => {
      const h = key.indexOf('/', hostsPrefix.length);
      if (h < 0 || !key.startsWith(WORKLOADS, h)) return;
      const c = h + WORKLOADS.length;
      const end = key.indexOf('/', c);
      if (end <= c) return;
      const dir = key.slice(0, end);
      dirs[i] = dir;
      if (wanted.has(dir)) return;
      const cid = key.slice(c, end);
      const rest = key.slice(end + 1);
      const matches =
        cid === q ||
        (q.length >= 3 && cid.startsWith(q)) ||
        rest.startsWith(endpoint) ||
        (rest === 'name' && isNamed(decodeWorkloadName(key, value), q));
      if (matches) wanted.add(dir);
    });
    const kvs = wanted.size ? snap.kvs.filter((_, i) => dirs[i] !== undefined && wanted.has(dirs[i])) : [];
    return buildView(kvs, snap.revision);
  }

  /** This host's workloads, when the client was told its host. */
  private async localView(): Promise<ClusterView | undefined> {
    const host = this.opts.host;
    if (host === undefined || hostNameError(host) !== undefined) return undefined;
    return this.viewOf(workloadsPrefix(host));
  }

  /** The group's own keys when idOrName can be a group id, else nothing (no read). */
  private async groupById(idOrName: string): Promise<Group | undefined> {
    let prefix: string;
    try {
      prefix = groupPrefix(idOrName);
    } catch {
      return undefined; // not a key segment: a name only
    }
    return (await this.viewOf(prefix)).model.group(idOrName);
  }

  // ---- groups ---------------------------------------------------------------------------

  async listGroups(view?: ClusterView): Promise<GroupInfo[]> {
    return (view ?? (await this.groupsView())).model.groups().map(groupInfo);
  }

  /**
   * A group by id or by name; a name that two groups share must be given as an id. An id reads
   * that group's keys alone; a name, every group's (not the hosts').
   */
  async findGroup(idOrName: string, view?: ClusterView): Promise<GroupInfo> {
    if (!view) {
      const byId = await this.groupById(idOrName);
      if (byId) return groupInfo(byId);
      const ids = await this.groupIdsNamed(idOrName);
      const found = ids.length === 1 ? await this.groupById(ids[0]!) : undefined;
      return this.oneNamed(idOrName, found ? [found] : ids.map((id) => ({ groupId: id })));
    }
    const byId = view.model.group(idOrName);
    if (byId) return groupInfo(byId);
    return this.oneNamed(
      idOrName,
      view.model.groups().filter((g) => g.name === idOrName),
    );
  }

  /** The one group of that name, or why not. */
  private oneNamed(name: string, named: (Group | { groupId: string })[]): GroupInfo {
    if (named.length === 1 && 'members' in named[0]!) return groupInfo(named[0]);
    if (named.length > 1)
      throw new ClientError(
        'AMBIGUOUS',
        `${named.length} groups are named "${name}": give its id (${named.map((g) => g.groupId).join(', ')})`,
      );
    throw new ClientError('NOT_FOUND', `no group has the id or name "${name}" (calicoctl showgroups lists them)`);
  }

  /**
   * The ids of the groups named name: from the source's name index when it keeps one (the
   * master's synced copy), else from every group's keys, reading their name keys alone.
   */
  private async groupIdsNamed(name: string): Promise<string[]> {
    const indexed = await this.reads.groupIdsNamed?.(name);
    if (indexed) return indexed;
    const snap = await this.readPrefix(groupsPrefix);
    const ids: string[] = [];
    for (const { key, value } of snap.kvs) {
      if (!key.endsWith('/name')) continue;
      const k = parseKey(key);
      if (k.kind !== 'groupName') continue;
      const d = decodeGroupName(key, value);
      if (d.ok && d.value === name) ids.push(k.groupId);
    }
    return ids;
  }

  /**
   * Creates a group with the original calicoctl defaults: members may receive from other
   * members, and send to other members and anywhere (0.0.0.0/0 and ::/0); both defaults deny.
   */
  async addGroup(name: string, opts: { id?: string } = {}): Promise<GroupInfo> {
    let encodedName: string;
    try {
      encodedName = encodeGroupName(name);
    } catch (e) {
      throw new ClientError('INVALID', `group name ${JSON.stringify(name)}: ${(e as Error).message}`);
    }
    if ((await this.groupIdsNamed(name.trim())).length)
      throw new ClientError('CONFLICT', `a group named "${name.trim()}" already exists`);
    const id = opts.id ?? randomUUID();
    if (await this.groupById(id)) throw new ClientError('CONFLICT', `a group with id ${id} already exists`);
    // The name goes last and only if absent: two callers racing for one id cannot both win.
    await this.ds.batch([
      { put: groupDefaultKey(id, 'inbound'), value: encodeDefault() },
      { put: groupDefaultKey(id, 'outbound'), value: encodeDefault() },
      { put: groupRuleKey(id, 'inbound', 1), value: encodeRule({ group: id }) },
      { put: groupRuleKey(id, 'outbound', 1), value: encodeRule({ group: id }) },
      { put: groupRuleKey(id, 'outbound', 2), value: encodeRule({ cidr: '0.0.0.0/0' }) },
      { put: groupRuleKey(id, 'outbound', 3), value: encodeRule({ cidr: '::/0' }) },
    ]);
    const created = await this.ds.createIfAbsent(groupNameKey(id), encodedName);
    if (!created.created) throw new ClientError('CONFLICT', `group ${id} was created by someone else meanwhile`);
    return this.findGroup(id);
  }

  /** Deletes the group's directory (its name, members and rules), the seed's recursive delete. */
  async removeGroup(idOrName: string): Promise<{ id: string; name: string | null; deleted: number }> {
    const g = await this.findGroup(idOrName);
    const deleted = await this.ds.deleteDir(groupPrefix(g.id));
    return { id: g.id, name: g.name, deleted };
  }

  // ---- rules ----------------------------------------------------------------------------

  async addRule(group: string, direction: Direction, rule: RuleInput): Promise<{ groupId: string; index: number }> {
    const g = await this.findGroup(group);
    let value: string;
    try {
      value = encodeRule(rule);
    } catch (e) {
      throw new ClientError('INVALID', (e as Error).message.replace(/^invalid rule: /, 'rule: '));
    }
    const list = direction === 'inbound' ? g.inbound : g.outbound;
    for (let attempt = 0; attempt < 5; attempt++) {
      const index = Math.max(0, ...list.map((r) => r.index)) + 1 + attempt;
      const r = await this.ds.createIfAbsent(groupRuleKey(g.id, direction, index), value);
      if (r.created) return { groupId: g.id, index };
    }
    throw new ClientError('CONFLICT', `could not find a free rule number in group ${g.id}; try again`);
  }

  async removeRule(group: string, direction: Direction, index: number): Promise<{ groupId: string }> {
    const g = await this.findGroup(group);
    const list = direction === 'inbound' ? g.inbound : g.outbound;
    if (!list.some((r) => r.index === index)) {
      throw new ClientError(
        'NOT_FOUND',
        `group ${g.name ?? g.id} has no ${direction} rule ${index} (it has ${list.map((r) => r.index).join(', ') || 'none'})`,
      );
    }
    await this.ds.delete(groupRuleKey(g.id, direction, index));
    return { groupId: g.id };
  }

  // ---- containers and membership --------------------------------------------------------

  /** A container by full id, unique id prefix or name, on whichever host it runs. */
  async findContainer(query: string, view?: ClusterView): Promise<ContainerInfo> {
    const q = query.replace(/^\//, '');
    if (!view && FULL_CONTAINER_ID.test(q)) {
      const here = (await this.localView())?.workloads.find((w) => w.containerId === q);
      if (here) return here;
    }
    const v = view ?? (await this.containersView(query));
    const exact = v.workloads.filter((w) => w.containerId === q || w.name === q);
    if (exact.length === 1) return exact[0]!;
    const matches = exact.length ? exact : v.workloads.filter((w) => q.length >= 3 && w.containerId.startsWith(q));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new ClientError(
        'AMBIGUOUS',
        `"${query}" matches ${matches.length} containers: ${matches.map((m) => `${m.containerId.slice(0, 12)} on ${m.host}`).join(', ')}`,
      );
    }
    throw new ClientError(
      'NOT_FOUND',
      `no Calico container has the id, id prefix or name "${query}" (it must have been started with CALICO_IP through a calico-node)`,
    );
  }

  /** An endpoint id, or the (single) endpoint of a container given by id, prefix or name. */
  async resolveEndpoint(
    target: string,
    view?: ClusterView,
  ): Promise<{ endpointId: string; workload: ContainerInfo | null }> {
    const local = view ? undefined : await this.localView();
    const q = target.replace(/^\//, '');
    const here = local?.workloads.find((w) => FULL_CONTAINER_ID.test(q) && w.containerId === q);
    const v = local?.model.endpoint(target) || here ? local! : (view ?? (await this.containersView(target)));
    if (v.model.endpoint(target))
      return {
        endpointId: target,
        workload: v.workloads.find((w) => w.endpoints.some((e) => e.endpointId === target)) ?? null,
      };
    const w = await this.findContainer(target, v);
    const ep = w.endpoints[0];
    if (!ep) throw new ClientError('NOT_FOUND', `container ${w.containerId.slice(0, 12)} has no endpoint`);
    return { endpointId: ep.endpointId, workload: w };
  }

  async addToGroup(target: string, group: string): Promise<{ endpointId: string; groupId: string }> {
    const { endpointId } = await this.resolveEndpoint(target);
    const g = await this.findGroup(group);
    await this.ds.put(groupMemberKey(g.id, endpointId), encodeMember());
    return { endpointId, groupId: g.id };
  }

  async removeFromGroup(target: string, group: string): Promise<{ endpointId: string; groupId: string }> {
    const { endpointId } = await this.resolveEndpoint(target);
    const g = await this.findGroup(group);
    if (!g.members.includes(endpointId))
      throw new ClientError('NOT_FOUND', `endpoint ${endpointId} is not a member of group ${g.name ?? g.id}`);
    await this.ds.delete(groupMemberKey(g.id, endpointId));
    return { endpointId, groupId: g.id };
  }

  // ---- hosts ----------------------------------------------------------------------------

  /**
   * Removes a host that is down, for good: with removeEndpoints, its workloads (endpoint keys),
   * the memberships of their endpoints (unless a copy lives on another host), its directory
   * (bird_ip and the rest), its BGP settings and, last, its address reservations. Refused while
   * its liveness key exists, and without removeEndpoints while it holds workloads or addresses.
   * Every deletion is conditional on the liveness key being absent (in one transaction when etcd
   * allows that many operations), so a host that comes back meanwhile keeps what it has left.
   */
  async removeHost(host: string, opts: { removeEndpoints?: boolean } = {}): Promise<HostRemoval> {
    const bad = hostNameError(host);
    if (bad) throw new ClientError('INVALID', bad);
    const removed = noneRemoved();
    for (let attempt = 1; ; attempt++) {
      let plan: HostRemovalPlan;
      try {
        plan = planHostRemoval(indexHosts((await this.ds.getPrefix(calicoRoot)).kvs), host);
      } catch (e) {
        const where = this.ds.config.endpoints.join(',');
        throw new ClientError('UNAVAILABLE', `cannot reach etcd at ${where}: ${shortReason(e)}`);
      }
      if (plan.alive) {
        const done = removed.keys
          ? `; it came back during the removal, which stopped after ${describeRemoval(removed)}`
          : '';
        throw new ClientError(
          'CONFLICT',
          `host ${host} is alive: its liveness key ${hostAliveKey(host)} exists ` +
            `(its calico-node holds it with a lease)${done}. A live host is never removed: ` +
            `stop calico-node on ${host} first (calicoctl node stop), wait until the key is gone ` +
            "(at most the node's lease TTL), then run this again",
        );
      }
      if (!plan.known) {
        if (removed.keys) return { host, removed };
        throw new ClientError(
          'NOT_FOUND',
          `no host "${host}" in etcd: nothing under /calico/host/${host}/ or /calico/bgp/v1/host/${host}/, ` +
            'and no address reservation names it',
        );
      }
      if (!opts.removeEndpoints && (plan.workloads.length || plan.assignments.length)) {
        const endpoints = plan.workloads.reduce((n, w) => n + w.endpointIds.length, 0);
        throw new ClientError(
          'CONFLICT',
          `host ${host} is down but still has ${plan.workloads.length} workload(s) with ${endpoints} endpoint(s) ` +
            `and ${plan.assignments.length} address reservation(s); nothing was removed. Removing the endpoints too ` +
            '(calicoctl node remove --remove-endpoints; API: ?removeEndpoints=true) also removes their memberships ' +
            'and frees their addresses',
        );
      }
      const r = await this.deleteWhileDown(host, plan);
      for (const k of Object.keys(removed) as (keyof Removed)[]) removed[k] += r.removed[k];
      if (r.complete) return { host, removed };
      // A guard failed: the host came back (answered above on the next read) or a reservation
      // changed since it was read. What went stays gone; read again and carry on from there.
      if (attempt >= 5) {
        const sofar = describeRemoval(removed);
        const msg = `host ${host}'s keys kept changing while it was being removed; removed ${sofar}; try again`;
        throw new ClientError('CONFLICT', msg);
      }
    }
  }

  /**
   * The plan's deletions, each transaction guarded by the liveness key being absent and each
   * reservation by its revision: in one transaction when it fits, else in chunks in the plan's
   * order (memberships, workloads, directories, reservations). Stops at the first failed guard.
   */
  private async deleteWhileDown(host: string, plan: HostRemovalPlan): Promise<{ complete: boolean; removed: Removed }> {
    type Item = { op: DeleteOp; modRevision?: number | undefined; counts: Partial<Removed> };
    const endpoints = plan.workloads.reduce((n, w) => n + w.endpointIds.length, 0);
    const memberships = plan.memberships.map((m): Item => ({ op: { key: m.key }, counts: { memberships: 1 } }));
    const reservations = plan.assignments.map(
      (a): Item => ({ op: { key: a.key }, modRevision: a.modRevision, counts: { reservations: 1 } }),
    );
    // In one transaction, the host's directory takes its workloads with it.
    const dirCounts = (prefix: string): Partial<Removed> =>
      prefix === hostPrefix(host) ? { workloads: plan.workloads.length, endpoints } : {};
    const dirs = plan.dirs.map((prefix): Item => ({ op: { prefix }, counts: dirCounts(prefix) }));
    const single: Item[] = [...memberships, ...dirs, ...reservations];
    const chunks: Item[][] = [];
    if (single.length < MAX_TXN_OPS) chunks.push(single);
    else {
      // In chunks, each workload goes on its own before the directory that holds it.
      const ordered: Item[] = [
        ...memberships,
        ...plan.workloads.map(
          (w): Item => ({ op: { prefix: w.prefix }, counts: { workloads: 1, endpoints: w.endpointIds.length } }),
        ),
        ...plan.dirs.map((prefix): Item => ({ op: { prefix }, counts: {} })),
        ...reservations,
      ];
      for (let i = 0; i < ordered.length; i += MAX_TXN_OPS - 1) chunks.push(ordered.slice(i, i + MAX_TXN_OPS - 1));
    }
    const removed = noneRemoved();
    const etcd = this.ds.client;
    for (const chunk of chunks) {
      let txn = etcd.if(hostAliveKey(host), 'Create', '==', 0);
      for (const c of chunk) {
        if (c.modRevision !== undefined && 'key' in c.op) txn = txn.and(c.op.key, 'Mod', '==', c.modRevision);
      }
      const deletes = chunk.map(({ op }) =>
        'key' in op ? etcd.delete().key(op.key) : etcd.delete().prefix(op.prefix),
      );
      let r;
      try {
        r = await txn.then(...deletes).commit();
      } catch (e) {
        const sofar = removed.keys ? `; removed ${describeRemoval(removed)} before that` : '';
        const why = shortReason(e);
        const msg = `etcd did not answer while removing host ${host} (${why})${sofar}; run it again`;
        throw new ClientError('UNAVAILABLE', msg);
      }
      if (!r.succeeded) return { complete: false, removed };
      for (const resp of r.responses) removed.keys += Number(resp.response_delete_range?.deleted ?? 0);
      for (const c of chunk) {
        for (const [k, n] of Object.entries(c.counts) as [keyof Removed, number][]) removed[k] += n;
      }
    }
    return { complete: true, removed };
  }

  // ---- pools ----------------------------------------------------------------------------

  async addPool(cidr: string): Promise<{ cidr: string }> {
    const c = parseCidr(cidr.trim());
    if (!c) throw new ClientError('INVALID', `"${cidr}" is not an IPv4 or IPv6 network (e.g. 198.19.0.0/16)`);
    const canonical = canonicalCidr(cidr.trim())!;
    const r = await this.ds.createIfAbsent(ipPoolKey(canonical), encodeIpPool(canonical));
    if (!r.created) throw new ClientError('CONFLICT', `pool ${canonical} already exists`);
    return { cidr: canonical };
  }

  async removePool(cidr: string): Promise<{ cidr: string }> {
    const canonical = canonicalCidr(cidr.trim());
    if (!canonical) throw new ClientError('INVALID', `"${cidr}" is not an IPv4 or IPv6 network`);
    if ((await this.ds.delete(ipPoolKey(canonical))) === 0) throw new ClientError('NOT_FOUND', `no pool ${canonical}`);
    return { cidr: canonical };
  }

  // ---- check ----------------------------------------------------------------------------

  /** etcd's members' URLs, or none when it does not say within 5 s. */
  private async etcdMembers(): Promise<{ clientURLs: string[]; peerURLs: string[] }[]> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer')), 5_000)));
    try {
      return (await Promise.race([this.ds.client.cluster.memberList({}), late])).members;
    } catch {
      return [];
    } finally {
      clearTimeout(timer);
    }
  }

  /** May src open a connection to dst? src and dst: addresses, endpoint ids, container ids, prefixes or names. */
  async check(
    src: string,
    dst: string,
    opts: { protocol?: string | null; port?: number | null } = {},
  ): Promise<Verdict> {
    const v = await this.view();
    const side = async (s: string) => {
      if (/^[0-9a-fA-F:.]+$/.test(s) && (s.includes('.') || s.includes(':'))) return s;
      return (await this.resolveEndpoint(s, v)).endpointId;
    };
    try {
      // The control plane as the nodes see it: etcd's endpoints and members, and where the keys say the rest is.
      const members = await this.etcdMembers();
      const etcd = [...this.ds.config.endpoints, ...members.flatMap((m) => m.clientURLs)];
      const controlPlane = controlPlaneTargets(
        v.controlPlane.input(
          etcd,
          members.flatMap((m) => m.peerURLs),
        ),
      );
      const [s, d] = [await side(src), await side(dst)];
      const query = { src: s, dst: d, protocol: opts.protocol ?? null, port: opts.port ?? null };
      return explain(v.model, query, { controlPlane });
    } catch (e) {
      if (e instanceof PolicyError) throw new ClientError('INVALID', e.message);
      throw e;
    }
  }
}
