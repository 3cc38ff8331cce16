/**
 * Builders for tests here and in other packages: the etcd keys and values that describe an
 * endpoint or a group, written through keyspace so they are spelt the way the node and calicoctl
 * write them. Plus small helpers to feed them to a model in many orders.
 */
import {
  encodeAddrs,
  encodeDefault,
  encodeGroupName,
  encodeMac,
  encodeMember,
  encodeRule,
  encodeState,
  endpointAddrsKey,
  endpointMacKey,
  endpointStateKey,
  groupDefaultKey,
  groupMemberKey,
  groupNameKey,
  groupRuleKey,
  type EndpointState,
  type RuleInput,
} from '@calico/keyspace';
import { PolicyModel, type ModelUpdate } from './model.js';

export interface KeyValue {
  key: string;
  value: string;
}

export interface EndpointFixture {
  host: string;
  endpointId: string;
  /** Defaults to `c-<endpointId>`. */
  containerId?: string;
  addrs?: string[];
  mac?: string | null;
  /** Defaults to `active`; null leaves the key out. */
  state?: EndpointState | null;
}

export interface GroupFixture {
  groupId: string;
  /** Defaults to the group id; null leaves the key out. */
  name?: string | null;
  members?: string[];
  /** Numbered from 1 in the order given. */
  inbound?: RuleInput[];
  outbound?: RuleInput[];
  /** Write both `_default` keys (default true). */
  defaults?: boolean;
}

function endpoint(f: EndpointFixture): KeyValue[] {
  const cid = f.containerId ?? `c-${f.endpointId}`;
  const out: KeyValue[] = [];
  if (f.addrs !== undefined)
    out.push({ key: endpointAddrsKey(f.host, cid, f.endpointId), value: encodeAddrs(f.addrs) });
  if (f.mac !== undefined && f.mac !== null)
    out.push({ key: endpointMacKey(f.host, cid, f.endpointId), value: encodeMac(f.mac) });
  const state = f.state === undefined ? 'active' : f.state;
  if (state !== null) out.push({ key: endpointStateKey(f.host, cid, f.endpointId), value: encodeState(state) });
  return out;
}

function group(f: GroupFixture): KeyValue[] {
  const out: KeyValue[] = [];
  const name = f.name === undefined ? f.groupId : f.name;
  if (name !== null) out.push({ key: groupNameKey(f.groupId), value: encodeGroupName(name) });
  for (const m of f.members ?? []) out.push({ key: groupMemberKey(f.groupId, m), value: encodeMember() });
  (f.inbound ?? []).forEach((r, i) => {
    out.push({ key: groupRuleKey(f.groupId, 'inbound', i + 1), value: encodeRule(r) });
  });
  (f.outbound ?? []).forEach((r, i) => {
    out.push({ key: groupRuleKey(f.groupId, 'outbound', i + 1), value: encodeRule(r) });
  });
  if (f.defaults ?? true) {
    out.push({ key: groupDefaultKey(f.groupId, 'inbound'), value: encodeDefault() });
    out.push({ key: groupDefaultKey(f.groupId, 'outbound'), value: encodeDefault() });
  }
  return out;
}

/** What the original `calicoctl addgroup` wrote: members talk among themselves and out to any IPv4 address. */
function addgroup(groupId: string, members: string[] = [], name: string | null = groupId): GroupFixture {
  return {
    groupId,
    name,
    members,
    inbound: [{ group: groupId }],
    outbound: [{ group: groupId }, { cidr: '0.0.0.0/0' }],
  };
}

function puts(entries: readonly KeyValue[]): ModelUpdate[] {
  return entries.map(({ key, value }) => ({ type: 'put', key, value }));
}

function model(entries: readonly KeyValue[]): PolicyModel {
  const m = new PolicyModel();
  m.applyAll(puts(entries));
  return m;
}

/** mulberry32: a tiny seeded generator, so a failing shuffle can be replayed from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: readonly T[], seed: number): T[] {
  const next = random(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** Every order of a small list (n! of them; keep n small). */
function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

/**
 * Interleaves several per-key histories at random while keeping each history's own order, the
 * way a syncer can reorder updates of different keys but never two updates of the same key.
 */
function interleave<T>(histories: readonly (readonly T[])[], seed: number): T[] {
  const next = random(seed);
  const queues = histories.map((h) => [...h]).filter((h) => h.length > 0);
  const out: T[] = [];
  while (queues.length > 0) {
    const i = Math.floor(next() * queues.length);
    const q = queues[i] as T[];
    out.push(q.shift() as T);
    if (q.length === 0) queues.splice(i, 1);
  }
  return out;
}

export const policyFixtures = {
  endpoint,
  group,
  addgroup,
  puts,
  model,
  random,
  shuffle,
  permutations,
  interleave,
} as const;
