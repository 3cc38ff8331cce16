/**
 * Decoders and encoders for every value in the keyspace. A decoder takes the key as context and
 * never throws: each message starts with the key and says what is wrong, so the master can report
 * it and the agent can treat the value as deleted. An encoder validates the same way, throws a
 * KeyspaceError (INVALID_VALUE) on bad input, and writes the one canonical spelling.
 */
import { KeyspaceError, KeyspaceErrorCode } from './errors.js';
import { canonicalCidr, type IPFamily } from './ip.js';
import { isCanonicalIPv4, readCidr, readIPv4 } from './internal/ipText.js';
import {
  asObject,
  bad,
  checkAddress,
  checkAsNumber,
  checkIntegerish,
  checkSegmentString,
  field,
  good,
  kindOf,
  MAX_AS_NUMBER,
  parseJson,
  prefixed,
  show,
  showText,
  unknownFields,
  type Check,
  type JsonObject,
} from './internal/checks.js';
import { parseKey, type CalicoKey, type CalicoKeyKind } from './keys.js';
import { hostNameError } from './names.js';

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; errors: string[] };

function decoded<T>(key: string, check: Check<T>): DecodeResult<T> {
  return prefixed(key, check);
}

function encoded<T>(what: string, check: Check<T>): T {
  if (check.ok) return check.value;
  throw new KeyspaceError(KeyspaceErrorCode.INVALID_VALUE, `invalid ${what}: ${check.errors.join('; ')}`);
}

function jsonObject(raw: string): Check<JsonObject> {
  const json = parseJson(raw);
  return json.ok ? asObject(json.value, 'value') : json;
}

// ---------------------------------------------------------------------------------------------
// Rules: /calico/network/group/<group-id>/rule/{inbound,outbound}/<n>

/** Protocols named in rules, with their IANA numbers; a number with a name is stored as the name. */
export const protocolNumbers = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  icmpv6: 58,
  sctp: 132,
  udplite: 136,
} as const;

export type ProtocolName = keyof typeof protocolNumbers;

/** Protocols that carry ports; every other protocol must have `port: null`. */
export const protocolsWithPorts: readonly ProtocolName[] = ['tcp', 'udp', 'sctp', 'udplite'];

export interface Rule {
  /** Peer security group id; exactly one of group and cidr is set. */
  group: string | null;
  /** Peer network in canonical "network/length" form (host bits cleared). */
  cidr: string | null;
  /** Family of `cidr`; null for group rules. */
  family: IPFamily | null;
  /** A ProtocolName, another protocol number as decimal text, or null for any protocol. */
  protocol: string | null;
  /** Destination port, or null for any port. */
  port: number | null;
}

/** What encodeRule accepts: the decoded shape, or the looser forms the seed's JSON allows. */
export interface RuleInput {
  group?: string | null;
  cidr?: string | null;
  protocol?: string | number | null;
  port?: number | string | null;
}

const RULE_FIELDS = ['group', 'cidr', 'protocol', 'port'] as const;
/**
 * The seed's first example rule spells the port field "port:" (a typo in the published doc) and
 * means "all ports". So that the example works as written, "port:" stands for "port" when "port"
 * is absent; next to a real "port" it is an unknown field like any other.
 */
const PORT_ALIAS = 'port:';

function checkGroupRef(value: unknown): Check<string | null> {
  return value === null || value === undefined ? good(null) : checkSegmentString('group', value);
}

function checkRuleCidr(value: unknown): Check<{ cidr: string; family: IPFamily } | null> {
  if (value === null || value === undefined) return good(null);
  if (typeof value !== 'string') return bad(`cidr must be a string or null, got ${kindOf(value)}`);
  const r = readCidr(value);
  if (!r.ok) return bad(`cidr ${show(value)} is not valid: ${r.reason}`);
  // Host bits are cleared, not refused: iptables and ipset do the same with such a network.
  return good({ cidr: canonicalCidr(value) ?? value, family: r.value.family });
}

const PROTOCOL_NUMBER = /^(0|[1-9][0-9]{0,2})$/;

