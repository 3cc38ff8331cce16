import { runToolOk, toolTimeoutMs } from '@calico/proc';

export type Family = 4 | 6;
export type Table = 'filter' | 'raw';

/** The kernel as the dataplane sees it: save and restore text, nothing else. */
export interface KernelBackend {
  iptablesSave(family: Family, table: Table): Promise<string>;
  /** iptables-restore --noflush of one table. */
  iptablesRestore(family: Family, text: string): Promise<void>;
  ipsetSave(): Promise<string>;
  ipsetRestore(text: string): Promise<void>;
  /**
   * Forgets the conntrack entries of flows from or to these addresses, so that their next
   * packets meet the rules as they are now.
   */
  conntrackFlush(addrs: readonly string[]): Promise<void>;
}

/**
 * How long one kernel tool may take: iptables-restore of 10,000 lines takes ~0.3 s here, an ipset
 * restore of 100,000 lines under 1 s; past this the tool is hung (a held xtables lock, a stuck
 * netlink call) and is killed, and the agent retries the apply with backoff.
 */
export const KERNEL_TOOL_TIMEOUT_MS = 30_000;

/** The real kernel, through Debian's iptables (nft backend), ipset and conntrack. */
export class RealKernel implements KernelBackend {
  /** Each tool's timeout; CALICO_TOOL_TIMEOUT_MS overrides the default (tests). */
  constructor(private readonly timeoutMs = toolTimeoutMs(KERNEL_TOOL_TIMEOUT_MS)) {}

  private run(argv: string[], input?: string): Promise<string> {
    return runToolOk(argv, { input, timeoutMs: this.timeoutMs });
  }
  iptablesSave(family: Family, table: Table): Promise<string> {
    return this.run([family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', table]);
  }
  async iptablesRestore(family: Family, text: string): Promise<void> {
    await this.run([family === 4 ? 'iptables-restore' : 'ip6tables-restore', '--noflush', '-w', '5'], text);
  }
  ipsetSave(): Promise<string> {
    return this.run(['ipset', 'save']);
  }
  async ipsetRestore(text: string): Promise<void> {
    await this.run(['ipset', '-exist', 'restore'], text);
  }
  async conntrackFlush(addrs: readonly string[]): Promise<void> {
    if (addrs.length === 0) return;
    // One shell for all of them. Addresses are checked here, as they are written into a script;
    // "0 flow entries" is an exit 1 for conntrack: nothing to forget is fine.
    const lines = addrs.flatMap((a) => {
      if (!/^[0-9a-f.:]+$/i.test(a)) throw new Error(`conntrack: not an address: ${a}`);
      const fam = a.includes(':') ? 'ipv6' : 'ipv4';
      return [`conntrack -D -f ${fam} -s ${a} 2>/dev/null`, `conntrack -D -f ${fam} -d ${a} 2>/dev/null`];
    });
    await this.run(['sh', '-c', `${lines.join('\n')}\nexit 0`]);
  }
}
