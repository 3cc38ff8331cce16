/**
 * The policy model: datastore key/value updates in, endpoints and groups out. Like felix's
 * calculation graph it starts with a validation filter (a value that does not decode is treated
 * as deleted and reported, never thrown), and it keeps only sets and maps keyed by what the keys
 * name, so the result depends on the final set of keys and not on the order they arrived in.
 */
import {
  calicoRoot,
  decodeEntry,
  endpointPrefix,
  groupRuleKey,
  networkPrefix,
  parseKey,
  type DecodedEntry,
  type Direction,
  type EndpointAddr,
  type EndpointState,
  type IPFamily,
  type ParsedKey,
  type Rule,
} from '@calico/keyspace';
import { compareAddrs, compareText } from './internal/addr.js';
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
  addrs?: EndpointAddr[];
  mac?: string;
  state?: EndpointState;
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

export function emptyChange(): ModelChange {
  return { endpoints: new Set(), groups: new Set() };
}

function copyPlace(host: string, containerId: string): string {
  // Neither part may contain "/", so this names one container directory unambiguously.
  return `${host}/${containerId}`;
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
function orderedCopies(copies: Map<string, EndpointCopy>): EndpointCopy[] {
  return [...copies.values()].sort((a, b) => compareText(a.host, b.host) || compareText(a.containerId, b.containerId));
}

export class PolicyModel {
  #version = 0;
  /** Canonical JSON of every valid value in use, to tell an effective change from a repeat. */
  readonly #values = new Map<string, string>();
  /** Keys whose last put did not decode (or are not keys at all), with the decoder's messages. */
  readonly #invalid = new Map<string, string[]>();
  readonly #endpointCopies = new Map<string, Map<string, EndpointCopy>>();
  readonly #groups = new Map<string, GroupRecord>();
  readonly #memberOf = new Map<string, Set<string>>();
  // Derived views, dropped whenever apply() reports their id as touched.
  readonly #endpointCache = new Map<string, Endpoint>();
  readonly #groupCache = new Map<string, Group>();
  readonly #groupAddrCache = new Map<string, readonly string[]>();
  #addrOwners: { version: number; owners: Map<string, string[]> } | null = null;

  /** Increments on every update that changes the model or its problems; repeats and ignored keys leave it alone. */
  get version(): number {
    return this.#version;
  }

  apply(update: ModelUpdate): ModelChange {
    const change = emptyChange();
    const { key } = update;
    if (!key.startsWith(calicoRoot)) return change;
    const parsed = parseKey(key);
    if (parsed.kind === 'unknown') {
      // A mistyped group key would otherwise vanish silently; elsewhere unknown keys belong to someone else.
      if (key.startsWith(networkPrefix)) {
        const errors = update.type === 'put' ? [`${key}: not a key of the calico keyspace`] : undefined;
        if (this.#setInvalid(key, errors)) this.#version++;
      }
      return change;
    }
    if (!USED_KINDS.has(parsed.kind)) return change;

    let next: DecodedEntry | undefined;
    let errors: string[] | undefined;
    if (update.type === 'put') {
      const r = decodeEntry(key, update.value);
      if (r.ok) next = r.value;
      else errors = r.errors;
    }
    const problemChanged = this.#setInvalid(key, errors);
    const nextCanon = next === undefined ? undefined : canonicalValue(next);
    if (nextCanon === this.#values.get(key)) {
      if (problemChanged) this.#version++;
      return change;
    }

    this.#touch(parsed, change); // before: catches the endpoints and groups the old value reached
    this.#unindex(parsed);
    if (next === undefined || nextCanon === undefined) this.#values.delete(key);
    else {
      this.#values.set(key, nextCanon);
      this.#index(next);
    }
    this.#touch(parsed, change); // after: catches what the new value reaches
    this.#forget(change);
    this.#version++;
    return change;
  }

  /** Applies a batch in order and returns the union of what each update affected. */
  applyAll(updates: Iterable<ModelUpdate>): ModelChange {
    const all = emptyChange();
    for (const u of updates) {
      const c = this.apply(u);
      for (const e of c.endpoints) all.endpoints.add(e);
      for (const g of c.groups) all.groups.add(g);
    }
    return all;
  }

  endpoint(endpointId: string): Endpoint | undefined {
    const cached = this.#endpointCache.get(endpointId);
    if (cached !== undefined) return cached;
    const copies = this.#endpointCopies.get(endpointId);
    const chosen = copies === undefined ? undefined : orderedCopies(copies)[0];
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
    const copies = this.#endpointCopies.get(endpointId);
    if (copies === undefined || copies.size === 0) return undefined;
    if (copies.size === 1) return copies.values().next().value?.host;
    return orderedCopies(copies)[0]?.host;
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
    const cacheKey = `${family}|${groupId}`;
    const cached = this.#groupAddrCache.get(cacheKey);
    if (cached !== undefined) return cached;
    const addrs = new Set<string>();
    for (const id of this.#groups.get(groupId)?.members ?? []) {
      const ep = this.endpoint(id);
      if (ep === undefined || ep.state === 'inactive') continue;
      for (const a of family === 4 ? ep.addrs.v4 : ep.addrs.v6) addrs.add(a);
    }
    const sorted = Object.freeze([...addrs].sort(compareAddrs));
    this.#groupAddrCache.set(cacheKey, sorted);
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
    const before = this.#invalid.get(key);
    if (errors === undefined) return this.#invalid.delete(key);
    this.#invalid.set(key, errors);
    return before === undefined || before.join('\n') !== errors.join('\n');
  }

  #touch(key: ParsedKey, change: ModelChange): void {
    switch (key.kind) {
      case 'endpointAddrs':
      case 'endpointMac':
      case 'endpointState':
        if (this.#endpointCopies.has(key.endpointId)) change.endpoints.add(key.endpointId);
        // Its addresses (or whether they count) may change the ipsets of every group it is in.
        for (const g of this.#memberOf.get(key.endpointId) ?? []) change.groups.add(g);
        break;
      case 'groupMember':
        change.groups.add(key.groupId);
        if (this.#endpointCopies.has(key.endpointId)) change.endpoints.add(key.endpointId);
        break;
      case 'groupName':
      case 'groupRule':
      case 'groupDefault':
        change.groups.add(key.groupId);
        for (const m of this.#groups.get(key.groupId)?.members ?? []) {
          if (this.#endpointCopies.has(m)) change.endpoints.add(m);
        }
        break;
      default:
        break;
    }
  }

  #forget(change: ModelChange): void {
    for (const e of change.endpoints) this.#endpointCache.delete(e);
    for (const g of change.groups) {
      this.#groupCache.delete(g);
      this.#groupAddrCache.delete(`4|${g}`);
      this.#groupAddrCache.delete(`6|${g}`);
    }
  }

  #copy(host: string, containerId: string, endpointId: string): EndpointCopy {
    let copies = this.#endpointCopies.get(endpointId);
    if (copies === undefined) this.#endpointCopies.set(endpointId, (copies = new Map()));
    const place = copyPlace(host, containerId);
    let c = copies.get(place);
    if (c === undefined) copies.set(place, (c = { host, containerId }));
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

  // DecodedEntry is discriminated by a nested field, which TypeScript does not narrow on; hence the casts.
  #index(entry: DecodedEntry): void {
    switch (entry.key.kind) {
      case 'endpointAddrs':
      case 'endpointMac':
      case 'endpointState': {
        const k = entry.key;
        const c = this.#copy(k.host, k.containerId, k.endpointId);
        if (entry.key.kind === 'endpointAddrs') c.addrs = sortedAddrs(entry.value as EndpointAddr[]);
        else if (entry.key.kind === 'endpointMac') c.mac = entry.value as string;
        else c.state = entry.value as EndpointState;
        break;
      }
      case 'groupName':
        this.#group(entry.key.groupId).name = entry.value as string;
        break;
      case 'groupMember': {
        const { groupId, endpointId } = entry.key;
        this.#group(groupId).members.add(endpointId);
        let of = this.#memberOf.get(endpointId);
        if (of === undefined) this.#memberOf.set(endpointId, (of = new Set()));
        of.add(groupId);
        break;
      }
      case 'groupRule':
        this.#group(entry.key.groupId).rules[entry.key.direction].set(entry.key.index, entry.value as Rule);
        break;
      case 'groupDefault':
        this.#group(entry.key.groupId).defaults.add(entry.key.direction);
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
        const place = copyPlace(key.host, key.containerId);
        const c = copies?.get(place);
        if (copies === undefined || c === undefined) return;
        if (key.kind === 'endpointAddrs') delete c.addrs;
        else if (key.kind === 'endpointMac') delete c.mac;
        else delete c.state;
        if (copyIsEmpty(c)) copies.delete(place);
        if (copies.size === 0) this.#endpointCopies.delete(key.endpointId);
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
          of?.delete(key.groupId);
          if (of?.size === 0) this.#memberOf.delete(key.endpointId);
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

/** The same value always gives the same text; addrs are sorted first since their order carries no meaning. */
function canonicalValue(entry: DecodedEntry): string {
  return entry.key.kind === 'endpointAddrs' ? JSON.stringify(sortedAddrs(entry.value as EndpointAddr[])) : JSON.stringify(entry.value);
}
