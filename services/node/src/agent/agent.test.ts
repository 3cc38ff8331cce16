/**
 * The policy agent driven without etcd: batches and statuses go in through handleBatch() and
 * handleStatus() (what the syncer calls), the kernel is a FakeKernel.
 */
import type { Datastore, SyncBatch, SyncHandler, SyncStatus } from '@calico/datastore';
import {
  bird6IpKey,
  birdIpKey,
  diagsUrlKey,
  groupMemberKey,
  groupRuleKey,
  masterApiUrlKey,
  masterIpKey,
} from '@calico/keyspace';
import { createLogger } from '@calico/log';
import { policyFixtures as fx, type KeyValue } from '@calico/policy';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { hostIfName } from '../plumber/names.js';
import { ENDPOINT_TO_HOST_KEY, PolicyAgent, agentKeyFilter, narrows, type PolicyAgentOptions } from './agent.js';
import { FakeKernel } from './fakeKernel.js';
import { walkForward } from './packetWalk.js';
import { fromChain, groupSetName, toChain } from './names.js';

const logger = createLogger({ name: 'agent-test', level: 'silent' });

const L1 = 'a1a1a1a1a1a1a1a1'; // h1, v4 + v6, in web
const L2 = 'b2b2b2b2b2b2b2b2'; // h1, v4, in db
const R1 = 'c3c3c3c3c3c3c3c3'; // h2, in web
const R2 = 'd4d4d4d4d4d4d4d4'; // h2, v4 only, in no group (yet)
const if1 = hostIfName(L1);
const if2 = hostIfName(L2);
const WEB4 = groupSetName('web', 4);
const WEB6 = groupSetName('web', 6);

const ep = {
  L1: fx.endpoint({ host: 'h1', endpointId: L1, addrs: ['10.65.0.1', 'fd00::1'], mac: '02:00:00:00:00:01' }),
  L2: fx.endpoint({ host: 'h1', endpointId: L2, addrs: ['10.65.0.2'] }),
  R1: fx.endpoint({ host: 'h2', endpointId: R1, addrs: ['10.65.1.1', 'fd00::1:1'] }),
  R2: fx.endpoint({ host: 'h2', endpointId: R2, addrs: ['10.65.1.2'] }),
};
const web = fx.group({
  groupId: 'web',
  members: [L1, R1],
  inbound: [{ group: 'web' }, { cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 }],
  outbound: [{ group: 'web' }, { cidr: '0.0.0.0/0' }, { cidr: '::/0' }],
});
const db = fx.group({
  groupId: 'db',
  members: [L2],
  inbound: [
    { group: 'web', protocol: 'tcp', port: 5432 },
    { cidr: '10.0.0.0/8', protocol: 'tcp', port: 22 },
  ],
});
const all: KeyValue[] = [
  ...ep.L1,
  ...ep.L2,
  ...ep.R1,
  ...ep.R2,
  ...web,
  ...db,
  { key: ENDPOINT_TO_HOST_KEY, value: 'accept' },
];

type Update = { type: 'put'; key: string; value: string } | { type: 'delete'; key: string };
const puts = (kvs: readonly KeyValue[]): Update[] => kvs.map(({ key, value }) => ({ type: 'put', key, value }));
const dels = (kvs: readonly KeyValue[]): Update[] => kvs.map(({ key }) => ({ type: 'delete', key }));
const batch = (updates: Update[], kind: SyncBatch['kind'] = 'watch'): SyncBatch => ({
  kind,
  revision: 0,
  updates: updates.map((u) => ({ ...u, revision: 0 })),
});
/** A rule as the test reads it back: without our hash comment. */
const plain = (rules: string[] | undefined) =>
  rules?.map((r) => r.replace(/-m comment --comment "cali:[A-Za-z0-9]+" /, ''));

const agents: PolicyAgent[] = [];
function newAgent(opts: Partial<PolicyAgentOptions> = {}) {
  const kernel = new FakeKernel();
  const agent = new PolicyAgent({ host: 'h1', kernel, logger, ...opts });
  agents.push(agent);
  return { kernel, agent };
}

/** An agent in sync with `keys`, everything applied, its kernel's counters reset. */
async function inSync(keys: readonly KeyValue[] = all, opts: Partial<PolicyAgentOptions> = {}) {
  const { kernel, agent } = newAgent(opts);
  agent.handleBatch(batch(puts(keys), 'snapshot'));
  agent.handleStatus('in-sync', 'test');
  await agent.idle();
  kernel.resetCalls();
  return { kernel, agent };
}

const tick = () => new Promise((r) => setImmediate(r));

afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
});

