/**
 * explain(): may a connection be opened from src to dst, and which rule (or missing rule) says so.
 * It judges the initiating direction only; replies ride on conntrack, as in the dataplane.
 */
import {
  canonicalIP,
  cidrContains,
  isIP,
  protocolNumbers,
  protocolsWithPorts,
  type IPFamily,
  type ProtocolName,
} from '@calico/keyspace';
import { controlPlaneExemptions, describeTarget, type ControlPlaneTarget } from './controlPlane.js';
import { endpointPolicy } from './endpointPolicy.js';
import { PolicyError, PolicyErrorCode } from './errors.js';
import { isEnforceable, ruleAppliesTo } from './internal/rules.js';
import type { Endpoint, PolicyModel, RuleRef } from './model.js';

export interface ExplainQuery {
  /** An address, or an endpoint id. */
  src: string;
  dst: string;
  /** tcp, udp, icmp, … or a protocol number; null/absent asks about traffic of any protocol. */
  protocol?: string | null;
  /** Destination port of the connection; needs a protocol with ports. */
  port?: number | null;
  /** Which family to use when both sides are endpoint ids; by default IPv4 when both have it. */
  family?: IPFamily | null;
}

export interface SideVerdict {
  allowed: boolean;
  /** The rule that allowed the traffic; null when it was denied. */
  decidedBy: RuleRef | null;
  /** The endpoint's groups, sorted. */
  groups: string[];
  reason: 'rule' | 'no-group' | 'default-deny' | 'inactive' | 'control-plane';
  /**
   * The address and port of the control plane the traffic went to: with reason 'control-plane'
   * it was kept from it; otherwise controlPlaneOpenedBy is the rule that names the address.
   */
  controlPlane?: ControlPlaneTarget;
  controlPlaneOpenedBy?: RuleRef;
}

export interface ExplainOptions {
  /**
   * The control plane (see controlPlaneTargets): tcp to one of these is dropped from an endpoint
   * unless one of its outbound rules is a cidr rule naming exactly that address (/32, /128).
   */
  controlPlane?: readonly ControlPlaneTarget[];
}

export interface VerdictEnd {
  addr: string;
  /** The endpoint that owns the address, or null for an outside address. */
  endpointId: string | null;
}

export interface Verdict {
  allowed: boolean;
  family: IPFamily;
  src: VerdictEnd;
  dst: VerdictEnd;
  /** The sender's outbound policy; null when the source is not an endpoint. */
  outbound: SideVerdict | null;
  /** The receiver's inbound policy; null when the destination is not an endpoint. */
  inbound: SideVerdict | null;
  /** One sentence for people. */
  reason: string;
}

interface Packet {
  family: IPFamily;
  protocol: string | null;
  port: number | null;
}

const PROTOCOL_NUMBER = /^(0|[1-9][0-9]{0,2})$/;

/** The spelling keyspace decodes rules to, so query and rule compare as plain strings. */
function normaliseProtocol(protocol: string | null | undefined): string | null {
  if (protocol === null || protocol === undefined) return null;
  const lower = protocol.trim().toLowerCase();
  if (Object.hasOwn(protocolNumbers, lower)) return lower;
  if (PROTOCOL_NUMBER.test(lower) && Number(lower) <= 255) {
    const n = Number(lower);
    return (Object.keys(protocolNumbers) as ProtocolName[]).find((name) => protocolNumbers[name] === n) ?? lower;
  }
  throw new PolicyError(
    PolicyErrorCode.INVALID_QUERY,
    `protocol "${protocol}" is not one of ${Object.keys(protocolNumbers).join(', ')} or a number from 0 to 255`,
  );
}

function checkPort(port: number | null | undefined, protocol: string | null): number | null {
  if (port === null || port === undefined) return null;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new PolicyError(PolicyErrorCode.INVALID_QUERY, `port ${port} is not an integer from 1 to 65535`);
  }
  if (protocol === null)
    throw new PolicyError(PolicyErrorCode.INVALID_QUERY, `port ${port} needs a protocol (tcp, udp, sctp or udplite)`);
  if (!(protocolsWithPorts as readonly string[]).includes(protocol)) {
    throw new PolicyError(PolicyErrorCode.INVALID_QUERY, `protocol ${protocol} has no ports, so port must be null`);
  }
  return port;
}

