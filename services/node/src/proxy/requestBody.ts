import { foldKey, keyPath, scanJson, toJson, type JsonNode } from './jsonScan.js';
import type { RouteName } from './route.js';
import type { JsonObject } from '../workload/createRequest.js';

/**
 * One struct that dockerd decodes a body level into. Every key of such a level is matched to a
 * field without regard to case (Go's folding), so two keys that fold alike are two writes of one
 * field. `fields` names, in dockerd's spelling, the fields the proxy reads or writes and the
 * struct levels below them that it reads too (null: not a struct the proxy looks into).
 */
export interface StructLevel {
  fields: Record<string, StructLevel | null>;
}

const MiB = 1024 * 1024;

/**
 * What each intercepted route's body may be. The create body is runconfig's
 * ContainerConfigWrapper: container.Config and container.HostConfig fields at the top level,
 * plus HostConfig and NetworkingConfig; start (API < 1.24) takes the same wrapper.
 */
export const BODY_RULES: Record<RouteName, { maxBytes: number; level: StructLevel; required: boolean }> = {
  create: {
    maxBytes: 16 * MiB,
    required: true,
    level: {
      fields: {
        Image: null,
        Env: null,
        Entrypoint: null,
        Cmd: null,
        Labels: null,
        NetworkMode: null,
        HostConfig: { fields: { NetworkMode: null, Binds: null } },
        NetworkingConfig: { fields: { EndpointsConfig: null } },
      },
    },
  },
  start: {
    maxBytes: 1 * MiB,
    required: false,
    level: { fields: { NetworkMode: null, HostConfig: { fields: { NetworkMode: null } } } },
  },
  restart: { maxBytes: 1 * MiB, required: false, level: { fields: {} } },
  inspect: { maxBytes: 1 * MiB, required: false, level: { fields: {} } },
  // A command line may be up to ARG_MAX (2 MiB), doubled by JSON escaping.
  'exec-create': {
    maxBytes: 4 * MiB,
    required: false,
    level: { fields: { Env: null, Cmd: null, User: null, Privileged: null } },
  },
  update: { maxBytes: 1 * MiB, required: false, level: { fields: { RestartPolicy: { fields: {} } } } },
  'network-connect': {
    maxBytes: 1 * MiB,
    required: false,
    level: { fields: { Container: null, EndpointConfig: { fields: {} } } },
  },
  'network-disconnect': { maxBytes: 1 * MiB, required: false, level: { fields: { Container: null, Force: null } } },
  // The build context streams through unread.
  build: { maxBytes: 0, required: false, level: { fields: {} } },
};

export type BodyResult = { ok: true; value: JsonObject | undefined } | { ok: false; message: string };

/**
 * Checks a struct level and its known sub-levels: no two keys that dockerd would take for one
 * field; the keys the proxy knows are renamed to dockerd's spelling so the proxy reads them
 * under the same name dockerd does.
 */
function checkLevel(node: Extract<JsonNode, { t: 'object' }>, level: StructLevel, path: string): string | undefined {
  const canonical = new Map(Object.keys(level.fields).map((f) => [foldKey(f), f]));
  const byFold = new Map<string, string>();
  for (const entry of node.entries) {
    const [k, v] = entry;
    const f = foldKey(k);
    const prev = byFold.get(f);
    if (prev !== undefined) {
      return `the request body sets ${keyPath(path, canonical.get(f) ?? prev)} twice (as ${JSON.stringify(prev)} and ${JSON.stringify(k)}): dockerd reads keys regardless of case and acts on the last; send it once`;
    }
    byFold.set(f, k);
    const name = canonical.get(f);
    if (name === undefined) continue;
    entry[0] = name;
    const sub = level.fields[name];
    if (sub && v.t === 'object') {
      const err = checkLevel(v, sub, keyPath(path, name));
      if (err) return err;
    }
  }
  return undefined;
}

/**
 * A body the proxy acts on, read as dockerd will read it, or why not: exactly one JSON object
 * (dockerd would act on the first of two and ignore trailing bytes), no key twice anywhere, no
 * two keys of one struct level that differ only in case. An empty body is `undefined`.
 */
export function readRequestBody(route: RouteName, raw: Buffer): BodyResult {
  const rule = BODY_RULES[route];
  const text = raw.toString('utf8');
  if (text.trim() === '') {
    return rule.required
      ? { ok: false, message: `the ${route} request has no body: send one JSON object` }
      : { ok: true, value: undefined };
  }
  const scanned = scanJson(text);
  if (!scanned.ok) {
    if (scanned.duplicate)
      return {
        ok: false,
        message: `the request body sets ${scanned.duplicate} twice: dockerd acts on the last (or merges both); send it once`,
      };
    return { ok: false, message: `the ${route} request body is not one JSON object: ${scanned.message}` };
  }
  const node = scanned.value;
  if (node.t !== 'object')
    return {
      ok: false,
      message: `the ${route} request body must be one JSON object, not ${node.t === 'null' ? 'null' : `a ${node.t}`}`,
    };
  const err = checkLevel(node, rule.level, '');
  if (err) return { ok: false, message: err };
  return { ok: true, value: toJson(node) as JsonObject };
}
