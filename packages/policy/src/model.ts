/**
 * The policy model: datastore key/value updates in, endpoints and groups out. Like felix's
 * calculation graph it starts with a validation filter (a value that does not decode is treated
 * as deleted and reported, never thrown), and it keeps only sets and maps keyed by what the keys
 * name, so the result depends on the final set of keys and not on the order they arrived in.
 */
import {
  calicoRoot,
  decodeValue,
  endpointPrefix,
  groupRuleKey,
  hostSegmentError,
  networkPrefix,
  oneIPv4Addr,
  parseKey,
  type Direction,
  type EndpointAddr,
  type EndpointState,
  type IPFamily,
  type ParsedKey,
  type Rule,
} from '@calico/keyspace';
import { compareAddrs, compareText, sortAddrs } from './internal/addr.js';
import { isEnforceable } from './internal/rules.js';

/** What the datastore syncer delivers; extra fields (a revision) are ignored. */
export type ModelUpdate = { type: 'put'; key: string; value: string } | { type: 'delete'; key: string };

export interface EndpointAddrs {
  readonly v4: readonly string[];
  readonly v6: readonly string[];
}

export interface Endpoint {
  readonly endpointId: string;
  readonly host: string;
  readonly containerId: string;
  /** Canonical text, sorted numerically. */
  readonly addrs: EndpointAddrs;
  readonly mac: string | null;
  /** null until the node writes it; only `inactive` takes an endpoint off the network. */
  readonly state: EndpointState | null;
}

export interface RuleRef {
  readonly groupId: string;
  readonly direction: Direction;
  readonly index: number;
  readonly rule: Readonly<Rule>;
}

export interface Group {
  readonly groupId: string;
  readonly name: string | null;
  /** Endpoint ids, sorted; a member need not be an endpoint (yet). */
  readonly members: readonly string[];
  /** Sorted by numeric index. */
  readonly inbound: readonly RuleRef[];
  readonly outbound: readonly RuleRef[];
  /** The seed supports nothing else, so this holds whether or not the default key is written. */
  readonly inboundDefault: 'deny';
  readonly outboundDefault: 'deny';
}

export interface Problem {
  key: string;
  errors: string[];
}

/** What one update (or batch) affected, so an incremental consumer recomputes only these. */
export interface ModelChange {
  /**
   * Endpoints (that exist, or existed before the update) whose own record or whose policy changed:
   * recompute their chains. An endpoint that is gone now must be torn down.
   */
  endpoints: Set<string>;
  /** Groups whose record or whose address set changed: refresh their ipsets and their members. */
  groups: Set<string>;
}

export interface PolicySnapshot {
  endpoints: Endpoint[];
  groups: Group[];
  problems: Problem[];
}

/** One endpoint's keys under one container directory. */
interface EndpointCopy {
  host: string;
  containerId: string;
  // Present (possibly undefined) from the start: objects keep one shape, which V8 handles fast.
  /** Canonical text, sorted (see compareAddrs); one address is held as itself, not in a list. */
  addrs: string | readonly string[] | undefined;
  mac: string | undefined;
  state: EndpointState | undefined;
}

/**
 * Everything under one endpoint id: the container directories holding it (one, unless something
 * went wrong; none while only group memberships name the id) and the groups listing it. Groups
 * hold their members as these, so a group's addresses are read without a lookup per member.
 */
interface EndpointNode {
  readonly id: string;
  // One copy and one group are held as themselves: a list each for 100,000 endpoints would weigh
  // 11 MB more. Groups are read through groupsOf().
  copies: EndpointCopy | EndpointCopy[] | undefined;
  groups: string | string[] | undefined;
}

interface GroupRecord {
  name?: string;
  members: Set<EndpointNode>;
  rules: Record<Direction, Map<number, Rule>>;
  defaults: Set<Direction>;
}

