/**
 * The dataplane against FakeKernel: what it writes, in which order, and that it writes nothing
 * more than what differs; how it repairs what another program changed; how it recovers from a
 * failed restore.
 */
import { createLogger } from '@calico/log';
import { endpointPolicy, policyFixtures as fx, type KeyValue, type PolicyModel } from '@calico/policy';
import { describe, expect, it } from 'vitest';
import { hostIfName } from '../plumber/names.js';
import { Dataplane } from './dataplane.js';
import { renderDataplane, type DesiredDataplane, type LocalEndpoint } from './desired.js';
import { FakeKernel } from './fakeKernel.js';
import type { Family, Table } from './kernel.js';
import { fromChain, groupSetName, srcChain, toChain } from './names.js';

const logger = createLogger({ name: 'dataplane-test', level: 'silent' });

const E1 = 'aaaaaaaaaaaa0001'; // v4 + v6, in g
const E2 = 'bbbbbbbbbbbb0002'; // v4, in g2
const if1 = hostIfName(E1);
const if2 = hostIfName(E2);
const G4 = groupSetName('g', 4);
const G6 = groupSetName('g', 6);
const G2 = groupSetName('g2', 4);

const base: KeyValue[] = [
  ...fx.endpoint({ host: 'h1', endpointId: E1, addrs: ['10.65.0.1', 'fd00::1'] }),
  ...fx.endpoint({ host: 'h1', endpointId: E2, addrs: ['10.65.0.2'] }),
  ...fx.endpoint({ host: 'h2', endpointId: 'remote', addrs: ['10.65.1.1', 'fd00::1:1'] }),
  ...fx.group({
    groupId: 'g',
    members: [E1, 'remote'],
    inbound: [{ group: 'g' }],
    outbound: [{ cidr: '0.0.0.0/0' }, { cidr: '::/0' }],
  }),
  ...fx.group({
    groupId: 'g2',
    members: [E2],
    inbound: [{ group: 'g2' }, { cidr: '10.0.0.0/8', protocol: 'tcp', port: 22 }],
  }),
];

function local(model: PolicyModel, endpointId: string): LocalEndpoint {
  const ep = model.endpoint(endpointId)!;
  return {
    endpointId,
    hostIf: hostIfName(endpointId),
    mac: ep.mac,
    v4: ep.addrs.v4,
    v6: ep.addrs.v6,
    policy: endpointPolicy(model, endpointId),
  };
}

function desired(keys: KeyValue[], endpoints: string[]): DesiredDataplane {
  const model = fx.model(keys);
  return renderDataplane(
    endpoints.map((id) => local(model, id)),
    (g, f) => model.groupAddrs(g, f),
    'drop',
  );
}

/** Makes the dataplane want exactly `d`: what is not in it is removed. */
function want(dp: Dataplane, d: DesiredDataplane): void {
  for (const family of [4, 6] as const) {
    for (const table of ['filter', 'raw'] as const) {
      const chains = d.tables[family][table];
      for (const c of dp.chains(family, table)) if (!chains.has(c)) dp.setChain(family, table, c, null);
      for (const [c, lines] of chains) dp.setChain(family, table, c, lines);
    }
  }
  for (const name of dp.ipsetNames()) if (!d.ipsets.has(name)) dp.setIpset(name, 4, null);
  for (const [name, s] of d.ipsets) dp.setIpset(name, s.family, s.members, s.type);
}

/** What an empty kernel holds after one apply of `d`: the state every test must converge to. */
async function reference(d: DesiredDataplane): Promise<string> {
  const kernel = new FakeKernel();
  const dp = new Dataplane(kernel, logger);
  want(dp, d);
  await dp.apply();
  return kernel.dump();
}

/** A kernel programmed with the base state, its call counters reset. */
async function programmed(d = desired(base, [E1, E2])) {
  const kernel = new FakeKernel();
  const dp = new Dataplane(kernel, logger);
  want(dp, d);
  await dp.apply();
  kernel.resetCalls();
  return { kernel, dp, d };
}

