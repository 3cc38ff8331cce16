import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { requireRoot, waitFor } from '@calico/testkit';
import { birdIpKey, bgpGlobalNodeMeshKey, bgpHostRouteReflectorKey } from '@calico/keyspace';
import { expectMatrix, pings, startWorkload, writeGroup, type Workload } from './helpers.js';

const addgroup = (groupId: string, members: Workload[]) => ({
  groupId,
  members: members.map((w) => w.endpointId),
  inbound: [{ group: groupId }],
  outbound: [{ group: groupId }, { cidr: '0.0.0.0/0' }],
});

/** The route table of a host, routes learnt over BGP only. */
async function birdRoutes(cluster: DevCluster, host: string): Promise<string> {
  return cluster.host(host).ns.execOk(['ip', '-4', 'route', 'show', 'proto', 'bird']);
}

describe('two hosts with BIRD: the getting-started scenario across hosts', () => {
  let cluster: DevCluster;
  let A: Workload, B: Workload, C: Workload, D: Workload, E: Workload;
  let failed = false;

  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start({ hosts: ['h1', 'h2'], bgp: true });
    const [h1, h2] = [cluster.host('h1'), cluster.host('h2')];
    A = await startWorkload(cluster, h1, 'A', '198.19.1.1');
    B = await startWorkload(cluster, h1, 'B', '198.19.1.2');
    C = await startWorkload(cluster, h1, 'C', '198.19.1.3');
    D = await startWorkload(cluster, h2, 'D', '198.19.2.4');
    E = await startWorkload(cluster, h2, 'E', '198.19.2.5');
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) {
      console.error(await cluster.dump());
      for (const h of ['h1', 'h2'])
        console.error(
          `--- birdc show protocols all on ${h}\n`,
          (await cluster.host(h).birdc('show protocols all')).stdout,
        );
    }
    await cluster?.stop();
  });

  it("each host learns the other's workload routes over BGP", async () => {
    await waitFor(
      'h2 learns A, B, C',
      async () => (await birdRoutes(cluster, 'h2')).includes('198.19.1.3 via 198.18.0.11'),
      30_000,
    );
    const r2 = await birdRoutes(cluster, 'h2');
    for (const a of ['198.19.1.1', '198.19.1.2', '198.19.1.3']) expect(r2).toContain(`${a} via 198.18.0.11 dev eth0`);
    await waitFor(
      'h1 learns D, E',
      async () => (await birdRoutes(cluster, 'h1')).includes('198.19.2.5 via 198.18.0.12'),
      30_000,
    );
    expect(await birdRoutes(cluster, 'h1')).toContain('198.19.2.4 via 198.18.0.12 dev eth0');
  });

  it('a key whose host segment carries directives never reaches bird.conf; a new valid host beside it does', async () => {
    const evil = 'x\nprotocol bgp evil { local as 1; neighbor 198.18.0.99 as 2; ipv4 { import all; export all; }; }\n#';
    const conf = (h: string) => cluster.host(h).ns.execOk(['cat', cluster.host(h).bird.config]);
    // Control: a valid host's bird_ip written the same way does reach every bird.conf.
    await cluster.ds.put(`/calico/host/${evil}/bird_ip`, '198.18.0.98');
    await cluster.ds.put('/calico/host/h-new/bird_ip', '198.18.0.40');
    try {
      for (const h of ['h1', 'h2']) {
        await waitFor(
          `h-new in ${h}'s bird.conf`,
          async () => (await conf(h)).includes('neighbor 198.18.0.40 '),
          20_000,
        );
        const text = await conf(h);
        expect(text).not.toContain('evil');
        expect(text).not.toContain('198.18.0.98');
        expect(text).not.toContain('198.18.0.99');
        expect((await cluster.host(h).birdc('show protocols')).stdout).toMatch(/\bBGP\b.*\bEstablished\b/);
        expect(cluster.host(h).bgpConfig!.log()).toContain('is not a host name');
      }
    } finally {
      await cluster.ds.delete(`/calico/host/${evil}/bird_ip`);
      await cluster.ds.delete('/calico/host/h-new/bird_ip');
    }
    for (const h of ['h1', 'h2'])
      await waitFor(`h-new gone from ${h}'s bird.conf`, async () => !(await conf(h)).includes('198.18.0.40'), 20_000);
  });

  it('before groups nobody reaches anybody; with A+C+E, B and D: A reaches C and E, B and D reach no one', async () => {
    await expectMatrix(cluster, [A, B, C, D, E], []);
    await writeGroup(cluster, addgroup('g-ace', [A, C, E]));
    await writeGroup(cluster, addgroup('g-b', [B]));
    await writeGroup(cluster, addgroup('g-d', [D]));
    await expectMatrix(cluster, [A, B, C, D, E], ['A->C', 'A->E', 'C->A', 'C->E', 'E->A', 'E->C'], 30_000);
  });

  it('a route disappears from the other host when its workload goes', async () => {
    await cluster.host('h2').docker(['rm', '-f', D.id]);
    await waitFor(
      "D's route withdrawn on h1",
      async () => !(await birdRoutes(cluster, 'h1')).includes('198.19.2.4'),
      20_000,
    );
    expect(await birdRoutes(cluster, 'h1')).toContain('198.19.2.5 via 198.18.0.12');
  });

  it('a BIRD restart heals by itself: bgp-config starts it again and the routes come back', async () => {
    const pid = (await cluster.birdPid('h1'))!;
    process.kill(pid, 'SIGKILL');
    await waitFor(
      'a new BIRD on h1',
      async () => {
        const p = await cluster.birdPid('h1');
        return (
          p !== undefined &&
          p !== pid &&
          (await cluster.host('h1').birdc('show status')).stdout.includes('up and running')
        );
      },
      20_000,
    );
    await waitFor('the session back and A reaching E', () => pings(A, E.addr), 30_000);
    await waitFor(
      'h1 relearns E',
      async () => (await birdRoutes(cluster, 'h1')).includes('198.19.2.5 via 198.18.0.12'),
      30_000,
    );
  });

  it('a bgp-config restart heals without manual steps and keeps BIRD as it is', async () => {
    const pid = await cluster.birdPid('h2');
    const conf = await cluster.host('h2').ns.execOk(['cat', cluster.host('h2').bird.config]);
    await cluster.stopBgpConfig('h2');
    await cluster.startBgpConfig('h2');
    expect(await cluster.birdPid('h2')).toBe(pid);
    expect(await cluster.host('h2').ns.execOk(['cat', cluster.host('h2').bird.config])).toBe(conf);
    expect(await pings(E, A.addr)).toBe(true);
  });

  it('routes of a host that goes away disappear from the others', async () => {
    await cluster.stopBgpConfig('h2');
    await cluster.stopNode('h2');
    await cluster.stopBird('h2');
    // What calicoctl reset (or the master's garbage collection) does for a host that is gone.
    await cluster.ds.deleteDir('/calico/host/h2/');
    await waitFor(
      "h2's routes gone from h1",
      async () => !(await birdRoutes(cluster, 'h1')).includes('198.19.2.'),
      30_000,
    );
  });
});