const USED_KINDS = new Set<ParsedKey['kind']>([
  'endpointAddrs',
  'endpointMac',
  'endpointState',
  'groupName',
  'groupMember',
  'groupRule',
  'groupDefault',
]);

/** "No value": a delete, or a put whose value did not decode. */
const ABSENT = Symbol('absent');

/** Groups whose members a change already lists (see #touch). */
const expandedGroups = new WeakMap<ModelChange, Set<string>>();

export function emptyChange(): ModelChange {
  return { endpoints: new Set(), groups: new Set() };
}

function findCopy(node: EndpointNode | undefined, host: string, containerId: string): EndpointCopy | undefined {
  const copies = node?.copies;
  // Twice per endpoint key of a snapshot: the usual single copy is checked without a list.
  if (copies === undefined || !Array.isArray(copies))
    return copies?.host === host && copies.containerId === containerId ? copies : undefined;
  for (const c of copies) if (c.host === host && c.containerId === containerId) return c;
  return undefined;
}

/** The copy an endpoint's view describes. */
function chosenCopy(node: EndpointNode | undefined): EndpointCopy | undefined {
  const copies = node?.copies;
  return Array.isArray(copies) ? orderedCopies(copies)[0] : copies;
}

function addrList(addrs: EndpointCopy['addrs']): readonly string[] {
  return addrs === undefined ? [] : typeof addrs === 'string' ? [addrs] : addrs;
}

const isV6 = (addr: string): boolean => addr.includes(':');

const NONE: readonly never[] = Object.freeze([]);

function groupsOf(node: EndpointNode): readonly string[] {
  const g = node.groups;
  return g === undefined ? NONE : typeof g === 'string' ? [g] : g;
}

/** One more item in a slot that holds none, one as itself, or several in a list. */
function added<T>(slot: T | T[] | undefined, item: T): T | T[] {
  return slot === undefined ? item : Array.isArray(slot) ? [...slot, item] : [slot, item];
}

function removed<T>(slot: T | T[] | undefined, item: T): T | T[] | undefined {
  if (!Array.isArray(slot)) return slot === item ? undefined : slot;
  const rest = slot.filter((x) => x !== item);
  return rest.length === 0 ? undefined : rest.length === 1 ? rest[0] : rest;
}

function copyIsEmpty(c: EndpointCopy): boolean {
  return c.addrs === undefined && c.mac === undefined && c.state === undefined;
}

function groupIsEmpty(g: GroupRecord): boolean {
  return (
    g.name === undefined &&
    g.members.size === 0 &&
    g.rules.inbound.size === 0 &&
    g.rules.outbound.size === 0 &&
    g.defaults.size === 0
  );
}

/** Copies of one endpoint id in a fixed order, so the one we use never depends on arrival order. */
function orderedCopies(copies: readonly EndpointCopy[]): EndpointCopy[] {
  return [...copies].sort((a, b) => compareText(a.host, b.host) || compareText(a.containerId, b.containerId));
}

export class PolicyModel {
  #version = 0;
  /** Keys whose last put did not decode (or are not keys at all), with the decoder's messages. */
  readonly #invalid = new Map<string, string[]>();
  /** Endpoint id → its copies and groups; held while either is not empty. */
  readonly #nodes = new Map<string, EndpointNode>();
  readonly #groups = new Map<string, GroupRecord>();
  // Derived views, dropped whenever apply() reports their id as touched.
  readonly #endpointCache = new Map<string, Endpoint>();
  readonly #groupCache = new Map<string, Group>();
  readonly #groupRulesCache = new Map<string, Pick<Group, 'inbound' | 'outbound'>>();
  readonly #groupAddrCache = { 4: new Map<string, readonly string[]>(), 6: new Map<string, readonly string[]>() };
  #addrOwners: { version: number; owners: Map<string, string[]> } | null = null;
  #problems: { version: number; list: Problem[] } | null = null;
  #lastHost = '';
  #lastGoodHost = '';
  #lastGroupId = '';

