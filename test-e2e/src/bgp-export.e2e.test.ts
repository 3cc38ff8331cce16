import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { requireRoot, waitFor, type ManagedProcess } from '@calico/testkit';
import { encodeAddrs, encodeIpPool, endpointAddrsKey, ipPoolKey, routeProtoKey } from '@calico/keyspace';
import { hostIfName, WORKLOAD_ROUTE_PROTO } from '@calico/node';
import { startNodeProgrammed, startWorkload, type Workload } from './helpers.js';

// What BIRD announces: only this host's endpoint addresses (etcd's record), and only routes the
// node programmed (its kernel protocol). Both guards are shown alone, each with its control.

/** h2's routes learnt over BGP (from h1). */
async function learnt(cluster: DevCluster): Promise<string> {
  return cluster.host('h2').ns.execOk(['ip', '-4', 'route', 'show', 'proto', 'bird']);
}
const has = (routes: string, addr: string) =>
  new RegExp(`^${addr.replace(/\./g, '\\.')} via 198\\.18\\.0\\.11 `, 'm').test(routes);

/** h2's session with h1: routes received in updates and in withdraws, over its life. */
async function received(cluster: DevCluster): Promise<{ updates: number; withdraws: number }> {
  const out = (await cluster.host('h2').birdc('show protocols all Mesh_198_18_0_11')).stdout;
  const count = (what: string) => {
    const m = new RegExp(`Import ${what}:\\s+(\\d+)`).exec(out);
    if (!m) throw new Error(`no "Import ${what}" in: ${out}`);
    return Number(m[1]);
  };
  return { updates: count('updates'), withdraws: count('withdraws') };
}

/** An endpoint record with no container behind it, as a stale or hand-written key would be. */
function recordedOnly(n: number, addr: string): [string, string] {
  const hex = n.toString(16).padStart(8, '0');
  return [endpointAddrsKey('h1', `${'c'.repeat(56)}${hex}`, `${'e'.repeat(24)}${hex}`), encodeAddrs([addr])];
}

