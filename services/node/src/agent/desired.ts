import type { Rule } from '@calico/keyspace';
import {
  controlPlaneExemptions,
  ruleAppliesTo,
  targetSetMember,
  type ControlPlaneTarget,
  type EndpointPolicy,
  type RuleRef,
} from '@calico/policy';
import { HOST_IF_PREFIX } from '../plumber/names.js';
import type { IpsetType } from './dataplane.js';
import { CHAIN, controlChain, controlSetName, dispatchChain, fromChain, groupSetName, ifSuffix } from './names.js';
import { srcChain, toChain } from './names.js';

export type Family = 4 | 6;

/** What traffic from a workload to its own host meets (documented in docs/policy.md). */
export type EndpointToHostAction = 'drop' | 'accept' | 'policy';

/** One local workload as the renderer needs it. */
export interface LocalEndpoint {
  endpointId: string;
  hostIf: string;
  mac: string | null;
  v4: readonly string[];
  v6: readonly string[];
  policy: EndpointPolicy;
}

/** Chains of one table of one family: name → rule bodies (what follows "-A <chain>"). */
export type Chains = Map<string, string[]>;

export interface DesiredDataplane {
  /** ipset name → family and members (type hash:ip unless given). */
  ipsets: Map<string, { family: Family; members: Set<string>; type?: IpsetType }>;
  /** family → table → chains. */
  tables: Record<Family, { filter: Chains; raw: Chains }>;
}

const PORT_MATCH: Record<string, string> = { tcp: 'tcp', udp: 'udp', sctp: 'sctp', udplite: 'multiport' };

/** The iptables match of one rule in one family, or null when the rule cannot apply to it. */
export function ruleMatch(rule: Readonly<Rule>, family: Family, peer: 'src' | 'dst'): string | null {
  if (!ruleAppliesTo(rule, family)) return null;
  const parts: string[] = [];
  if (rule.cidr !== null) {
    // An all-addresses network needs no match at all.
    if (!rule.cidr.endsWith('/0')) parts.push(`${peer === 'src' ? '-s' : '-d'} ${rule.cidr}`);
  } else if (rule.group !== null) {
    parts.push(`-m set --match-set ${groupSetName(rule.group, family)} ${peer}`);
  }
  if (rule.protocol !== null) {
    parts.push(`-p ${rule.protocol === 'icmpv6' ? 'ipv6-icmp' : rule.protocol}`);
    if (rule.port !== null) {
      const m = PORT_MATCH[rule.protocol];
      if (!m) return null;
      parts.push(m === 'multiport' ? `-m multiport --dports ${rule.port}` : `-m ${m} --dport ${rule.port}`);
    }
  }
  return parts.join(' ');
}

function ruleRefsToLines(refs: readonly RuleRef[], family: Family, peer: 'src' | 'dst'): string[] {
  const out: string[] = [];
  for (const r of refs) {
    const m = ruleMatch(r.rule, family, peer);
    if (m !== null) out.push(`${m}${m ? ' ' : ''}-j RETURN`.trim());
  }
  return out;
}

/** The match of tcp to the control plane (controlSetName: address,tcp:port pairs). */
export function controlMatch(family: Family): string {
  return `-m set --match-set ${controlSetName(family)} dst,dst`;
}

/** The control-plane set's members of one family, as ipset prints them. */
export function controlSetMembers(targets: readonly ControlPlaneTarget[], family: Family): string[] {
  return targets.filter((t) => t.family === family).map(targetSetMember);
}

/**
 * The chains every host has whatever its workloads: the hooks' targets and the dispatch's
 * frame. With EndpointToHostAction accept, traffic to the control plane on this host still
 * meets the workload's outbound chain (its control-plane drop and rules), as with policy.
 */
