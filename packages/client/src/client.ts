import { randomUUID } from 'node:crypto';
import type { Datastore } from '@calico/datastore';
import {
  calicoRoot,
  canonicalCidr,
  encodeDefault,
  encodeGroupName,
  encodeIpPool,
  encodeMember,
  encodeRule,
  groupDefaultKey,
  groupMemberKey,
  groupNameKey,
  groupPrefix,
  groupRuleKey,
  ipPoolKey,
  parseCidr,
  type Direction,
  type RuleInput,
} from '@calico/keyspace';
import { PolicyError, explain, type Group, type Verdict } from '@calico/policy';
import { ClientError } from './errors.js';
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

export interface GroupInfo {
  id: string;
  name: string | null;
  members: string[];
  inbound: { index: number; rule: RuleInput }[];
  outbound: { index: number; rule: RuleInput }[];
}

function groupInfo(g: Group): GroupInfo {
  const rules = (refs: Group['inbound']) => refs.map((r) => ({ index: r.index, rule: { group: r.rule.group, cidr: r.rule.cidr, protocol: r.rule.protocol, port: r.rule.port } }));
  return { id: g.groupId, name: g.name, members: [...g.members], inbound: rules(g.inbound), outbound: rules(g.outbound) };
}

/**
 * The operations people and orchestrators perform, as raw key writes under /calico/ (the
 * seed's way), so they work whether or not the master is up. Reads take one snapshot.
 */
export class CalicoClient {
  constructor(readonly ds: Datastore) {}

  async view(): Promise<ClusterView> {
    try {
      const snap = await this.ds.getPrefix(calicoRoot);
      return buildView(snap.kvs, snap.revision);
    } catch (e) {
      throw new ClientError('UNAVAILABLE', `cannot reach etcd at ${this.ds.config.endpoints.join(',')}: ${shortReason(e)}`);
    }
  }

  // ---- groups ---------------------------------------------------------------------------

  async listGroups(view?: ClusterView): Promise<GroupInfo[]> {
    return (view ?? (await this.view())).model.groups().map(groupInfo);
  }

  /** A group by id or by name; a name that two groups share must be given as an id. */
  async findGroup(idOrName: string, view?: ClusterView): Promise<GroupInfo> {
    const v = view ?? (await this.view());
    const byId = v.model.group(idOrName);
    if (byId) return groupInfo(byId);
    const named = v.model.groups().filter((g) => g.name === idOrName);
    if (named.length === 1) return groupInfo(named[0]!);
    if (named.length > 1) throw new ClientError('AMBIGUOUS', `${named.length} groups are named "${idOrName}": give its id (${named.map((g) => g.groupId).join(', ')})`);
    throw new ClientError('NOT_FOUND', `no group has the id or name "${idOrName}" (calicoctl showgroups lists them)`);
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
    const v = await this.view();
    if (v.model.groups().some((g) => g.name === name.trim())) throw new ClientError('CONFLICT', `a group named "${name.trim()}" already exists`);
    const id = opts.id ?? randomUUID();
    if (v.model.group(id)) throw new ClientError('CONFLICT', `a group with id ${id} already exists`);
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
      throw new ClientError('NOT_FOUND', `group ${g.name ?? g.id} has no ${direction} rule ${index} (it has ${list.map((r) => r.index).join(', ') || 'none'})`);
    }
    await this.ds.delete(groupRuleKey(g.id, direction, index));
    return { groupId: g.id };
  }

  // ---- containers and membership --------------------------------------------------------

  /** A container by full id, unique id prefix or name, on whichever host it runs. */
  async findContainer(query: string, view?: ClusterView): Promise<WorkloadInfo> {
    const v = view ?? (await this.view());
    const q = query.replace(/^\//, '');
    const exact = v.workloads.filter((w) => w.containerId === q || w.name === q);
    if (exact.length === 1) return exact[0]!;
    const matches = exact.length ? exact : v.workloads.filter((w) => q.length >= 3 && w.containerId.startsWith(q));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new ClientError('AMBIGUOUS', `"${query}" matches ${matches.length} containers: ${matches.map((m) => `${m.containerId.slice(0, 12)} on ${m.host}`).join(', ')}`);
    }
    throw new ClientError('NOT_FOUND', `no Calico container has the id, id prefix or name "${query}" (it must have been started with CALICO_IP through a calico-node)`);
  }

  /** An endpoint id, or the (single) endpoint of a container given by id, prefix or name. */
  async resolveEndpoint(target: string, view?: ClusterView): Promise<{ endpointId: string; workload: WorkloadInfo | null }> {
    const v = view ?? (await this.view());
    if (v.model.endpoint(target)) return { endpointId: target, workload: v.workloads.find((w) => w.endpoints.some((e) => e.endpointId === target)) ?? null };
    const w = await this.findContainer(target, v);
    const ep = w.endpoints[0];
    if (!ep) throw new ClientError('NOT_FOUND', `container ${w.containerId.slice(0, 12)} has no endpoint`);
    return { endpointId: ep.endpointId, workload: w };
  }

  async addToGroup(target: string, group: string): Promise<{ endpointId: string; groupId: string }> {
    const v = await this.view();
    const { endpointId } = await this.resolveEndpoint(target, v);
    const g = await this.findGroup(group, v);
    await this.ds.put(groupMemberKey(g.id, endpointId), encodeMember());
    return { endpointId, groupId: g.id };
  }

  async removeFromGroup(target: string, group: string): Promise<{ endpointId: string; groupId: string }> {
    const v = await this.view();
    const { endpointId } = await this.resolveEndpoint(target, v);
    const g = await this.findGroup(group, v);
    if (!g.members.includes(endpointId)) throw new ClientError('NOT_FOUND', `endpoint ${endpointId} is not a member of group ${g.name ?? g.id}`);
    await this.ds.delete(groupMemberKey(g.id, endpointId));
    return { endpointId, groupId: g.id };
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

  /** May src open a connection to dst? src and dst: addresses, endpoint ids, container ids, prefixes or names. */
  async check(src: string, dst: string, opts: { protocol?: string | null; port?: number | null } = {}): Promise<Verdict> {
    const v = await this.view();
    const side = async (s: string) => {
      if (/^[0-9a-fA-F:.]+$/.test(s) && (s.includes('.') || s.includes(':'))) return s;
      return (await this.resolveEndpoint(s, v)).endpointId;
    };
    try {
      return explain(v.model, { src: await side(src), dst: await side(dst), protocol: opts.protocol ?? null, port: opts.port ?? null });
    } catch (e) {
      if (e instanceof PolicyError) throw new ClientError('INVALID', e.message);
      throw e;
    }
  }
}
