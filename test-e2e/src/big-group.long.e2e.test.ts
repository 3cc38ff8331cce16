import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { groupMemberKey } from '@calico/keyspace';
import { policyFixtures, type KeyValue } from '@calico/policy';
import { requireRoot, waitFor } from '@calico/testkit';
import { expectMatrix, startWorkload, writeGroup, type Workload } from './helpers.js';
import { Listener, startFlood } from './traffic.js';

const MEMBERS = 150_000;

/**
 * A group of 150,000 members on the real kernel: its ipset grows past ipset's default size
 * (65,536) while traffic flows, and is replaced by a bigger one without a moment in which the
 * rule that names it lets through what it should not or drops what it should not.
 */
describe('a group of 150,000 members', () => {
  let cluster: DevCluster;
  let A: Workload;
  let B: Workload;
  let C: Workload;
  let failed = false;

  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start({ hosts: ['h1'] });
    const h1 = cluster.host('h1');
    A = await startWorkload(cluster, h1, 'A', 'fd00:198:19:8::a');
    B = await startWorkload(cluster, h1, 'B', 'fd00:198:19:8::b');
    C = await startWorkload(cluster, h1, 'C', 'fd00:198:19:8::c');
    // A takes traffic from its group only; B is in it, C is not (and may send anything).
    await writeGroup(cluster, {
      groupId: 'big',
      members: [A.endpointId, B.endpointId],
      inbound: [{ group: 'big' }],
      outbound: [{ cidr: '::/0' }],
    });
    await writeGroup(cluster, { groupId: 'other', members: [C.endpointId], outbound: [{ cidr: '::/0' }] });
    await expectMatrix(cluster, [A, B, C], ['A->B', 'B->A']);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) console.error((await cluster.dump()).slice(0, 200_000));
    await cluster?.stop();
  });

  it('its ipset is rebuilt bigger and swapped in while B keeps reaching A and C never does', async () => {
    const h1 = cluster.host('h1').ns;
    const setLine = async () =>
      (await h1.execOk(['ipset', 'list', '-t'])).split('\n\n').find((b) => b.includes('Name: cali6g-')) ?? '';
    const setName = /Name: (\S+)/.exec(await setLine())?.[1];
    expect(setName).toBeDefined();
    expect(await setLine()).toContain('maxelem 65536');
    const rulesBefore = await h1.execOk(['ip6tables-save', '-t', 'filter']);

    const listener = await Listener.start(cluster, A, A.addr, [5000]);
    let sentB = 0;
    let sentC = 0;
    const fromB = await startFlood(cluster, B, B.addr, A.addr, 5000, 'b');
    const fromC = await startFlood(cluster, C, C.addr, A.addr, 5000, 'c');
    try {
      await waitFor(
        'the floods to start arriving',
        () => [...listener.heard()].some((id) => id.startsWith('b-')),
        10_000,
      );
      // 150,000 endpoints on another host, all members of the group: 450,000 keys.
      const keys: KeyValue[] = [];
      for (let i = 1; i <= MEMBERS; i++) {
        const endpointId = `${i.toString(16).padStart(8, '0')}-0000-4000-8000-00000000feed`;
        keys.push(
          ...policyFixtures.endpoint({
            host: 'far',
            endpointId,
            addrs: [`fd00:198:19:ff::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}`],
            mac: null,
          }),
        );
        keys.push({ key: groupMemberKey('big', endpointId), value: '' });
      }
      for (let i = 0; i < keys.length; i += 128 * 8) {
        await Promise.all(
          Array.from({ length: 8 }, (_, j) => keys.slice(i + j * 128, i + (j + 1) * 128))
            .filter((c) => c.length)
            .map((c) => cluster.ds.batch(c.map((kv) => ({ put: kv.key, value: kv.value })))),
        );
      }
      await waitFor(
        `${MEMBERS + 2} members in the kernel`,
        async () => (await setLine()).includes(`Number of entries: ${MEMBERS + 2}`),
        180_000,
        () => '',
      );
    } finally {
      sentB = await fromB.stop();
      sentC = await fromC.stop();
    }
    // Late datagrams of the floods have arrived once the last of B's has.
    await waitFor("B's last datagram", () => listener.heard().has(`b-${sentB - 1}`), 10_000);
    const heard = listener.heard();
    await listener.stop();
    const fromBHeard = [...heard].filter((id) => id.startsWith('b-')).length;
    const fromCHeard = [...heard].filter((id) => id.startsWith('c-')).length;
    console.log(
      `big group: ${MEMBERS + 2} members, maxelem now ${/maxelem (\d+)/.exec(await setLine())?.[1]}; B sent ${sentB} datagrams (${fromBHeard} arrived), C sent ${sentC} (${fromCHeard} arrived)`,
    );
    expect(sentB).toBeGreaterThan(1_000);
    expect(sentC).toBeGreaterThan(1_000);
    expect(fromBHeard).toBe(sentB);
    expect(fromCHeard).toBe(0);
    // The same set, under the same name, now big enough; the rules never changed.
    const after = await setLine();
    expect(after).toContain(`Name: ${setName}`);
    const maxelem = Number(/maxelem (\d+)/.exec(after)?.[1]);
    expect(maxelem).toBeGreaterThanOrEqual(MEMBERS + 2);
    const strip = (t: string) => t.replace(/^#.*\n/gm, '');
    expect(strip(await h1.execOk(['ip6tables-save', '-t', 'filter']))).toBe(strip(rulesBefore));
  });
});