const hook = (chain: string) => `-m comment --comment "cali:hook" -j ${chain}`;

describe('Dataplane', () => {
  it('first apply: the sets exist before any rule names them', async () => {
    const kernel = new FakeKernel();
    const dp = new Dataplane(kernel, logger);
    want(dp, desired(base, [E1, E2]));
    await dp.apply();
    // The fake refuses a rule naming a missing set; so had the order been wrong, this would be false.
    // One restore per family, its filter and raw tables together.
    expect(kernel.received.map((r) => `${r.kind}${r.family ?? ''}:${r.ok}`)).toEqual([
      'ipsetRestore:true',
      'iptablesRestore4:true',
      'iptablesRestore6:true',
    ]);
    expect(kernel.texts('iptablesRestore', 6)[0]).toMatch(/^\*filter\n[\s\S]*\nCOMMIT\n\*raw\n[\s\S]*\nCOMMIT\n$/);
    // The control plane's sets always, as the workloads' chains name them.
    expect(kernel.setNames()).toEqual([G4, G2, G6, 'cali4-ctl', 'cali6-ctl'].sort());
    expect(kernel.setMembers(G4)).toEqual(['10.65.0.1', '10.65.1.1']);
    expect(kernel.setMembers(G6)).toEqual(['fd00::1', 'fd00::1:1']);
    expect(kernel.rules(4, 'filter', 'FORWARD')).toEqual([hook('cali-FORWARD')]);
    expect(kernel.rules(6, 'raw', 'PREROUTING')).toEqual([hook('cali-PREROUTING')]);
    expect(kernel.rules(4, 'raw', 'PREROUTING')).toEqual([]);
    expect(dp.pending).toBe(false);
  });

  it('a first sync of many workloads: ipset and each family in parallel parts, every jump and set in place first', async () => {
    // 1,200 local workloads and two groups of 3,000 remote members: past both split thresholds.
    const keys: KeyValue[] = [];
    const locals = Array.from({ length: 1_200 }, (_, i) => `${(0xa0000000000 + i).toString(16)}00001`);
    const remotes = Array.from({ length: 6_000 }, (_, i) => `remote${i}`);
    locals.forEach((id, i) => {
      keys.push(...fx.endpoint({ host: 'h1', endpointId: id, addrs: [`10.65.${i >> 8}.${i & 255}`] }));
    });
    remotes.forEach((id, i) => {
      keys.push(...fx.endpoint({ host: 'h2', endpointId: id, addrs: [`10.66.${i >> 8}.${i & 255}`] }));
    });
    keys.push(
      ...fx.group({ groupId: 'g', members: locals, inbound: [{ group: 'big' }], outbound: [{ group: 'big2' }] }),
    );
    keys.push(...fx.group({ groupId: 'big', members: remotes.slice(0, 3_000) }));
    keys.push(...fx.group({ groupId: 'big2', members: remotes.slice(3_000) }));
    const d = desired(keys, locals);
    const kernel = new FakeKernel();
    const dp = new Dataplane(kernel, logger);
    want(dp, d);
    await dp.apply();
    // The fake refuses a jump to a missing chain and a rule naming a missing set, so every part
    // ran after what it needs.
    expect(kernel.received.every((r) => r.ok)).toBe(true);
    expect(kernel.texts('ipsetRestore')).toHaveLength(2);
    expect(kernel.setMembers(groupSetName('big', 4))).toHaveLength(3_000);
    expect(kernel.setMembers(groupSetName('big2', 4))).toHaveLength(3_000);
    // One workload's chain: each rule carries the hash of its chain, position and text (names.test.ts).
    const sample = fromChain(hostIfName(locals[700]!));
    expect(sample).toBe('cali-fw-a00000002bc');
    expect(groupSetName('big2', 4)).toBe('cali4g-9xywuzgdPMszI3OECwQk');
    expect(d.tables[4].filter.get(sample)).toEqual([
      '! -s 10.65.2.188/32 -j DROP',
      '-m set --match-set cali4-ctl dst,dst -j DROP',
      '-m set --match-set cali4g-9xywuzgdPMszI3OECwQk dst -j RETURN',
      '-j DROP',
    ]);
    const hashes = (kernel.rules(4, 'filter', sample) ?? []).map((r) => /cali:([A-Za-z0-9]+)/.exec(r)?.[1]);
    expect(hashes).toEqual(['c7rxFpzru7iJIlCW', 'ctuGf69ZG5ucPCM9', 'xdjWOp7bAzFAxG46', 'dqB9IECsZvxvVfCP']);
    // The dispatch tree reaches each workload's chain once.
    const dispatched = kernel
      .chainNames(4, 'filter')
      .filter((c) => c.startsWith('cali-from-wl'))
      .flatMap((c) => kernel.rules(4, 'filter', c) ?? [])
      .filter((r) => / -g cali-fw-/.test(r));
    expect(dispatched).toHaveLength(1_200);
    // Written by restores side by side, then one for what spans the cuts between them.
    const declared = kernel
      .texts('iptablesRestore', 4)
      .map((t) => t.split('\n').filter((l) => l.startsWith(':')).length);
    const last = declared.pop()!;
    expect(declared.length).toBeGreaterThanOrEqual(2);
    expect(declared.reduce((a, b) => a + b)).toBeGreaterThan(2_000);
    expect(Math.min(...declared)).toBeGreaterThan(2_000 / (declared.length + 1));
    expect(last).toBeLessThan(40);
    // Nothing left to do, and a reread of the kernel finds it as written.
    await dp.resync();
    kernel.resetCalls();
    expect((await dp.apply()).kernelCalls).toBe(0);
  });

  it('a second apply with no changes makes no kernel call at all', async () => {
    const { kernel, dp, d } = await programmed();
    want(dp, d); // the same content again
    expect(dp.pending).toBe(false);
    const stats = await dp.apply();
    expect(stats.kernelCalls).toBe(0);
    expect(kernel.calls).toEqual({ iptablesRestore: 0, ipsetRestore: 0, saves: 0 });
  });

  it('changing one chain rewrites that chain only', async () => {
    const { kernel, dp } = await programmed();
    const chain = toChain(if1);
    expect([chain, G4]).toEqual(['cali-tw-aaaaaaaaaaa', 'cali4g-zQqphWFHtsW0xyt9xuXa']);
    const lines = ['-m set --match-set cali4g-zQqphWFHtsW0xyt9xuXa src -p tcp -m tcp --dport 80 -j RETURN', '-j DROP'];
    dp.setChain(4, 'filter', chain, lines);
    const stats = await dp.apply();
    expect(kernel.calls).toEqual({ iptablesRestore: 1, ipsetRestore: 0, saves: 0 });
    // Each rule marked with the hash of its chain, position and text (names.test.ts).
    expect(kernel.texts('iptablesRestore', 4)).toEqual([
      [
        '*filter',
        ':cali-tw-aaaaaaaaaaa - [0:0]',
        `-A cali-tw-aaaaaaaaaaa -m comment --comment "cali:F9Y2scHXr1EKxhwI" ${lines[0]}`,
        '-A cali-tw-aaaaaaaaaaa -m comment --comment "cali:N581PlVCHJ37T17z" -j DROP',
        'COMMIT',
        '',
      ].join('\n'),
    ]);
    expect(stats).toMatchObject({ kernelCalls: 1, chainsWritten: 1, chainsDeleted: 0 });
    // iptables-save puts the address and protocol matches first; the hash still identifies the rule.
    expect(kernel.rules(4, 'filter', chain)?.[0]).toBe(
      '-p tcp -m comment --comment "cali:F9Y2scHXr1EKxhwI" ' +
        '-m set --match-set cali4g-zQqphWFHtsW0xyt9xuXa src -m tcp --dport 80 -j RETURN',
    );
    // Read back, the kernel holds exactly what is wanted.
    await dp.resync();
    expect((await dp.apply()).kernelCalls).toBe(0);
  });

  it('a membership change is one ipset restore with one line, and no iptables call', async () => {
    const { kernel, dp } = await programmed();
    dp.setIpset(G4, 4, ['10.65.0.1', '10.65.1.1', '10.65.1.2']);
    expect(await dp.apply()).toMatchObject({ kernelCalls: 1, ipsetEntries: 1 });
    dp.setIpsetMember(G4, '10.65.1.3', true);
    await dp.apply();
    dp.setIpsetMember(G4, '10.65.1.1', false);
    await dp.apply();
    dp.setIpsetMember(G4, '10.65.1.1', false); // already gone: nothing to do
    await dp.apply();
    expect(kernel.texts('ipsetRestore')).toEqual([
      `add ${G4} 10.65.1.2\n`,
      `add ${G4} 10.65.1.3\n`,
      `del ${G4} 10.65.1.1\n`,
    ]);
    expect(kernel.calls).toEqual({ iptablesRestore: 0, ipsetRestore: 3, saves: 0 });
    expect(kernel.setMembers(G4)).toEqual(['10.65.0.1', '10.65.1.2', '10.65.1.3']);
  });

  it('a set is made with room for its members, and one that outgrows it is rebuilt and swapped in', async () => {
    const { kernel, dp } = await programmed();
    const addrs = (n: number, from = 0) =>
      Array.from(
        { length: n },
        (_, i) => `10.${100 + ((i + from) >> 16)}.${((i + from) >> 8) & 255}.${(i + from) & 255}`,
      );
    const save = async () => (await kernel.ipsetSave()).split('\n').find((l) => l.startsWith(`create ${G4} `));
    expect(await save()).toContain(' maxelem 65536 ');
    // Control: the fake kernel refuses what a full set refuses.
    const probe = new FakeKernel();
    await probe.ipsetRestore('create p hash:ip family inet maxelem 2\nadd p 10.0.0.1\nadd p 10.0.0.2\n');
    await expect(probe.ipsetRestore('add p 10.0.0.3\n')).rejects.toThrow(/Hash is full/);
    // 70,000 members: past 65,536.
    const big = ['10.65.0.1', ...addrs(70_000)];
    dp.setIpset(G4, 4, big);
    await dp.apply();
    expect(kernel.received.every((r) => r.ok)).toBe(true);
    const text = kernel.texts('ipsetRestore').join('');
    const tmp = `${G4.slice(0, 5)}t${G4.slice(6)}`;
    expect(text).toContain(`create ${tmp} hash:ip family inet maxelem 262144\n`);
    expect(text).toContain(`swap ${tmp} ${G4}\ndestroy ${tmp}\n`);
    expect(kernel.setMembers(G4)).toHaveLength(70_001);
    expect(kernel.setNames()).not.toContain(tmp);
    expect(await save()).toContain(' maxelem 262144 ');
    // Room left: more members are plain additions again.
    kernel.resetCalls();
    dp.setIpset(G4, 4, [...big, '10.99.0.1']);
    await dp.apply();
    expect(kernel.texts('ipsetRestore')).toEqual([`add ${G4} 10.99.0.1\n`]);
    // A rebuilt kernel is read back with its sizes: a resync writes nothing.
    await dp.resync();
    kernel.resetCalls();
    await dp.apply();
    expect(kernel.calls.ipsetRestore).toBe(0);
  });

  it('removing chains and their set: iptables deletes the chains first, a later ipset call destroys the set', async () => {
    const { kernel, dp } = await programmed();
    const after = desired(base, [E1]); // E2 and its group g2 leave this host
    want(dp, after);
    const stats = await dp.apply();
    // E2 has no IPv6 address, so no IPv6 chains: IPv6 is left alone.
    expect(kernel.received.map((r) => `${r.kind}${r.family ?? ''}`)).toEqual(['iptablesRestore4', 'ipsetRestore']);
    expect(kernel.received.every((r) => r.ok)).toBe(true);
    const v4 = kernel.texts('iptablesRestore', 4)[0]!.split('\n');
    // Emptied by their declaration, then deleted after everything that jumped to them was rewritten.
    expect(v4.filter((l) => l.startsWith('-X') || l.startsWith(':'))).toEqual([
      `:${fromChain(if2)} - [0:0]`,
      `:${toChain(if2)} - [0:0]`,
      ':cali-from-wl - [0:0]',
      ':cali-to-wl - [0:0]',
      `-X ${fromChain(if2)}`,
      `-X ${toChain(if2)}`,
    ]);
    const lastAppend = v4.length - 1 - [...v4].reverse().findIndex((l) => l.startsWith('-A'));
    expect(v4.indexOf(`-X ${fromChain(if2)}`)).toBeGreaterThan(lastAppend);
    expect(kernel.texts('ipsetRestore')).toEqual([`destroy ${G2}\n`]);
    expect(stats).toMatchObject({ chainsDeleted: 2, ipsetsDestroyed: 1 });
    expect(kernel.dump()).toBe(await reference(after));
  });

  it('a chain that is no longer wanted and is the target of a hook loses its hook first', async () => {
    const { kernel, dp } = await programmed();
    dp.setChain(6, 'raw', 'cali-PREROUTING', null);
    await dp.apply();
    expect(kernel.texts('iptablesRestore', 6)).toEqual([
      [
        '*raw',
        ':cali-PREROUTING - [0:0]',
        `-D PREROUTING ${hook('cali-PREROUTING')}`,
        '-X cali-PREROUTING',
        'COMMIT',
        '',
      ].join('\n'),
    ]);
    expect(kernel.chainNames(6, 'raw')).toEqual(['PREROUTING', 'OUTPUT']);
  });

  it('duplicate hooks in the kernel are reduced to one; a missing one is put back', async () => {
    const { kernel, dp, d } = await programmed();
    kernel.addForeignRule(4, 'filter', 'FORWARD', hook('cali-FORWARD'), 1);
    kernel.addForeignRule(4, 'filter', 'FORWARD', '-o docker0 -j ACCEPT');
    kernel.addForeignRule(4, 'filter', 'FORWARD', hook('cali-FORWARD'));
    kernel.deleteRule(6, 'filter', 'INPUT', 0);
    await dp.resync();
    kernel.resetCalls();
    await dp.apply();
    expect(kernel.texts('iptablesRestore', 4)).toEqual([
      ['*filter', `-D FORWARD ${hook('cali-FORWARD')}`, `-D FORWARD ${hook('cali-FORWARD')}`, 'COMMIT', ''].join('\n'),
    ]);
    expect(kernel.texts('iptablesRestore', 6)).toEqual([
      ['*filter', `-I INPUT 1 ${hook('cali-INPUT')}`, 'COMMIT', ''].join('\n'),
    ]);
    expect(kernel.rules(4, 'filter', 'FORWARD')).toEqual(['-o docker0 -j ACCEPT', hook('cali-FORWARD')]);
    expect(kernel.rules(6, 'filter', 'INPUT')).toEqual([hook('cali-INPUT')]);
    kernel.deleteRule(4, 'filter', 'FORWARD', 0);
    expect(kernel.dump()).toBe(await reference(d));
  });

  it('resync() after tampering repairs exactly the tampered chains and sets', async () => {
    const { kernel, dp, d } = await programmed();
    const clean = kernel.dump();
    kernel.deleteRule(4, 'filter', toChain(if2), 1); // a rule deleted
    kernel.deleteSetMember(G6, 'fd00::1:1'); // a member removed
    kernel.addSetMember(G2, '10.99.0.1'); // a member added
    kernel.addForeignRule(6, 'filter', fromChain(if1), '-j ACCEPT', 1); // a foreign rule in our chain
    kernel.addForeignRule(4, 'filter', 'INPUT', '-p tcp -m tcp --dport 22 -j ACCEPT'); // someone else's: left alone
    kernel.addForeignChain(4, 'filter', 'DOCKER-USER'); // someone else's: left alone
    kernel.addForeignChain(4, 'filter', srcChain('califfffffffff0')); // a leftover of ours: removed
    const tampered = kernel.dump();

    // Without a resync the dataplane trusts what it wrote.
    expect((await dp.apply()).kernelCalls).toBe(0);
    await dp.resync();
    expect(dp.pending).toBe(true);
    kernel.resetCalls();
    await dp.apply();
    expect(kernel.calls).toEqual({ iptablesRestore: 2, ipsetRestore: 1, saves: 0 });
    expect(kernel.texts('ipsetRestore')[0]?.split('\n').sort()).toEqual([
      '',
      `add ${G6} fd00::1:1`,
      `del ${G2} 10.99.0.1`,
    ]);
    const v4 = kernel.texts('iptablesRestore', 4)[0]!;
    const v6 = kernel.texts('iptablesRestore', 6)[0]!;
    expect(
      v4
        .split('\n')
        .filter((l) => /^(:|-X)/.test(l))
        .sort(),
    ).toEqual(
      [
        `:${toChain(if2)} - [0:0]`,
        `:${srcChain('califfffffffff0')} - [0:0]`,
        `-X ${srcChain('califfffffffff0')}`,
      ].sort(),
    );
    expect(v6.split('\n').filter((l) => /^(:|-X)/.test(l))).toEqual([`:${fromChain(if1)} - [0:0]`]);
    expect(kernel.rules(4, 'filter', 'INPUT')).toEqual([hook('cali-INPUT'), '-p tcp -m tcp --dport 22 -j ACCEPT']);
    expect(kernel.chainNames(4, 'filter')).toContain('DOCKER-USER');

    // Everything else is as it was.
    kernel.deleteRule(4, 'filter', 'INPUT', 1);
    expect(kernel.dump()).not.toBe(tampered);
    expect(kernel.dump().replace(/:DOCKER-USER - \[0:0\]\n/, '')).toBe(clean);
    expect(clean).toBe(await reference(d));
  });

  describe('failure and recovery', () => {
    it('a failed iptables restore throws; the next apply rereads the kernel and converges', async () => {
      const kernel = new FakeKernel();
      const dp = new Dataplane(kernel, logger);
      const d = desired(base, [E1, E2]);
      want(dp, d);
      kernel.failNext('iptablesRestore', 1, { skip: 1 }); // IPv4 goes in, IPv6 fails
      await expect(dp.apply()).rejects.toThrow(/injected failure/);
      expect(kernel.injected).toEqual(['iptablesRestore']);
      expect(kernel.received.map((r) => `${r.kind}${r.family ?? ''}:${r.ok}`)).toEqual([
        'ipsetRestore:true',
        'iptablesRestore4:true',
        'iptablesRestore6:false',
      ]);
      expect(kernel.chainNames(6, 'filter')).toEqual(['INPUT', 'FORWARD', 'OUTPUT']); // all or nothing
      expect(dp.pending).toBe(true);

      kernel.resetCalls();
      await dp.apply();
      // Reread (four tables and the sets), then only what is still missing: IPv6.
      expect(kernel.calls).toEqual({ iptablesRestore: 1, ipsetRestore: 0, saves: 5 });
      expect(kernel.received.map((r) => `${r.kind}${r.family ?? ''}`)).toEqual(['iptablesRestore6']);
      expect(kernel.dump()).toBe(await reference(d));
      kernel.resetCalls();
      expect((await dp.apply()).kernelCalls).toBe(0);
    });

    it('a failed ipset restore (half applied, as the real one stops at the failing line) recovers the same way', async () => {
      const kernel = new FakeKernel();
      const dp = new Dataplane(kernel, logger);
      const d = desired(base, [E1, E2]);
      want(dp, d);
      kernel.failNext('ipsetRestore', 1, { afterLines: 2 });
      await expect(dp.apply()).rejects.toThrow(/injected failure/);
      expect(kernel.injected).toEqual(['ipsetRestore']);
      expect(kernel.received.map((r) => `${r.kind}:${r.ok}`)).toEqual(['ipsetRestore:false']);
      expect(kernel.calls).toMatchObject({ iptablesRestore: 0, ipsetRestore: 1 }); // no rule before its set
      // Two lines in: the (empty) IPv4 control-plane set and the first group set, none of its members.
      expect(kernel.setNames()).toEqual(['cali4-ctl', G4]);
      expect(kernel.setMembers(G4)).toEqual([]);

      await dp.apply();
      expect(kernel.dump()).toBe(await reference(d));
    });

    it('a failed destroy leaves the set for the next apply', async () => {
      const { kernel, dp } = await programmed();
      const after = desired(base, [E1]);
      want(dp, after);
      kernel.failNext('ipsetRestore');
      await expect(dp.apply()).rejects.toThrow(/injected failure/);
      expect(kernel.injected).toEqual(['ipsetRestore']);
      const received = kernel.received.map((r) => `${r.kind}${r.family ?? ''}:${r.ok}`);
      expect(received).toEqual(['iptablesRestore4:true', 'ipsetRestore:false']);
      expect(kernel.setNames()).toContain(G2);
      kernel.resetCalls();
      await dp.apply();
      expect(kernel.texts('ipsetRestore')).toEqual([`destroy ${G2}\n`]);
      expect(kernel.calls.iptablesRestore).toBe(0);
      expect(kernel.dump()).toBe(await reference(after));
    });

    it('a failed read of the kernel throws and is retried by the next apply', async () => {
      const kernel = new FakeKernel();
      const dp = new Dataplane(kernel, logger);
      const d = desired(base, [E2]);
      want(dp, d);
      kernel.failNext('ipsetSave');
      await expect(dp.apply()).rejects.toThrow(/injected failure/);
      expect(kernel.injected).toEqual(['ipsetSave']);
      expect(kernel.received).toEqual([]);
      await dp.apply();
      expect(kernel.dump()).toBe(await reference(d));
    });

    it('the kernel refuses a set destroyed while a rule names it, and the dataplane recovers', async () => {
      const { kernel, dp, d } = await programmed();
      // Tell the dataplane the set is gone but keep a chain that names it: the destroy must fail.
      dp.setIpset(G2, 4, null);
      await expect(dp.apply()).rejects.toThrow(/in use by a kernel component/);
      // The kernel's own refusal, not an injected one.
      expect(kernel.injected).toEqual([]);
      expect(kernel.received.map((r) => `${r.kind}:${r.ok}`)).toEqual(['ipsetRestore:false']);
      dp.setIpset(G2, 4, d.ipsets.get(G2)!.members);
      await dp.apply();
      expect(kernel.dump()).toBe(await reference(d));
    });
  });

  it('a resync while an apply is in flight does not lose what the apply wrote', async () => {
    const { kernel, dp, d } = await programmed();
    const chain = toChain(if1);
    const before = d.tables[4].filter.get(chain)!;
    dp.setChain(4, 'filter', chain, ['-j DROP']);
    const release = kernel.hold('iptablesRestore');
    const applying = dp.apply();
    await kernel.waiting('iptablesRestore'); // the apply now waits inside iptables-restore
    const resyncing = dp.resync(); // e.g. the periodic kernel resync
    expect(kernel.calls.saves).toBe(0); // the resync waits for the apply
    release();
    await Promise.all([applying, resyncing]);
    expect(kernel.held).toEqual(['iptablesRestore']);
    expect(kernel.calls.saves).toBe(5); // and then read the kernel
    expect(kernel.rules(4, 'filter', chain)).toHaveLength(1);
    // Back to the old content: the kernel must follow.
    dp.setChain(4, 'filter', chain, before);
    await dp.apply();
    expect(kernel.rules(4, 'filter', chain)).toHaveLength(before.length);
    expect(kernel.dump()).toBe(await reference(d));
  });

  it.each<[Family, Table]>([
    [4, 'filter'],
    [6, 'filter'],
    [6, 'raw'],
  ])('chains() lists what is wanted in IPv%i %s', async (family, table) => {
    const { dp, d } = await programmed();
    expect(dp.chains(family, table).sort()).toEqual([...d.tables[family][table].keys()].sort());
  });
});