function protocolFromNumber(n: number): string {
  const named = (Object.keys(protocolNumbers) as ProtocolName[]).find((name) => protocolNumbers[name] === n);
  return named ?? String(n);
}

function checkProtocol(value: unknown): Check<string | null> {
  if (value === null || value === undefined) return good(null);
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 255) {
      return bad(`protocol ${show(value)} is not a protocol number from 0 to 255`);
    }
    return good(protocolFromNumber(value));
  }
  if (typeof value !== 'string') return bad(`protocol must be a string, a number or null, got ${kindOf(value)}`);
  const lower = value.toLowerCase();
  if (Object.hasOwn(protocolNumbers, lower)) return good(lower);
  if (PROTOCOL_NUMBER.test(value) && Number(value) <= 255) return good(protocolFromNumber(Number(value)));
  return bad(
    `protocol ${show(value)} is not one of ${Object.keys(protocolNumbers).join(', ')} or a number from 0 to 255`,
  );
}

function checkPort(value: unknown): Check<number | null> {
  if (value === null || value === undefined) return good(null);
  return checkIntegerish('port', value, 1, 65535);
}

function checkRuleObject(obj: JsonObject): Check<Rule> {
  const hasPort = Object.hasOwn(obj, 'port');
  const errors: string[] = [];
  for (const name of Object.keys(obj)) {
    if ((RULE_FIELDS as readonly string[]).includes(name)) continue;
    if (name === PORT_ALIAS && !hasPort) continue;
    errors.push(
      name === PORT_ALIAS
        ? `unknown field "port:" (it is read as "port" only when "port" is absent)`
        : `unknown field ${showText(name)}`,
    );
  }
  const group = checkGroupRef(field(obj, 'group'));
  const cidr = checkRuleCidr(field(obj, 'cidr'));
  const protocol = checkProtocol(field(obj, 'protocol'));
  const port = checkPort(hasPort ? field(obj, 'port') : field(obj, PORT_ALIAS));
  for (const c of [group, cidr, protocol, port]) if (!c.ok) errors.push(...c.errors);

  if (group.ok && cidr.ok) {
    if (group.value === null && cidr.value === null)
      errors.push('exactly one of group and cidr must be set, both are null');
    if (group.value !== null && cidr.value !== null)
      errors.push('exactly one of group and cidr must be set, both are set');
  }
  if (protocol.ok && port.ok && port.value !== null) {
    if (protocol.value === null) errors.push('port must be null when protocol is null (any protocol)');
    else if (!(protocolsWithPorts as readonly string[]).includes(protocol.value)) {
      errors.push(`port must be null for protocol ${protocol.value}`);
    }
  }
  if (errors.length > 0 || !group.ok || !cidr.ok || !protocol.ok || !port.ok) return bad(...errors);
  return good({
    group: group.value,
    cidr: cidr.value?.cidr ?? null,
    family: cidr.value?.family ?? null,
    protocol: protocol.value,
    port: port.value,
  });
}

export function decodeRule(key: string, raw: string): DecodeResult<Rule> {
  const obj = jsonObject(raw);
  return decoded(key, obj.ok ? checkRuleObject(obj.value) : obj);
}

/** Canonical rule JSON: all four seed fields, in seed order, `port` spelled correctly and numeric. */
export function encodeRule(rule: RuleInput): string {
  const { group = null, cidr = null, protocol = null, port = null } = rule;
  const r = encoded('rule', checkRuleObject({ group, cidr, protocol, port }));
  return JSON.stringify({ group: r.group, cidr: r.cidr, protocol: r.protocol, port: r.port });
}

// ---------------------------------------------------------------------------------------------
// Defaults: .../rule/inbound_default and .../rule/outbound_default

export type DefaultAction = 'deny';

function checkDefault(raw: string): Check<DefaultAction> {
  return raw.trim() === 'deny'
    ? good('deny')
    : bad(`default must be "deny" (the only supported value), got ${showText(raw)}`);
}