export function renderStaticChains(family: Family, endpointToHost: EndpointToHostAction): Chains {
  const f: Chains = new Map();
  f.set(CHAIN.forward, ['-i cali+ -g cali-wl-fwd', '-o cali+ -g cali-wl-fwd']);
  f.set(CHAIN.workloadForward, [
    '-m conntrack --ctstate INVALID -j DROP',
    '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    `-i cali+ -j ${CHAIN.fromWorkload}`,
    `-o cali+ -j ${CHAIN.toWorkload}`,
    '-j ACCEPT',
  ]);
  f.set(CHAIN.input, [`-i cali+ -g ${CHAIN.workloadToHost}`]);
  const toHost = ['-m conntrack --ctstate INVALID -j DROP', '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'];
  // IPv6 needs neighbour discovery with the host (the workloads' gateway) whatever the policy.
  if (family === 6)
    for (const t of [130, 131, 132, 133, 135, 136]) toHost.push(`-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`);
  if (endpointToHost === 'accept') toHost.push(`${controlMatch(family)} -j ${CHAIN.fromWorkload}`, '-j ACCEPT');
  else if (endpointToHost === 'policy') toHost.push(`-j ${CHAIN.fromWorkload}`, '-j ACCEPT');
  else toHost.push('-j DROP');
  f.set(CHAIN.workloadToHost, toHost);
  return f;
}

/** The raw-table chains: IPv6 reverse-path check (IPv4 has the rp_filter sysctl). */
export function renderRawChains(family: Family): Chains {
  return family === 6 ? new Map([[CHAIN.prerouting, ['-i cali+ -m rpfilter --invert -j DROP']]]) : new Map();
}

/** Most interfaces one dispatch chain tests one by one; more branch on their next hex digit. */
export const DISPATCH_LEAF = 64;

/**
 * cali-from-wl / cali-to-wl: a tree of chains that sends a packet to its workload's chain by
 * goto, branching on interface-name prefixes (`-i cali3+`), so a packet meets a few dozen rules
 * whatever the number of workloads, and adding one rewrites one small chain. Unknown
 * interfaces drop. The workloads given are those with chains in the family being rendered.
 */
export function renderDispatch(hostIfs: readonly string[]): Chains {
  const chains: Chains = new Map();
  const suffixes = [...new Set(hostIfs)].map(ifSuffix).sort();
  for (const direction of ['from', 'to'] as const) dispatchNode(chains, direction, '', suffixes);
  return chains;
}

function dispatchNode(out: Chains, direction: 'from' | 'to', prefix: string, suffixes: readonly string[]): void {
  const flag = direction === 'from' ? '-i' : '-o';
  const lines: string[] = [];
  out.set(dispatchChain(direction, prefix), lines);
  const first = suffixes[0] ?? '';
  const last = suffixes[suffixes.length - 1] ?? '';
  // Sorted, so what the first and the last share, all share: branch on the digit after it.
  let at = prefix.length;
  while (at < first.length && first[at] === last[at]) at++;
  if (suffixes.length <= DISPATCH_LEAF || at >= first.length) {
    for (const s of suffixes) {
      const hostIf = `${HOST_IF_PREFIX}${s}`;
      lines.push(`${flag} ${hostIf} -g ${direction === 'from' ? fromChain(hostIf) : toChain(hostIf)}`);
    }
  } else {
    for (let i = 0; i < suffixes.length; ) {
      const branch = (suffixes[i] as string).slice(0, at + 1);
      let j = i;
      while (j < suffixes.length && (suffixes[j] as string).startsWith(branch)) j++;
      lines.push(`${flag} ${HOST_IF_PREFIX}${branch}+ -g ${dispatchChain(direction, branch)}`);
      dispatchNode(out, direction, branch, suffixes.slice(i, j));
      i = j;
    }
  }
  lines.push('-j DROP');
}

/**
 * One workload's chains in one family, and the group ipsets they name. A workload that is
 * inactive, or has no address of the family, has none: the dispatch leaves it out, and its
 * packets meet the dispatch's final DROP.
 */
