import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { requireRoot, waitFor } from '@calico/testkit';
import { groupPrefix, groupMemberKey, groupRuleKey, encodeRule } from '@calico/keyspace';
import { connects, expectMatrix, pings, startWorkload, writeGroup, type Workload } from './helpers.js';

/**
 * The seed's getting-started scenario on one host, then the finer points of policy, all on
 * real iptables and ipset in a namespace host with the real node.
 */
describe('policy on one host', () => {
  let cluster: DevCluster;
  let A: Workload;
  let B: Workload;
  let C: Workload;
  let failed = false;

  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start({ hosts: ['h1'], logLevel: 'debug' });
    const h1 = cluster.host('h1');
    A = await startWorkload(cluster, h1, 'A', '198.19.1.1');
    B = await startWorkload(cluster, h1, 'B', '198.19.1.2');
    C = await startWorkload(cluster, h1, 'C', '198.19.1.3');
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) console.error(await cluster.dump());
    await cluster?.stop();
  });

  const h1 = () => cluster.host('h1');
  const kernel = async () => ({
    iptables: await h1().ns.execOk(['iptables-save']),
    ipsets: await h1().ns.execOk(['ipset', 'save']),
  });

  it('nothing reaches anything before any group exists', async () => {
    await expectMatrix([A, B, C], []);
  });

  it('after groups A+C and B: A and C reach each other, B reaches no one and no one reaches B', async () => {
    await writeGroup(cluster, { groupId: 'g-ac', name: 'AC', members: [A.endpointId, C.endpointId], inbound: [{ group: 'g-ac' }], outbound: [{ group: 'g-ac' }, { cidr: '0.0.0.0/0' }] });
    await writeGroup(cluster, { groupId: 'g-b', name: 'B', members: [B.endpointId], inbound: [{ group: 'g-b' }], outbound: [{ group: 'g-b' }, { cidr: '0.0.0.0/0' }] });
    await expectMatrix([A, B, C], ['A->C', 'C->A']);
  });

  it('a tcp/port rule opens that port only, shown with real TCP connections', async () => {
    // B's group lets anyone reach tcp/80 on B.
    await cluster.ds.put(groupRuleKey('g-b', 'inbound', 2), encodeRule({ cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 }));
    await waitFor('tcp/80 open on B', () => connects(A, B.addr, 80), 15_000);
    expect(await connects(A, B.addr, 8080)).toBe(false);
    expect(await pings(A, B.addr)).toBe(false);
    expect(await connects(C, B.addr, 80)).toBe(true);
    await cluster.ds.delete(groupRuleKey('g-b', 'inbound', 2));
    await waitFor('tcp/80 closed again', async () => !(await connects(A, B.addr, 80)), 15_000);
  });

  it('membership add and remove take effect, and the kernel returns to the same state', async () => {
    const before = await kernel();
    await cluster.ds.put(groupMemberKey('g-ac', B.endpointId), '');
    // B is now in both groups: it may talk to A and C and they to it.
    await expectMatrix([A, B, C], ['A->B', 'A->C', 'B->A', 'B->C', 'C->A', 'C->B']);
    await cluster.ds.delete(groupMemberKey('g-ac', B.endpointId));
    await expectMatrix([A, B, C], ['A->C', 'C->A']);
    const after = await kernel();
    // Same chains as before, and the same set contents: the change came and went.
    expect(strip(after.iptables)).toBe(strip(before.iptables));
    expect(sortLines(after.ipsets)).toEqual(sortLines(before.ipsets));
  });

  it('deleting a group takes its rules away and leaves no chain or ipset of it behind', async () => {
    const sets = async () => (await kernel()).ipsets.split('\n').filter((l) => l.startsWith('create cali')).length;
    // g-ac and g-b, IPv4 only: no workload here has an IPv6 address, so no rule needs an IPv6 set.
    expect(await sets()).toBe(2);
    // The seed's "recursively delete the directory".
    await cluster.ds.deleteDir(groupPrefix('g-ac'));
    await expectMatrix([A, B, C], []);
    await waitFor('the deleted group\'s ipset gone', async () => (await sets()) === 1, 10_000);
    await cluster.ds.deleteDir(groupPrefix('g-b'));
    await waitFor('no group ipsets at all', async () => !(await kernel()).ipsets.includes('create cali'), 10_000);
  });

  it('a spoofed source address is dropped', async () => {
    await writeGroup(cluster, { groupId: 'g-all', members: [A.endpointId, B.endpointId, C.endpointId], inbound: [{ cidr: '0.0.0.0/0' }], outbound: [{ cidr: '0.0.0.0/0' }] });
    await waitFor('A reaches B', () => pings(A, B.addr), 15_000);
    // The container has no NET_ADMIN; give eth0 a second address from outside and send from it.
    const pid = (await h1().docker(['inspect', '-f', '{{.State.Pid}}', A.id])).stdout.trim();
    const { execOk } = await import('@calico/testkit');
    await execOk(['nsenter', `--net=/proc/${pid}/ns/net`, 'ip', 'addr', 'add', '198.19.1.99/32', 'dev', 'eth0']);
    const spoofed = await A.exec(['ping', '-c', '2', '-W', '1', '-I', '198.19.1.99', B.addr]);
    expect(spoofed.code).not.toBe(0);
    expect(await pings(A, B.addr)).toBe(true);
    await execOk(['nsenter', `--net=/proc/${pid}/ns/net`, 'ip', 'addr', 'del', '198.19.1.99/32', 'dev', 'eth0']);
  });

  it('an agent restart changes no verdict and leaves no duplicate rule', async () => {
    const before = await kernel();
    await cluster.stopNode('h1');
    // While the node is down the kernel keeps its rules (fail static): A still reaches B.
    expect(await pings(A, B.addr)).toBe(true);
    await cluster.startNode('h1');
    await new Promise((r) => setTimeout(r, 1500));
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
