import { describe, expect, it } from 'vitest';
import {
  birdIpKey,
  encodeBirdIp,
  encodeHostAlive,
  encodeIpAssignment,
  encodeWorkloadName,
  groupMemberKey,
  hostAliveKey,
  ipAssignmentKey,
  workloadNameKey,
} from '@calico/keyspace';
import { policyFixtures } from '@calico/policy';
import { decideGc, emptyTracker, type GcAction, type GcTracker } from './gc.js';

const GRACE = 60_000;
type KV = [string, string];

const alive = (h: string): KV => [hostAliveKey(h), encodeHostAlive({ since: '2026-01-01T00:00:00.000Z' })];
const member = (g: string, e: string): KV => [groupMemberKey(g, e), ''];
const endpoint = (host: string, endpointId: string, addr: string): KV[] => [
  ...policyFixtures.endpoint({ host, endpointId, addrs: [addr] }).map((kv): KV => [kv.key, kv.value]),
  [workloadNameKey(host, `c-${endpointId}`), encodeWorkloadName(`name-${endpointId}`)],
];
const reservation = (addr: string, host: string, endpointId: string): KV => [ipAssignmentKey(addr), encodeIpAssignment({ host, containerId: `c-${endpointId}`, endpointId })];

/** A round of GC: at time t (seconds), with these keys, in sync or not, in this sync epoch. */
interface Step {
  t: number;
  kvs: KV[];
  inSync?: boolean;
  epoch?: number;
}

/** Runs the steps in order and returns, per step, the deleted keys ("kind key"). */
function run(steps: Step[]): string[][] {
  let tracker: GcTracker = emptyTracker();
  return steps.map((s) => {
    const d = decideGc({ kvs: new Map(s.kvs), inSync: s.inSync ?? true, epoch: s.epoch ?? 0, now: s.t * 1000, graceMs: GRACE }, tracker);
    tracker = d.tracker;
    return d.actions.map(describeAction);
  });
}

function describeAction(a: GcAction): string {
  return `${a.kind} ${a.kind === 'endpoint' ? a.prefix : a.key}`;
}

const h1 = [alive('h1'), ...endpoint('h1', 'e1', '198.19.0.1')];
const lostMember = member('g1', 'gone');
const DEL_LOST = `membership ${groupMemberKey('g1', 'gone')}`;

describe('decideGc: memberships of endpoints that exist nowhere', () => {
  it.each<[string, Step[], string[][]]>([
    ['absent less than the grace: nothing', [{ t: 0, kvs: [...h1, lostMember] }, { t: 59, kvs: [...h1, lostMember] }], [[], []]],
    ['absent for the grace: the membership goes', [{ t: 0, kvs: [...h1, lostMember] }, { t: 30, kvs: [...h1, lostMember] }, { t: 60, kvs: [...h1, lostMember] }], [[], [], [DEL_LOST]]],
    [
      'the endpoint appears within the grace (membership written first): nothing',
      [{ t: 0, kvs: [...h1, member('g1', 'e2')] }, { t: 10, kvs: [...h1, ...endpoint('h1', 'e2', '198.19.0.2'), member('g1', 'e2')] }, { t: 70, kvs: [...h1, ...endpoint('h1', 'e2', '198.19.0.2'), member('g1', 'e2')] }],
      [[], [], []],
    ],
    [
      'absent, present, absent again: the grace starts over',
      [{ t: 0, kvs: [...h1, member('g1', 'e2')] }, { t: 50, kvs: [...h1, ...endpoint('h1', 'e2', '198.19.0.2'), member('g1', 'e2')] }, { t: 55, kvs: [...h1, member('g1', 'e2')] }, { t: 100, kvs: [...h1, member('g1', 'e2')] }, { t: 115, kvs: [...h1, member('g1', 'e2')] }],
      [[], [], [], [], [`membership ${groupMemberKey('g1', 'e2')}`]],
    ],
    ['a member whose endpoint exists is kept', [{ t: 0, kvs: [...h1, member('g1', 'e1')] }, { t: 600, kvs: [...h1, member('g1', 'e1')] }], [[], []]],
    [
      'an endpoint whose values do not decode still exists',
      [{ t: 0, kvs: [alive('h1'), ['/calico/host/h1/workload/docker/c9/endpoint/e9/addrs', 'garbage'], member('g1', 'e9')] }, { t: 120, kvs: [alive('h1'), ['/calico/host/h1/workload/docker/c9/endpoint/e9/addrs', 'garbage'], member('g1', 'e9')] }],
      [[], []],
    ],
    ['once acted on, not repeated before another full grace', [{ t: 0, kvs: [lostMember] }, { t: 60, kvs: [lostMember] }, { t: 61, kvs: [lostMember] }, { t: 121, kvs: [lostMember] }], [[], [DEL_LOST], [], [DEL_LOST]]],
  ])('%s', (_name, steps, want) => {
    expect(run(steps)).toEqual(want);
  });

  it('a grace of zero acts at once', () => {
    const d = decideGc({ kvs: new Map([lostMember]), inSync: true, epoch: 0, now: 5, graceMs: 0 }, emptyTracker());
    expect(d.actions.map(describeAction)).toEqual([DEL_LOST]);
  });
});

