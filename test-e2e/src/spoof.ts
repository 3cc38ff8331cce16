import type { DevCluster } from '@calico/devcluster';
import { execOk, waitFor, type NamespaceHost } from '@calico/testkit';
import { expect } from 'vitest';
import type { Workload } from './helpers.js';
import { inWorkload, type Listener, netstat, ruleCounter, sendFrom } from './traffic.js';

/**
 * One guard against spoofed packets: a way to take it away and put it back (by hand, while the
 * node is stopped, so that nothing repairs it meanwhile), and the counter it raises on a drop.
 */
export interface Guard {
  name: string;
  off(): Promise<void>;
  on(): Promise<void>;
  drops(): Promise<number>;
}

/** A rule of ours, found by a pattern in iptables-save, that a test takes out and puts back in place. */
export function ruleGuard(
  host: NamespaceHost,
  family: 4 | 6,
  table: 'filter' | 'raw',
  chain: string,
  pattern: RegExp,
): Guard {
  const tool = family === 4 ? 'iptables' : 'ip6tables';
  let removed: { index: number; spec: string[] } | undefined;
  const find = async () => {
    const lines = (await host.execOk([`${tool}-save`, '-t', table]))
      .split('\n')
      .filter((l) => l.startsWith(`-A ${chain} `));
    const index = lines.findIndex((l) => pattern.test(l));
    if (index < 0)
      throw new Error(`no rule matching ${pattern} in ${chain} (IPv${family} ${table}): ${lines.join('\n')}`);
    // Words of the rule without "-A <chain>"; the comment's quotes are iptables-save's, not part of it.
    const spec = lines[index]!.split(' ')
      .slice(2)
      .map((w) => w.replace(/^"|"$/g, ''));
    return { index, spec };
  };
  return {
    name: `the rule ${pattern} of ${chain}`,
    async off() {
      removed = await find();
      await host.execOk([tool, '-w', '5', '-t', table, '-D', chain, String(removed.index + 1)]);
    },
    async on() {
      if (!removed) throw new Error('put back a rule that was not taken out');
      await host.execOk([tool, '-w', '5', '-t', table, '-I', chain, String(removed.index + 1), ...removed.spec]);
      removed = undefined;
    },
    drops: async () => ruleCounter(host, family, table, new RegExp(`-A ${chain} .*${pattern.source}`)),
  };
}

/** The IPv4 reverse-path filter of one interface (the kernel counts its drops in TcpExt). */
export function rpFilterGuard(host: NamespaceHost, ifname: string): Guard {
  const set = (v: number) =>
    host.execOk(['sysctl', '-qw', `net.ipv4.conf.${ifname}.rp_filter=${v}`]).then(() => undefined);
  return {
    name: `rp_filter on ${ifname}`,
    off: () => set(0),
    on: () => set(1),
    drops: () => netstat(host, 'TcpExt', 'IPReversePathFilter'),
  };
}

/**
 * Sends one UDP datagram from `from` (with source address `src`) to the listener of `to`, and
 * says whether it arrived. `expectDropBy`: the datagram must not arrive, and that guard's drop
 * counter must rise (the event that says it is gone, rather than a wait).
 */
export async function udpArrives(
  cluster: DevCluster,
  from: Workload,
  src: string,
  to: { addr: string; listener: Listener },
  expectDropBy?: Guard,
): Promise<boolean> {
  const before = expectDropBy ? await expectDropBy.drops() : 0;
  const { id } = (await sendFrom(cluster, from, src, [{ dst: to.addr, protocol: 'udp', port: 5000 }]))[0]!;
  if (expectDropBy) {
    await waitFor(
      `${expectDropBy.name} to drop the datagram`,
      async () => (await expectDropBy.drops()) > before,
      5_000,
    );
    return to.listener.heard().has(id);
  }
  return waitFor(`datagram ${id} from ${src} to arrive`, () => to.listener.heard().has(id), 5_000).then(
    () => true,
    () => false,
  );
}

/**
 * Each guard alone stops a spoofed datagram that arrives when every guard is off: the control
 * first (all off: it arrives), then each guard on by itself (it does not, and that guard
 * counted the drop). Guards are left as they were found.
 */
export async function expectEachGuardStops(
  cluster: DevCluster,
  send: { from: Workload; src: string; to: { addr: string; listener: Listener } },
  guards: readonly Guard[],
): Promise<void> {
  for (const g of guards) await g.off();
  expect(
    await udpArrives(cluster, send.from, send.src, send.to),
    'with every guard off, the spoofed datagram arrives',
  ).toBe(true);
  for (const g of guards) {
    await g.on();
    expect(await udpArrives(cluster, send.from, send.src, send.to, g), `${g.name} alone stops it`).toBe(false);
    await g.off();
  }
  for (const g of guards) await g.on();
}

/** Runs argv in a workload's network namespace. */
export async function inside(cluster: DevCluster, w: Workload, argv: readonly string[]): Promise<string> {
  return execOk(await inWorkload(cluster, w, argv));
}
