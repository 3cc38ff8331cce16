import { beforeAll, describe, expect, it } from 'vitest';
import type { DevCluster } from '@calico/devcluster';
import { waitFor } from '@calico/testkit';
import { encodeRule, groupPrefix, groupRuleKey } from '@calico/keyspace';
import { hostIfName } from '@calico/node';
import {
  clusterForSuite,
  connects,
  expectMatrix,
  pings,
  startNodeProgrammed,
  startWorkload,
  writeGroup,
  type Workload,
} from './helpers.js';
import { expectEachGuardStops, inside, ruleGuard, udpArrives } from './spoof.js';
import { Listener, workloadMac } from './traffic.js';

/** IPv6 endpoints get the same policy, in ip6tables and IPv6 ipsets, and IPv4 rules never apply to them. */
describe('policy for IPv6 endpoints on one host', () => {
  let cluster: DevCluster;
  let A: Workload;
  let B: Workload;
  let C: Workload;

  const started = clusterForSuite({ hosts: ['h1'] });
  beforeAll(async () => {
    cluster = started();
    const h1 = cluster.host('h1');
    A = await startWorkload(cluster, h1, 'A', 'fd00:198:19:1::a');
    B = await startWorkload(cluster, h1, 'B', 'fd00:198:19:1::b');
    C = await startWorkload(cluster, h1, 'C', 'fd00:198:19:1::c');
  });

  it('nothing reaches anything before groups', async () => {
    await expectMatrix(cluster, [A, B, C], []);
  });

  it('an IPv4-only rule set opens nothing for IPv6 endpoints', async () => {
    // With an IPv6 rule beside them the group does open; taking it away leaves the IPv4 rules alone.
    await writeGroup(cluster, {
      groupId: 'g4',
      members: [A.endpointId, B.endpointId, C.endpointId],
      inbound: [{ cidr: '0.0.0.0/0' }, { cidr: '::/0' }],
      outbound: [{ cidr: '0.0.0.0/0' }, { cidr: '::/0' }],
    });
    await expectMatrix(cluster, [A, B, C], ['A->B', 'A->C', 'B->A', 'B->C', 'C->A', 'C->B']);
    await cluster.ds.delete(groupRuleKey('g4', 'inbound', 2));
    await cluster.ds.delete(groupRuleKey('g4', 'outbound', 2));
    await expectMatrix(cluster, [A, B, C], []);
    await cluster.ds.deleteDir(groupPrefix('g4'));
  });

  it('groups A+C and B: A and C reach each other over IPv6, B is isolated', async () => {
    await writeGroup(cluster, {
      groupId: 'g-ac',
      members: [A.endpointId, C.endpointId],
      inbound: [{ group: 'g-ac' }],
      outbound: [{ group: 'g-ac' }, { cidr: '::/0' }],
    });
    await writeGroup(cluster, {
      groupId: 'g-b',
      members: [B.endpointId],
      inbound: [{ group: 'g-b' }],
      outbound: [{ group: 'g-b' }, { cidr: '::/0' }],
    });
    await expectMatrix(cluster, [A, B, C], ['A->C', 'C->A']);
    const sets = await cluster.host('h1').ns.execOk(['ipset', 'save']);
    expect(sets).toMatch(/create cali6g-\S+ hash:ip family inet6/);
    expect(sets).toContain('fd00:198:19:1::a');
    expect(sets).not.toMatch(/create cali4g-/);
  });

  it('a tcp/80 rule over IPv6 opens that port only', async () => {
    await cluster.ds.put(
      groupRuleKey('g-b', 'inbound', 2),
      encodeRule({ cidr: 'fd00:198:19::/48', protocol: 'tcp', port: 80 }),
    );
    await waitFor('tcp/80 open on B over IPv6', () => connects(A, B.addr, 80), 15_000);
    expect(await connects(A, B.addr, 8080)).toBe(false);
    expect(await pings(A, B.addr)).toBe(false);
    // B does serve 8080: a rule for it opens it too.
    await cluster.ds.put(
      groupRuleKey('g-b', 'inbound', 3),
      encodeRule({ cidr: 'fd00:198:19::/48', protocol: 'tcp', port: 8080 }),
    );
    await waitFor('tcp/8080 open on B over IPv6', () => connects(A, B.addr, 8080), 15_000);
    await cluster.ds.delete(groupRuleKey('g-b', 'inbound', 3));
  });

  it('a spoofed IPv6 source or MAC is dropped: each guard alone stops what passes without them', async () => {
    const h1 = cluster.host('h1').ns;
    // C takes anything from anywhere, so that only the guards can stop a spoofed source.
    await writeGroup(cluster, {
      groupId: 'g-all',
      members: [A.endpointId, B.endpointId, C.endpointId],
      inbound: [{ cidr: '::/0' }],
      outbound: [{ cidr: '::/0' }],
    });
    await waitFor('A reaches C', () => pings(A, C.addr), 15_000);
    const before = await h1.execOk(['ip6tables-save']);
    const listener = await Listener.start(cluster, C, C.addr, [5000]);
    const to = { addr: C.addr, listener };
    const fw = `cali-fw-${hostIfName(A.endpointId).slice(4)}`;
    // The node is stopped: the kernel keeps its rules, and nothing repairs what the test takes out.
    await cluster.stopNode('h1');
    try {
      expect(await udpArrives(cluster, A, A.addr, to), "a datagram from A's own address arrives").toBe(true);
      await inside(cluster, A, ['ip', 'addr', 'add', 'fd00:198:19:1::99/128', 'dev', 'eth0', 'nodad']);
      await expectEachGuardStops(cluster, { from: A, src: 'fd00:198:19:1::99', to }, [
        ruleGuard(h1, 6, 'filter', fw, /! -s fd00:198:19:1::a\/128 /),
        ruleGuard(h1, 6, 'raw', 'cali-PREROUTING', /-m rpfilter --invert /),
      ]);
      await inside(cluster, A, ['ip', 'addr', 'del', 'fd00:198:19:1::99/128', 'dev', 'eth0']);
      const mac = await workloadMac(cluster, A);
      await inside(cluster, A, ['ip', 'link', 'set', 'eth0', 'address', '0e:00:00:00:00:99']);
      await expectEachGuardStops(cluster, { from: A, src: A.addr, to }, [
        ruleGuard(h1, 6, 'filter', fw, /--mac-source /),
      ]);
      await inside(cluster, A, ['ip', 'link', 'set', 'eth0', 'address', mac]);
    } finally {
      await listener.stop();
      await startNodeProgrammed(cluster, 'h1');
    }
    const strip = (t: string) =>
      t
        .split('\n')
        .filter((l) => !l.startsWith('#'))
        .join('\n');
    expect(strip(await h1.execOk(['ip6tables-save']))).toBe(strip(before));
    expect(await pings(A, C.addr)).toBe(true);
  });
});