export function decodeDefault(key: string, raw: string): DecodeResult<DefaultAction> {
  return decoded(key, checkDefault(raw));
}

export function encodeDefault(action: DefaultAction = 'deny'): string {
  return encoded('default', checkDefault(action));
}

// ---------------------------------------------------------------------------------------------
// Endpoint: .../endpoint/<endpoint-id>/{addrs,mac,state}

export interface EndpointAddr {
  /** Canonical text: IPv4 dotted quad or RFC 5952 IPv6. */
  addr: string;
  family: IPFamily;
}

/**
 * The usual addrs value, {"addr"} objects with distinct canonical IPv4 addresses, read without
 * building the messages the full check prepares; null sends anything else to the full check.
 * A snapshot decodes one of these per endpoint in the cluster.
 */
function plainIPv4Addrs(list: readonly unknown[]): EndpointAddr[] | null {
  const out: EndpointAddr[] = [];
  for (let i = 0; i < list.length; i++) {
    const item = list[i];
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return null;
    const keys = Object.keys(item);
    if (keys.length !== 1 || keys[0] !== 'addr') return null;
    const addr = (item as { addr: unknown }).addr;
    if (typeof addr !== 'string' || !isCanonicalIPv4(addr)) return null;
    for (let j = 0; j < i; j++) if ((out[j] as EndpointAddr).addr === addr) return null;
    out.push({ addr, family: 4 });
  }
  // Exactly sized: a pushed-to array keeps room for 17, and endpoints keep these.
  return out.length === 1 ? [out[0] as EndpointAddr] : out.slice();
}

function checkAddrs(list: unknown): Check<EndpointAddr[]> {
  if (!Array.isArray(list)) return bad(`addrs must be a JSON array, got ${kindOf(list)}`);
  if (list.length === 0) return bad('addrs must not be empty');
  const plain = plainIPv4Addrs(list);
  if (plain !== null) return good(plain);
  const errors: string[] = [];
  const out: EndpointAddr[] = [];
  const seen = new Map<string, number>();
  list.forEach((item: unknown, i) => {
    const at = `addrs[${i}]`;
    const obj = asObject(item, at);
    if (!obj.ok) {
      errors.push(`${at} must be an object like {"addr": "198.19.0.1"}, got ${kindOf(item)}`);
      return;
    }
    errors.push(...unknownFields(obj.value, ['addr'], at));
    const a = checkAddress(`${at}.addr`, field(obj.value, 'addr'));
    if (!a.ok) {
      errors.push(...a.errors);
      return;
    }
    const first = seen.get(a.value.addr);
    if (first !== undefined) errors.push(`${at}.addr ${a.value.addr} duplicates addrs[${first}]`);
    else seen.set(a.value.addr, i);
    out.push(a.value);
  });
  return errors.length > 0 ? bad(...errors) : good(out.slice());
}

const ONE_ADDR_HEAD = '[{"addr":"';
const ONE_ADDR_TAIL = '"}]';

/**
 * The address of an addrs value that is what the node writes for a one-address IPv4 endpoint
 * (`[{"addr":"10.65.0.1"}]`), read without JSON.parse; null for anything else, which
 * decodeAddrs reads in full. A snapshot holds one of these per endpoint of the cluster.
 */
export function oneIPv4Addr(raw: string): string | null {
  if (!raw.startsWith(ONE_ADDR_HEAD) || !raw.endsWith(ONE_ADDR_TAIL)) return null;
  const addr = raw.slice(ONE_ADDR_HEAD.length, raw.length - ONE_ADDR_TAIL.length);
  return isCanonicalIPv4(addr) ? addr : null;
}

export function decodeAddrs(key: string, raw: string): DecodeResult<EndpointAddr[]> {
  const one = oneIPv4Addr(raw);
  if (one !== null) return { ok: true, value: [{ addr: one, family: 4 }] };
  const json = parseJson(raw);
  return decoded(key, json.ok ? checkAddrs(json.value) : json);
}