export function renderEndpoint(ep: LocalEndpoint, family: Family): { chains: Chains; sets: Map<string, string> } {
  const chains: Chains = new Map();
  const sets = new Map<string, string>();
  const addrs = family === 4 ? ep.v4 : ep.v6;
  if (!ep.policy.active || addrs.length === 0) return { chains, sets };
  const fw: string[] = [];
  // Anti-spoofing: only the workload's own MAC and addresses may send.
  if (ep.mac) fw.push(`-m mac ! --mac-source ${ep.mac} -j DROP`);
  const plen = family === 4 ? 32 : 128;
  if (addrs.length === 1) fw.push(`! -s ${addrs[0]}/${plen} -j DROP`);
  else {
    chains.set(srcChain(ep.hostIf), [...addrs.map((a) => `-s ${a}/${plen} -j RETURN`), '-j DROP']);
    fw.push(`-j ${srcChain(ep.hostIf)}`);
  }
  // The control plane: dropped before the rules, but for addresses a rule names as host prefixes.
  const exempt = controlPlaneExemptions(ep.policy, family);
  if (exempt.length === 0) fw.push(`${controlMatch(family)} -j DROP`);
  else {
    chains.set(controlChain(ep.hostIf), [...exempt.map((a) => `-d ${a}/${plen} -j RETURN`), '-j DROP']);
    fw.push(`${controlMatch(family)} -j ${controlChain(ep.hostIf)}`);
  }
  fw.push(...ruleRefsToLines(ep.policy.outbound, family, 'dst'), '-j DROP');
  const tw = [...ruleRefsToLines(ep.policy.inbound, family, 'src'), '-j DROP'];
  for (const r of [...ep.policy.outbound, ...ep.policy.inbound]) {
    if (r.rule.group !== null) sets.set(groupSetName(r.rule.group, family), r.rule.group);
  }
  chains.set(fromChain(ep.hostIf), fw);
  chains.set(toChain(ep.hostIf), tw);
  return { chains, sets };
}

/**
 * Renders the host's whole desired iptables chains and ipsets from its local endpoints. Pure:
 * the same input gives the same text, which is what lets the dataplane skip unchanged chains.
 *
 * A packet to or from a workload goes FORWARD → cali-FORWARD → cali-wl-fwd: invalid packets
 * drop, established ones pass; then the sender's outbound chain (cali-fw-*, reached by goto
 * from cali-from-wl) and the receiver's inbound chain (cali-tw-*) must each RETURN (allow) or
 * the packet drops. Group peers are ipsets, so membership changes never touch iptables; so is
 * the control plane (cali4-ctl, cali6-ctl), which the outbound chains drop before their rules.
 */
export function renderDataplane(
  endpoints: readonly LocalEndpoint[],
  groupMembers: (groupId: string, family: Family) => readonly string[],
  endpointToHost: EndpointToHostAction,
  controlPlane: readonly ControlPlaneTarget[] = [],
): DesiredDataplane {
  const ipsets: DesiredDataplane['ipsets'] = new Map();
  const tables: DesiredDataplane['tables'] = {
    4: { filter: new Map(), raw: new Map() },
    6: { filter: new Map(), raw: new Map() },
  };
  for (const family of [4, 6] as const) {
    const f = tables[family].filter;
    const controlMembers = new Set(controlSetMembers(controlPlane, family));
    ipsets.set(controlSetName(family), { family, type: 'hash:ip,port', members: controlMembers });
    for (const [k, v] of renderStaticChains(family, endpointToHost)) f.set(k, v);
    const dispatched: string[] = [];
    for (const ep of endpoints) {
      const r = renderEndpoint(ep, family);
      if (r.chains.size > 0) dispatched.push(ep.hostIf);
      for (const [k, v] of r.chains) f.set(k, v);
      for (const [name, gid] of r.sets)
        if (!ipsets.has(name)) ipsets.set(name, { family, members: new Set(groupMembers(gid, family)) });
    }
    for (const [k, v] of renderDispatch(dispatched)) f.set(k, v);
    for (const [k, v] of renderRawChains(family)) tables[family].raw.set(k, v);
  }
  return { ipsets, tables };
}
