/**
 * The reference scenario from the seed's getting-started guide: host1 runs A, B, C; host2 runs
 * D, E. Groups A+C+E, B and D are made the way the original `calicoctl addgroup` made them.
 */
import { describe, expect, it } from 'vitest';
import { explain } from './explain.js';
import { PolicyModel } from './model.js';
import { policyFixtures as fx, type KeyValue } from './testing.js';

const names = ['A', 'B', 'C', 'D', 'E'] as const;
const ip = (i: number): string => `198.19.0.${i + 1}`;
const endpoints: KeyValue[] = names.flatMap((n, i) =>
  fx.endpoint({ host: i < 3 ? 'host1' : 'host2', endpointId: n, addrs: [ip(i)] }),
);
const groups: KeyValue[] = [
  ...fx.group(fx.addgroup('g-ace', ['A', 'C', 'E'], 'ACE')),
  ...fx.group(fx.addgroup('g-b', ['B'], 'B')),
  ...fx.group(fx.addgroup('g-d', ['D'], 'D')),
];

/** "src->dst" for every ordered pair of distinct endpoints that explain() allows. */
function reachable(m: PolicyModel, by: 'id' | 'addr'): string[] {
  const out: string[] = [];
  names.forEach((src, i) => {
    names.forEach((dst, j) => {
      if (i === j) return;
      const q = by === 'id' ? { src, dst } : { src: ip(i), dst: ip(j) };
      if (explain(m, q).allowed) out.push(`${src}->${dst}`);
    });
  });
  return out;
}

describe('getting started', () => {
  it('before any group exists no container reaches any other', () => {
    const m = fx.model(endpoints);
    expect(reachable(m, 'id')).toEqual([]);
    expect(explain(m, { src: 'A', dst: 'C' }).reason).toBe('denied: endpoint A is in no group');
  });

  it.each(['id', 'addr'] as const)('with groups A+C+E, B, D only A, C and E reach each other (asked by %s)', (by) => {
    const m = fx.model([...endpoints, ...groups]);
    expect(reachable(m, by)).toEqual(['A->C', 'A->E', 'C->A', 'C->E', 'E->A', 'E->C']);
  });

  it('explains why A reaches C and E but neither B nor D', () => {
    const m = fx.model([...endpoints, ...groups]);
    expect(explain(m, { src: 'A', dst: 'C' }).reason).toBe(
      'allowed: outbound rule 1 of group ACE (g-ace) and inbound rule 1 of group ACE (g-ace)',
    );
    expect(explain(m, { src: 'A', dst: 'E' }).dst).toEqual({ addr: '198.19.0.5', endpointId: 'E' });
    // A's 0.0.0.0/0 outbound rule lets the packet leave; B's inbound only admits B's own members.
    const toB = explain(m, { src: 'A', dst: 'B' });
    expect(toB.outbound?.decidedBy).toMatchObject({ groupId: 'g-ace', index: 2 });
    expect(toB.reason).toBe('denied: no inbound rule of groups [B (g-b)] of B matches; default deny');
    expect(explain(m, { src: 'B', dst: 'D' }).reason).toBe(
      'denied: no inbound rule of groups [D (g-d)] of D matches; default deny',
    );
  });

  it('members may leave for the outside world over IPv4, but nothing outside may come in', () => {
    const m = fx.model([...endpoints, ...groups]);
    for (const n of names) {
      expect(explain(m, { src: n, dst: '203.0.113.1', protocol: 'tcp', port: 443 }).allowed).toBe(true);
      expect(explain(m, { src: '203.0.113.1', dst: n }).allowed).toBe(false);
    }
  });

  it('the matrix is the same whatever order the keys arrive in', () => {
    const all = fx.puts([...endpoints, ...groups]);
    for (let seed = 1; seed <= 20; seed++) {
      const m = new PolicyModel();
      m.applyAll(fx.shuffle(all, seed));
      expect(reachable(m, 'id')).toEqual(['A->C', 'A->E', 'C->A', 'C->E', 'E->A', 'E->C']);
    }
  });

  it('removing E from the group cuts it off again', () => {
    const m = fx.model([...endpoints, ...groups]);
    m.apply({ type: 'delete', key: '/calico/network/group/g-ace/member/E' });
    expect(reachable(m, 'id')).toEqual(['A->C', 'C->A']);
  });
});
