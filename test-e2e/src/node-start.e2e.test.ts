import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevCluster } from '@calico/devcluster';
import { exec, waitFor } from '@calico/testkit';
import { clusterForSuite, expectMatrix, pings, startWorkload, writeGroup, type Workload } from './helpers.js';
import { ruleCounter } from './traffic.js';

/**
 * A node that starts on an empty kernel (as after a reboot) fails closed: its hooks come first
 * and drop every packet of a workload interface; no workload is plumbed and the proxy serves
 * nothing until the first full sync is in the kernel.
 */
describe('a node starting on an empty kernel', () => {
  let cluster: DevCluster;
  let A: Workload;
  let B: Workload;
  // Two namespaces standing for workloads nobody programmed, on cali-named veths of h1.
  const rogue = [
    { ns: 'ckrogue1', hostIf: 'cali0000000r01', addr: '198.19.77.1' },
    { ns: 'ckrogue2', hostIf: 'cali0000000r02', addr: '198.19.77.2' },
  ];

  const started = clusterForSuite({ hosts: ['h1'] });
  beforeAll(async () => {
    cluster = started();
    const h1 = cluster.host('h1');
    A = await startWorkload(cluster, h1, 'A', '198.19.6.1');
    B = await startWorkload(cluster, h1, 'B', '198.19.6.2');
    await writeGroup(cluster, {
      groupId: 'g-ab',
      members: [A.endpointId, B.endpointId],
      inbound: [{ group: 'g-ab' }],
      outbound: [{ group: 'g-ab' }],
    });
    await expectMatrix(cluster, [A, B], ['A->B', 'B->A']);
  });
  afterAll(async () => {
    for (const r of rogue) await exec(['ip', 'netns', 'del', r.ns]);
  });

  const h1 = () => cluster.host('h1').ns;
  const roguePings = async () =>
    (await exec(['ip', 'netns', 'exec', rogue[0]!.ns, 'busybox', 'ping', '-c', '1', '-W', '1', rogue[1]!.addr]))
      .code === 0;

  it('drops workload traffic from its first moment, plumbs nothing and serves no proxy until the policy is programmed', async () => {
    // "Reboot": the node gone, the kernel empty of our rules and sets, the workloads' veths gone.
    await cluster.stopNode('h1');
    for (const tool of ['iptables', 'ip6tables']) {
      for (const table of ['filter', 'raw'])
        for (const op of ['-F', '-X']) await h1().execOk([tool, '-w', '5', '-t', table, op]);
    }
    await h1().execOk(['ipset', 'destroy']);
    const owned = (await h1().execOk(['ip', '-o', 'link', 'show'])).match(/cali[0-9a-f]{11}/g) ?? [];
    for (const ifname of new Set(owned)) await h1().execOk(['ip', 'link', 'del', ifname]);
    expect(await pings(A, B.addr)).toBe(false);

    // Control: traffic between two cali interfaces passes while nothing of ours is in the kernel.
    for (const r of rogue) {
      await exec(['ip', 'netns', 'add', r.ns]);
      await h1().execOk(['ip', 'link', 'add', r.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', r.ns]);
      await h1().execOk(['ip', 'link', 'set', r.hostIf, 'up']);
      await h1().execOk([
        'sysctl',
        '-qw',
        `net.ipv4.conf.${r.hostIf}.proxy_arp=1`,
        `net.ipv4.neigh.${r.hostIf}.proxy_delay=0`,
      ]);
      await h1().execOk(['ip', 'route', 'add', `${r.addr}/32`, 'dev', r.hostIf]);
      for (const args of [
        ['link', 'set', 'lo', 'up'],
        ['addr', 'add', `${r.addr}/32`, 'dev', 'eth0'],
        ['link', 'set', 'eth0', 'up'],
        ['route', 'add', 'default', 'dev', 'eth0'],
      ]) {
        await exec(['ip', '-n', r.ns, ...args]);
      }
    }
    await waitFor('the rogue pair to ping each other with no rules in the kernel', roguePings, 10_000);

    // etcd away: the node can install its hooks but cannot sync.
    await cluster.etcd.stopMember();
    // The node's log file goes on from its earlier runs: this run's part is what counts.
    const from = cluster.host('h1').node?.log().length ?? 0;
    const started = await cluster.startNode('h1', { ready: false });
    const node = {
      log: () => started.log().slice(from),
      get running() {
        return started.running;
      },
    };
    try {
      await waitFor(
        'the node to install its hooks',
        () => node.log().includes('installed them, dropping all workload traffic'),
        30_000,
        () => node.log().slice(-2000),
      );
      const drops = () => ruleCounter(h1(), 4, 'filter', /-A cali-FORWARD -i cali\+ .*-j DROP/);
      const before = await drops();
      expect(await roguePings()).toBe(false);
      expect(await drops()).toBeGreaterThan(before);
      await waitFor(
        'the node to retry registering',
        () => node.log().includes('etcd unreachable while registering the host'),
        30_000,
        () => node.log().slice(-2000),
      );
      // Nothing plumbed, nothing served.
      expect((await h1().execOk(['ip', '-o', 'link', 'show'])).match(/cali[0-9a-f]{11}/g)).toBeNull();
      expect((await cluster.host('h1').docker(['version', '--format', '{{.Server.Version}}'])).code).not.toBe(0);
      expect(node.running).toBe(true);
    } finally {
      await cluster.etcd.startMember();
    }
    await waitFor(
      'the proxy to answer once the policy is programmed',
      async () => (await cluster.host('h1').docker(['version'])).code === 0,
      60_000,
      () => node.log().slice(-3000),
    );
    const log = node.log();
    const at = (line: string) => {
      const i = log.indexOf(line);
      expect(i, line).toBeGreaterThanOrEqual(0);
      return i;
    };
    // The order the node keeps: hooks, the first full sync in the kernel, then the workloads.
    expect(at('installed them, dropping all workload traffic')).toBeLessThan(
      at('dataplane programmed from the first full sync'),
    );
    expect(at('dataplane programmed from the first full sync')).toBeLessThan(at('workload networked'));
    await expectMatrix(cluster, [A, B], ['A->B', 'B->A'], 30_000);
    // The rogue interfaces are no workload of the policy: still dropped.
    expect(await roguePings()).toBe(false);
  });
});