describe('agentKeyFilter', () => {
  const keep = agentKeyFilter('h1');
  const dir = (host: string) => `/calico/host/${host}/workload/docker/c1/endpoint/e1`;
  it.each([
    [`${dir('h2')}/addrs`, true],
    [`${dir('h2')}/state`, true],
    [`${dir('h2')}/mac`, false],
    // Ending in the same letters is not enough.
    [`${dir('h2')}/oldaddrs`, false],
    [`${dir('h2')}/laststate`, false],
    [`${dir('h2')}/adds`, false],
    // Every host's bird_ip and bird6_ip (addresses no container may take; with diags_url the control
    // plane), and nothing that only ends alike.
    ['/calico/host/h2/bird_ip', true],
    ['/calico/host/h2/bird6_ip', true],
    ['/calico/host/h2/diags_url', true],
    ['/calico/host/h2/bird7_ip', false],
    ['/calico/host/h2/alive', false],
    ['/calico/host/h2/xbird_ip', false],
    ['/calico/host/h2/config/bird_ip', false],
    [`${dir('h2')}/bird_ip`, false],
    ['/calico/host/h2/state', true],
    // This host's keys, and everything outside the host directories, whatever they end in.
    [`${dir('h1')}/mac`, true],
    [`${dir('h1')}/anything`, true],
    ['/calico/host/h1/bird_ip', true],
    ['/calico/host/h10/workload/docker/c1/endpoint/e1/mac', false],
    ['/calico/network/group/g/member/e1', true],
    ['/calico/network/group/g/name', true],
    ['/calico/config/EndpointToHostAction', true],
    ['/calico/hostish/mac', true],
  ])('%s: %s', (key, kept) => {
    expect(keep(key)).toBe(kept);
  });
});

