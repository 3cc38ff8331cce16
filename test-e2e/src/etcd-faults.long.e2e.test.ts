import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { groupMemberKey } from '@calico/keyspace';
import { pidAlive, requireRoot, waitFor } from '@calico/testkit';
import {
  expectMatrix,
  nodeMetrics,
  pingMatrix,
  startWorkload,
  waitForMatrix,
  writeGroup,
  type Workload,
} from './helpers.js';

const HOSTS = ['h1', 'h2'] as const;
const addgroup = (groupId: string, members: Workload[]) => ({
  groupId,
  members: members.map((w) => w.endpointId),
  inbound: [{ group: groupId }],
  outbound: [{ group: groupId }, { cidr: '0.0.0.0/0' }],
});

/**
 * etcd going away: one member of three (nothing changes), then all of it for 30 s (every
 * service stays up and every verdict holds: fail static), then back (every host converges, and
 * a change made right after the return applies everywhere).
 */
describe('etcd faults on two hosts with BGP and the master', () => {
  let cluster: DevCluster;
  let A: Workload, B: Workload, C: Workload, D: Workload;
  let failed = false;

  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start({ hosts: [...HOSTS], bgp: true, etcdMembers: 3, master: true });
    const [h1, h2] = [cluster.host('h1'), cluster.host('h2')];
    A = await startWorkload(cluster, h1, 'A', '198.19.11.1');
    B = await startWorkload(cluster, h1, 'B', '198.19.11.2');
    C = await startWorkload(cluster, h2, 'C', '198.19.12.3');
    D = await startWorkload(cluster, h2, 'D', '198.19.12.4');
    await writeGroup(cluster, addgroup('g-ac', [A, C]));
    await writeGroup(cluster, addgroup('g-bd', [B, D]));
    await expectMatrix(cluster, [A, B, C, D], ['A->C', 'B->D', 'C->A', 'D->B'], 30_000);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster)
      console.error(
        await cluster.dump(),
        `\n--- master log\n${cluster.master?.log().slice(-5000)}`,
        `\n--- node logs\n${HOSTS.map((h) => cluster.host(h).node?.log().slice(-30000)).join('\n')}`,
      );
    await cluster?.stop();
  });

  /** Every service's pid, to show none was restarted. */
  const pids = () => [
    ...HOSTS.flatMap((h) => [cluster.host(h).node!.pid, cluster.host(h).bgpConfig!.pid]),
    cluster.master!.pid,
  ];
  const allAlive = (list: number[]) => list.every((p) => pidAlive(p));
  /** What each host's kernel holds: rules, sets and routes (without counters and timestamps). */
  const kernels = async () =>
    Promise.all(
      HOSTS.map(async (h) => {
        const ns = cluster.host(h).ns;
        const strip = (t: string) =>
          t
            .split('\n')
            .filter((l) => !l.startsWith('#'))
            .join('\n');
        return [
          strip(await ns.execOk(['iptables-save'])),
          await ns.execOk(['ipset', 'save']),
          await ns.execOk(['ip', 'route']),
        ].join('\n');
      }),
    );

  it('one member of three lost: no service restarts, verdicts hold, and a new container still starts and joins', async () => {
    const before = pids();
    await cluster.etcd.stopMember(0);
    try {
      const E = await startWorkload(cluster, cluster.host('h1'), 'E', '198.19.11.5');
      await cluster.ds.put(groupMemberKey('g-ac', E.endpointId), '');
      await expectMatrix(
        cluster,
        [A, B, C, D, E],
        ['A->C', 'A->E', 'B->D', 'C->A', 'C->E', 'D->B', 'E->A', 'E->C'],
        30_000,
      );
      expect(pids()).toEqual(before);
      expect(allAlive(before)).toBe(true);
      await cluster.ds.delete(groupMemberKey('g-ac', E.endpointId));
      await cluster.dockerd.dockerOk(['rm', '-f', E.id]);
    } finally {
      await cluster.etcd.startMember(0);
    }
    await expectMatrix(cluster, [A, B, C, D], ['A->C', 'B->D', 'C->A', 'D->B'], 30_000);
  });

  it('all of etcd down for 30 s: every service stays up, the kernels and verdicts do not change; back, every host converges and a new change applies everywhere', async () => {
    const before = pids();
    const matrix = await pingMatrix([A, B, C, D]);
    expect(matrix).toEqual(['A->C', 'B->D', 'C->A', 'D->B']);
    const kernelsBefore = await kernels();
    await cluster.etcd.stopMember();
    const down = Date.now();
    try {
      // Out of sync on every host (their own word), and otherwise nothing changes.
      for (const h of HOSTS)
        await waitFor(
          `${h} to see etcd gone`,
          async () => (await nodeMetrics(cluster, h)).get('calico_node_datastore_in_sync') === 0,
          30_000,
        );
      while (Date.now() - down < 30_000) {
        expect(allAlive(before)).toBe(true);
        expect(await pingMatrix([A, B, C, D])).toEqual(matrix);
        expect(await kernels()).toEqual(kernelsBefore);
        await new Promise((r) => setTimeout(r, 2_000));
      }
    } finally {
      await cluster.etcd.startMember();
    }
    const back = Date.now();
    // Each host in sync again (its metrics) within 5 s of etcd answering again.
    const inSyncAfter: Record<string, number> = {};
    await Promise.all(
      HOSTS.map((h) =>
        waitFor(
          `${h} back in sync within 5 s`,
          async () => {
            const ok = (await nodeMetrics(cluster, h)).get('calico_node_datastore_in_sync') === 1;
            if (ok) inSyncAfter[h] = Date.now() - back;
            return ok;
          },
          5_000,
        ),
      ),
    );
    // A change right after the return: D joins A and C.
    await cluster.ds.put(groupMemberKey('g-ac', D.endpointId), '');
    const changed = Date.now();
    await waitForMatrix([A, B, C, D], ['A->C', 'A->D', 'B->D', 'C->A', 'C->D', 'D->A', 'D->B', 'D->C'], 30_000);
    console.log(
      `etcd outage: back in sync ${JSON.stringify(inSyncAfter)} ms after etcd returned; a change made then applied everywhere in ${Date.now() - changed} ms`,
    );
    expect(pids()).toEqual(before);
    expect(allAlive(before)).toBe(true);
    await waitFor(
      'the master in sync again',
      async () => (await fetch(new URL('healthz', cluster.masterUrl)).then((r) => r.status)) === 200,
      30_000,
    );
  });
});
