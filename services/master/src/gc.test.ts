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
import { decideGc, emptyTracker, type GcDecision, type GcTracker } from './gc.js';

type KV = [string, string];
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

const alive = (h: string): KV => [hostAliveKey(h), encodeHostAlive({ since: '2026-01-01T00:00:00.000Z' })];
const member = (g: string, e: string): KV => [groupMemberKey(g, e), ''];
const endpoint = (host: string, endpointId: string, addr: string): KV[] => [
  ...policyFixtures.endpoint({ host, endpointId, addrs: [addr] }).map((kv): KV => [kv.key, kv.value]),
  [workloadNameKey(host, `c-${endpointId}`), encodeWorkloadName(`name-${endpointId}`)],
];
const reservation = (addr: string, host: string, endpointId: string): KV => [
  ipAssignmentKey(addr),
  encodeIpAssignment({ host, containerId: `c-${endpointId}`, endpointId }),
];

/** A round at time t (ms), with these keys, in sync or not, in this sync epoch. */
interface Step {
  t: number;
  kvs: KV[];
  inSync?: boolean;
  epoch?: number;
}

/** Runs the rounds in order with --gc-dead-hosts-after=after (null: off); returns each round's decision. */
function run(steps: Step[], after: number | null): GcDecision[] {
  let tracker: GcTracker = emptyTracker();
  return steps.map((s) => {
    const d = decideGc(
      { kvs: new Map(s.kvs), inSync: s.inSync ?? true, epoch: s.epoch ?? 0, now: s.t, deadHostsAfterMs: after },
      tracker,
    );
    tracker = d.tracker;
    return d;
  });
}
const removals = (ds: GcDecision[]) => ds.map((d) => d.actions.map((a) => a.host));

const h1 = [
  alive('h1'),
  ...endpoint('h1', 'e1', '198.19.0.1'),
  reservation('198.19.0.1', 'h1', 'e1'),
  member('g1', 'e1'),
];
const h2 = [
  [birdIpKey('h2'), encodeBirdIp('198.18.0.2')] as KV,
  ...endpoint('h2', 'e2', '198.19.0.2'),
  reservation('198.19.0.2', 'h2', 'e2'),
  member('g1', 'e2'),
  member('g2', 'e2'),
];
const up = [...h1, alive('h2'), ...h2];
const down = [...h1, ...h2];

describe('decideGc: a host that is down is not a host that is gone', () => {
  it('without --gc-dead-hosts-after, a host down for thirty days keeps everything; the same rounds with it remove the host (control)', () => {
    const steps: Step[] = [
      { t: 0, kvs: up },
      { t: 10_000, kvs: down },
      { t: 10_000 + MINUTE, kvs: down },
      { t: 30 * DAY, kvs: down },
    ];
    const off = run(steps, null);
    expect(removals(off)).toEqual([[], [], [], []]);
    expect(off.flatMap((d) => d.started)).toEqual([]);
    // It is reported down, since the round it was seen to go.
    expect(off[3]!.tracker.hosts.get('h2')).toEqual({ up: false, since: 10_000 });
    expect(off[1]!.changed).toEqual([{ host: 'h2', first: false, up: false, since: 10_000 }]);
    const on = run(steps, 10 * MINUTE);
    expect(removals(on)).toEqual([[], [], [], ['h2']]);
  });

  it('with --gc-dead-hosts-after, removes once the host has been down that long, and not a round before', () => {
    const after = 10 * MINUTE;
    const d = run(
      [
        { t: 0, kvs: up },
        { t: 1_000, kvs: down },
        { t: 1_000 + after - 1, kvs: down },
        { t: 1_000 + after, kvs: down },
      ],
      after,
    );
    expect(removals(d)).toEqual([[], [], [], ['h2']]);
    expect(d[1]!.started).toEqual([
      { subject: 'host:h2', reason: 'host h2 has no liveness key /calico/host/h2/alive', dueAt: 1_000 + after },
    ]);
    expect(d[3]!.actions[0]!.reason).toBe(
      'host h2 has no liveness key /calico/host/h2/alive, continuously for 600.0 s in sync (--gc-dead-hosts-after)',
    );
    // Acted on, its timer is dropped: were it still there next round, it would start over.
    expect(d[3]!.tracker.since.size).toBe(0);
  });

  it('times from its own rounds, not from when the host went down: a host already down when the master starts gets the whole duration', () => {
    const after = 10 * MINUTE;
    // The master's first look is at t = 5 days; the host went down long before that.
    const d = run(
      [
        { t: 5 * DAY, kvs: down },
        { t: 5 * DAY + after - 1, kvs: down },
        { t: 5 * DAY + after, kvs: down },
      ],
      after,
    );
    expect(removals(d)).toEqual([[], [], ['h2']]);
    expect(d[0]!.changed).toEqual([
      { host: 'h1', first: true, up: true, since: null },
      { host: 'h2', first: true, up: false, since: null },
    ]);
  });

  it('a host that comes back before the duration keeps everything, and its timer ends', () => {
    const d = run(
      [
        { t: 0, kvs: down },
        { t: 5 * MINUTE, kvs: up },
        { t: 20 * MINUTE, kvs: up },
      ],
      10 * MINUTE,
    );
    expect(removals(d)).toEqual([[], [], []]);
    expect(d[1]!.ended).toEqual(['host:h2']);
    expect(d[1]!.changed).toEqual([{ host: 'h2', first: false, up: true, since: 5 * MINUTE }]);
  });

  it('an etcd blip restarts the timer; the host states it reports stay as they were', () => {
    const after = 10 * MINUTE;
    const steps: Step[] = [
      { t: 0, kvs: up },
      { t: MINUTE, kvs: down },
      // Out of sync, the master's copy may be stale: here it even shows h2 up. Nothing changes.
      { t: 9 * MINUTE, kvs: up, inSync: false, epoch: 1 },
      { t: 12 * MINUTE, kvs: down, epoch: 1 },
      { t: 12 * MINUTE + after - 1, kvs: down, epoch: 1 },
      { t: 12 * MINUTE + after, kvs: down, epoch: 1 },
    ];
    const d = run(steps, after);
    expect(removals(d)).toEqual([[], [], [], [], [], ['h2']]);
    expect(d[2]!.tracker.hosts.get('h2')).toEqual({ up: false, since: MINUTE });
    expect(d[3]!.tracker.hosts.get('h2')).toEqual({ up: false, since: MINUTE });
    expect(d[3]!.changed).toEqual([]);
    // A blip that fell between two rounds (both in sync, the epoch moved) restarts it too.
    const between = run(
      [
        { t: 0, kvs: down },
        { t: after - 1, kvs: down, epoch: 1 },
        { t: after, kvs: down, epoch: 1 },
        { t: 2 * after - 1, kvs: down, epoch: 1 },
      ],
      after,
    );
    expect(removals(between)).toEqual([[], [], [], ['h2']]);
  });

  it('a live host is never removed; a down host known only by a reservation is, with the option', () => {
    const kvs = [...h1, reservation('198.19.0.7', 'h7', 'e7')];
    expect(
      removals(
        run(
          [
            { t: 0, kvs },
            { t: 365 * DAY, kvs },
          ],
          MINUTE,
        ),
      ),
    ).toEqual([[], ['h7']]);
    expect(
      removals(
        run(
          [
            { t: 0, kvs },
            { t: 365 * DAY, kvs },
          ],
          null,
        ),
      ),
    ).toEqual([[], []]);
  });
});