  /** Increments on every update that changes the model or its problems; repeats and ignored keys leave it alone. */
  get version(): number {
    return this.#version;
  }

  /**
   * Applies one update. What it affected is added to `into` (a new change by default), so a
   * batch can gather into one change without merging sets per update.
   */
  apply(update: ModelUpdate, into: ModelChange = emptyChange()): ModelChange {
    this.#apply(update, into);
    return into;
  }

  /**
   * Applies a batch without working out what it touched, for a consumer that will treat every
   * endpoint and group as changed anyway (the first snapshot of an empty dataplane): the same
   * model, for less work. Derived views are dropped.
   */
  load(updates: Iterable<ModelUpdate>): void {
    for (const u of updates) this.#apply(u, undefined);
    this.#endpointCache.clear();
    this.#groupCache.clear();
    this.#groupRulesCache.clear();
    this.#groupAddrCache[4].clear();
    this.#groupAddrCache[6].clear();
  }

  /** Ids of the endpoints on one host, unsorted: cheaper than endpoints() when most are elsewhere. */
  endpointIdsOn(host: string): string[] {
    const ids: string[] = [];
    for (const node of this.#nodes.values()) if (chosenCopy(node)?.host === host) ids.push(node.id);
    return ids;
  }

  /** change undefined: nothing tracked (load()). */
  #apply(update: ModelUpdate, change: ModelChange | undefined): void {
    const { key } = update;
    if (!key.startsWith(calicoRoot)) return;
    const parsed = parseKey(key);
    if (parsed.kind === 'unknown') {
      // A mistyped group key would otherwise vanish silently; elsewhere unknown keys belong to someone else.
      if (key.startsWith(networkPrefix)) {
        const errors = update.type === 'put' ? [`${key}: not a key of the calico keyspace`] : undefined;
        if (this.#setInvalid(key, errors)) this.#version++;
      }
      return;
    }
    if (!USED_KINDS.has(parsed.kind)) return;

    let next: unknown = ABSENT;
    let errors: string[] | undefined;
    // A host segment that is not a host name makes the key a problem, held as absent. Keys come
    // sorted by host, so the last good one answers nearly every key without a check.
    const badHost = 'host' in parsed && parsed.host !== this.#lastGoodHost ? hostSegmentError(parsed) : undefined;
    if (badHost !== undefined) {
      if (update.type === 'put') errors = [`${key}: ${badHost}`];
    } else if ('host' in parsed) this.#lastGoodHost = parsed.host;
    if (update.type === 'put' && badHost === undefined) {
      // The usual one-address value goes straight to the form a copy holds.
      const one = parsed.kind === 'endpointAddrs' ? oneIPv4Addr(update.value) : null;
      if (one !== null) next = one;
      else {
        const r = decodeValue(parsed, key, update.value);
        if (r.ok) next = r.value;
        else errors = r.errors;
      }
    }
    const problemChanged = this.#setInvalid(key, errors);
    // Address order carries no meaning: held sorted, so a reordered list is a repeat.
    if (parsed.kind === 'endpointAddrs' && next !== ABSENT && typeof next !== 'string')
      next = heldAddrs(next as EndpointAddr[]);
    // The endpoint id's node, looked up once for the checks and the change below.
    const node =
      parsed.kind === 'endpointAddrs' ||
      parsed.kind === 'endpointState' ||
      parsed.kind === 'groupMember' ||
      parsed.kind === 'endpointMac'
        ? this.#nodes.get(parsed.endpointId)
        : undefined;
    if (this.#holds(parsed, next, node)) {
      if (problemChanged) this.#version++;
      return;
    }
    // Whom a key reaches depends on the key alone and on records it does not change, so one look
    // suffices: after a put (the endpoint exists by then), before a delete (it may not after).
    if (next === ABSENT) {
      if (change) this.#touch(parsed, change);
      this.#unindex(parsed, node);
    } else {
      this.#index(parsed, next, node);
      if (change) this.#touch(parsed, change);
    }
    this.#version++;
  }

  /** Applies a batch in order and returns the union of what each update affected. */
  applyAll(updates: Iterable<ModelUpdate>): ModelChange {
    const all = emptyChange();
    for (const u of updates) this.apply(u, all);
    return all;
  }

  endpoint(endpointId: string): Endpoint | undefined {
    const cached = this.#endpointCache.get(endpointId);
    if (cached !== undefined) return cached;
    const chosen = chosenCopy(this.#nodes.get(endpointId));
    if (chosen === undefined) return undefined;
    const list = addrList(chosen.addrs);
    const v4 = list.filter((a) => !isV6(a));
    const v6 = list.filter(isV6);
    const endpoint: Endpoint = Object.freeze({
      endpointId,
      host: chosen.host,
      containerId: chosen.containerId,
      addrs: Object.freeze({ v4: Object.freeze(v4), v6: Object.freeze(v6) }),
      mac: chosen.mac ?? null,
      state: chosen.state ?? null,
    });
    this.#endpointCache.set(endpointId, endpoint);
    return endpoint;
  }

  /** The host an endpoint is on, without building its view: cheap enough to filter 100,000 by host. */
  hostOf(endpointId: string): string | undefined {
    return chosenCopy(this.#nodes.get(endpointId))?.host;
  }

  /** Every endpoint, sorted by id. */
  endpoints(): Endpoint[] {
    const ids: string[] = [];
    for (const node of this.#nodes.values()) if (node.copies !== undefined) ids.push(node.id);
    return ids.sort(compareText).map((id) => this.endpoint(id) as Endpoint);
  }

  group(groupId: string): Group | undefined {
    const cached = this.#groupCache.get(groupId);
    if (cached !== undefined) return cached;
    const rec = this.#groups.get(groupId);
    const rules = this.groupRules(groupId);
    if (rec === undefined || rules === undefined) return undefined;
    const group: Group = Object.freeze({
      groupId,
      name: rec.name ?? null,
      members: Object.freeze([...rec.members].map((m) => m.id).sort(compareText)),
      ...rules,
      inboundDefault: 'deny',
      outboundDefault: 'deny',
    });
    this.#groupCache.set(groupId, group);
    return group;
  }

  /** A group's rules as group() has them, without its member list (which can be long to sort). */
  groupRules(groupId: string): Pick<Group, 'inbound' | 'outbound'> | undefined {
    const cached = this.#groupRulesCache.get(groupId);
    if (cached !== undefined) return cached;
    const rec = this.#groups.get(groupId);
    if (rec === undefined) return undefined;
    const refs = (direction: Direction): readonly RuleRef[] =>
      Object.freeze(
        [...rec.rules[direction].entries()]
          .sort(([a], [b]) => a - b)
          .map(([index, rule]) => Object.freeze({ groupId, direction, index, rule: Object.freeze({ ...rule }) })),
      );
    const rules = Object.freeze({ inbound: refs('inbound'), outbound: refs('outbound') });
    this.#groupRulesCache.set(groupId, rules);
    return rules;
  }

  /** Every group, sorted by id. */
  groups(): Group[] {
    return [...this.#groups.keys()].sort(compareText).map((id) => this.group(id) as Group);
  }

  /** Ids of the groups that list this id as a member, sorted; the id need not be an endpoint. */
  groupIdsOf(endpointId: string): string[] {
    const node = this.#nodes.get(endpointId);
    return node === undefined ? [] : [...groupsOf(node)].sort(compareText);
  }

  /**
   * The addresses of one family that a group's members contribute, sorted: the group's ipset.
   * A member that is not an endpoint, or is inactive, contributes nothing.
   */
  groupAddrs(groupId: string, family: IPFamily): readonly string[] {
    const cached = this.#groupAddrCache[family].get(groupId);
    if (cached !== undefined) return cached;
    // Both families in one pass over the members (each a lookup among all endpoints), as both ipsets are wanted.
    const found = { 4: new Set<string>(), 6: new Set<string>() };
    // From the records, not endpoint(): a group of remote members needs no view of each.
    for (const node of this.#groups.get(groupId)?.members ?? []) {
      const c = chosenCopy(node);
      if (c === undefined || c.state === 'inactive') continue;
      if (typeof c.addrs === 'string') found[isV6(c.addrs) ? 6 : 4].add(c.addrs);
      else for (const a of c.addrs ?? []) found[isV6(a) ? 6 : 4].add(a);
    }
    const v4 = Object.freeze(sortAddrs(found[4]));
    const v6 = Object.freeze(sortAddrs(found[6]));
    this.#groupAddrCache[4].set(groupId, v4);
    this.#groupAddrCache[6].set(groupId, v6);
    return family === 4 ? v4 : v6;
  }

  /** Endpoints holding an address, sorted by id (normally one; stale copies can make more). */
  endpointsWithAddr(addr: string): string[] {
    if (this.#addrOwners?.version !== this.#version) {
      const owners = new Map<string, string[]>();
      for (const ep of this.endpoints()) {
        for (const a of [...ep.addrs.v4, ...ep.addrs.v6]) owners.set(a, [...(owners.get(a) ?? []), ep.endpointId]);
      }
      this.#addrOwners = { version: this.#version, owners };
    }
    return [...(this.#addrOwners.owners.get(addr) ?? [])];
  }

  /**
   * Everything wrong that the model can see, sorted by key: values that did not decode, unknown
   * keys under /calico/network/, rules that cannot be enforced or refer to a missing group, and
   * endpoint ids recorded under more than one container. The last three come and go as other keys do.
   */
  problems(): Problem[] {
    // Status reports ask often; the answer only moves with the version.
    if (this.#problems?.version !== this.#version)
      this.#problems = { version: this.#version, list: this.#findProblems() };
    return this.#problems.list.map((p) => ({ key: p.key, errors: [...p.errors] }));
  }

  #findProblems(): Problem[] {
    const byKey = new Map<string, string[]>();
    const add = (key: string, message: string): void => {
      byKey.set(key, [...(byKey.get(key) ?? []), message]);
    };
    for (const [key, errors] of this.#invalid) for (const e of errors) add(key, e);
    for (const node of this.#nodes.values()) {
      if (!Array.isArray(node.copies)) continue;
      const endpointId = node.id;
      const [used, ...ignored] = orderedCopies(node.copies);
      if (used === undefined) continue;
      for (const c of ignored) {
        const dir = endpointPrefix(c.host, c.containerId, endpointId);
        add(
          dir,
          `${dir}: endpoint ${endpointId} is also recorded under host ${used.host}, container ${used.containerId}; only that one is used`,
        );
      }
    }
    for (const [groupId, rec] of this.#groups) {
      for (const direction of ['inbound', 'outbound'] as const) {
        for (const [index, rule] of rec.rules[direction]) {
          const key = groupRuleKey(groupId, direction, index);
          if (!isEnforceable(rule)) add(key, `${key}: protocol 0 cannot be enforced (iptables reads it as "all")`);
          if (rule.group !== null && !this.#groups.has(rule.group)) {
            add(key, `${key}: refers to group ${rule.group}, which does not exist`);
          }
        }
      }
    }
    return [...byKey.entries()].sort(([a], [b]) => compareText(a, b)).map(([key, errors]) => ({ key, errors }));
  }

  /** A plain, JSON-able picture with every list sorted: equal models give equal snapshots. */
  snapshot(): PolicySnapshot {
    return structuredClone({ endpoints: this.endpoints(), groups: this.groups(), problems: this.problems() });
  }

  /** Records or clears a key's problem; answers whether anything changed. */
  #setInvalid(key: string, errors: string[] | undefined): boolean {
    // Usually nothing is invalid: no need to look the key up.
    if (errors === undefined) return this.#invalid.size > 0 && this.#invalid.delete(key);
    const before = this.#invalid.get(key);
    this.#invalid.set(key, errors);
    return before === undefined || before.join('\n') !== errors.join('\n');
  }

  /** Records what a key reaches in `change` and drops the derived views of it. */
  #touch(key: ParsedKey, change: ModelChange): void {
    switch (key.kind) {
      case 'endpointAddrs':
      case 'endpointMac':
      case 'endpointState': {
        const node = this.#nodes.get(key.endpointId);
        if (node === undefined) break;
        if (node.copies !== undefined) this.#touchEndpoint(key.endpointId, change);
        // Its addresses (or whether they count) may change the ipsets of every group it is in.
        for (const g of groupsOf(node)) this.#touchGroup(g, change);
        break;
      }
      case 'groupMember':
        this.#touchGroup(key.groupId, change);
        if (this.#nodes.get(key.endpointId)?.copies !== undefined) this.#touchEndpoint(key.endpointId, change);
        break;
      case 'groupName':
      case 'groupRule':
      case 'groupDefault': {
        this.#touchGroup(key.groupId, change);
        // The members' policy changed, not their records: their cached views stay. Members that
        // join later in the same change are touched by their own member keys, so once is enough.
        let expanded = expandedGroups.get(change);
        if (expanded === undefined) expandedGroups.set(change, (expanded = new Set()));
        if (expanded.has(key.groupId)) break;
        expanded.add(key.groupId);
        for (const m of this.#groups.get(key.groupId)?.members ?? []) {
          if (m.copies !== undefined) change.endpoints.add(m.id);
        }
        break;
      }
      default:
        break;
    }
  }

  #touchEndpoint(endpointId: string, change: ModelChange): void {
    change.endpoints.add(endpointId);
    this.#endpointCache.delete(endpointId);
  }

  #touchGroup(groupId: string, change: ModelChange): void {
    change.groups.add(groupId);
    this.#groupCache.delete(groupId);
    this.#groupRulesCache.delete(groupId);
    this.#groupAddrCache[4].delete(groupId);
    this.#groupAddrCache[6].delete(groupId);
  }

  /** Whether the model already holds exactly this value (ABSENT: holds nothing) for the key. */
  #holds(key: ParsedKey, next: unknown, node: EndpointNode | undefined): boolean {
    const value = next === ABSENT ? undefined : next;
    switch (key.kind) {
      case 'endpointAddrs':
      case 'endpointMac':
      case 'endpointState': {
        const c = findCopy(node, key.host, key.containerId);
        if (key.kind === 'endpointAddrs') return sameAddrs(c?.addrs, value as EndpointCopy['addrs']);
        if (key.kind === 'endpointMac') return c?.mac === value;
        return c?.state === value;
      }
      case 'groupName':
        return this.#groups.get(key.groupId)?.name === value;
      case 'groupMember':
        return (
          (node !== undefined && (this.#groups.get(key.groupId)?.members.has(node) ?? false)) === (next !== ABSENT)
        );
      case 'groupDefault':
        return (this.#groups.get(key.groupId)?.defaults.has(key.direction) ?? false) === (next !== ABSENT);
      case 'groupRule':
        return sameRule(this.#groups.get(key.groupId)?.rules[key.direction].get(key.index), value as Rule | undefined);
      default:
        return true;
    }
  }

  #newNode(endpointId: string): EndpointNode {
    const node: EndpointNode = { id: endpointId, copies: undefined, groups: undefined };
    this.#nodes.set(endpointId, node);
    return node;
  }

  #dropIfUnused(node: EndpointNode): void {
    if (node.copies === undefined && node.groups === undefined) this.#nodes.delete(node.id);
  }

  #copy(node: EndpointNode, host: string, containerId: string): EndpointCopy {
    let c = findCopy(node, host, containerId);
    if (c !== undefined) return c;
    // Keys come sorted, so one host's endpoints arrive together: they share one host string.
    if (host === this.#lastHost) host = this.#lastHost;
    else this.#lastHost = host;
    c = { host, containerId, addrs: undefined, mac: undefined, state: undefined };
    node.copies = added(node.copies, c);
    return c;
  }

  #group(groupId: string): GroupRecord {
    let g = this.#groups.get(groupId);
    if (g === undefined) {
      g = { members: new Set(), rules: { inbound: new Map(), outbound: new Map() }, defaults: new Set() };
      this.#groups.set(groupId, g);
    }
    return g;
  }

  // The value was decoded for this key's kind; the casts say which type that is.
  #index(key: ParsedKey, value: unknown, node: EndpointNode | undefined): void {
    switch (key.kind) {
      case 'endpointAddrs':
      case 'endpointMac':
      case 'endpointState': {
        const c = this.#copy(node ?? this.#newNode(key.endpointId), key.host, key.containerId);
        if (key.kind === 'endpointAddrs') c.addrs = value as EndpointCopy['addrs'];
        else if (key.kind === 'endpointMac') c.mac = value as string;
        else c.state = value as EndpointState;
        break;
      }
      case 'groupName':
        this.#group(key.groupId).name = value as string;
        break;
      case 'groupMember': {
        const { endpointId } = key;
        // A group's members arrive together (keys are sorted): they share one group id string.
        const groupId = key.groupId === this.#lastGroupId ? this.#lastGroupId : (this.#lastGroupId = key.groupId);
        const n = node ?? this.#newNode(endpointId);
        this.#group(groupId).members.add(n);
        if (!groupsOf(n).includes(groupId)) n.groups = added(n.groups, groupId);
        break;
      }
      case 'groupRule':
        this.#group(key.groupId).rules[key.direction].set(key.index, value as Rule);
        break;
      case 'groupDefault':
        this.#group(key.groupId).defaults.add(key.direction);
        break;
      default:
        break;
    }
  }

  #unindex(key: ParsedKey, node: EndpointNode | undefined): void {
    switch (key.kind) {
      case 'endpointAddrs':
      case 'endpointMac':
      case 'endpointState': {
        const c = findCopy(node, key.host, key.containerId);
        if (node === undefined || c === undefined) return;
        if (key.kind === 'endpointAddrs') c.addrs = undefined;
        else if (key.kind === 'endpointMac') c.mac = undefined;
        else c.state = undefined;
        if (copyIsEmpty(c)) node.copies = removed(node.copies, c);
        this.#dropIfUnused(node);
        return;
      }
      case 'groupName':
      case 'groupMember':
      case 'groupRule':
      case 'groupDefault': {
        const g = this.#groups.get(key.groupId);
        if (g === undefined) return;
        if (key.kind === 'groupName') delete g.name;
        else if (key.kind === 'groupRule') g.rules[key.direction].delete(key.index);
        else if (key.kind === 'groupDefault') g.defaults.delete(key.direction);
        else {
          if (node !== undefined) {
            g.members.delete(node);
            node.groups = removed(node.groups, key.groupId);
            this.#dropIfUnused(node);
          }
        }
        if (groupIsEmpty(g)) this.#groups.delete(key.groupId);
        return;
      }
      default:
        return;
    }
  }
}

/** How a copy holds its decoded addresses: one as itself, more as sorted text. */
function heldAddrs(list: readonly EndpointAddr[]): string | readonly string[] {
  if (list.length === 1) return (list[0] as EndpointAddr).addr;
  return list.map((a) => a.addr).sort(compareAddrs);
}

function sameAddrs(a: EndpointCopy['addrs'], b: EndpointCopy['addrs']): boolean {
  if (a === undefined || b === undefined || typeof a === 'string' || typeof b === 'string') return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameRule(a: Readonly<Rule> | undefined, b: Readonly<Rule> | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const keys = Object.keys(a) as (keyof Rule)[];
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}