/** Does this rule let this packet through, given the peer's address (source for inbound, destination for outbound)? */
function ruleMatches(model: PolicyModel, ref: RuleRef, peer: string, packet: Packet): boolean {
  const { rule } = ref;
  if (!isEnforceable(rule) || !ruleAppliesTo(rule, packet.family)) return false;
  // A narrowed rule does not answer "may any traffic flow": unspecified protocol or port only meets null.
  if (rule.protocol !== null && rule.protocol !== packet.protocol) return false;
  if (rule.port !== null && rule.port !== packet.port) return false;
  if (rule.group !== null) return model.groupAddrs(rule.group, packet.family).includes(peer);
  return rule.cidr !== null && cidrContains(rule.cidr, peer);
}

function judgeSide(
  model: PolicyModel,
  endpointId: string,
  direction: 'inbound' | 'outbound',
  peer: string,
  packet: Packet,
  controlPlane: readonly ControlPlaneTarget[],
): SideVerdict {
  const policy = endpointPolicy(model, endpointId);
  const { groups } = policy;
  if (!policy.active) return { allowed: false, decidedBy: null, groups, reason: 'inactive' };
  if (groups.length === 0) return { allowed: false, decidedBy: null, groups, reason: 'no-group' };
  let opened: Pick<SideVerdict, 'controlPlane' | 'controlPlaneOpenedBy'> = {};
  if (direction === 'outbound' && packet.protocol === 'tcp' && packet.port !== null) {
    const t = controlPlane.find((c) => c.addr === peer && c.port === packet.port && c.protocol === 'tcp');
    if (t !== undefined) {
      if (!controlPlaneExemptions(policy, packet.family).includes(peer)) {
        return { allowed: false, decidedBy: null, groups, reason: 'control-plane', controlPlane: t };
      }
      const named = `${peer}/${packet.family === 4 ? 32 : 128}`;
      const by = policy.outbound.find((r) => r.rule.cidr === named && ruleAppliesTo(r.rule, packet.family));
      opened = by === undefined ? { controlPlane: t } : { controlPlane: t, controlPlaneOpenedBy: by };
    }
  }
  const decidedBy = policy[direction].find((ref) => ruleMatches(model, ref, peer, packet)) ?? null;
  return decidedBy === null
    ? { allowed: false, decidedBy: null, groups, reason: 'default-deny', ...opened }
    : { allowed: true, decidedBy, groups, reason: 'rule', ...opened };
}

type Party = { kind: 'addr'; addr: string; family: IPFamily } | { kind: 'endpoint'; endpoint: Endpoint };

function party(model: PolicyModel, text: string, role: string): Party {
  const family = isIP(text);
  if (family !== 0) return { kind: 'addr', addr: canonicalIP(text) ?? text, family };
  const endpoint = model.endpoint(text);
  if (endpoint === undefined) {
    throw new PolicyError(
      PolicyErrorCode.UNKNOWN_ENDPOINT,
      `${role} "${text}" is neither an IP address nor the id of a known endpoint`,
    );
  }
  return { kind: 'endpoint', endpoint };
}

function addrsOf(ep: Endpoint, family: IPFamily): readonly string[] {
  return family === 4 ? ep.addrs.v4 : ep.addrs.v6;
}

function chooseFamily(src: Party, dst: Party, wanted: IPFamily | null | undefined): IPFamily {
  if (wanted !== null && wanted !== undefined && wanted !== 4 && wanted !== 6) {
    throw new PolicyError(PolicyErrorCode.INVALID_QUERY, `family must be 4 or 6, got ${String(wanted)}`);
  }
  const [first, second] = [src, dst].flatMap((p) => (p.kind === 'addr' ? [p] : []));
  if (first !== undefined && second !== undefined && first.family !== second.family) {
    throw new PolicyError(
      PolicyErrorCode.FAMILY_MISMATCH,
      `cannot mix IPv${first.family} ${first.addr} with IPv${second.family} ${second.addr}`,
    );
  }
  if (first !== undefined) {
    if (wanted !== null && wanted !== undefined && wanted !== first.family) {
      throw new PolicyError(
        PolicyErrorCode.FAMILY_MISMATCH,
        `${first.addr} is an IPv${first.family} address, but IPv${wanted} was asked for`,
      );
    }
    return first.family;
  }
  if (wanted !== null && wanted !== undefined) return wanted;
  const eps = [src, dst].flatMap((p) => (p.kind === 'endpoint' ? [p.endpoint] : []));
  const common = ([4, 6] as const).find((f) => eps.every((ep) => addrsOf(ep, f).length > 0));
  if (common === undefined) {
    throw new PolicyError(
      PolicyErrorCode.NO_ADDRESS,
      `endpoints ${eps.map((ep) => ep.endpointId).join(' and ')} have no address family in common`,
    );
  }
  return common;
}