describe('decideGc: hosts whose liveness key is gone', () => {
  const h2 = [...endpoint('h2', 'e2', '198.19.0.2'), [birdIpKey('h2'), encodeBirdIp('198.18.0.2')] as KV, reservation('198.19.0.2', 'h2', 'e2'), member('g1', 'e2'), member('g1', 'e1')];
  const h2Deleted = [
    `membership ${groupMemberKey('g1', 'e2')}`,
    'endpoint /calico/host/h2/workload/docker/c-e2/',
    `assignment ${ipAssignmentKey('198.19.0.2')}`,
  ];

  it.each<[string, Step[], string[][]]>([
    ['alive: nothing, ever', [{ t: 0, kvs: [...h1, alive('h2'), ...h2] }, { t: 600, kvs: [...h1, alive('h2'), ...h2] }], [[], []]],
    ['lease gone less than the grace: nothing', [{ t: 0, kvs: [...h1, ...h2] }, { t: 59.9, kvs: [...h1, ...h2] }], [[], []]],
    ['lease gone for the grace: memberships of its endpoints, then its workloads, then its reservations; bird_ip stays', [{ t: 0, kvs: [...h1, ...h2] }, { t: 60, kvs: [...h1, ...h2] }], [[], h2Deleted]],
    ['the host comes back within the grace: nothing', [{ t: 0, kvs: [...h1, ...h2] }, { t: 30, kvs: [...h1, alive('h2'), ...h2] }, { t: 90, kvs: [...h1, ...h2] }], [[], [], []]],
    [
      'a reservation held by a host that has nothing else goes too',
      [{ t: 0, kvs: [...h1, reservation('198.19.0.7', 'h7', 'e7')] }, { t: 60, kvs: [...h1, reservation('198.19.0.7', 'h7', 'e7')] }],
      [[], [`assignment ${ipAssignmentKey('198.19.0.7')}`]],
    ],
    ['a reservation that does not decode is left alone', [{ t: 0, kvs: [...h1, [ipAssignmentKey('198.19.0.8'), '{'] as KV] }, { t: 600, kvs: [...h1, [ipAssignmentKey('198.19.0.8'), '{'] as KV] }], [[], []]],
    ['a dead host with only bird_ip has nothing to collect', [{ t: 0, kvs: [...h1, [birdIpKey('h3'), encodeBirdIp('198.18.0.3')]] }, { t: 600, kvs: [...h1, [birdIpKey('h3'), encodeBirdIp('198.18.0.3')]] }], [[], []]],
  ])('%s', (_name, steps, want) => {
    expect(run(steps)).toEqual(want);
  });

  it('keeps the membership of an endpoint that also lives on a live host', () => {
    const kvs: KV[] = [...h1, ...endpoint('h2', 'e1', '198.19.0.1'), member('g1', 'e1')];
    expect(run([{ t: 0, kvs }, { t: 60, kvs }])).toEqual([[], ['endpoint /calico/host/h2/workload/docker/c-e1/']]);
  });

  it('says why, naming the host and how long', () => {
    let tracker = emptyTracker();
    const kvs = new Map([...h1, ...h2]);
    tracker = decideGc({ kvs, inSync: true, epoch: 0, now: 0, graceMs: GRACE }, tracker).tracker;
    const d = decideGc({ kvs, inSync: true, epoch: 0, now: 61_000, graceMs: GRACE }, tracker);
    expect(d.actions.find((a) => a.kind === 'endpoint')?.reason).toBe('workload of dead host: host h2 has no liveness key /calico/host/h2/alive (lease expired), continuously for 61.0 s in sync');
  });
});

describe('decideGc: an etcd blip never counts as absence', () => {
  const kvs = [...h1, lostMember];
  it.each<[string, Step[], string[][]]>([
    ['out of sync: nothing is decided', [{ t: 0, kvs, inSync: false }, { t: 600, kvs, inSync: false }], [[], []]],
    [
      'out of sync in between: every timer starts over when back in sync',
      [{ t: 0, kvs }, { t: 30, kvs, inSync: false, epoch: 1 }, { t: 40, kvs, epoch: 1 }, { t: 70, kvs, epoch: 1 }, { t: 100, kvs, epoch: 1 }],
      [[], [], [], [], [DEL_LOST]],
    ],
    ['a blip between two rounds (epoch changed, both rounds in sync): timers start over', [{ t: 0, kvs }, { t: 50, kvs, epoch: 1 }, { t: 60, kvs, epoch: 1 }, { t: 110, kvs, epoch: 1 }], [[], [], [], [DEL_LOST]]],
    [
      'a dead host across a blip: only a full grace after it',
      [{ t: 0, kvs: [...h1, ...endpoint('h2', 'e2', '198.19.0.2')] }, { t: 59, kvs: [...h1, ...endpoint('h2', 'e2', '198.19.0.2')], inSync: false, epoch: 1 }, { t: 61, kvs: [...h1, ...endpoint('h2', 'e2', '198.19.0.2')], epoch: 1 }, { t: 121, kvs: [...h1, ...endpoint('h2', 'e2', '198.19.0.2')], epoch: 1 }],
      [[], [], [], ['endpoint /calico/host/h2/workload/docker/c-e2/']],
    ],
  ])('%s', (_name, steps, want) => {
    expect(run(steps)).toEqual(want);
  });

  it('reports when timing starts and ends, for the log', () => {
    const first = decideGc({ kvs: new Map(kvs), inSync: true, epoch: 0, now: 1_000, graceMs: GRACE }, emptyTracker());
    expect(first.started).toEqual([{ subject: `membership:${groupMemberKey('g1', 'gone')}`, reason: 'endpoint gone exists on no host', dueAt: 61_000 }]);
    const later = decideGc({ kvs: new Map(h1), inSync: true, epoch: 0, now: 2_000, graceMs: GRACE }, first.tracker);
    expect(later.ended).toEqual([`membership:${groupMemberKey('g1', 'gone')}`]);
    expect(later.tracker.since.size).toBe(0);
  });
});
