import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { decodeIpAssignment, groupMemberKey, ipAssignmentKey, workloadPrefix, workloadsPrefix } from '@calico/keyspace';
import { hostIfName, LABELS } from '@calico/node';
import { exec, requireRoot, waitFor, type ExecResult } from '@calico/testkit';
import { containersNamed, hostCounts, keyCounts, type ContainerState } from './counts.js';
import { startNodeProgrammed, startWorkload, waitForMatrix, writeGroup, type Workload } from './helpers.js';

const RUNS = 50;
const GROUP = 'g-kill';

/**
 * kill -9 of calico-node while 50 `docker run`s go through its proxy at once. Whatever moment
 * the kill catches each of them in (reserving, creating, starting, plumbing, recording), once
 * the node is back every container is either running and fully networked or not running and
 * holding nothing but its own reservation; every `docker run` that said it worked left a
 * networked container; and nothing is left behind in the kernel or etcd once they are removed.
 */
describe('kill -9 of the node during 50 concurrent docker runs', () => {
  let cluster: DevCluster;
  let failed = false;

  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start({ hosts: ['h1'] });
    // The workloads' policy names their group, so that chains and an ipset exist per workload.
    await writeGroup(cluster, { groupId: GROUP, inbound: [{ group: GROUP }], outbound: [{ group: GROUP }] });
  });
  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== 'fail') return;
    failed = true;
    // What a failed round left goes, so that the next round starts from a clean baseline.
    console.error((await cluster.dump()).slice(0, 300_000));
    const left = await containersNamed(cluster, 'kill');
    if (left.length) await cluster.dockerd.docker(['rm', '-f', ...left.map((c) => c.id)]);
  });
  afterAll(async () => {
    if (failed) console.error('see the dumps above, one per failed round');
    await cluster?.stop();
  });

  const h1 = () => cluster.host('h1');

  /** Everything one container holds, read from the kernel, its netns and etcd. */
  async function holdings(c: ContainerState) {
    const endpointId = c.labels[LABELS.endpoint] ?? '';
    const addr = c.labels[LABELS.addrs] ?? '';
    const veth = (await h1().ns.exec(['ip', 'link', 'show', hostIfName(endpointId)])).code === 0;
    const raw = await cluster.ds.get(ipAssignmentKey(addr));
    const reservation = raw === undefined ? null : decodeIpAssignment(ipAssignmentKey(addr), raw);
    const { kvs } = await cluster.ds.getPrefix(workloadPrefix('h1', c.id));
    const state = kvs.find((kv) => kv.key.endsWith(`/endpoint/${endpointId}/state`))?.value ?? null;
    const inside = c.running
      ? await exec(['nsenter', `--net=/proc/${c.pid}/ns/net`, 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0'])
      : null;
    return {
      endpointId,
      addr,
      veth,
      reservedFor: reservation?.ok ? reservation.value.containerId : reservation ? 'malformed' : null,
      keys: kvs.length,
      state,
      addrInside: inside?.stdout.includes(` ${addr}/32 `) ?? false,
    };
  }

  // Killed early most runs are between reserve and create; later, more are starting and plumbing.
  it.each([
    { round: 1, killAfter: 5 },
    { round: 2, killAfter: 25 },
  ])(
    'killed after $killAfter answers: every container networked or holding nothing, and nothing behind',
    async ({ round, killAfter }) => {
      const addrOf = (i: number) => `198.19.2${round}.${i + 1}`;
      const prefix = `kill${round}-`;
      const baseline = { host: await hostCounts(h1()), keys: await keyCounts(cluster) };
      const node = h1().node!;
      // ip netns exec execs: the managed process is calico-node itself, not a wrapper.
      const cmdline = readFileSync(`/proc/${node.pid}/cmdline`, 'utf8').split('\0');
      expect(cmdline.some((a) => a.endsWith('/main.js'))).toBe(true);
      expect(cmdline).toContain('--hostname=h1');

      const answered: ExecResult[] = [];
      const runs = Array.from({ length: RUNS }, (_, i) =>
        h1()
          .docker([
            'run',
            '-d',
            '--name',
            `${prefix}${i}`,
            '-e',
            `CALICO_IP=${addrOf(i)}`,
            cluster.image,
            'sleep',
            '3600',
          ])
          .then((r) => (answered.push(r), r)),
      );
      // Kill once the first few are answered: the rest are caught at every step of their way.
      await waitFor('the first docker runs to be answered', () => answered.length >= killAfter, 120_000);
      const answeredAtKill = answered.length;
      process.kill(node.pid, 'SIGKILL');
      expect(await node.waitExit(10_000)).not.toBeUndefined();
      const results = await Promise.all(runs);
      const ok = results.map((r) => r.code === 0 && /^[0-9a-f]{64}$/.test(r.stdout.trim()));
      // Each run either worked and printed an id or failed and said why.
      for (const [i, r] of results.entries()) if (!ok[i]) expect(r.stderr.trim(), `run ${i}`).not.toBe('');
      const errors = new Map<string, number>();
      for (const r of results.filter((_, i) => !ok[i])) {
        const line = r.stderr
          .trim()
          .split('\n')[0]!
          .replace(/[0-9a-f]{12,64}/g, '<id>')
          .replace(/name=[\w-]+/, 'name=<name>')
          .replace(/\S*docker-proxy\.sock\S*/g, '<proxy>');
        errors.set(line, (errors.get(line) ?? 0) + 1);
      }
      console.log(
        `node killed after ${answeredAtKill} answers: docker run worked ${ok.filter(Boolean).length}, failed ${ok.filter((x) => !x).length}`,
      );
      console.log(`errors seen by the docker CLI:\n${[...errors].map(([e, n]) => `  ${n} × ${e}`).join('\n')}`);

      const tRestart = Date.now();
      await startNodeProgrammed(cluster, 'h1');
      const summary =
        h1()
          .node!.log()
          .split('\n')
          .filter((l) => l.includes('reconciled workloads'))
          .pop() ?? '';
      const {
        running: r,
        stopped: st,
        released: rel,
        reservations: res,
        veths: v,
      } = JSON.parse(summary) as Record<string, unknown>;
      console.log(
        `node back, programmed and reconciled in ${Date.now() - tRestart} ms: ${JSON.stringify({ running: r, stopped: st, released: rel, reservations: res, veths: v })}`,
      );

      const found = await containersNamed(cluster, prefix);
      const byName = new Map(found.map((c) => [c.name, c]));
      // A run that said it worked left its container running.
      for (const [i, r] of results.entries()) {
        if (ok[i])
          expect(byName.get(`${prefix}${i}`), `run ${i}`).toMatchObject({ id: r.stdout.trim(), running: true });
      }
      const idle = found.filter((c) => !c.running);
      console.log(
        `after the restart: ${found.length} containers exist, ${found.length - idle.length} running, ${idle.length} not (${idle.map((c) => c.status).join(', ')})`,
      );
      const ping = async (addr: string) =>
        (await h1().ns.exec(['busybox', 'ping', '-c', '1', '-W', '2', addr])).code === 0;
      const expectNetworked = async (running: ContainerState[]) => {
        for (const c of running) {
          const h = await holdings(c);
          expect(h, c.name).toEqual({
            ...h,
            veth: true,
            reservedFor: c.id,
            keys: 4,
            state: 'active',
            addrInside: true,
          });
          expect(await ping(h.addr), c.name).toBe(true);
        }
      };
      await expectNetworked(found.filter((c) => c.running));
      const reservedBefore = new Map<string, string | null>();
      for (const c of idle) {
        const h = await holdings(c);
        // Not running: no veth, its endpoint (if recorded) inactive; its address stays its own
        // (reserved for it, not "pending"), so that starting it later gives it that address.
        expect(h.veth, c.name).toBe(false);
        expect(h.state === null || h.state === 'inactive', `${c.name}: state ${h.state}`).toBe(true);
        expect([c.id, null], `${c.name}: reserved for ${h.reservedFor}`).toContain(h.reservedFor);
        reservedBefore.set(c.id, h.reservedFor);
      }
      // Started now through the proxy, each comes up networked with its own address.
      for (const c of idle) {
        const r = await h1().docker(['start', c.id]);
        expect(r.code, `${c.name}: ${r.stderr}`).toBe(0);
      }
      const containers = await containersNamed(cluster, prefix);
      expect(containers.filter((c) => !c.running).map((c) => c.name)).toEqual([]);
      const running = containers;
      await expectNetworked(running);

      // No reservation of the 50 addresses other than the containers' own; none left pending.
      const reserved = async () => {
        const out = new Map<string, string>();
        for (let i = 0; i < RUNS; i++) {
          const raw = await cluster.ds.get(ipAssignmentKey(addrOf(i)));
          if (raw !== undefined) out.set(addrOf(i), raw);
        }
        return out;
      };
      const holders = await reserved();
      const ownAddr = new Map(containers.map((c) => [c.labels[LABELS.addrs], c.id]));
      for (const [addr, raw] of holders) expect(JSON.parse(raw).containerId, addr).toBe(ownAddr.get(addr));

      // The group's policy reaches the kernel for every running workload: two chains and an ipset member each.
      await cluster.ds.batch(
        running.map((c) => ({ put: groupMemberKey(GROUP, c.labels[LABELS.endpoint]!), value: '' })),
      );
      let seen = '';
      await waitFor(
        `the kernel to hold ${running.length} workloads`,
        async () => {
          const now = await hostCounts(h1());
          seen = JSON.stringify(now);
          return (
            now.veths - baseline.host.veths === running.length &&
            now.chains - baseline.host.chains === 2 * running.length &&
            now.ipsetMembers - baseline.host.ipsetMembers === running.length
          );
        },
        30_000,
        () => `baseline ${JSON.stringify(baseline.host)}\nnow      ${seen}`,
      );
      const during = { host: await hostCounts(h1()), keys: await keyCounts(cluster) };
      console.log(`baseline: ${JSON.stringify(baseline)}\nafter the restart: ${JSON.stringify(during)}`);
      // Endpoint keys only of containers that exist; reservations only theirs.
      const present = new Set(containers.map((c) => c.id));
      const recorded = new Set(
        (await cluster.ds.getPrefix(workloadsPrefix('h1'))).kvs.map(
          (kv) => kv.key.slice(workloadsPrefix('h1').length).split('/')[0]!,
        ),
      );
      for (const id of recorded)
        expect(present.has(id), `endpoint keys of a container that does not exist: ${id}`).toBe(true);
      expect((during.keys.endpointState ?? 0) - (baseline.keys.endpointState ?? 0)).toBe(recorded.size);
      expect((during.keys.ipAssignment ?? 0) - (baseline.keys.ipAssignment ?? 0)).toBe(holders.size);

      // Traffic: three running workloads in the group reach each other.
      const sample: Workload[] = running.slice(0, 3).map((c, i) => ({
        name: `W${i}`,
        host: h1(),
        id: c.id,
        endpointId: c.labels[LABELS.endpoint]!,
        addr: c.labels[LABELS.addrs]!,
        exec: (args) => cluster.dockerd.docker(['exec', c.id, ...args]),
      }));
      const all = sample.flatMap((a) => sample.filter((b) => b !== a).map((b) => `${a.name}->${b.name}`)).sort();
      await waitForMatrix(sample, all, 30_000);

      // Every container goes through the proxy; everything returns to the baseline.
      if (containers.length) {
        const r = await h1().docker(['rm', '-f', ...containers.map((c) => c.id)]);
        expect(r.code, r.stderr).toBe(0);
      }
      await cluster.ds.batch(running.map((c) => ({ delete: groupMemberKey(GROUP, c.labels[LABELS.endpoint]!) })));
      let last = '';
      const tRemoved = Date.now();
      await waitFor(
        'the kernel and etcd to return to the baseline',
        async () => {
          const now = { host: await hostCounts(h1()), keys: await keyCounts(cluster) };
          last = JSON.stringify(now);
          return last === JSON.stringify(baseline);
        },
        60_000,
        () => `baseline ${JSON.stringify(baseline)}\nnow      ${last}`,
      );
      console.log(
        `removed ${containers.length} containers; kernel and etcd back at the baseline ${Date.now() - tRemoved} ms after the rm answered`,
      );
      expect((await reserved()).size).toBe(0);
    },
  );
  it('a restart keeps running workloads networked in place; control: a veth lost meanwhile is plumbed anew', async () => {
    const a = await startWorkload(cluster, h1(), 'KA', '198.19.29.1');
    const b = await startWorkload(cluster, h1(), 'KB', '198.19.29.2');
    await cluster.ds.batch([a, b].map((w) => ({ put: groupMemberKey(GROUP, w.endpointId), value: '' })));
    await waitForMatrix([a, b], ['KA->KB', 'KB->KA'], 30_000);
    const ifindex = async (w: Workload) =>
      (await h1().ns.exec(['cat', `/sys/class/net/${hostIfName(w.endpointId)}/ifindex`])).stdout.trim();
    const before = { a: await ifindex(a), b: await ifindex(b) };
    expect(before.a).toMatch(/^\d+$/);
    expect(before.b).toMatch(/^\d+$/);

    await cluster.stopNode('h1');
    // B's veth goes while the node is down, as a crash in the middle of a plumbing can leave it.
    expect((await h1().ns.exec(['ip', 'link', 'del', hostIfName(b.endpointId)])).code).toBe(0);
    // Pings to A from its host for the whole restart: a re-plumbing would take its veth away.
    const pinger = h1().ns.exec(['busybox', 'ping', '-c', '150', '-i', '0.1', '-W', '1', a.addr]);
    await startNodeProgrammed(cluster, 'h1');
    const after = { a: await ifindex(a), b: await ifindex(b) };
    expect(after.a).toBe(before.a);
    // The control: B came back with a veth of its own, a new one.
    expect(after.b).toMatch(/^\d+$/);
    expect(after.b).not.toBe(before.b);
    const log = h1().node!.log();
    // The last word on each (the log runs on over the node's restarts).
    const line = (w: Workload) =>
      log
        .split('\n')
        .filter((l) => l.includes(w.id.slice(0, 12)) && l.includes('its endpoint recorded as active'))
        .pop() ?? '';
    expect(line(a)).toContain('kept from before and converged in place');
    expect(line(b)).toContain('"msg":"workload networked;');
    await waitForMatrix([a, b], ['KA->KB', 'KB->KA'], 30_000);
    const ping = await pinger;
    const m = /(\d+) packets transmitted, (\d+) packets received/.exec(ping.stdout);
    console.log(`pings to a kept workload across the node's restart: ${m?.[0] ?? ping.stdout}`);
    expect(m?.[1]).toBe('150');
    expect(m?.[2]).toBe('150');

    const r = await h1().docker(['rm', '-f', a.id, b.id]);
    expect(r.code, r.stderr).toBe(0);
    await cluster.ds.batch([a, b].map((w) => ({ delete: groupMemberKey(GROUP, w.endpointId) })));
  });
});
