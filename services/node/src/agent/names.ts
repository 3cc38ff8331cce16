import { hash } from 'node:crypto';
import { HOST_IF_PREFIX } from '../plumber/names.js';

/** Everything the agent owns in iptables and ipset starts with this. */
export const OWNED_PREFIX = 'cali';

export const CHAIN = {
  forward: 'cali-FORWARD',
  workloadForward: 'cali-wl-fwd',
  fromWorkload: 'cali-from-wl',
  toWorkload: 'cali-to-wl',
  input: 'cali-INPUT',
  workloadToHost: 'cali-wl-to-host',
  prerouting: 'cali-PREROUTING',
} as const;

/** Where the top-level chains hook into the kernel's own chains. */
export const HOOKS = [
  { table: 'filter', builtin: 'FORWARD', chain: CHAIN.forward, families: [4, 6] },
  { table: 'filter', builtin: 'INPUT', chain: CHAIN.input, families: [4, 6] },
  { table: 'raw', builtin: 'PREROUTING', chain: CHAIN.prerouting, families: [6] },
] as const;

function shortHash(text: string, len: number): string {
  // The one-shot form: a first sync hashes every rule, and a Hash object per rule costs 3x more.
  return hash('sha256', text, 'base64url').replace(/[-_]/g, 'x').slice(0, len);
}

/** The suffix of a workload interface name (cali + 11 hex digits) names its chains. */
export function ifSuffix(hostIf: string): string {
  return hostIf.slice(HOST_IF_PREFIX.length);
}

/** Outbound policy of one workload (from workload). */
export const fromChain = (hostIf: string) => `cali-fw-${ifSuffix(hostIf)}`;
/** Inbound policy of one workload (to workload). */
export const toChain = (hostIf: string) => `cali-tw-${ifSuffix(hostIf)}`;
/** Source-address check of a workload with several addresses of one family. */
export const srcChain = (hostIf: string) => `cali-sa-${ifSuffix(hostIf)}`;
/** Control-plane traffic of a workload whose rules name some addresses: those return, the rest drop. */
export const controlChain = (hostIf: string) => `cali-cx-${ifSuffix(hostIf)}`;

/**
 * A dispatch chain: the workloads whose interface suffix starts with prefix, in one direction.
 * The empty prefix is the top of the tree, which cali-wl-fwd jumps to.
 */
export function dispatchChain(direction: 'from' | 'to', prefix: string): string {
  const top = direction === 'from' ? CHAIN.fromWorkload : CHAIN.toWorkload;
  return prefix === '' ? top : `${top}-${prefix}`;
}

const SPANNED_CHAIN = /^cali-(?:fw|tw|sa|cx|from-wl|to-wl)-([0-9a-f]+)$/;

/**
 * The interface-suffix prefix that every chain this one jumps to starts with: a workload's own
 * suffix for its chains (they refer only to each other and to ipsets), the prefix of a dispatch
 * chain below the top. null for the top of the dispatch and the other shared chains. Chains
 * whose spans do not overlap can be written by separate transactions side by side.
 */
export function chainSpan(chain: string): string | null {
  return SPANNED_CHAIN.exec(chain)?.[1] ?? null;
}

/** The ipset of a group's member addresses of one family (31 characters at most). */
export function groupSetName(groupId: string, family: 4 | 6): string {
  return `cali${family}g-${shortHash(groupId, 20)}`;
}

/** The control plane's address,tcp:port pairs of one family, which no workload reaches by default. */
export function controlSetName(family: 4 | 6): string {
  return `cali${family}-ctl`;
}

/** The hash comment that marks a rule as ours and lets us compare chains without parsing rules. */
export function ruleHash(chain: string, index: number, rule: string): string {
  return shortHash(`${chain}\u0000${index}\u0000${rule}`, 16);
}