describe('PolicyAgent', () => {
  it("keeps every host's bird_ip and bird6_ip from its sync: puts, deletes, resyncs, bad values", async () => {
    const { agent } = newAgent();
    let synced = false;
    void agent.whenSynced().then(() => (synced = true));
    const bird = [
      { key: birdIpKey('h1'), value: '198.18.0.11' },
      { key: birdIpKey('h2'), value: '198.18.0.12' },
      { key: bird6IpKey('h2'), value: 'fd00:198:18::12' },
      { key: birdIpKey('h3'), value: 'not an address' },
    ];
    agent.handleBatch(batch(puts([...all, ...bird]), 'snapshot'));
    await tick();
    expect(synced).toBe(false);
    agent.handleStatus('in-sync', 'test');
    await tick();
    expect(synced).toBe(true);
    const seen = () => Object.fromEntries(agent.birdIps());
    expect(seen()).toEqual({ '198.18.0.11': 'h1', '198.18.0.12': 'h2', 'fd00:198:18::12': 'h2' });
    agent.handleBatch(
      batch([
        { type: 'put', key: birdIpKey('h2'), value: '198.18.0.22' },
        { type: 'put', key: birdIpKey('h3'), value: '198.18.0.13' },
        { type: 'delete', key: bird6IpKey('h2') },
      ]),
    );
    expect(seen()).toEqual({ '198.18.0.11': 'h1', '198.18.0.22': 'h2', '198.18.0.13': 'h3' });
    // A value that stops decoding takes the address away; so does a resync's delete.
    agent.handleBatch(batch([{ type: 'put', key: birdIpKey('h3'), value: '' }]));
    agent.handleBatch(batch([{ type: 'delete', key: birdIpKey('h1') }], 'resync'));
    expect(seen()).toEqual({ '198.18.0.22': 'h2' });
  });

  it('writes nothing to the kernel before the datastore is in sync', async () => {
    const { kernel, agent } = newAgent();
    agent.handleStatus('resyncing', 'starting');
    agent.handleBatch(batch(puts(all), 'snapshot'));
    await agent.idle();
    await tick();
    await tick();
    // Reading the kernel meanwhile is fine (the first write needs it); writing is not.
    expect(kernel.calls).toMatchObject({ iptablesRestore: 0, ipsetRestore: 0 });
    expect(agent.status()).toMatchObject({ everInSync: false, programmed: false, applies: 0, localEndpoints: 0 });

    agent.handleStatus('in-sync', 'watching');
    await agent.idle();
    expect(kernel.chainNames(4, 'filter')).toContain(fromChain(if1));
    expect(agent.status()).toMatchObject({
      syncStatus: 'in-sync',
      everInSync: true,
      programmed: true,
      localEndpoints: 2,
      ipsets: 2,
      lastError: null,
    });
  });

  it('on an empty kernel, installs its hooks at once, dropping workload traffic until the first full sync', async () => {
    const { kernel, agent } = newAgent();
    expect(await agent.installHooks()).toBe('installed');
    const tables = { rules: kernel.rules.bind(kernel), policy: kernel.chainPolicy.bind(kernel), setHas: () => false };
    const packet = {
      family: 4 as const,
      src: '10.65.0.1',
      dst: '10.65.1.1',
      protocol: 6,
      dport: 80,
      sport: 40_000,
      inIf: if1,
      outIf: 'eth0',
      srcMac: '02:00:00:00:00:01',
      reversePathOk: true,
      ctState: 'NEW' as const,
    };
    // Control: a packet between two other interfaces still passes the hooks.
    expect(walkForward(tables, { ...packet, inIf: 'eth1', outIf: 'eth0' }).accepted).toBe(true);
    for (const p of [
      packet,
      { ...packet, inIf: 'eth0', outIf: if1 },
      { ...packet, family: 6 as const, src: 'fd00::1', dst: 'fd00::1:1' },
    ]) {
      expect(walkForward(tables, p).accepted).toBe(false);
    }
    expect(kernel.rules(4, 'filter', 'INPUT')).toEqual([expect.stringContaining('-j cali-INPUT')]);
    let programmed = false;
    void agent.whenProgrammed().then(() => (programmed = true));
    agent.handleBatch(batch(puts(all), 'snapshot'));
    agent.handleStatus('in-sync', 'watching');
    await agent.idle();
    await tick();
    expect(programmed).toBe(true);
    // The first full sync replaces the closed chains: L1 may now send what its groups allow.
    expect(walkForward(tables, { ...packet, dst: '10.65.1.1', outIf: 'eth0' }).accepted).toBe(true);
  });

  it('keeps what a kernel with its hooks has until the first full sync (a restarted node)', async () => {
    const { kernel } = await inSync();
    const before = kernel.dump();
    const next = new PolicyAgent({ host: 'h1', kernel, logger });
    agents.push(next);
    expect(await next.installHooks()).toBe('kept');
    expect(kernel.calls).toMatchObject({ iptablesRestore: 0, ipsetRestore: 0 });
    expect(kernel.dump()).toBe(before);
  });

  it('counts the first full sync as programmed only once the kernel has taken it', async () => {
    const { kernel, agent } = newAgent();
    kernel.failNext('iptablesRestore');
    agent.handleBatch(batch(puts(all), 'snapshot'));
    agent.handleStatus('in-sync', 'watching');
    await vi.waitFor(() => expect(agent.status().lastError).toMatch(/injected failure/));
    // The write was refused: in sync with etcd, not yet with the kernel.
    expect(kernel.received.filter((r) => r.kind === 'iptablesRestore' && !r.ok)).toHaveLength(1);
    expect(agent.status()).toMatchObject({ everInSync: true, programmed: false });
    await agent.idle();
    expect(agent.status()).toMatchObject({ programmed: true, lastError: null });
    expect(kernel.chainNames(4, 'filter')).toContain(fromChain(if1));
  });

  it("programs this host's endpoints only; remote endpoints are ipset members", async () => {
    const { kernel } = await inSync();
    // L2 has no IPv6 address: no IPv6 chains, and the IPv6 dispatch drops its packets.
    for (const [family, ifs] of [
      [4, [if1, if2]],
      [6, [if1]],
    ] as const) {
      const chains = kernel.chainNames(family, 'filter').filter((c) => /^cali-(fw|tw)-/.test(c));
      expect(chains.sort()).toEqual(ifs.flatMap((i) => [fromChain(i), toChain(i)]).sort());
      expect(plain(kernel.rules(family, 'filter', 'cali-from-wl'))).toEqual([
        ...ifs.map((i) => `-i ${i} -g ${fromChain(i)}`),
        '-j DROP',
      ]);
    }
    expect(kernel.setNames()).toEqual([WEB4, WEB6, 'cali4-ctl', 'cali6-ctl'].sort());
    expect(kernel.setMembers(WEB4)).toEqual(['10.65.0.1', '10.65.1.1']);
    expect(kernel.setMembers(WEB6)).toEqual(['fd00::1', 'fd00::1:1']);
    expect(plain(kernel.rules(4, 'filter', toChain(if2)))).toEqual([
      `-p tcp -m set --match-set ${WEB4} src -m tcp --dport 5432 -j RETURN`,
      '-s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j RETURN',
      '-j DROP',
    ]);
  });

  describe('the order of updates does not change the final kernel', () => {
    /** Batches of 1 to 5 updates, cut at places that depend on the seed. */
    const chunks = <T>(items: T[], seed: number): T[][] => {
      const out: T[][] = [];
      let i = 0;
      let n = seed;
      while (i < items.length) {
        const size = 1 + (n % 5);
        n = (n * 7 + 3) % 101;
        out.push(items.slice(i, i + size));
        i += size;
      }
      return out;
    };
    // Per-key histories that end where `all` ends: transient values, a transient endpoint, a
    // transient membership and a rule that is malformed for a while.
    const L9 = fx.endpoint({ host: 'h1', endpointId: 'e9e9e9e9e9e9e9e9', addrs: ['10.65.0.9'] });
    const histories: Update[][] = [
      ...puts(all.filter((kv) => kv.key !== ep.L1[0]!.key && kv.key !== db[1]!.key)).map((u) => [u]),
      [...puts([{ key: ep.L1[0]!.key, value: JSON.stringify([{ addr: '10.65.0.7' }]) }]), ...puts([ep.L1[0]!])],
      [{ type: 'put', key: db[1]!.key, value: '{"group": "web", "protocol": ' }, ...puts([db[1]!])],
      ...L9.map((kv) => [...puts([kv]), ...dels([kv])]),
      [
        ...puts([{ key: groupMemberKey('web', 'e9e9e9e9e9e9e9e9'), value: '' }]),
        { type: 'delete', key: groupMemberKey('web', 'e9e9e9e9e9e9e9e9') },
      ],
      [...puts([{ key: groupMemberKey('db', R2), value: '' }]), { type: 'delete', key: groupMemberKey('db', R2) }],
    ];
    const seeds = [1, 2, 3, 4, 5, 6, 7, 8];
    let expected = '';

    it('reference: one snapshot', async () => {
      const { kernel, agent } = await inSync();
      expect(agent.status().problems).toEqual([]);
      expected = kernel.dump();
      expect(expected).toContain(`-A ${toChain(if2)}`);
    });

    it.each(seeds)('all batches before in-sync, shuffled with seed %i', async (seed) => {
      const { kernel, agent } = newAgent();
      for (const b of chunks(fx.shuffle(puts(all), seed), seed)) agent.handleBatch(batch(b, 'snapshot'));
      agent.handleStatus('in-sync', 'test');
      await agent.idle();
      expect(kernel.dump()).toBe(expected);
    });

    it.each(seeds)('batches after in-sync, with transient values, interleaved with seed %i', async (seed) => {
      const { kernel, agent } = newAgent();
      agent.handleBatch(batch([], 'snapshot'));
      agent.handleStatus('in-sync', 'test');
      await agent.idle();
      for (const b of chunks(fx.interleave(histories, seed), seed)) agent.handleBatch(batch(b));
      await agent.idle();
      expect(kernel.dump()).toBe(expected);
      expect(agent.status().problems).toEqual([]);
    });

    it.each(seeds)('batches after in-sync, applied one by one, interleaved with seed %i', async (seed) => {
      const { kernel, agent } = newAgent();
      agent.handleBatch(batch([], 'snapshot'));
      agent.handleStatus('in-sync', 'test');
      for (const b of chunks(fx.interleave(histories, seed), seed + 11)) {
        agent.handleBatch(batch(b));
        await agent.idle();
      }
      expect(kernel.dump()).toBe(expected);
    });
  });

  it('a remote endpoint joining a group that a local rule names costs one ipset restore of one entry', async () => {
    const { kernel, agent } = await inSync();
    agent.handleBatch(batch(puts([{ key: groupMemberKey('web', R2), value: '' }])));
    await agent.idle();
    expect(kernel.calls).toEqual({ iptablesRestore: 0, ipsetRestore: 1, saves: 0 });
    expect(kernel.texts('ipsetRestore')).toEqual([`add ${WEB4} 10.65.1.2\n`]);
    expect(agent.status().lastApply).toMatchObject({ kernelCalls: 1, ipsetEntries: 1, chainsWritten: 0 });

    // And leaving again: one entry out.
    kernel.resetCalls();
    agent.handleBatch(batch([{ type: 'delete', key: groupMemberKey('web', R2) }]));
    await agent.idle();
    expect(kernel.texts('ipsetRestore')).toEqual([`del ${WEB4} 10.65.1.2\n`]);
    expect(kernel.calls.iptablesRestore).toBe(0);
  });

  it('a local endpoint that goes away loses its chains, and conntrack forgets its addresses', async () => {
    const { kernel, agent } = await inSync();
    agent.handleBatch(batch(dels(ep.L1)));
    await agent.idle();
    for (const family of [4, 6] as const) {
      expect(kernel.chainNames(family, 'filter')).not.toContain(fromChain(if1));
      expect(kernel.chainNames(family, 'filter')).not.toContain(toChain(if1));
      expect(plain(kernel.rules(family, 'filter', 'cali-to-wl'))).toEqual([
        ...(family === 4 ? [`-o ${if2} -g ${toChain(if2)}`] : []),
        '-j DROP',
      ]);
    }
    expect([...kernel.conntrackFlushed].sort()).toEqual(['10.65.0.1', 'fd00::1']);
    // L2's rule still names web, whose only member left is remote; web's IPv6 set is no longer named.
    expect(kernel.setMembers(WEB4)).toEqual(['10.65.1.1']);
    expect(kernel.setNames()).toEqual([WEB4, 'cali4-ctl', 'cali6-ctl'].sort());
    expect(agent.status().localEndpoints).toBe(1);
  });

  it('an endpoint gaining its first IPv6 address gets IPv6 chains and a place in the IPv6 dispatch', async () => {
    const { kernel, agent } = await inSync();
    expect(kernel.chainNames(6, 'filter')).not.toContain(fromChain(if2));
    agent.handleBatch(
      batch(puts([{ key: ep.L2[0]!.key, value: JSON.stringify([{ addr: '10.65.0.2' }, { addr: 'fd00::2' }]) }])),
    );
    await agent.idle();
    expect(plain(kernel.rules(6, 'filter', 'cali-from-wl'))).toEqual([
      `-i ${if1} -g ${fromChain(if1)}`,
      `-i ${if2} -g ${fromChain(if2)}`,
      '-j DROP',
    ]);
    expect(plain(kernel.rules(6, 'filter', fromChain(if2)))).toContain('! -s fd00::2/128 -j DROP');
    expect(kernel.received.every((r) => r.ok)).toBe(true);
  });

  it('the dispatch tree grows branches with many workloads, and loses them when they go', async () => {
    const many = Array.from({ length: 80 }, (_, i) =>
      fx.endpoint({
        host: 'h1',
        endpointId: `${(0xe00 + i).toString(16).padStart(11, '0')}00000`,
        addrs: [`10.66.0.${i + 1}`],
      }),
    );
    const { kernel, agent } = await inSync([...all, ...many.flat()]);
    const branches = () =>
      kernel.chainNames(4, 'filter').filter((c) => c.startsWith('cali-from-wl-') || c.startsWith('cali-to-wl-'));
    expect(branches().length).toBeGreaterThan(0);
    expect(
      plain(kernel.rules(4, 'filter', 'cali-from-wl'))!.every(
        (r) => r === '-j DROP' || / -g cali-(from-wl-|fw-)/.test(r),
      ),
    ).toBe(true);
    agent.handleBatch(batch(dels(many.slice(0, 75).flat())));
    await agent.idle();
    // 7 workloads are left: one chain holds them all again, and no branch is left behind.
    expect(branches()).toEqual([]);
    expect(plain(kernel.rules(4, 'filter', 'cali-from-wl'))).toHaveLength(7 + 1);
    expect(kernel.received.every((r) => r.ok)).toBe(true);
  });

  it('a rule taken away: the flows of the endpoints it applied to are forgotten, after the new rules are in', async () => {
    const { kernel, agent } = await inSync();
    const release = kernel.hold('iptablesRestore');
    // db's ssh rule goes: L2 (db) gets new chains.
    agent.handleBatch(batch([{ type: 'delete', key: groupRuleKey('db', 'inbound', 2) }]));
    await kernel.waiting('iptablesRestore');
    expect(kernel.conntrackFlushed).toEqual([]);
    release();
    await agent.idle();
    expect(kernel.conntrackFlushed).toEqual(['10.65.0.2']);
  });

  it('a rule added only allows more: its endpoints get new chains and conntrack is not called', async () => {
    const { kernel, agent } = await inSync();
    const before = plain(kernel.rules(4, 'filter', toChain(if2)));
    agent.handleBatch(
      batch(
        puts([
          {
            key: groupRuleKey('db', 'inbound', 3),
            value: JSON.stringify({ cidr: '10.9.0.0/16', protocol: 'tcp', port: 8080 }),
          },
        ]),
      ),
    );
    await agent.idle();
    const after = plain(kernel.rules(4, 'filter', toChain(if2))) ?? [];
    expect(after).not.toEqual(before);
    expect(after.some((r) => r.includes('10.9.0.0/16'))).toBe(true);
    expect(kernel.conntrackFlushed).toEqual([]);
  });

  it('narrows: a rule gone, or a new rule that is not an allow, allows less; allows added do not', () => {
    const old = ['! -s 10.0.0.1/32 -j DROP', '-s 10.1.0.0/16 -j RETURN', '-j DROP'];
    expect(narrows(old, old)).toBe(false);
    expect(
      narrows(old, ['! -s 10.0.0.1/32 -j DROP', '-s 10.1.0.0/16 -j RETURN', '-s 10.2.0.0/16 -j RETURN', '-j DROP']),
    ).toBe(false);
    expect(narrows(old, ['! -s 10.0.0.1/32 -j DROP', '-j DROP'])).toBe(true);
    expect(narrows(old, ['-m mac ! --mac-source 02:00:00:00:00:01 -j DROP', ...old])).toBe(true);
    expect(narrows(old, ['! -s 10.0.0.1/32 -j DROP', '-s 10.1.0.0/16 -p tcp -j RETURN', '-j DROP'])).toBe(true);
  });

  it('a member leaving a group that local rules name: conntrack forgets its flows; one joining costs nothing there', async () => {
    const { kernel, agent } = await inSync();
    agent.handleBatch(batch(puts([{ key: groupMemberKey('web', R2), value: '' }])));
    await agent.idle();
    expect(kernel.setMembers(WEB4)).toContain('10.65.1.2');
    expect(kernel.conntrackFlushed).toEqual([]);
    agent.handleBatch(batch([{ type: 'delete', key: groupMemberKey('web', R1) }]));
    await agent.idle();
    expect(kernel.setMembers(WEB4)).not.toContain('10.65.1.1');
    expect([...kernel.conntrackFlushed].sort()).toEqual(['10.65.1.1', 'fd00::1:1']);
  });

  it('an address leaving a local endpoint is forgotten by conntrack', async () => {
    const { kernel, agent } = await inSync();
    agent.handleBatch(batch(puts([{ key: ep.L1[0]!.key, value: JSON.stringify([{ addr: '10.65.0.1' }]) }])));
    await agent.idle();
    expect(kernel.conntrackFlushed).toEqual(['fd00::1']);
    // No IPv6 address left: its IPv6 chains go, and the IPv6 dispatch drops its packets.
    expect(kernel.chainNames(6, 'filter')).not.toContain(fromChain(if1));
    expect(plain(kernel.rules(6, 'filter', 'cali-from-wl'))).toEqual(['-j DROP']);
    expect(plain(kernel.rules(4, 'filter', 'cali-from-wl'))).toContain(`-i ${if1} -g ${fromChain(if1)}`);
  });

  it('a malformed rule does not crash the agent, is reported, and the other rules of its group still apply', async () => {
    const bad = groupRuleKey('db', 'inbound', 3);
    const { kernel, agent } = await inSync([...all, { key: bad, value: '{"cidr": "10.1.0.0/16", ' }]);
    const problems = agent.status().problems;
    expect(problems.map((p) => p.key)).toEqual([bad]);
    expect(problems[0]!.errors.join(' ')).toContain(bad);
    expect(plain(kernel.rules(4, 'filter', toChain(if2)))).toEqual([
      `-p tcp -m set --match-set ${WEB4} src -m tcp --dport 5432 -j RETURN`,
      '-s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j RETURN',
      '-j DROP',
    ]);

    // Corrected, it applies and the problem is gone.
    agent.handleBatch(batch(puts([{ key: bad, value: '{"cidr": "10.1.0.0/16", "protocol": "udp", "port": 53}' }])));
    await agent.idle();
    expect(agent.status().problems).toEqual([]);
    expect(plain(kernel.rules(4, 'filter', toChain(if2)))?.[2]).toBe(
      '-s 10.1.0.0/16 -p udp -m udp --dport 53 -j RETURN',
    );
  });

  it.each<SyncStatus>(['wait-for-datastore', 'resyncing', 'retrying', 'stopped'])(
    'while %s after having been in sync, nothing is removed from the kernel (fail static)',
    async (status) => {
      const { kernel, agent } = await inSync();
      const before = kernel.dump();
      agent.handleStatus(status, 'etcd went away');
      agent.handleBatch(batch(dels([...ep.L1, ...web]), 'resync'));
      await agent.idle();
      await tick();
      expect(kernel.dump()).toBe(before);
      expect(kernel.received).toEqual([]);
      expect(agent.status()).toMatchObject({ syncStatus: status, everInSync: true });

      // Back in sync: what changed meanwhile is written.
      agent.handleStatus('in-sync', 'watching again');
      await agent.idle();
      expect(kernel.chainNames(4, 'filter')).not.toContain(fromChain(if1));
    },
  );

  it('while out of sync, the periodic kernel resync still repairs what is programmed', async () => {
    let handler: SyncHandler | undefined;
    const syncer = { start: () => syncer, stop: async () => undefined, drain: async () => undefined };
    const ds = { syncer: (_prefix: string, h: SyncHandler) => ((handler = h), syncer) } as unknown as Datastore;
    const { kernel, agent } = newAgent({ ds, dataplaneResyncMs: 20 });
    agent.start();
    await handler!.onUpdates(batch(puts(all), 'snapshot'));
    handler!.onStatus!('in-sync', 'test');
    await agent.idle();
    const programmed = kernel.dump();
    handler!.onStatus!('wait-for-datastore', 'etcd went away');
    await handler!.onUpdates(batch(dels(ep.L2), 'resync'));
    kernel.deleteRule(4, 'filter', toChain(if2), 0);
    kernel.deleteSetMember(WEB4, '10.65.1.1');
    await vi.waitFor(() => expect(kernel.dump()).toBe(programmed), { timeout: 10_000, interval: 10 });
  });

  it('EndpointToHostAction switches the cali-wl-to-host chain, and only that chain', async () => {
    const { kernel, agent } = await inSync(all.filter((kv) => kv.key !== ENDPOINT_TO_HOST_KEY));
    const toHost = () => plain(kernel.rules(4, 'filter', 'cali-wl-to-host'))!.slice(2);
    expect(toHost()).toEqual(['-j DROP']); // the default
    // accept: the control plane on this host still meets the workload's outbound chain.
    const accept = (f: 4 | 6) => [`-m set --match-set cali${f}-ctl dst,dst -j cali-from-wl`, '-j ACCEPT'];
    const cases: [Update, (f: 4 | 6) => string[]][] = [
      [{ type: 'put', key: ENDPOINT_TO_HOST_KEY, value: 'accept' }, accept],
      [{ type: 'put', key: ENDPOINT_TO_HOST_KEY, value: 'Policy\n' }, () => ['-j cali-from-wl', '-j ACCEPT']],
      [{ type: 'put', key: ENDPOINT_TO_HOST_KEY, value: 'bogus' }, () => ['-j DROP']],
      [{ type: 'put', key: ENDPOINT_TO_HOST_KEY, value: 'ACCEPT' }, accept],
      [{ type: 'delete', key: ENDPOINT_TO_HOST_KEY }, () => ['-j DROP']],
    ];
    for (const [update, expected] of cases) {
      kernel.resetCalls();
      agent.handleBatch(batch([update]));
      await agent.idle();
      expect(toHost()).toEqual(expected(4));
      expect(plain(kernel.rules(6, 'filter', 'cali-wl-to-host'))!.slice(8)).toEqual(expected(6));
      const declared = kernel.received.flatMap((r) => r.text.split('\n').filter((l) => l.startsWith(':')));
      expect(declared).toEqual([':cali-wl-to-host - [0:0]', ':cali-wl-to-host - [0:0]']);
    }
  });

  it('the configured default applies when the key is absent', async () => {
    const { kernel } = await inSync(
      all.filter((kv) => kv.key !== ENDPOINT_TO_HOST_KEY),
      { endpointToHost: 'policy' },
    );
    expect(plain(kernel.rules(4, 'filter', 'cali-wl-to-host'))!.slice(2)).toEqual(['-j cali-from-wl', '-j ACCEPT']);
  });

  it('a failed kernel write is retried until the kernel matches', async () => {
    const { kernel, agent } = newAgent();
    kernel.failNext('iptablesRestore', 2);
    agent.handleBatch(batch(puts(all), 'snapshot'));
    agent.handleStatus('in-sync', 'test');
    await agent.idle();
    // Both injected failures were hit, then the write went through.
    expect(kernel.injected).toEqual(['iptablesRestore', 'iptablesRestore']);
    const restores = kernel.received.filter((r) => r.kind === 'iptablesRestore');
    expect(restores.map((r) => r.ok).slice(0, 3)).toEqual([false, false, true]);
    expect(agent.status()).toMatchObject({ lastError: null, applies: 1 });
    const { kernel: ref } = await inSync();
    expect(kernel.dump()).toBe(ref.dump());
  });

  it('a local endpoint whose id cannot name an interface is left out, not a crash', async () => {
    const odd = fx.endpoint({ host: 'h1', endpointId: 'web-1', addrs: ['10.65.0.50'] });
    const { kernel, agent } = await inSync([...all, ...odd, { key: groupMemberKey('web', 'web-1'), value: '' }]);
    expect(kernel.chainNames(4, 'filter')).toContain(fromChain(if1));
    expect(agent.status().localEndpoints).toBe(2);
    expect(
      agent
        .status()
        .problems.map((p) => p.errors.join(' '))
        .join(' '),
    ).toContain('web-1');
    // It is still a member of web for everyone else.
    expect(kernel.setMembers(WEB4)).toContain('10.65.0.50');
  });

  it('start() without a datastore is refused', () => {
    const { agent } = newAgent();
    expect(() => agent.start()).toThrow(/needs a datastore/);
  });
});

