import type { Rule } from '@calico/keyspace';

/**
 * Keyspace accepts protocol number 0, but `iptables -p 0` means "every protocol", so rendering it
 * would widen the rule instead of narrowing it. The policy layer refuses to enforce such a rule.
 */
export function isEnforceable(rule: Rule): boolean {
  return rule.protocol !== '0';
}