export function encodeAddrs(addrs: readonly (string | { addr: string })[]): string {
  const list = addrs.map((a) => (typeof a === 'string' ? { addr: a } : { addr: a.addr }));
  return JSON.stringify(encoded('addrs', checkAddrs(list)).map((a) => ({ addr: a.addr })));
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

function checkMac(raw: string): Check<string> {
  const mac = raw.trim();
  return MAC.test(mac) ? good(mac.toLowerCase()) : bad(`mac ${showText(raw)} is not of the form aa:bb:cc:dd:ee:ff`);
}

export function decodeMac(key: string, raw: string): DecodeResult<string> {
  return decoded(key, checkMac(raw));
}

export function encodeMac(mac: string): string {
  return encoded('mac', checkMac(mac));
}

/** active: plumbed and running; inactive: its container is stopped but not yet removed. */
export const endpointStates = ['active', 'inactive'] as const;
export type EndpointState = (typeof endpointStates)[number];

// One result per state, shared: a snapshot reads one state per endpoint of the cluster.
const STATE_RESULTS = new Map<string, Check<EndpointState>>(endpointStates.map((s) => [s, Object.freeze(good(s))]));

function checkState(raw: string): Check<EndpointState> {
  // The constant, not the text read: endpoints keep it.
  return (
    STATE_RESULTS.get(raw) ??
    STATE_RESULTS.get(raw.trim()) ??
    bad(`state must be "active" or "inactive", got ${showText(raw)}`)
  );
}

export function decodeState(key: string, raw: string): DecodeResult<EndpointState> {
  return decoded(key, checkState(raw));
}

export function encodeState(state: EndpointState): string {
  return encoded('state', checkState(state));
}

// ---------------------------------------------------------------------------------------------
// Group name and membership

export const MAX_GROUP_NAME_LENGTH = 256;
const CONTROL = /\p{Cc}/u;

function checkGroupName(raw: string): Check<string> {
  const name = raw.trim();
  if (name === '') return bad('name must not be empty');
  // Counted in code points so a name's limit does not depend on how many emoji it holds.
  const length = [...name].length;
  if (length > MAX_GROUP_NAME_LENGTH)
    return bad(`name is ${length} characters long, more than ${MAX_GROUP_NAME_LENGTH}`);
  const control = CONTROL.exec(name);
  if (control !== null) {
    const code = (control[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
    return bad(`name must not contain control characters, found U+${code}`);
  }
  return good(name);
}

export function decodeGroupName(key: string, raw: string): DecodeResult<string> {
  return decoded(key, checkGroupName(raw));
}

export function encodeGroupName(name: string): string {
  return encoded('group name', checkGroupName(name));
}

/** Membership is the key's existence; the seed writes "" and any other value is ignored, never an error. */
const MEMBER: DecodeResult<null> = Object.freeze({ ok: true, value: null });

export function decodeMember(_key: string, _raw: string): DecodeResult<null> {
  return MEMBER;
}

export function encodeMember(): string {
  return '';
}

// ---------------------------------------------------------------------------------------------
// Plain addresses: master ip, bird_ip, bird6_ip

function checkScalarAddress(raw: string, want?: IPFamily): Check<string> {
  const r = checkAddress('value', raw.trim(), want);
  return r.ok ? good(r.value.addr) : r;
}

/** /calico/master/ip: IPv4 or IPv6. */
export function decodeMasterIp(key: string, raw: string): DecodeResult<string> {
  return decoded(key, checkScalarAddress(raw));
}

export function encodeMasterIp(addr: string): string {
  return encoded('master ip', checkScalarAddress(addr));
}

export function decodeBirdIp(key: string, raw: string): DecodeResult<string> {
  return decoded(key, checkScalarAddress(raw, 4));
}

export function encodeBirdIp(addr: string): string {
  return encoded('bird_ip', checkScalarAddress(addr, 4));
}

export function decodeBird6Ip(key: string, raw: string): DecodeResult<string> {
  return decoded(key, checkScalarAddress(raw, 6));
}

export function encodeBird6Ip(addr: string): string {
  return encoded('bird6_ip', checkScalarAddress(addr, 6));
}

// ---------------------------------------------------------------------------------------------
// Extra keys' values (see extraKeys.ts)

export interface IpAssignment {
  host: string;
  containerId: string;
  /** Absent until the endpoint is recorded. */
  endpointId?: string;
}

function checkIpAssignment(obj: JsonObject): Check<IpAssignment> {
  const errors = unknownFields(obj, ['host', 'containerId', 'endpointId']);
  const host = checkSegmentString('host', field(obj, 'host'));
  const containerId = checkSegmentString('containerId', field(obj, 'containerId'));
  const rawEndpoint = field(obj, 'endpointId');
  // null is read as absent: other writers' JSON libraries often emit null for "no value".
  const endpointId =
    rawEndpoint === undefined || rawEndpoint === null ? good(undefined) : checkSegmentString('endpointId', rawEndpoint);
  for (const c of [host, containerId, endpointId]) if (!c.ok) errors.push(...c.errors);
  if (errors.length > 0 || !host.ok || !containerId.ok || !endpointId.ok) return bad(...errors);
  const value: IpAssignment = { host: host.value, containerId: containerId.value };
  if (endpointId.value !== undefined) value.endpointId = endpointId.value;
  return good(value);
}

export function decodeIpAssignment(key: string, raw: string): DecodeResult<IpAssignment> {
  const obj = jsonObject(raw);
  return decoded(key, obj.ok ? checkIpAssignment(obj.value) : obj);
}

export function encodeIpAssignment(value: IpAssignment): string {
  const v = encoded('ip assignment', checkIpAssignment({ ...value }));
  return JSON.stringify(v.endpointId === undefined ? { host: v.host, containerId: v.containerId } : v);
}

export interface IpPool {
  cidr: string;
  family: IPFamily;
}

function checkIpPool(obj: JsonObject, key?: string): Check<IpPool> {
  const errors = unknownFields(obj, ['cidr']);
  const cidr = checkRuleCidr(field(obj, 'cidr'));
  if (!cidr.ok) errors.push(...cidr.errors);
  else if (cidr.value === null) errors.push('cidr is missing');
  else if (key !== undefined) {
    const parsed = parseKey(key);
    if (parsed.kind === 'ipPool' && parsed.cidr !== cidr.value.cidr) {
      errors.push(`cidr ${cidr.value.cidr} does not match the pool in the key (${parsed.cidr})`);
    }
  }
  if (errors.length > 0 || !cidr.ok || cidr.value === null) return bad(...errors);
  return good({ cidr: cidr.value.cidr, family: cidr.value.family });
}

export function decodeIpPool(key: string, raw: string): DecodeResult<IpPool> {
  const obj = jsonObject(raw);
  return decoded(key, obj.ok ? checkIpPool(obj.value, key) : obj);
}

/** Writes {"cidr"} with the canonical network; the family is implied by the key. */
export function encodeIpPool(cidr: string): string {
  return JSON.stringify({ cidr: encoded('ip pool', checkIpPool({ cidr })).cidr });
}

export interface HostAlive {
  /** When the node came up, ISO 8601 in UTC (Date#toISOString form). */
  since: string;
  pid?: number;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function checkHostAlive(obj: JsonObject): Check<HostAlive> {
  const errors = unknownFields(obj, ['since', 'pid']);
  const since = field(obj, 'since');
  let sinceIso: string | undefined;
  if (since === undefined) errors.push('since is missing');
  else if (typeof since !== 'string' || !ISO_TIME.test(since) || !Number.isFinite(Date.parse(since))) {
    errors.push(`since must be an ISO 8601 time like "2024-05-01T12:00:00.000Z", got ${show(since)}`);
  } else {
    sinceIso = new Date(since).toISOString();
  }
  const pid = field(obj, 'pid');
  if (pid !== undefined && !(typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 0)) {
    errors.push(`pid must be a positive integer, got ${show(pid)}`);
  }
  if (errors.length > 0 || sinceIso === undefined) return bad(...errors);
  return good(pid === undefined ? { since: sinceIso } : { since: sinceIso, pid: pid as number });
}

export function decodeHostAlive(key: string, raw: string): DecodeResult<HostAlive> {
  const obj = jsonObject(raw);
  return decoded(key, obj.ok ? checkHostAlive(obj.value) : obj);
}

export function encodeHostAlive(value: HostAlive): string {
  return JSON.stringify(encoded('host alive', checkHostAlive({ ...value })));
}

const AS_NUMBER_TEXT = /^[1-9][0-9]*$/;

function checkAsNumberText(raw: string): Check<number> {
  const text = raw.trim();
  const n = Number(text);
  return AS_NUMBER_TEXT.test(text) && n <= MAX_AS_NUMBER
    ? good(n)
    : bad(`value ${showText(raw)} is not an AS number (an integer from 1 to ${MAX_AS_NUMBER})`);
}

/** /calico/bgp/v1/global/as_num and /calico/bgp/v1/host/<hostname>/as_num: plain decimal text. */
export function decodeAsNum(key: string, raw: string): DecodeResult<number> {
  return decoded(key, checkAsNumberText(raw));
}

export function encodeAsNum(asNum: number): string {
  return String(encoded('as_num', checkAsNumberText(String(asNum))));
}

/** Kernel protocol numbers below 5 are the kernel's own (boot is what `ip route` writes by default). */
export const MIN_ROUTE_PROTO = 5;
/** BIRD's own kernel protocol (the routes it installs): never a node's. */
const BIRD_ROUTE_PROTO = 12;
const ROUTE_PROTO_TEXT = /^[1-9][0-9]{0,2}$/;

function checkRouteProto(raw: string): Check<number> {
  const text = raw.trim();
  const n = Number(text);
  if (!ROUTE_PROTO_TEXT.test(text) || n < MIN_ROUTE_PROTO || n > 255) {
    const range = `an integer from ${MIN_ROUTE_PROTO} to 255`;
    return bad(`value ${showText(raw)} is not a kernel route protocol (${range})`);
  }
  return n === BIRD_ROUTE_PROTO ? bad(`value ${n} is BIRD's own route protocol`) : good(n);
}

/** /calico/host/<hostname>/route_proto: plain decimal text. */
export function decodeRouteProto(key: string, raw: string): DecodeResult<number> {
  return decoded(key, checkRouteProto(raw));
}

export function encodeRouteProto(proto: number): string {
  return String(encoded('route_proto', checkRouteProto(String(proto))));
}

export interface NodeMesh {
  enabled: boolean;
}

function checkNodeMesh(obj: JsonObject): Check<NodeMesh> {
  const errors = unknownFields(obj, ['enabled']);
  const enabled = field(obj, 'enabled');
  if (enabled === undefined) errors.push('enabled is missing');
  else if (typeof enabled !== 'boolean') errors.push(`enabled must be true or false, got ${show(enabled)}`);
  return errors.length > 0 ? bad(...errors) : good({ enabled: enabled as boolean });
}

export function decodeNodeMesh(key: string, raw: string): DecodeResult<NodeMesh> {
  const obj = jsonObject(raw);
  return decoded(key, obj.ok ? checkNodeMesh(obj.value) : obj);
}

export function encodeNodeMesh(value: NodeMesh): string {
  return JSON.stringify(encoded('node_mesh', checkNodeMesh({ ...value })));
}

/** JSON on the wire is {"ip", "as_num"}. */
export interface BgpPeer {
  ip: string;
  asNum: number;
}

function checkBgpPeer(obj: JsonObject, key?: string): Check<BgpPeer> {
  const errors = unknownFields(obj, ['ip', 'as_num']);
  const ip = checkAddress('ip', field(obj, 'ip'), 4);
  const asNum = checkAsNumber('as_num', field(obj, 'as_num'));
  for (const c of [ip, asNum]) if (!c.ok) errors.push(...c.errors);
  if (ip.ok && key !== undefined) {
    const parsed = parseKey(key);
    if ((parsed.kind === 'bgpGlobalPeer' || parsed.kind === 'bgpHostPeer') && parsed.ip !== ip.value.addr) {
      errors.push(`ip ${ip.value.addr} does not match the peer in the key (${parsed.ip})`);
    }
  }
  if (errors.length > 0 || !ip.ok || !asNum.ok) return bad(...errors);
  return good({ ip: ip.value.addr, asNum: asNum.value });
}

export function decodeBgpPeer(key: string, raw: string): DecodeResult<BgpPeer> {
  const obj = jsonObject(raw);
  return decoded(key, obj.ok ? checkBgpPeer(obj.value, key) : obj);
}

export function encodeBgpPeer(value: BgpPeer): string {
  const v = encoded('bgp peer', checkBgpPeer({ ip: value.ip, as_num: value.asNum }));
  return JSON.stringify({ ip: v.ip, as_num: v.asNum });
}

/** JSON on the wire is {"cluster_id"}: a BGP cluster id, written as a dotted quad. */
export interface RouteReflector {
  clusterId: string;
}

function checkRouteReflector(obj: JsonObject): Check<RouteReflector> {
  const errors = unknownFields(obj, ['cluster_id']);
  const id = field(obj, 'cluster_id');
  if (id === undefined) errors.push('cluster_id is missing');
  else if (typeof id !== 'string')
    errors.push(`cluster_id must be a dotted-quad string like "1.0.0.1", got ${kindOf(id)}`);
  else {
    const r = readIPv4(id);
    if (!r.ok) errors.push(`cluster_id ${show(id)} is not a dotted quad: ${r.reason}`);
  }
  return errors.length > 0 ? bad(...errors) : good({ clusterId: id as string });
}

export function decodeRouteReflector(key: string, raw: string): DecodeResult<RouteReflector> {
  const obj = jsonObject(raw);
  return decoded(key, obj.ok ? checkRouteReflector(obj.value) : obj);
}

export function encodeRouteReflector(value: RouteReflector): string {
  const v = encoded('route_reflector', checkRouteReflector({ cluster_id: value.clusterId }));
  return JSON.stringify({ cluster_id: v.clusterId });
}

function checkUrl(raw: string): Check<string> {
  const text = raw.trim();
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    return bad(`value ${showText(raw)} is not an absolute http or https URL`);
  }
  return good(url.href);
}

/** /calico/master/api_url and /calico/host/<hostname>/diags_url; decoded to the WHATWG-normalised href. */
export function decodeUrl(key: string, raw: string): DecodeResult<string> {
  return decoded(key, checkUrl(raw));
}

export function encodeUrl(url: string): string {
  return encoded('url', checkUrl(url));
}

const CONTAINER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** /calico/host/<h>/workload/docker/<cid>/name: a Docker container name. */
export function decodeWorkloadName(key: string, raw: string): DecodeResult<string> {
  const v = raw.trim().replace(/^\//, '');
  return CONTAINER_NAME.test(v)
    ? { ok: true, value: v }
    : { ok: false, errors: [`${key}: container name must be letters, digits, "_", "." or "-", got ${showText(raw)}`] };
}

/** Why a node refused a container: one non-empty line. */
export function decodeRefusal(key: string, raw: string): DecodeResult<string> {
  const v = raw.trim();
  if (v === '' || /[\r\n]/.test(v) || v.length > 2000) {
    return { ok: false, errors: [`${key}: must be one non-empty line of at most 2000 characters`] };
  }
  return { ok: true, value: v };
}

export function encodeWorkloadName(name: string): string {
  const v = name.replace(/^\//, '');
  if (!CONTAINER_NAME.test(v))
    throw new KeyspaceError(KeyspaceErrorCode.INVALID_VALUE, `container name ${JSON.stringify(name)} is not valid`);
  return v;
}

/** /calico/config/<name>: free text; each setting's owner interprets it. */
export function decodeConfigValue(_key: string, raw: string): DecodeResult<string> {
  return { ok: true, value: raw };
}

// ---------------------------------------------------------------------------------------------
// Any key

/** The decoded value type of each key kind. */
export interface KeyValueMap {
  masterIp: string;
  birdIp: string;
  endpointAddrs: EndpointAddr[];
  endpointMac: string;
  endpointState: EndpointState;
  groupName: string;
  groupMember: null;
  groupRule: Rule;
  groupDefault: DefaultAction;
  masterApiUrl: string;
  bird6Ip: string;
  hostAlive: HostAlive;
  diagsUrl: string;
  routeProto: number;
  ipAssignment: IpAssignment;
  ipPool: IpPool;
  bgpGlobalAsNum: number;
  bgpGlobalNodeMesh: NodeMesh;
  bgpGlobalPeer: BgpPeer;
  bgpHostAsNum: number;
  bgpHostPeer: BgpPeer;
  bgpHostRouteReflector: RouteReflector;
  config: string;
  workloadName: string;
  refusedWorkload: string;
}

export type DecodedEntry = {
  [K in CalicoKeyKind]: { key: Extract<CalicoKey, { kind: K }>; value: KeyValueMap[K] };
}[CalicoKeyKind];

const decoders: { [K in CalicoKeyKind]: (key: string, raw: string) => DecodeResult<KeyValueMap[K]> } = {
  masterIp: decodeMasterIp,
  birdIp: decodeBirdIp,
  endpointAddrs: decodeAddrs,
  endpointMac: decodeMac,
  endpointState: decodeState,
  groupName: decodeGroupName,
  groupMember: decodeMember,
  groupRule: decodeRule,
  groupDefault: decodeDefault,
  masterApiUrl: decodeUrl,
  bird6Ip: decodeBird6Ip,
  hostAlive: decodeHostAlive,
  diagsUrl: decodeUrl,
  routeProto: decodeRouteProto,
  ipAssignment: decodeIpAssignment,
  ipPool: decodeIpPool,
  bgpGlobalAsNum: decodeAsNum,
  bgpGlobalNodeMesh: decodeNodeMesh,
  bgpGlobalPeer: decodeBgpPeer,
  bgpHostAsNum: decodeAsNum,
  bgpHostPeer: decodeBgpPeer,
  bgpHostRouteReflector: decodeRouteReflector,
  config: decodeConfigValue,
  workloadName: decodeWorkloadName,
  refusedWorkload: decodeRefusal,
};

/**
 * Why a key's host segment is not a host name, or undefined (also for kinds without one). A host
 * segment names directories, peers and bird.conf comments, so a key whose host breaks the one
 * rule is a problem to report and is used by no service.
 */
export function hostSegmentError(parsed: CalicoKey): string | undefined {
  if (!('host' in parsed)) return undefined;
  const e = hostNameError(parsed.host);
  return e === undefined ? undefined : `the host segment is not a host name: ${e}`;
}

/** Parses the key and decodes its value with the matching decoder: the validation filter in one call. */
export function decodeEntry(key: string, raw: string): DecodeResult<DecodedEntry> {
  const parsed = parseKey(key);
  if (parsed.kind === 'unknown') return { ok: false, errors: [`${key}: not a key of the /calico keyspace`] };
  const badHost = hostSegmentError(parsed);
  if (badHost !== undefined) return { ok: false, errors: [`${key}: ${badHost}`] };
  const r = decodeValue(parsed, key, raw);
  // The table above pairs each kind with its decoder, so key and value agree by construction.
  return r.ok ? { ok: true, value: { key: parsed, value: r.value } as DecodedEntry } : r;
}

/** Just the value of a parsed key (parsed must be parseKey(key)): what a bulk reader needs, no wrapper. */
export function decodeValue<K extends CalicoKey>(
  parsed: K,
  key: string,
  raw: string,
): DecodeResult<KeyValueMap[K['kind']]> {
  const decode = decoders[parsed.kind] as (key: string, raw: string) => DecodeResult<KeyValueMap[K['kind']]>;
  return decode(key, raw);
}
