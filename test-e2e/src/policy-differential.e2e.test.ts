import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevCluster } from '@calico/devcluster';
import { encodeRule, groupPrefix, groupRuleKey, groupsPrefix } from '@calico/keyspace';
import {
  explain,
  policyFixtures,
  randomCluster,
  randomConnections,
  type RandomConnection,
  type RandomEndpoint,
} from '@calico/policy';
import { waitFor, type NamespaceHost } from '@calico/testkit';
import { clusterForSuite, startWorkload, writeGroup, type Workload } from './helpers.js';
import { Listener, sendFrom, workloadMac, type Connection } from './traffic.js';

/** Ports the workloads listen on (tcp and udp); rules and connections use only these. */
const PORTS = [443, 5000, 7000];
const ROUNDS = 3;
const RULE_KINDS = ['group', 'cidr', 'protocol', 'port'] as const;
const CONNECTIONS = 100;

/**
 * The kernel half of the differential test: random groups and rules over real workloads on two
 * hosts, and random connections between them (and from outside the cluster) sent as real
 * packets. Each connection must get through exactly when explain() says it may.
 */
describe('explain() and real packets agree on random policies', () => {
  let cluster: DevCluster;
  let out: NamespaceHost;
  const workloads: { w: Workload; ep: RandomEndpoint }[] = [];
  const listeners: Listener[] = [];

  const started = clusterForSuite({ hosts: ['h1', 'h2'] });
  beforeAll(async () => {
    cluster = started();
    const plan: [string, string, string][] = [
      ['h1', 'a1', '198.19.31.1'],
      ['h1', 'a2', '198.19.31.2'],
      ['h1', 'a3', '198.19.31.3'],
      ['h1', 'a4', 'fd00:198:19:31::4'],
      ['h1', 'a5', 'fd00:198:19:31::5'],
      ['h2', 'b1', '198.19.32.1'],
      ['h2', 'b2', '198.19.32.2'],
      ['h2', 'b3', 'fd00:198:19:32::3'],
      ['h2', 'b4', 'fd00:198:19:32::4'],
    ];
    for (const [host, name, addr] of plan) {
      const w = await startWorkload(cluster, cluster.host(host), name, addr);
      const mac = await workloadMac(cluster, w);
      const v6 = addr.includes(':');
      workloads.push({
        w,
        ep: {
          host,
          endpointId: w.endpointId,
          containerId: w.id,
          v4: v6 ? [] : [addr],
          v6: v6 ? [addr] : [],
          mac,
          state: 'active',
        },
      });
    }
    // No BGP here: each host routes the other's workloads over the fabric by hand (IPv6 via the
    // other host's link-local address), and a host outside the cluster routes to them all.
    out = await cluster.fabric.addHost('out');
    const linkLocal = async (h: NamespaceHost) => {
      let ll = '';
      await waitFor(
        `a link-local address on ${h.name}`,
        async () => {
          const text = await h.execOk(['ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'link']);
          ll = /inet6 (fe80::[0-9a-f:]+)\/64/.exec(text)?.[1] ?? '';
          return ll !== '' && !text.includes('tentative');
        },
        10_000,
      );
      return ll;
    };
    for (const { w, ep } of workloads) {
      const home = w.host.ns;
      for (const h of [cluster.host('h1').ns, cluster.host('h2').ns, out]) {
        if (h === home) continue;
        if (ep.v4[0]) await h.execOk(['ip', 'route', 'add', `${ep.v4[0]}/32`, 'via', home.ip]);
        else if (h !== out)
          await h.execOk(['ip', '-6', 'route', 'add', `${ep.v6[0]}/128`, 'via', await linkLocal(home), 'dev', 'eth0']);
      }
    }
    for (const { w, ep } of workloads) listeners.push(await Listener.start(cluster, w, ep.v4[0] ?? ep.v6[0]!, PORTS));
  });
  afterAll(async () => {
    await Promise.all(listeners.map((p) => p.stop()));
  });

  /** Sends every connection from its source at once; for each, whether it got through. */
  async function send(conns: readonly RandomConnection[]): Promise<boolean[]> {
    const bySrc = new Map<string, number[]>();
    conns.forEach((c, i) => {
      bySrc.set(c.src, [...(bySrc.get(c.src) ?? []), i]);
    });
    const results: { id: string; ok: boolean }[] = [];
    await Promise.all(
      [...bySrc].map(async ([src, at]) => {
        const from = workloads.find((x) => x.ep.v4.includes(src) || x.ep.v6.includes(src))?.w ?? out;
        const sent = await sendFrom(
          cluster,
          from,
          src,
          at.map((i) => conns[i] as Connection),
        );
        sent.forEach((r, j) => {
          results[at[j]!] = r;
        });
      }),
    );
    // UDP has no answer: what counts is what the listeners heard.
    await new Promise((r) => setTimeout(r, 300));
    const heard = new Set(listeners.flatMap((l) => [...l.heard()]));
    return conns.map((c, i) => (c.protocol === 'udp' ? heard.has(results[i]!.id) : results[i]!.ok));
  }

  it(`${ROUNDS} random policies, ${CONNECTIONS} connections each: allowed exactly when explain() allows`, async () => {
    const eps = workloads.map((x) => x.ep);
    let total = 0;
    let allowed = 0;
    const covered = new Set<string>();
    const mismatches: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const rc = randomCluster(6000 + round, { endpoints: eps, ports: PORTS });
      await cluster.ds.deleteDir(groupsPrefix);
      for (let i = 0; i < rc.keys.length; i += 100)
        await cluster.ds.batch(rc.keys.slice(i, i + 100).map((kv) => ({ put: kv.key, value: kv.value })));
      // Written after the round's keys: once both hosts have its rule, they have the rest.
      const mark = `10.255.${round}.0/24`;
      await writeGroup(cluster, {
        groupId: 'sync',
        members: eps.map((e) => e.endpointId),
        inbound: [{ cidr: mark, protocol: 'tcp', port: 9 }],
      });
      for (const h of ['h1', 'h2'])
        await waitFor(
          `round ${round} on ${h}`,
          async () => (await cluster.host(h).ns.execOk(['iptables-save'])).includes(`-s ${mark}`),
          15_000,
        );
      const { kvs } = await cluster.ds.getPrefix('/calico/');
      const model = policyFixtures.model(kvs);
      // The same keys without one kind of rule: a connection that this turns from allowed to
      // denied met that kind of rule in the kernel, and nothing else let it through.
      const isRule = (k: string) => /\/rule\/(inbound|outbound)\/[^/]+$/.test(k);
      const without = RULE_KINDS.map(
        (kind) =>
          [
            kind,
            policyFixtures.model(
              kvs.filter((kv) => !isRule(kv.key) || (JSON.parse(kv.value) as Record<string, unknown>)[kind] === null),
            ),
          ] as const,
      );
      const conns = randomConnections(rc, CONNECTIONS, 77 + round, {
        ports: PORTS,
        protocols: { 4: ['tcp', 'udp', 'icmp'], 6: ['tcp', 'udp', 'icmpv6'] },
        outside: { 4: out.ip },
        toOutside: false,
      });
      const seen = await send(conns);
      conns.forEach((c, i) => {
        const v = explain(model, { src: c.src, dst: c.dst, protocol: c.protocol, port: c.port });
        const got = seen[i];
        total++;
        if (v.allowed) allowed++;
        const [src, dst] = [c.src, c.dst].map(
          (a) => workloads.find((x) => x.ep.v4.includes(a) || x.ep.v6.includes(a))?.ep,
        );
        covered.add(`${v.allowed ? 'allowed' : 'denied'} ${c.protocol}`);
        covered.add(!src ? 'from outside' : src.host === dst?.host ? 'same host' : 'across hosts');
        if (v.allowed)
          for (const [kind, m] of without)
            if (!explain(m, { src: c.src, dst: c.dst, protocol: c.protocol, port: c.port }).allowed)
              covered.add(`needs a ${kind} rule`);
        if (got !== v.allowed)
          mismatches.push(
            `round ${round} (seed ${rc.seed}): ${c.protocol} ${c.src} -> ${c.dst}${c.port ? `:${c.port}` : ''}: explain ${v.allowed} (${v.reason}), packets ${String(got)}`,
          );
      });
      await cluster.ds.deleteDir(groupPrefix('sync'));
    }
    console.log(
      `differential on the kernel: ${total} connections, ${allowed} allowed, ${mismatches.length} differ from explain(); covered: ${[...covered].sort().join(', ')}`,
    );
    expect(mismatches).toEqual([]);
    expect(total).toBe(ROUNDS * CONNECTIONS);
    // Both verdicts, every protocol and path, and every kind of deciding rule met real packets.
    expect(allowed).toBeGreaterThan(total / 10);
    expect(total - allowed).toBeGreaterThan(total / 10);
    for (const p of ['tcp', 'udp', 'icmp', 'icmpv6'])
      for (const v of ['allowed', 'denied']) expect(covered).toContain(`${v} ${p}`);
    for (const k of ['from outside', 'same host', 'across hosts', ...RULE_KINDS.map((k) => `needs a ${k} rule`)]) {
      expect(covered).toContain(k);
    }
  });

  it('the same packets are refused once a rule they needed is gone (the probe sees drops)', async () => {
    // A control for the probe itself: one allowed connection, then the same one denied.
    const [a, b] = [workloads[0]!, workloads[5]!];
    await cluster.ds.deleteDir(groupsPrefix);
    await writeGroup(cluster, {
      groupId: 'open',
      members: [a.ep.endpointId, b.ep.endpointId],
      inbound: [{ group: 'open' }],
      outbound: [{ group: 'open' }],
    });
    const conn: RandomConnection = { src: a.ep.v4[0]!, dst: b.ep.v4[0]!, family: 4, protocol: 'udp', port: 5000 };
    await waitFor('udp a1 -> b1 arrives', async () => (await send([conn]))[0] === true, 15_000);
    await cluster.ds.put(groupRuleKey('open', 'inbound', 1), encodeRule({ cidr: '10.0.0.0/8' }));
    await waitFor('udp a1 -> b1 dropped', async () => (await send([conn]))[0] === false, 15_000);
  });
});