function resolve(model: PolicyModel, p: Party, family: IPFamily): VerdictEnd {
  if (p.kind === 'endpoint') {
    const addr = addrsOf(p.endpoint, family)[0];
    if (addr === undefined) {
      throw new PolicyError(
        PolicyErrorCode.NO_ADDRESS,
        `endpoint ${p.endpoint.endpointId} has no IPv${family} address`,
      );
    }
    return { addr, endpointId: p.endpoint.endpointId };
  }
  // Stale copies may share an address; the live one is the one traffic reaches.
  const owners = model.endpointsWithAddr(p.addr);
  const live = owners.find((id) => model.endpoint(id)?.state !== 'inactive');
  return { addr: p.addr, endpointId: live ?? owners[0] ?? null };
}

function groupLabel(model: PolicyModel, groupId: string): string {
  const name = model.group(groupId)?.name ?? null;
  return name === null ? groupId : `${name} (${groupId})`;
}

function ruleLabel(model: PolicyModel, ref: RuleRef): string {
  return `${ref.direction} rule ${ref.index} of group ${groupLabel(model, ref.groupId)}`;
}

function denial(model: PolicyModel, endpointId: string, direction: 'inbound' | 'outbound', side: SideVerdict): string {
  switch (side.reason) {
    case 'inactive':
      return `denied: endpoint ${endpointId} is inactive`;
    case 'no-group':
      return `denied: endpoint ${endpointId} is in no group`;
    case 'control-plane': {
      const t = side.controlPlane as ControlPlaneTarget;
      const named = `${t.addr}/${t.family === 4 ? 32 : 128}`;
      const what = `${t.addr} port ${t.port} is the control plane (${describeTarget(t)})`;
      return `denied: ${what}; only an outbound rule naming ${named} opens it for ${endpointId}`;
    }
    default:
      return `denied: no ${direction} rule of groups [${side.groups.map((g) => groupLabel(model, g)).join(', ')}] of ${endpointId} matches; default deny`;
  }
}

function sentence(model: PolicyModel, v: Omit<Verdict, 'reason'>): string {
  const { src, dst, outbound, inbound } = v;
  if (outbound !== null && !outbound.allowed && src.endpointId !== null)
    return denial(model, src.endpointId, 'outbound', outbound);
  if (inbound !== null && !inbound.allowed && dst.endpointId !== null)
    return denial(model, dst.endpointId, 'inbound', inbound);
  const because = [outbound?.decidedBy, inbound?.decidedBy].flatMap((r) => (r ? [ruleLabel(model, r)] : []));
  if (because.length === 0) return `allowed: neither ${src.addr} nor ${dst.addr} is an endpoint, so no policy applies`;
  const outside = outbound === null ? src.addr : inbound === null ? dst.addr : null;
  const t = outbound?.controlPlane;
  const by = outbound?.controlPlaneOpenedBy;
  const cp = t ? `${t.addr} port ${t.port} is the control plane (${describeTarget(t)})` : '';
  const opened = t && by ? `; ${cp}, opened by ${ruleLabel(model, by)}` : '';
  return `allowed: ${because.join(' and ')}${outside === null ? '' : `; ${outside} is not an endpoint`}${opened}`;
}

/**
 * May a connection from src to dst be opened? Both the sender's outbound and the receiver's
 * inbound policy must allow it; a side that is not an endpoint has no policy. An endpoint's tcp
 * to the control plane (opts.controlPlane) is denied before its rules unless one of them names
 * that address as a host prefix. Throws PolicyError
 * for unknown endpoint ids, mixed families and malformed protocol or port.
 */
export function explain(model: PolicyModel, query: ExplainQuery, opts: ExplainOptions = {}): Verdict {
  const controlPlane = opts.controlPlane ?? [];
  const protocol = normaliseProtocol(query.protocol);
  const packet: Packet = { family: 4, protocol, port: checkPort(query.port, protocol) };
  const srcParty = party(model, query.src, 'source');
  const dstParty = party(model, query.dst, 'destination');
  packet.family = chooseFamily(srcParty, dstParty, query.family);
  const src = resolve(model, srcParty, packet.family);
  const dst = resolve(model, dstParty, packet.family);
  const cp = controlPlane;
  const outbound = src.endpointId === null ? null : judgeSide(model, src.endpointId, 'outbound', dst.addr, packet, cp);
  const inbound = dst.endpointId === null ? null : judgeSide(model, dst.endpointId, 'inbound', src.addr, packet, cp);
  const verdict = {
    allowed: (outbound?.allowed ?? true) && (inbound?.allowed ?? true),
    family: packet.family,
    src,
    dst,
    outbound,
    inbound,
  };
  return { ...verdict, reason: sentence(model, verdict) };
}
