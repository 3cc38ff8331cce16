import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevCluster } from '@calico/devcluster';
import { encodeRule, groupMemberKey, groupRuleKey } from '@calico/keyspace';
import { hostIfName } from '@calico/node';
import { waitFor, type ManagedProcess } from '@calico/testkit';
import { clusterForSuite, startNodeProgrammed, startWorkload, writeGroup, type Workload } from './helpers.js';
import { ruleGuard } from './spoof.js';
import { Chat, ruleCounter, startEcho } from './traffic.js';

const PORT = 7000;

/**
 * Established connections ride on conntrack past every rule. Taking away the rule or the
 * membership that allowed one must cut it: its conntrack entry goes, and its next packet meets
 * the rules as they are now.
 */
describe('a long-lived TCP connection when what allowed it goes', () => {
  let cluster: DevCluster;
  let A: Workload;
  let B: Workload;
  let echo: ManagedProcess;
  const chats: Chat[] = [];

  const started = clusterForSuite({ hosts: ['h1'] });
  beforeAll(async () => {
    cluster = started();
    const h1 = cluster.host('h1');
    A = await startWorkload(cluster, h1, 'A', '198.19.9.1');
    B = await startWorkload(cluster, h1, 'B', '198.19.9.2');
    // B takes tcp/7000 from members of "clients"; A sends through "out" (clients has no rules).
    await writeGroup(cluster, { groupId: 'out', members: [A.endpointId], outbound: [{ cidr: '0.0.0.0/0' }] });
    await writeGroup(cluster, { groupId: 'clients', members: [A.endpointId] });
    await writeGroup(cluster, {
      groupId: 'server',
      members: [B.endpointId],
      inbound: [{ group: 'clients', protocol: 'tcp', port: PORT }],
    });
    echo = await startEcho(cluster, B, B.addr, PORT);
  });
  afterAll(async () => {
    for (const c of chats) c.close();
    await echo?.stop();
  });

  const h1 = () => cluster.host('h1').ns;
  const tw = () => `cali-tw-${hostIfName(B.endpointId).slice(4)}`;
  const flows = async () =>
    (
      await h1()
        .execOk(['conntrack', '-L', '-p', 'tcp', '--dport', String(PORT), '-d', B.addr])
        .catch(() => '')
    )
      .split('\n')
      .filter((l) => l.includes('ESTABLISHED'));
  const connect = async () => {
    const c = await Chat.open(cluster, A, A.addr, B.addr, PORT);
    chats.push(c);
    return c;
  };
  /** Sends a line that must not come back: B's inbound chain drops it (its DROP counts it). */
  const dropped = async (c: Chat, line: string) => {
    const drops = () => ruleCounter(h1(), 4, 'filter', new RegExp(`-A ${tw()} .*-j DROP$`));
    const before = await drops();
    c.send(line);
    await waitFor(`"${line}" to meet the DROP of ${tw()}`, async () => (await drops()) > before, 10_000);
    return !c.lines.includes(line);
  };

  it('control: a rule taken out of the kernel alone leaves the established connection up', async () => {
    const c = await connect();
    c.send('one');
    expect(await c.echoed('one')).toBe(true);
    // With the node stopped nothing forgets the flow: only the rule goes.
    await cluster.stopNode('h1');
    const rule = ruleGuard(h1(), 4, 'filter', tw(), /--dport 7000 /);
    try {
      await rule.off();
      c.send('two');
      expect(await c.echoed('two')).toBe(true);
      // A new connection meets the rules: refused.
      await expect(Chat.open(cluster, A, A.addr, B.addr, PORT, 3_000)).rejects.toThrow();
    } finally {
      await rule.on();
      await startNodeProgrammed(cluster, 'h1');
    }
    c.send('three');
    expect(await c.echoed('three')).toBe(true);
  });

  it('taking the rule away in etcd cuts the established connection', async () => {
    const c = await connect();
    c.send('before');
    expect(await c.echoed('before')).toBe(true);
    expect(await flows()).not.toEqual([]);
    await cluster.ds.delete(groupRuleKey('server', 'inbound', 1));
    await waitFor('the flow forgotten', async () => (await flows()).length === 0, 15_000);
    expect(await dropped(c, 'after')).toBe(true);
    // Put back for the next test.
    await cluster.ds.put(
      groupRuleKey('server', 'inbound', 1),
      encodeRule({ group: 'clients', protocol: 'tcp', port: PORT }),
    );
  });

  it('taking the membership away (the ipset loses the address) cuts it too', async () => {
    let c: Chat | undefined;
    await waitFor(
      'a connection once the rule is back',
      async () => {
        c = await connect().catch(() => undefined);
        return c !== undefined;
      },
      15_000,
    );
    c!.send('before');
    expect(await c!.echoed('before')).toBe(true);
    const rules = await h1().execOk(['iptables-save', '-t', 'filter']);
    await cluster.ds.delete(groupMemberKey('clients', A.endpointId));
    await waitFor('the flow forgotten', async () => (await flows()).length === 0, 15_000);
    expect(await dropped(c!, 'after')).toBe(true);
    // Only the set changed: no chain was rewritten for it.
    const strip = (t: string) => t.replace(/^#.*\n/gm, '');
    expect(strip(await h1().execOk(['iptables-save', '-t', 'filter']))).toBe(strip(rules));
  });
});
