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
  networkPrefix,
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
  addrs: EndpointAddr[] | undefined;
  mac: string | undefined;
  state: EndpointState | undefined;
}

interface GroupRecord {
  name?: string;
  members: Set<string>;
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

function findCopy(copies: readonly EndpointCopy[] | undefined, host: string, containerId: string): EndpointCopy | undefined {
  if (copies === undefined) return undefined;
  for (const c of copies) if (c.host === host && c.containerId === containerId) return c;
  return undefined;
}

function copyIsEmpty(c: EndpointCopy): boolean {
  return c.addrs === undefined && c.mac === undefined && c.state === undefined;
}

function groupIsEmpty(g: GroupRecord): boolean {
  return (
    g.name === undefined && g.members.size === 0 && g.rules.inbound.size === 0 && g.rules.outbound.size === 0 && g.defaults.size === 0
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
  /** Endpoint id → the container directories holding it: one, unless something went wrong. */
  readonly #endpointCopies = new Map<string, EndpointCopy[]>();
  readonly #groups = new Map<string, GroupRecord>();
  /** Endpoint id → its groups; arrays, as most endpoints are in one or two (a Set each would weigh more). */
  readonly #memberOf = new Map<string, string[]>();
  // Derived views, dropped whenever apply() reports their id as touched.
  readonly #endpointCache = new Map<string, Endpoint>();
  readonly #groupCache = new Map<string, Group>();
  readonly #groupAddrCache = { 4: new Map<string, readonly string[]>(), 6: new Map<string, readonly string[]>() };
  #addrOwners: { version: number; owners: Map<string, string[]> } | null = null;
  #problems: { version: number; list: Problem[] } | null = null;
  #lastHost = '';
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
    this.#groupAddrCache[4].clear();
    this.#groupAddrCache[6].clear();
  }

  /** Ids of the endpoints on one host, unsorted: cheaper than endpoints() when most are elsewhere. */
  endpointIdsOn(host: string): string[] {
    const ids: string[] = [];
    for (const [id, copies] of this.#endpointCopies) {
      const chosen = copies.length === 1 ? copies[0] : orderedCopies(copies)[0];
      if (chosen?.host === host) ids.push(id);
    }
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
    if (update.type === 'put') {
      const r = decodeValue(parsed, key, update.value);
      if (r.ok) next = r.value;
      else errors = r.errors;
    }
    const problemChanged = this.#setInvalid(key, errors);
    // Address order carries no meaning: held sorted, so a reordered list is a repeat.
    if (parsed.kind === 'endpointAddrs' && next !== ABSENT && (next as EndpointAddr[]).length > 1) next = sortedAddrs(next as EndpointAddr[]);
    if (this.#holds(parsed, next)) {
      if (problemChanged) this.#version++;
      return;
    }
    // Whom a key reaches depends on the key alone and on records it does not change, so one look
    // suffices: after a put (the endpoint exists by then), before a delete (it may not after).
    if (next === ABSENT) {
      if (change) this.#touch(parsed, change);
      this.#unindex(parsed);
    } else {
      this.#index(parsed, next);
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
    const chosen = this.#chosenCopy(endpointId);
    if (chosen === undefined) return undefined;
    const list = chosen.addrs ?? [];
    const v4 = list.filter((a) => a.family === 4).map((a) => a.addr);
    const v6 = list.filter((a) => a.family === 6).map((a) => a.addr);
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
    return this.#chosenCopy(endpointId)?.host;
  }

  /** The copy endpoint() describes. */
  #chosenCopy(endpointId: string): EndpointCopy | undefined {
    const copies = this.#endpointCopies.get(endpointId);
    if (copies === undefined || copies.length <= 1) return copies?.[0];
    return orderedCopies(copies)[0];
  }

  /** Every endpoint, sorted by id. */
  endpoints(): Endpoint[] {
    return [...this.#endpointCopies.keys()].sort(compareText).map((id) => this.endpoint(id) as Endpoint);
  }

  group(groupId: string): Group | undefined {
    const cached = this.#groupCache.get(groupId);
    if (cached !== undefined) return cached;
    const rec = this.#groups.get(groupId);
    if (rec === undefined) return undefined;
    const refs = (direction: Direction): readonly RuleRef[] =>
      Object.freeze(
        [...rec.rules[direction].entries()]
          .sort(([a], [b]) => a - b)
          .map(([index, rule]) => Object.freeze({ groupId, direction, index, rule: Object.freeze({ ...rule }) })),
      );
    const group: Group = Object.freeze({
      groupId,
      name: rec.name ?? null,
      members: Object.freeze([...rec.members].sort(compareText)),
      inbound: refs('inbound'),
      outbound: refs('outbound'),
      inboundDefault: 'deny',
      outboundDefault: 'deny',
    });
    this.#groupCache.set(groupId, group);
    return group;
  }

  /** Every group, sorted by id. */
  groups(): Group[] {
    return [...this.#groups.keys()].sort(compareText).map((id) => this.group(id) as Group);
  }

  /** Ids of the groups that list this id as a member, sorted; the id need not be an endpoint. */
  groupIdsOf(endpointId: string): string[] {
    return [...(this.#memberOf.get(endpointId) ?? [])].sort(compareText);
  }

  /**
   * The addresses of one family that a group's members contribute, sorted: the group's ipset.
   * A member that is not an endpoint, or is inactive, contributes nothing.
   */
  groupAddrs(groupId: string, family: IPFamily): readonly string[] {
    const cached = this.#groupAddrCache[family].get(groupId);
    if (cached !== undefined) return cached;
    const addrs = new Set<string>();
    // From the records, not endpoint(): a group of remote members needs no view of each.
    for (const id of this.#groups.get(groupId)?.members ?? []) {
      const c = this.#chosenCopy(id);
      if (c === undefined || c.state === 'inactive') continue;
      for (const a of c.addrs ?? []) if (a.family === family) addrs.add(a.addr);
    }
    const sorted = Object.freeze(sortAddrs(addrs));
    this.#groupAddrCache[family].set(groupId, sorted);
    return sorted;
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
    if (this.#problems?.version !== this.#version) this.#problems = { version: this.#version, list: this.#findProblems() };
    return this.#problems.list.map((p) => ({ key: p.key, errors: [...p.errors] }));
  }

  #findProblems(): Problem[] {
    const byKey = new Map<string, string[]>();
    const add = (key: string, message: string): void => {
      byKey.set(key, [...(byKey.get(key) ?? []), message]);
    };
    for (const [key, errors] of this.#invalid) for (const e of errors) add(key, e);
    for (const [endpointId, copies] of this.#endpointCopies) {
      const [used, ...ignored] = orderedCopies(copies);
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
      case 'endpointState':
        if (this.#endpointCopies.has(key.endpointId)) this.#touchEndpoint(key.endpointId, change);
        // Its addresses (or whether they count) may change the ipsets of every group it is in.
        for (const g of this.#memberOf.get(key.endpointId) ?? []) this.#touchGroup(g, change);
        break;
      case 'groupMember':
        this.#touchGroup(key.groupId, change);
        if (this.#endpointCopies.has(key.endpointId)) this.#touchEndpoint(key.endpointId, change);
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
          if (this.#endpointCopies.has(m)) change.endpoints.add(m);
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
    this.#groupAddrCache[4].delete(groupId);
    this.#groupAddrCache[6].delete(groupId);
  }

  /** Whether the model already holds exactly this value (ABSENT: holds nothing) for the key. */
  #holds(key: ParsedKey, next: unknown): boolean {
    const value = next === ABSENT ? undefined : next;
    switch (key.kind) {
      case 'endpointAddrs':
      case 'endpointMac':
      case 'endpointState': {
        const c = findCopy(this.#endpointCopies.get(key.endpointId), key.host, key.containerId);
        if (key.kind === 'endpointAddrs') return sameAddrs(c?.addrs, value as EndpointAddr[] | undefined);
        if (key.kind === 'endpointMac') return c?.mac === value;
        return c?.state === value;
      }
      case 'groupName':
        return this.#groups.get(key.groupId)?.name === value;
      case 'groupMember':
        return (this.#groups.get(key.groupId)?.members.has(key.endpointId) ?? false) === (next !== ABSENT);
      case 'groupDefault':
        return (this.#groups.get(key.groupId)?.defaults.has(key.direction) ?? false) === (next !== ABSENT);
      case 'groupRule':
        return sameRule(this.#groups.get(key.groupId)?.rules[key.direction].get(key.index), value as Rule | undefined);
      default:
        return true;
    }
  }

  #copy(host: string, containerId: string, endpointId: string): EndpointCopy {
    const copies = this.#endpointCopies.get(endpointId);
    let c = findCopy(copies, host, containerId);
    if (c !== undefined) return c;
    // Keys come sorted, so one host's endpoints arrive together: they share one host string.
    if (host === this.#lastHost) host = this.#lastHost;
    else this.#lastHost = host;
    c = { host, containerId, addrs: undefined, mac: undefined, state: undefined };
    // A literal is exactly sized; a pushed-to empty array keeps room for 17 (100,000 endpoints).
    if (copies === undefined) this.#endpointCopies.set(endpointId, [c]);
    else copies.push(c);
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
  #index(key: ParsedKey, value: unknown): void {
    switch (key.kind) {
      case 'endpointAddrs':
      case 'endpointMac':
      case 'endpointState': {
        const c = this.#copy(key.host, key.containerId, key.endpointId);
        if (key.kind === 'endpointAddrs') c.addrs = value as EndpointAddr[];
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
        this.#group(groupId).members.add(endpointId);
        const of = this.#memberOf.get(endpointId);
        if (of === undefined) this.#memberOf.set(endpointId, [groupId]);
        else if (!of.includes(groupId)) of.push(groupId);
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

  #unindex(key: ParsedKey): void {
    switch (key.kind) {
      case 'endpointAddrs':
      case 'endpointMac':
      case 'endpointState': {
        const copies = this.#endpointCopies.get(key.endpointId);
        const c = findCopy(copies, key.host, key.containerId);
        if (copies === undefined || c === undefined) return;
        if (key.kind === 'endpointAddrs') c.addrs = undefined;
        else if (key.kind === 'endpointMac') c.mac = undefined;
        else c.state = undefined;
        if (copyIsEmpty(c)) copies.splice(copies.indexOf(c), 1);
        if (copies.length === 0) this.#endpointCopies.delete(key.endpointId);
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
          g.members.delete(key.endpointId);
          const of = this.#memberOf.get(key.endpointId);
          const at = of?.indexOf(key.groupId) ?? -1;
          if (of !== undefined && at >= 0) of.splice(at, 1);
          if (of?.length === 0) this.#memberOf.delete(key.endpointId);
        }
        if (groupIsEmpty(g)) this.#groups.delete(key.groupId);
        return;
      }
      default:
        return;
    }
  }
}

function sortedAddrs(list: readonly EndpointAddr[]): EndpointAddr[] {
  return [...list].sort((a, b) => compareAddrs(a.addr, b.addr));
}

function sameAddrs(a: readonly EndpointAddr[] | undefined, b: readonly EndpointAddr[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((x, i) => x.addr === b[i]?.addr && x.family === b[i]?.family);
}

function sameRule(a: Readonly<Rule> | undefined, b: Readonly<Rule> | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const keys = Object.keys(a) as (keyof Rule)[];
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}