describe('three hosts with a route reflector', () => {
  let cluster: DevCluster;
  let failed = false;
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) {
      console.error(await cluster.dump());
      for (const h of ['h1', 'h2', 'h3'])
        console.error(`--- birdc show protocols on ${h}\n`, (await cluster.host(h).birdc('show protocols')).stdout);
    }
    await cluster?.stop();
  });

  it('clients peer only with the reflector, which carries routes between them with their own next hops', async () => {
    requireRoot();
    cluster = await DevCluster.start({ hosts: ['h1', 'h2', 'h3'], bgp: true });
    await cluster.ds.put(bgpGlobalNodeMeshKey(), JSON.stringify({ enabled: false }));
    await cluster.ds.put(bgpHostRouteReflectorKey('h1'), JSON.stringify({ cluster_id: '1.0.0.1' }));
    const X = await startWorkload(cluster, cluster.host('h2'), 'X', '198.19.2.1');
    const Y = await startWorkload(cluster, cluster.host('h3'), 'Y', '198.19.3.1');
    await waitFor(
      'h3 learns X through the reflector, next hop h2',
      async () => (await birdRoutes(cluster, 'h3')).includes('198.19.2.1 via 198.18.0.12'),
      30_000,
    );
    await waitFor(
      'h2 learns Y, next hop h3',
      async () => (await birdRoutes(cluster, 'h2')).includes('198.19.3.1 via 198.18.0.13'),
      30_000,
    );
    // Clients have one BGP session each: with the reflector.
    const p2 = (await cluster.host('h2').birdc('show protocols')).stdout;
    expect(p2.match(/^RR_\S+\s+BGP/gm)).toHaveLength(1);
    expect(p2).not.toMatch(/^Mesh_/m);
    await writeGroup(cluster, addgroup('g-xy', [X, Y]));
    await waitFor('X reaches Y across the reflector topology', () => pings(X, Y.addr), 30_000);
    expect(await cluster.ds.get(birdIpKey('h1'))).toBe('198.18.0.11');
  });
});