describe('PolicyAgent and the control plane', () => {
  const cp: KeyValue[] = [
    { key: birdIpKey('h1'), value: '198.18.0.11' },
    { key: birdIpKey('h2'), value: '198.18.0.12' },
    { key: bird6IpKey('h2'), value: 'fd00:198:18::12' },
    { key: diagsUrlKey('h2'), value: 'http://198.18.0.12:9099/' },
    { key: masterIpKey(), value: '198.18.0.1' },
    { key: masterApiUrlKey(), value: 'http://198.18.0.1:7600/' },
  ];
  const etcdEndpoints = ['http://198.18.0.1:2379'];

  it('fills cali4-ctl and cali6-ctl from the keys and etcd; L1 (0.0.0.0/0) is kept from them', async () => {
    const { kernel, agent } = await inSync([...all, ...cp], { etcdEndpoints });
    expect(kernel.setMembers('cali4-ctl')).toEqual([
      '198.18.0.1,tcp:2379',
      '198.18.0.1,tcp:2380',
      '198.18.0.1,tcp:7600',
      '198.18.0.11,tcp:179',
      '198.18.0.12,tcp:179',
      '198.18.0.12,tcp:9099',
    ]);
    expect(kernel.setMembers('cali6-ctl')).toEqual(['fd00:198:18::12,tcp:179']);
    expect(agent.controlPlane()).toHaveLength(7);
    const tables = {
      rules: (f: 4 | 6, t: 'filter' | 'raw', c: string) => kernel.rules(f, t, c),
      policy: (f: 4 | 6, t: 'filter' | 'raw', c: string) => kernel.chainPolicy(f, t, c),
      setHas: (name: string, member: string) => kernel.setMembers(name)!.includes(member),
    };
    const walk = (dst: string, dport: number) =>
      walkForward(tables, {
        family: 4,
        src: '10.65.0.1',
        dst,
        protocol: 6,
        dport,
        sport: 40_000,
        inIf: if1,
        outIf: 'eth0',
        srcMac: '02:00:00:00:00:01',
        reversePathOk: true,
        ctState: 'NEW',
      }).accepted;
    expect(walk('198.18.0.1', 2379)).toBe(false);
    expect(walk('198.18.0.12', 9099)).toBe(false);
    // The control: the same address on a port that is not the control plane's.
    expect(walk('198.18.0.1', 8080)).toBe(true);
  });

  it('a target that comes, moves or goes is one ipset restore and no iptables call', async () => {
    const { kernel, agent } = await inSync([...all, ...cp], { etcdEndpoints });
    for (const update of [
      { type: 'put', key: birdIpKey('h3'), value: '198.18.0.13' },
      { type: 'put', key: diagsUrlKey('h2'), value: 'http://198.18.0.12:9100/' },
      { type: 'delete', key: bird6IpKey('h2') },
    ] satisfies Update[]) {
      kernel.resetCalls();
      agent.handleBatch(batch([update]));
      await agent.idle();
      expect(kernel.calls, JSON.stringify(update)).toEqual({ iptablesRestore: 0, ipsetRestore: 1, saves: 0 });
    }
    expect(kernel.setMembers('cali4-ctl')).toContain('198.18.0.13,tcp:179');
    expect(kernel.setMembers('cali4-ctl')).toContain('198.18.0.12,tcp:9100');
    expect(kernel.setMembers('cali4-ctl')).not.toContain('198.18.0.12,tcp:9099');
    expect(kernel.setMembers('cali6-ctl')).toEqual([]);
  });

  it("a rule naming a target as a host prefix exempts it; taking it away cuts the workload's flows", async () => {
    const named = fx.group({
      groupId: 'web',
      members: [L1, R1],
      inbound: [{ group: 'web' }],
      outbound: [{ cidr: '0.0.0.0/0' }, { cidr: '198.18.0.1/32' }],
    });
    const { kernel, agent } = await inSync([...ep.L1, ...ep.R1, ...named, ...cp], { etcdEndpoints });
    const cx = `cali-cx-${if1.slice(4)}`;
    expect(plain(kernel.rules(4, 'filter', cx))).toEqual(['-d 198.18.0.1/32 -j RETURN', '-j DROP']);
    agent.handleBatch(batch([{ type: 'delete', key: groupRuleKey('web', 'outbound', 2) }]));
    await agent.idle();
    expect(kernel.rules(4, 'filter', cx)).toBeUndefined();
    expect(plain(kernel.rules(4, 'filter', fromChain(if1)))).toContain('-m set --match-set cali4-ctl dst,dst -j DROP');
    expect(kernel.conntrackFlushed).toContain('10.65.0.1');
  });
});