describe('BIRD announces only the routes the node programmed to its own endpoints', () => {
  let cluster: DevCluster;
  let A: Workload, B: Workload;
  const added: Workload[] = [];
  let failed = false;
  const conf = () => cluster.host('h1').ns.execOk(['cat', cluster.host('h1').bird.config]);

  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start({ hosts: ['h1', 'h2'], bgp: true });
    await cluster.ds.put(ipPoolKey('198.19.0.0/16'), encodeIpPool('198.19.0.0/16'));
    A = await startWorkload(cluster, cluster.host('h1'), 'A', '198.19.5.1');
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) {
      console.error(await cluster.dump());
      for (const h of ['h1', 'h2']) {
        for (const c of ['show route all', 'show protocols all']) {
          console.error(`--- birdc ${c} on ${h}\n`, (await cluster.host(h).birdc(c)).stdout);
        }
        const text = await cluster
          .host(h)
          .ns.execOk(['cat', cluster.host(h).bird.config])
          .catch(String);
        console.error(`--- bird.conf of ${h}\n`, text);
      }
    }
    await cluster?.stop();
  });

  const handMade =
    "a /32 put by hand on a cali interface is not announced; each guard alone keeps it out; an endpoint's route is";
  it(handMade, async () => {
    const h1 = cluster.host('h1').ns;
    await waitFor("h2 learns A's route (the control)", async () => has(await learnt(cluster), A.addr), 30_000);
    expect(await h1.execOk(['ip', 'route', 'show', `${A.addr}/32`])).toContain(`proto ${WORKLOAD_ROUTE_PROTO}`);
    const ifA = hostIfName(A.endpointId);
    // Inside the pool, on A's interface: boot (ip's default), neither an endpoint's nor the node's.
    await h1.execOk(['ip', 'route', 'add', '198.19.5.99/32', 'dev', ifA]);
    // The node's protocol, but no endpoint has the address.
    await h1.execOk(['ip', 'route', 'add', '198.19.5.98/32', 'dev', ifA, 'proto', String(WORKLOAD_ROUTE_PROTO)]);
    // An endpoint of h1 has the address in etcd, but the node did not program the route.
    const [k97, v97] = recordedOnly(97, '198.19.5.97');
    await cluster.ds.put(k97, v97);
    await h1.execOk(['ip', 'route', 'add', '198.19.5.97/32', 'dev', ifA]);
    const [k98, v98] = recordedOnly(98, '198.19.5.98');
    try {
      // A barrier: B's route reaching h2 means h1's BIRD took in, and sent on, what came before it.
      B = await startWorkload(cluster, cluster.host('h1'), 'B', '198.19.5.2');
      await waitFor("h2 learns B's route", async () => has(await learnt(cluster), B.addr), 30_000);
      expect(await conf()).toContain('198.19.5.97/32');
      let routes = await learnt(cluster);
      for (const a of ['198.19.5.99', '198.19.5.98', '198.19.5.97']) expect(has(routes, a), a).toBe(false);
      expect(has(routes, A.addr)).toBe(true);

      // Each guard was what kept its route out: satisfy it, and the route is announced.
      await cluster.ds.put(k98, v98);
      const learns = (a: string) => async () => has(await learnt(cluster), a);
      await waitFor('h2 learns .98 once an endpoint of h1 has it', learns('198.19.5.98'), 30_000);
      await h1.execOk(['ip', 'route', 'replace', '198.19.5.97/32', 'dev', ifA, 'proto', String(WORKLOAD_ROUTE_PROTO)]);
      await waitFor("h2 learns .97 once its route has the node's protocol", learns('198.19.5.97'), 30_000);
      routes = await learnt(cluster);
      expect(has(routes, '198.19.5.99')).toBe(false);
    } finally {
      for (const a of ['198.19.5.99', '198.19.5.98', '198.19.5.97']) {
        await h1.execOk(['ip', 'route', 'del', `${a}/32`, 'dev', ifA]).catch(() => '');
      }
      await cluster.ds.delete(k97);
      await cluster.ds.delete(k98);
    }
    await waitFor(
      'the hand-made routes gone from h2',
      async () => {
        const r = await learnt(cluster);
        return !has(r, '198.19.5.98') && !has(r, '198.19.5.97');
      },
      30_000,
    );
  });

  it('adding endpoints announces each new route once and withdraws or re-announces no other (no flap)', async () => {
    const before = await received(cluster);
    const monitor: ManagedProcess = cluster.host('h2').ns.spawn('ip-monitor-h2', ['ip', '-4', 'monitor', 'route']);
    const ms: { run: number; peer: number }[] = [];
    try {
      await waitFor('ip monitor running', () => monitor.running, 5_000);
      for (let i = 1; i <= 10; i++) {
        // Figures for docs/bgp.md, not asserted: how long `docker run` (and inspect) took, and
        // from its start until h2's kernel has the route.
        const t0 = performance.now();
        const w = await startWorkload(cluster, cluster.host('h1'), `N${i}`, `198.19.6.${i}`);
        const run = performance.now() - t0;
        added.push(w);
        // Polled every 10 ms (waitFor backs off to 250 ms), so that the figure means something.
        const end = Date.now() + 30_000;
        while (!has(await learnt(cluster), w.addr)) {
          if (Date.now() > end) throw new Error(`h2 did not learn ${w.addr} within 30 s`);
          await new Promise((r) => setTimeout(r, 10));
        }
        ms.push({ run: Math.round(run), peer: Math.round(performance.now() - t0) });
      }
    } finally {
      await monitor.stop();
    }
    const what = "new endpoints: ms of docker run + inspect, and until the route is in the peer's kernel";
    console.log(`${what}: ${JSON.stringify(ms)}`);
    const after = await received(cluster);
    expect(after.updates - before.updates).toBe(10);
    expect(after.withdraws - before.withdraws).toBe(0);
    const events = monitor
      .log()
      .split('\n')
      .filter((l) => l.startsWith('198.19.') || l.startsWith('Deleted'));
    expect(events.filter((l) => l.startsWith('Deleted'))).toEqual([]);
    expect(events.map((l) => l.split(' ')[0]).sort()).toEqual(added.map((w) => w.addr).sort());
    const routes = await learnt(cluster);
    for (const w of [A, B]) expect(has(routes, w.addr)).toBe(true);
  });

  it("an endpoint's route is withdrawn from the peer when its container is removed, and only that route", async () => {
    const before = await received(cluster);
    expect(has(await learnt(cluster), A.addr)).toBe(true);
    await cluster.host('h1').docker(['rm', '-f', A.id]);
    await waitFor("A's route withdrawn on h2", async () => !has(await learnt(cluster), A.addr), 30_000);
    await waitFor("A's address gone from h1's bird.conf", async () => !(await conf()).includes(`${A.addr}/32`), 30_000);
    const after = await received(cluster);
    expect(after.withdraws - before.withdraws).toBe(1);
    expect(after.updates - before.updates).toBe(0);
    const routes = await learnt(cluster);
    for (const w of [B, ...added]) expect(has(routes, w.addr), w.addr).toBe(true);
  });

  it('a node upgraded in place: its old routes (proto boot) stay announced until it plumbs them again', async () => {
    const h1 = cluster.host('h1').ns;
    const running = [B, ...added];
    // The node before route_proto: it published no protocol, and its routes carry "boot".
    await cluster.stopNode('h1');
    await cluster.ds.delete(routeProtoKey('h1'));
    await waitFor('h1 takes in routes of any protocol', async () => !(await conf()).includes('krt_source'), 30_000);
    const before = await received(cluster);
    for (const w of running) {
      await h1.execOk(['ip', 'route', 'replace', `${w.addr}/32`, 'dev', hostIfName(w.endpointId)]);
    }
    expect(await h1.execOk(['ip', '-4', 'route', 'show', 'proto', String(WORKLOAD_ROUTE_PROTO)])).toBe('');
    // A barrier: a change after the replaces (a fresh endpoint record) reaches bird.conf and BIRD.
    const [k, v] = recordedOnly(7, '198.19.7.1');
    await cluster.ds.put(k, v);
    await waitFor('the barrier in bird.conf', async () => (await conf()).includes('198.19.7.1/32'), 30_000);
    await cluster.ds.delete(k);
    const routes = await learnt(cluster);
    for (const w of running) expect(has(routes, w.addr), w.addr).toBe(true);
    expect((await received(cluster)).withdraws - before.withdraws).toBe(0);

    // The new node plumbs every running workload again, then publishes its protocol.
    await startNodeProgrammed(cluster, 'h1');
    const proto = String(WORKLOAD_ROUTE_PROTO);
    await waitFor('route_proto published', async () => (await cluster.ds.get(routeProtoKey('h1'))) === proto, 60_000);
    const strict = async () => (await conf()).includes(`krt_source = ${proto}`);
    await waitFor("h1 takes in only the node's protocol", strict, 30_000);
    const mine = await h1.execOk(['ip', '-4', 'route', 'show', 'proto', String(WORKLOAD_ROUTE_PROTO)]);
    for (const w of running) expect(mine).toContain(`${w.addr} dev ${hostIfName(w.endpointId)}`);
    await waitFor(
      'h2 has every route of h1 again',
      async () => {
        const r = await learnt(cluster);
        return running.every((w) => has(r, w.addr));
      },
      30_000,
    );
  });
});
