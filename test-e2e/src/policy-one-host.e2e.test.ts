import { beforeAll, describe, expect, it } from 'vitest';
import type { DevCluster } from '@calico/devcluster';
import { waitFor } from '@calico/testkit';
import { groupPrefix, groupMemberKey, groupRuleKey, encodeRule } from '@calico/keyspace';
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
import { expectEachGuardStops, inside, rpFilterGuard, ruleGuard, udpArrives } from './spoof.js';
import { Listener, workloadMac } from './traffic.js';

/**
 * The seed's getting-started scenario on one host, then the finer points of policy, all on
 * real iptables and ipset in a namespace host with the real node.
 */
describe('policy on one host', () => {
  let cluster: DevCluster;
  let A: Workload;
  let B: Workload;
  let C: Workload;

  const started = clusterForSuite({ hosts: ['h1'], logLevel: 'debug' });
  beforeAll(async () => {
    cluster = started();
    const h1 = cluster.host('h1');
    A = await startWorkload(cluster, h1, 'A', '198.19.1.1');
    B = await startWorkload(cluster, h1, 'B', '198.19.1.2');
    C = await startWorkload(cluster, h1, 'C', '198.19.1.3');
  });

  const h1 = () => cluster.host('h1');
  const kernel = async () => ({
    iptables: await h1().ns.execOk(['iptables-save']),
    ipsets: await h1().ns.execOk(['ipset', 'save']),
  });

  it('nothing reaches anything before any group exists', async () => {
    await expectMatrix(cluster, [A, B, C], []);
  });

  it('after groups A+C and B: A and C reach each other, B reaches no one and no one reaches B', async () => {
    await writeGroup(cluster, {
      groupId: 'g-ac',
      name: 'AC',
      members: [A.endpointId, C.endpointId],
      inbound: [{ group: 'g-ac' }],
      outbound: [{ group: 'g-ac' }, { cidr: '0.0.0.0/0' }],
    });
    await writeGroup(cluster, {
      groupId: 'g-b',
      name: 'B',
      members: [B.endpointId],
      inbound: [{ group: 'g-b' }],
      outbound: [{ group: 'g-b' }, { cidr: '0.0.0.0/0' }],
    });
    await expectMatrix(cluster, [A, B, C], ['A->C', 'C->A']);
  });

  it('a tcp/port rule opens that port only, shown with real TCP connections', async () => {
    // B's group lets anyone reach tcp/80 on B.
    await cluster.ds.put(
      groupRuleKey('g-b', 'inbound', 2),
      encodeRule({ cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 }),
    );
    await waitFor('tcp/80 open on B', () => connects(A, B.addr, 80), 15_000);
    expect(await connects(A, B.addr, 8080)).toBe(false);
    expect(await pings(A, B.addr)).toBe(false);
    expect(await connects(C, B.addr, 80)).toBe(true);
    // B does serve 8080: a rule for it opens it too.
    await cluster.ds.put(
      groupRuleKey('g-b', 'inbound', 3),
      encodeRule({ cidr: '0.0.0.0/0', protocol: 'tcp', port: 8080 }),
    );
    await waitFor('tcp/8080 open on B', () => connects(A, B.addr, 8080), 15_000);
    await cluster.ds.delete(groupRuleKey('g-b', 'inbound', 2));
    await cluster.ds.delete(groupRuleKey('g-b', 'inbound', 3));
    await waitFor('tcp/80 closed again', async () => !(await connects(A, B.addr, 80)), 15_000);
    expect(await connects(A, B.addr, 8080)).toBe(false);
  });

  it('membership add and remove take effect, and the kernel returns to the same state', async () => {
    const before = await kernel();
    await cluster.ds.put(groupMemberKey('g-ac', B.endpointId), '');
    // B is now in both groups: it may talk to A and C and they to it.
    await expectMatrix(cluster, [A, B, C], ['A->B', 'A->C', 'B->A', 'B->C', 'C->A', 'C->B']);
    await cluster.ds.delete(groupMemberKey('g-ac', B.endpointId));
    await expectMatrix(cluster, [A, B, C], ['A->C', 'C->A']);
    const after = await kernel();
    // Same chains as before, and the same set contents: the change came and went.
    expect(strip(after.iptables)).toBe(strip(before.iptables));
    expect(sortLines(after.ipsets)).toEqual(sortLines(before.ipsets));
  });

  it('deleting a group takes its rules away and leaves no chain or ipset of it behind', async () => {
    // Group sets (cali4g-, cali6g-); the control plane's sets stay whatever the groups.
    const sets = async () => (await kernel()).ipsets.split('\n').filter((l) => /^create cali[46]g-/.test(l)).length;
    // What the deletes below must take away.
    await expectMatrix(cluster, [A, B, C], ['A->C', 'C->A']);
    // g-ac and g-b, IPv4 only: no workload here has an IPv6 address, so no rule needs an IPv6 set.
    expect(await sets()).toBe(2);
    // The seed's "recursively delete the directory".
    await cluster.ds.deleteDir(groupPrefix('g-ac'));
    await expectMatrix(cluster, [A, B, C], []);
    await waitFor("the deleted group's ipset gone", async () => (await sets()) === 1, 10_000);
    await cluster.ds.deleteDir(groupPrefix('g-b'));
    await waitFor('no group ipsets at all', async () => (await sets()) === 0, 10_000);
  });

  it('a spoofed source address or MAC is dropped: each guard alone stops what passes without them', async () => {
    await writeGroup(cluster, {
      groupId: 'g-all',
      members: [A.endpointId, B.endpointId, C.endpointId],
      inbound: [{ cidr: '0.0.0.0/0' }],
      outbound: [{ cidr: '0.0.0.0/0' }],
    });
    await waitFor('A reaches B', () => pings(A, B.addr), 15_000);
    const before = await kernel();
    const listener = await Listener.start(cluster, B, B.addr, [5000]);
    const to = { addr: B.addr, listener };
    const hostIf = hostIfName(A.endpointId);
    const fw = `cali-fw-${hostIf.slice(4)}`;
    // The node is stopped: the kernel keeps its rules, and nothing repairs what the test takes out.
    await cluster.stopNode('h1');
    try {
      expect(await udpArrives(cluster, A, A.addr, to), "a datagram from A's own address arrives").toBe(true);
      // The container has no NET_ADMIN: a second address is given to its eth0 from outside.
      await inside(cluster, A, ['ip', 'addr', 'add', '198.19.1.99/32', 'dev', 'eth0']);
      await expectEachGuardStops(cluster, { from: A, src: '198.19.1.99', to }, [
        ruleGuard(h1().ns, 4, 'filter', fw, /! -s 198\.19\.1\.1\/32 /),
        rpFilterGuard(h1().ns, hostIf),
      ]);
      await inside(cluster, A, ['ip', 'addr', 'del', '198.19.1.99/32', 'dev', 'eth0']);
      // A's own address from another MAC.
      const mac = await workloadMac(cluster, A);
      await inside(cluster, A, ['ip', 'link', 'set', 'eth0', 'address', '0e:00:00:00:00:99']);
      await expectEachGuardStops(cluster, { from: A, src: A.addr, to }, [
        ruleGuard(h1().ns, 4, 'filter', fw, /--mac-source /),
      ]);
      await inside(cluster, A, ['ip', 'link', 'set', 'eth0', 'address', mac]);
    } finally {
      await listener.stop();
      await startNodeProgrammed(cluster, 'h1');
    }
    expect(strip((await kernel()).iptables)).toBe(strip(before.iptables));
    expect(await pings(A, B.addr)).toBe(true);
  });

  it('an agent restart changes no verdict and leaves no duplicate rule', async () => {
    const before = await kernel();
    await cluster.stopNode('h1');
    // While the node is down the kernel keeps its rules (fail static): A still reaches B.
    expect(await pings(A, B.addr)).toBe(true);
    await startNodeProgrammed(cluster, 'h1');
    expect(await pings(A, B.addr)).toBe(true);
    const after = await kernel();
    expect(strip(after.iptables)).toBe(strip(before.iptables));
    expect(sortLines(after.ipsets)).toEqual(sortLines(before.ipsets));
    const hooks = after.iptables.split('\n').filter((l) => l.includes('cali:hook'));
    expect(hooks).toHaveLength(2);
  });
});

/** iptables-save without counters and timestamps. */
function strip(text: string): string {
  return text
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, ''))
    .join('\n');
}

function sortLines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/ initval 0x[0-9a-f]+/, ''))
    .filter(Boolean)
    .sort();
}