describe("PolicyAgent and etcd's members", () => {
  it("after a full sync, every member's client and peer URLs are control plane; a failure keeps them", async () => {
    let answer: () => Promise<{ clientURLs: string[]; peerURLs: string[] }[]> = async () => [
      { clientURLs: ['http://198.18.0.1:2379'], peerURLs: ['http://198.18.0.1:32380'] },
      { clientURLs: ['http://198.18.0.2:2379'], peerURLs: ['http://198.18.0.2:32380'] },
    ];
    const opts = { etcdEndpoints: ['http://198.18.0.1:2379'], etcdMembers: () => answer() };
    const { kernel, agent } = await inSync(all, opts);
    await agent.refreshEtcdMembers();
    await agent.idle();
    expect(kernel.setMembers('cali4-ctl')).toEqual([
      '198.18.0.1,tcp:2379',
      '198.18.0.1,tcp:2380',
      '198.18.0.1,tcp:32380',
      '198.18.0.2,tcp:2379',
      '198.18.0.2,tcp:2380',
      '198.18.0.2,tcp:32380',
    ]);
    answer = async () => {
      throw new Error('etcd is away');
    };
    agent.handleStatus('resyncing', 'test');
    agent.handleStatus('in-sync', 'test');
    await agent.refreshEtcdMembers();
    await agent.idle();
    expect(kernel.setMembers('cali4-ctl')).toContain('198.18.0.2,tcp:32380');
  });
});
