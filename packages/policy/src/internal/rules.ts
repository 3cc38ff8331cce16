import type { IPFamily, Rule } from '@calico/keyspace';

/**
 * Keyspace accepts protocol number 0, but `iptables -p 0` means "every protocol", so rendering it
 * would widen the rule instead of narrowing it. The policy layer refuses to enforce such a rule.
 */
export function isEnforceable(rule: Rule): boolean {
  return rule.protocol !== '0';
}

/**
 * Whether a rule can match packets of a family: a cidr is of one family, icmp is IPv4's and
 * icmpv6 IPv6's. explain() and the node's renderer both ask this, so they cannot disagree.
 */
export function ruleAppliesTo(rule: Rule, family: IPFamily): boolean {
  if (rule.cidr !== null && rule.family !== family) return false;
  if (rule.protocol === 'icmp') return family === 4;
  if (rule.protocol === 'icmpv6') return family === 6;
  return true;
}
