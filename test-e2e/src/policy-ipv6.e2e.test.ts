import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { requireRoot, waitFor } from '@calico/testkit';
import { encodeRule, groupRuleKey } from '@calico/keyspace';
import { connects, expectMatrix, pings, startWorkload, writeGroup, type Workload } from './helpers.js';

/** IPv6 endpoints get the same policy, in ip6tables and IPv6 ipsets, and IPv4 rules never apply to them. */
describe('policy for IPv6 endpoints on one host', () => {
  let cluster: DevCluster;
  let A: Workload;
  let B: Workload;
  let C: Workload;
  let failed = false;

  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start({ hosts: ['h1'] });
    const h1 = cluster.host('h1');
    A = await startWorkload(cluster, h1, 'A', 'fd00:198:19:1::a');
    B = await startWorkload(cluster, h1, 'B', 'fd00:198:19:1::b');
    C = await startWorkload(cluster, h1, 'C', 'fd00:198:19:1::c');
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) console.error(await cluster.dump());
    await cluster?.stop();
  });

  it('nothing reaches anything before groups', async () => {
    await expectMatrix([A, B, C], []);
  });

  it('an IPv4-only rule set opens nothing for IPv6 endpoints', async () => {
    await writeGroup(cluster, { groupId: 'g4', members: [A.endpointId, B.endpointId, C.endpointId], inbound: [{ cidr: '0.0.0.0/0' }], outbound: [{ cidr: '0.0.0.0/0' }] });
    await new Promise((r) => setTimeout(r, 500));
    await expectMatrix([A, B, C], []);
    await cluster.ds.deleteDir('/calico/network/group/g4/');
  });

  it('groups A+C and B: A and C reach each other over IPv6, B is isolated', async () => {
    await writeGroup(cluster, { groupId: 'g-ac', members: [A.endpointId, C.endpointId], inbound: [{ group: 'g-ac' }], outbound: [{ group: 'g-ac' }, { cidr: '::/0' }] });
    await writeGroup(cluster, { groupId: 'g-b', members: [B.endpointId], inbound: [{ group: 'g-b' }], outbound: [{ group: 'g-b' }, { cidr: '::/0' }] });
    await expectMatrix([A, B, C], ['A->C', 'C->A']);
    const sets = await cluster.host('h1').ns.execOk(['ipset', 'save']);
    expect(sets).toMatch(/create cali6g-\S+ hash:ip family inet6/);
    expect(sets).toContain('fd00:198:19:1::a');
    expect(sets).not.toMatch(/create cali4g-/);
  });

  it('a tcp/80 rule over IPv6 opens that port only', async () => {
    await cluster.ds.put(groupRuleKey('g-b', 'inbound', 2), encodeRule({ cidr: 'fd00:198:19::/48', protocol: 'tcp', port: 80 }));
    await waitFor('tcp/80 open on B over IPv6', () => connects(A, B.addr, 80), 15_000);
    expect(await connects(A, B.addr, 8080)).toBe(false);
    expect(await pings(A, B.addr)).toBe(false);
  });

  it('a spoofed IPv6 source is dropped', async () => {
    const pid = (await cluster.dockerd.dockerOk(['inspect', '-f', '{{.State.Pid}}', A.id])).trim();
    const { execOk } = await import('@calico/testkit');
    await execOk(['nsenter', `--net=/proc/${pid}/ns/net`, 'ip', 'addr', 'add', 'fd00:198:19:1::99/128', 'dev', 'eth0', 'nodad']);
    expect(await pings(A, C.addr)).toBe(true);
    const spoofed = await A.exec(['ping', '-c', '2', '-W', '1', '-I', 'fd00:198:19:1::99', C.addr]);
    expect(spoofed.code).not.toBe(0);
  });
});