describe('decideGc: a membership whose endpoint exists nowhere', () => {
  const ghost = member('g1', 'ghost');

  it('is kept however long it dangles, and reported once, when first seen', () => {
    const kvs = [...h1, ghost];
    const d = run(
      [
        { t: 0, kvs },
        { t: MINUTE, kvs },
        { t: 365 * DAY, kvs },
      ],
      MINUTE,
    );
    expect(removals(d)).toEqual([[], [], []]);
    expect(d.map((x) => x.orphansFound.map((m) => m.key))).toEqual([[groupMemberKey('g1', 'ghost')], [], []]);
    expect(d[0]!.orphansFound).toEqual([{ key: groupMemberKey('g1', 'ghost'), groupId: 'g1', endpointId: 'ghost' }]);
  });

  it('is no orphan once its endpoint appears, nor when the endpoint lives on a host that is down', () => {
    const d = run(
      [
        { t: 0, kvs: [...h1, member('g1', 'late')] },
        { t: 1, kvs: [...h1, ...endpoint('h1', 'late', '198.19.0.9'), member('g1', 'late')] },
        { t: 2, kvs: [...down, member('g1', 'late')] },
      ],
      null,
    );
    expect(d.map((x) => x.orphansFound.map((m) => m.endpointId))).toEqual([['late'], [], ['late']]);
    expect(d[1]!.tracker.orphans.size).toBe(0);
    // e2 lives on h2, which is down: its memberships are not orphans.
    expect([...d[2]!.tracker.orphans]).toEqual([groupMemberKey('g1', 'late')]);
  });
});

describe('decideGc: keys whose host segment is not a host name', () => {
  it('make no host: none is reported down or removed, so the hosts after it in a round are still collected', () => {
    const after = 10 * MINUTE;
    // "-fz" sorts before "h2": removing it would fail (not a host name) and end the round there.
    const bad: KV[] = [
      ['/calico/host/-fz/bird_ip', '198.18.0.9'],
      ['/calico/host/FZ A/workload/docker/c/endpoint/e/state', 'active'],
    ];
    const rounds = (extra: KV[]): Step[] => [
      { t: 0, kvs: [...up, ...extra] },
      { t: 1_000, kvs: [...down, ...extra] },
      { t: 1_000 + after, kvs: [...down, ...extra] },
    ];
    const d = run(rounds(bad), after);
    expect(removals(d)).toEqual([[], [], ['h2']]);
    expect(d[0]!.changed.map((c) => c.host)).toEqual(['h1', 'h2']);
    // The control: the same keys under a host name make a host that is down, and removed.
    const named: KV[] = [['/calico/host/a-fz/bird_ip', '198.18.0.9']];
    const c = run(rounds(named), after);
    expect(removals(c)).toEqual([[], [], ['a-fz', 'h2']]);
  });
});
