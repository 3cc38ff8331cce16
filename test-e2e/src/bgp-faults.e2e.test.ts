import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { groupMemberKey } from '@calico/keyspace';
import { pidAlive, requireRoot, waitFor } from '@calico/testkit';
import { expectMatrix, startWorkload, writeGroup, type Workload } from './helpers.js';
import { Listener, startFlood } from './traffic.js';

const HOSTS = ['h1', 'h2'] as const;
const PORT = 5000;

/**
 * BGP's moving parts killed while traffic flows between two hosts whose routes do not change:
 * BIRD (kill -9; bgp-config starts it again in graceful restart recovery), bgp-config (BIRD
 * goes on routing and is adopted), the master (not on the data path). Floods both ways, one new
 * flow a millisecond, count every datagram: none may be lost. A control shows the counts see a
 * gap when a route really goes.
 */
describe('BGP faults while traffic flows between two hosts', () => {
  let cluster: DevCluster;
  let A: Workload, C: Workload;
  let failed = false;

  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start({ hosts: [...HOSTS], bgp: true, master: true });
    A = await startWorkload(cluster, cluster.host('h1'), 'A', '198.19.21.1');
    C = await startWorkload(cluster, cluster.host('h2'), 'C', '198.19.22.3');
    await writeGroup(cluster, {
      groupId: 'g-ac',
      members: [A.endpointId, C.endpointId],
      inbound: [{ group: 'g-ac' }],
      outbound: [{ group: 'g-ac' }],
    });
    await expectMatrix(cluster, [A, C], ['A->C', 'C->A'], 30_000);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) {
      console.error(await cluster.dump());
      for (const h of HOSTS) {
        const host = cluster.host(h);
        console.error(`--- birdc show protocols all on ${h}\n${(await host.birdc('show protocols all')).stdout}`);
        console.error(`--- bird.log of ${h}\n${(await host.ns.exec(['tail', '-n', '80', host.bird.log])).stdout}`);
        console.error(`--- bgp-config log of ${h}\n${host.bgpConfig?.log().slice(-5000)}`);
      }
    }
    await cluster?.stop();
  });

  /** The route to a workload on the other host, as BGP installed it (empty when there is none). */
  const routeTo = async (host: string, addr: string) =>
    (await cluster.host(host).ns.execOk(['ip', '-4', 'route', 'show', addr, 'proto', 'bird'])).trim();
  const sessionsUp = async () => {
    for (const h of HOSTS) {
      const out = (await cluster.host(h).birdc('show protocols')).stdout;
      if (!/\bBGP\b.*\bEstablished\b/.test(out)) return false;
    }
    return true;
  };

  /** Floods A→C and C→A while `fault` runs; what each side sent and what arrived. */
  async function underFlood(fault: () => Promise<void>) {
    const atA = await Listener.start(cluster, A, A.addr, [PORT]);
    const atC = await Listener.start(cluster, C, C.addr, [PORT]);
    try {
      const toC = await startFlood(cluster, A, A.addr, C.addr, PORT, 'ac');
      const toA = await startFlood(cluster, C, C.addr, A.addr, PORT, 'ca');
      let sentAC = 0;
      let sentCA = 0;
      try {
        await waitFor('both floods arriving', () => atC.heard().size > 100 && atA.heard().size > 100, 10_000);
        await fault();
        // A second of traffic after the fault is over, counted like the rest.
        const after = atC.heard().size + 1_000;
        await waitFor('traffic after the fault', () => atC.heard().size > after || atA.heard().size > after, 20_000);
      } finally {
        sentAC = await toC.stop();
        sentCA = await toA.stop();
      }
      // The last datagram sent is the last to arrive, when it arrives at all.
      await waitFor(
        'the last datagrams',
        () => atC.heard().has(`ac-${sentAC - 1}`) && atA.heard().has(`ca-${sentCA - 1}`),
        5_000,
      ).catch(() => undefined);
      const heardAC = [...atC.heard()].filter((id) => id.startsWith('ac-')).length;
      const heardCA = [...atA.heard()].filter((id) => id.startsWith('ca-')).length;
      return { sentAC, heardAC, sentCA, heardCA };
    } finally {
      await atA.stop();
      await atC.stop();
    }
  }

  it("control: a route that goes away for a second loses that second's datagrams, and only those", async () => {
    const route = await routeTo('h1', C.addr);
    expect(route).toContain('via 198.18.0.12');
    const h1 = cluster.host('h1').ns;
    const n = await underFlood(async () => {
      await h1.execOk(['ip', 'route', 'del', C.addr, 'proto', 'bird']);
      // The fault itself is a second long; BIRD would put the route back only on its next scan.
      await new Promise((r) => setTimeout(r, 1_000));
      // Put back as BIRD had it ("show … proto bird" leaves the proto out of what it prints).
      await h1.execOk(['ip', 'route', 'replace', ...route.split(/\s+/), 'proto', 'bird']);
    });
    console.log(`control: A→C ${n.heardAC} of ${n.sentAC} arrived, C→A ${n.heardCA} of ${n.sentCA}`);
    expect(n.sentAC).toBeGreaterThan(1_000);
    expect(n.heardAC).toBeLessThan(n.sentAC);
    expect(n.heardCA).toBe(n.sentCA);
  });

  it('kill -9 of BIRD: bgp-config starts it again in graceful restart recovery; both sessions come back; not one datagram lost', async () => {
    const old = (await cluster.birdPid('h1'))!;
    const routeBefore = await routeTo('h1', C.addr);
    const n = await underFlood(async () => {
      process.kill(old, 'SIGKILL');
      await waitFor('BIRD on h1 gone', () => !pidAlive(old), 5_000);
      await waitFor(
        'a new BIRD on h1',
        async () => {
          const p = await cluster.birdPid('h1');
          return (
            p !== undefined &&
            p !== old &&
            (await cluster.host('h1').birdc('show status')).stdout.includes('up and running')
          );
        },
        20_000,
      );
      await waitFor('both BGP sessions Established again', sessionsUp, 30_000);
      // The recovery ends once h2 has sent its routes again (End-of-RIB); only then does the
      // kernel protocol synchronise, finding the kept route to C current.
      await waitFor(
        'the recovery over',
        async () => !/graceful restart/i.test((await cluster.host('h1').birdc('show status')).stdout),
        30_000,
      );
    });
    console.log(`BIRD kill -9: A→C ${n.heardAC} of ${n.sentAC} arrived, C→A ${n.heardCA} of ${n.sentCA}`);
    expect(cluster.host('h1').bgpConfig!.log()).toContain('started it in graceful restart recovery');
    expect(n.sentAC).toBeGreaterThan(1_000);
    expect(n.sentCA).toBeGreaterThan(1_000);
    expect(n.heardAC).toBe(n.sentAC);
    expect(n.heardCA).toBe(n.sentCA);
    expect(await routeTo('h1', C.addr)).toBe(routeBefore);
    expect(await routeTo('h2', A.addr)).toContain('via 198.18.0.11');
  });

  it('kill -9 of bgp-config: BIRD goes on routing, a new bgp-config adopts it as it is; not one datagram lost', async () => {
    const h2 = cluster.host('h2');
    const bird = await cluster.birdPid('h2');
    const conf = await h2.ns.execOk(['cat', h2.bird.config]);
    const n = await underFlood(async () => {
      const pid = h2.bgpConfig!.pid;
      process.kill(pid, 'SIGKILL');
      await waitFor('bgp-config on h2 gone', () => !pidAlive(pid), 5_000);
      await cluster.startBgpConfig('h2');
    });
    console.log(`bgp-config kill -9: A→C ${n.heardAC} of ${n.sentAC} arrived, C→A ${n.heardCA} of ${n.sentCA}`);
    expect(await cluster.birdPid('h2')).toBe(bird);
    expect(await h2.ns.execOk(['cat', h2.bird.config])).toBe(conf);
    expect(n.sentAC).toBeGreaterThan(1_000);
    expect(n.heardAC).toBe(n.sentAC);
    expect(n.heardCA).toBe(n.sentCA);
    expect(await sessionsUp()).toBe(true);
  });

  it('kill -9 of the master: the data path does not notice; a new container starts and joins; a new master takes over', async () => {
    let E: Workload | undefined;
    const n = await underFlood(async () => {
      const pid = cluster.master!.pid;
      process.kill(pid, 'SIGKILL');
      await waitFor('the master gone', () => !pidAlive(pid), 5_000);
      E = await startWorkload(cluster, cluster.host('h2'), 'E', '198.19.22.5');
      await cluster.ds.put(groupMemberKey('g-ac', E.endpointId), '');
      await expectMatrix(cluster, [A, C, E], ['A->C', 'A->E', 'C->A', 'C->E', 'E->A', 'E->C'], 30_000);
      await cluster.startMaster();
    });
    console.log(`master kill -9: A→C ${n.heardAC} of ${n.sentAC} arrived, C→A ${n.heardCA} of ${n.sentCA}`);
    expect(n.sentAC).toBeGreaterThan(1_000);
    expect(n.heardAC).toBe(n.sentAC);
    expect(n.heardCA).toBe(n.sentCA);
    const { hosts } = (await (await cluster.masterFetch('v1/hosts')).json()) as {
      hosts: { name: string; state: string }[];
    };
    expect(hosts.map((h) => `${h.name} ${h.state}`).sort()).toEqual(['h1 up', 'h2 up']);
  });
});
