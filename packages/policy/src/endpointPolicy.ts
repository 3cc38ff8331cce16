/**
 * Per-endpoint views: what the node's agent renders into one inbound and one outbound chain per
 * endpoint, and which group ipsets those chains need.
 */
import type { IPFamily } from '@calico/keyspace';
import { compareText } from './internal/addr.js';
import { isEnforceable } from './internal/rules.js';
import { PolicyError, PolicyErrorCode } from './errors.js';
import type { Endpoint, PolicyModel, RuleRef } from './model.js';

export interface EndpointPolicy {
  endpointId: string;
  /** False when the endpoint's state is `inactive`: then both rule lists are empty (deny everything). */
  active: boolean;
  /** The groups it is a member of, sorted by id. */
  groups: string[];
  /** Rules in the order they are tried: by group id, then rule index. */
  inbound: RuleRef[];
  outbound: RuleRef[];
}

function knownEndpoint(model: PolicyModel, endpointId: string): Endpoint {
  const ep = model.endpoint(endpointId);
  if (ep === undefined) throw new PolicyError(PolicyErrorCode.UNKNOWN_ENDPOINT, `no endpoint has id ${endpointId}`);
  return ep;
}

/**
 * The rules that apply to an endpoint. Rules that can never match as written (protocol 0) are left
 * out so a renderer cannot widen them; rules naming a missing group stay in, since their empty
 * ipset already matches nothing and fills in place when the group appears.
 */
export function endpointPolicy(model: PolicyModel, endpointId: string): EndpointPolicy {
  const active = knownEndpoint(model, endpointId).state !== 'inactive';
  const groups = model.groupIdsOf(endpointId);
  const inbound: RuleRef[] = [];
  const outbound: RuleRef[] = [];
  if (active) {
    for (const id of groups) {
      const g = model.groupRules(id);
      if (g === undefined) continue;
      inbound.push(...g.inbound.filter((r) => isEnforceable(r.rule)));
      outbound.push(...g.outbound.filter((r) => isEnforceable(r.rule)));
    }
  }
  return { endpointId, active, groups, inbound, outbound };
}

/** A group's addresses of one family, sorted: the contents of its ipset. */
export function groupAddrs(model: PolicyModel, groupId: string, family: IPFamily): string[] {
  return [...model.groupAddrs(groupId, family)];
}

/** The groups an id is a member of, sorted; works for ids that are not (yet) endpoints. */
export function groupsOfEndpoint(model: PolicyModel, endpointId: string): string[] {
  return model.groupIdsOf(endpointId);
}

/** The endpoints on one host, sorted by id. */
export function endpointsOnHost(model: PolicyModel, host: string): Endpoint[] {
  return model.endpoints().filter((ep) => ep.host === host);
}

/**
 * The groups whose ipsets a host needs: those named by the rules that apply to its endpoints,
 * sorted. A group that does not exist is included; its ipset is simply empty.
 */
export function referencedGroups(model: PolicyModel, host: string): string[] {
  const ids = new Set<string>();
  for (const ep of endpointsOnHost(model, host)) {
    const policy = endpointPolicy(model, ep.endpointId);
    for (const ref of [...policy.inbound, ...policy.outbound]) if (ref.rule.group !== null) ids.add(ref.rule.group);
  }
  return [...ids].sort(compareText);
}
