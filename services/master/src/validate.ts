/**
 * Request bodies and parameters → typed values, or an ApiError (400) that names every problem.
 * Pure, so each message is tested against its input.
 */
import { decodeRule, hostNameError, type Direction, type RuleInput } from '@calico/keyspace';
import { ApiError } from './errors.js';

type Json = Record<string, unknown>;

function invalid(errors: string[]): ApiError {
  return new ApiError('INVALID', errors.join('; '));
}

/** The request body as a JSON object. */
export function parseJsonObject(text: string): Json {
  if (text.trim() === '') throw new ApiError('INVALID', 'request body is empty: send a JSON object');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ApiError('INVALID', `request body is not JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ApiError(
      'INVALID',
      `request body must be a JSON object, got ${Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v}`,
    );
  }
  return v as Json;
}

function unknownFields(body: Json, allowed: readonly string[]): string[] {
  return Object.keys(body)
    .filter((k) => !allowed.includes(k))
    .map((k) => `unknown field "${k}" (expected ${allowed.join(', ')})`);
}

/** A key segment: etcd keys are split on "/", so an id may not contain one. */
function segmentError(field: string, v: unknown): string | undefined {
  if (typeof v !== 'string' || v === '') return `${field} must be a non-empty string`;
  if (v.includes('/')) return `${field} "${v}" must not contain "/"`;
  return undefined;
}

export function parseGroupBody(body: Json): { name: string; id?: string } {
  const errors = unknownFields(body, ['name', 'id']);
  if (typeof body.name !== 'string') errors.push("name must be a string (the group's human-readable name)");
  if (body.id !== undefined) {
    const e = segmentError('id', body.id);
    if (e) errors.push(e);
  }
  if (errors.length) throw invalid(errors);
  return { name: body.name as string, ...(body.id !== undefined ? { id: body.id as string } : {}) };
}

/** The same decoder as a raw rule key, so the API and hand-written keys accept exactly the same rules. */
export function parseRuleBody(body: Json): RuleInput {
  const r = decodeRule('rule', JSON.stringify(body));
  if (!r.ok) throw invalid(r.errors);
  const { group, cidr, protocol, port } = r.value;
  return { group, cidr, protocol, port };
}

export function parseDirection(s: string): Direction {
  if (s === 'inbound' || s === 'outbound') return s;
  throw new ApiError('INVALID', `direction "${s}" must be inbound or outbound`);
}

export function parseRuleIndex(s: string): number {
  const n = Number(s);
  if (!/^[1-9][0-9]*$/.test(s) || !Number.isSafeInteger(n))
    throw new ApiError('INVALID', `rule number "${s}" must be a positive integer without leading zeros`);
  return n;
}

export type MemberTarget = { container: string } | { endpoint: string };

export function parseMemberBody(body: Json): MemberTarget {
  const errors = unknownFields(body, ['container', 'endpoint']);
  const has = (k: string) => body[k] !== undefined;
  if (has('container') === has('endpoint'))
    errors.push('give exactly one of "container" (id, id prefix or name) and "endpoint" (endpoint id)');
  for (const k of ['container', 'endpoint']) {
    if (has(k) && (typeof body[k] !== 'string' || body[k] === '')) errors.push(`${k} must be a non-empty string`);
  }
  if (errors.length) throw invalid(errors);
  return has('container') ? { container: body.container as string } : { endpoint: body.endpoint as string };
}

export function parsePoolBody(body: Json): { cidr: string } {
  const errors = unknownFields(body, ['cidr']);
  if (typeof body.cidr !== 'string') errors.push('cidr must be a string such as "198.19.0.0/16"');
  if (errors.length) throw invalid(errors);
  return { cidr: body.cidr as string };
}

/**
 * A pool in a path: the CIDR with its "/" percent-encoded (198.19.0.0%2F16), or the key's own
 * spelling with "-" (198.19.0.0-16), which needs no encoding.
 */
export function parsePoolParam(s: string): string {
  return s.includes('/') ? s : s.replace(/-(\d{1,3})$/, '/$1');
}

export interface CheckQuery {
  src: string;
  dst: string;
  protocol: string | null;
  port: number | null;
}

export function parseCheckQuery(q: URLSearchParams): CheckQuery {
  const errors: string[] = [];
  const allowed = ['src', 'dst', 'protocol', 'port'];
  for (const k of new Set(q.keys()))
    if (!allowed.includes(k)) errors.push(`unknown parameter "${k}" (expected ${allowed.join(', ')})`);
  const src = q.get('src') ?? '';
  const dst = q.get('dst') ?? '';
  if (!src) errors.push('src is required: an address, endpoint id, container id, id prefix or name');
  if (!dst) errors.push('dst is required: an address, endpoint id, container id, id prefix or name');
  const protocol = q.get('protocol') || null;
  const portText = q.get('port') || null;
  let port: number | null = null;
  if (portText !== null) {
    port = Number(portText);
    if (!/^[0-9]+$/.test(portText) || port < 1 || port > 65535)
      errors.push(`port "${portText}" must be an integer from 1 to 65535`);
  }
  if (errors.length) throw invalid(errors);
  return { src, dst, protocol, port };
}

/** A host name in a path, checked by the keyspace's one rule before anything reads etcd. */
export function parseHostParam(s: string): string {
  const e = hostNameError(s);
  if (e) throw new ApiError('INVALID', e);
  return s;
}

/** DELETE /v1/hosts/{host}: removeEndpoints=true|false (false when absent). */
export function parseRemoveHostQuery(q: URLSearchParams): { removeEndpoints: boolean } {
  const errors: string[] = [];
  for (const k of new Set(q.keys())) {
    if (k !== 'removeEndpoints') errors.push(`unknown parameter "${k}" (expected removeEndpoints)`);
  }
  const all = q.getAll('removeEndpoints');
  const v = all.at(-1);
  if (all.length > 1) errors.push('removeEndpoints given more than once');
  else if (v !== undefined && v !== 'true' && v !== 'false') {
    errors.push(`removeEndpoints "${v}" must be true or false`);
  }
  if (errors.length) throw invalid(errors);
  return { removeEndpoints: v === 'true' };
}
