import { LosslessNumber, stringify } from 'lossless-json';

/** Labels the proxy puts on containers it networks; they make restarts keep id, address and MAC. */
export const LABELS = {
  host: 'org.projectcalico.host',
  endpoint: 'org.projectcalico.endpoint',
  addrs: 'org.projectcalico.addrs',
  mac: 'org.projectcalico.mac',
} as const;

/** Where the wait program (Debian's static busybox) is bind-mounted inside the container. */
export const WAIT_MOUNT = '/.calico/busybox';

export type Json = null | boolean | string | LosslessNumber | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export function serialize(doc: JsonObject): Buffer {
  return Buffer.from(stringify(doc) ?? '{}');
}

function obj(v: Json | undefined): JsonObject | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof LosslessNumber) ? v : undefined;
}

/** A Docker "StrSlice": absent/null, a string, or a list of strings. */
export function strSlice(v: Json | undefined): string[] | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.map((x) => String(x));
  return null;
}

/**
 * CALICO_IP gives the container our network and no other: --net=host, container:<id> and named
 * networks would put it somewhere else, so they are refused with the reason.
 */
export function checkNetworkMode(doc: JsonObject): string | undefined {
  // dockerd's getHostConfig: the HostConfig object when there is one, else the deprecated
  // host config fields at the top level.
  const hc = obj(doc.HostConfig) ?? doc;
  const mode = typeof hc?.NetworkMode === 'string' ? hc.NetworkMode : '';
  if (mode === 'host')
    return "CALICO_IP cannot be used with --net=host: the container would share the host's network instead of getting its own address";
  if (mode.startsWith('container:'))
    return `CALICO_IP cannot be used with --net=${mode}: the container would share another container's network`;
  if (!['', 'default', 'bridge', 'none'].includes(mode))
    return `CALICO_IP cannot be used with --net=${mode}: Calico gives the container its network; leave --net out`;
  const eps = obj(obj(doc.NetworkingConfig)?.EndpointsConfig);
  const named = Object.keys(eps ?? {}).filter((n) => !['bridge', 'none', 'default'].includes(n));
  if (named.length)
    return `CALICO_IP cannot be used with --network ${named.join(', ')}: Calico gives the container its network; leave --network out`;
  return undefined;
}

export function imageOf(doc: JsonObject): string | undefined {
  return typeof doc.Image === 'string' && doc.Image !== '' ? doc.Image : undefined;
}

/** Whether the image's own Entrypoint/Cmd are needed to know what the container will run. */
export function needsImageConfig(doc: JsonObject): boolean {
  const e = strSlice(doc.Entrypoint);
  return e === null || e.length === 0;
}

/**
 * What dockerd will run, by its own merge rules: a non-empty request Entrypoint is used with
 * the request Cmd as is; otherwise an empty request Cmd takes the image's, and an absent
 * request Entrypoint takes the image's. `--entrypoint ""` arrives as [""] and means none.
 */
export function effectiveCommand(
  doc: JsonObject,
  image: { Entrypoint: string[] | null; Cmd: string[] | null },
): { entrypoint: string[]; cmd: string[] } {
  let entry = strSlice(doc.Entrypoint);
  let cmd = strSlice(doc.Cmd);
  if (entry === null || entry.length === 0) {
    if (cmd === null || cmd.length === 0) cmd = image.Cmd;
    if (entry === null) entry = image.Entrypoint;
  }
  const e = entry ?? [];
  return { entrypoint: e.length === 1 && e[0] === '' ? [] : e, cmd: cmd ?? [] };
}

/**
 * A shell script for the static busybox: wait until the default route of each family exists
 * on eth0 (the plumber adds it last), then exec the workload. Gives up after 60 s so that a
 * node that died mid-plumb does not leave a container hanging forever.
 */
export function waitScript(families: readonly (4 | 6)[]): string {
  const checks = families.map((f) =>
    f === 4
      ? `$W grep -qE '^eth0[[:space:]]+00000000[[:space:]]' /proc/net/route`
      : `$W grep -qE '^0{32} 00 .* eth0$' /proc/net/ipv6_route`,
  );
  return [
    `W=${WAIT_MOUNT}; n=0`,
    `until ${checks.join(' && ')}; do`,
    `  n=$((n+1)); if [ $n -gt 3000 ]; then echo "calico: the network of this container was not ready after 60 s; giving up" >&2; exit 125; fi`,
    `  $W usleep 20000`,
    'done',
    'exec "$@"',
  ].join('\n');
}

export interface CreateRewrite {
  hostname: string;
  endpointId: string;
  mac: string;
  addrs: string[];
  families: (4 | 6)[];
  /** Host path of the static busybox that is bind-mounted read-only as WAIT_MOUNT. */
  waitBinary: string;
  command: { entrypoint: string[]; cmd: string[] };
}

/** The request dockerd gets: no Docker networking, our labels, and the workload behind the wait program. */
export function rewriteCreate(doc: JsonObject, r: CreateRewrite): JsonObject {
  const out: JsonObject = { ...doc };
  const hc: JsonObject = { ...(obj(doc.HostConfig) ?? {}) };
  hc.NetworkMode = 'none';
  const binds = Array.isArray(hc.Binds) ? [...hc.Binds] : [];
  binds.push(`${r.waitBinary}:${WAIT_MOUNT}:ro`);
  hc.Binds = binds;
  out.HostConfig = hc;
  delete out.NetworkingConfig;
  const labels: JsonObject = { ...(obj(doc.Labels) ?? {}) };
  labels[LABELS.host] = r.hostname;
  labels[LABELS.endpoint] = r.endpointId;
  labels[LABELS.addrs] = r.addrs.join(',');
  labels[LABELS.mac] = r.mac;
  out.Labels = labels;
  out.Entrypoint = [WAIT_MOUNT, 'sh', '-c', waitScript(r.families), 'calico-wait', ...r.command.entrypoint];
  out.Cmd = r.command.cmd;
  return out;
}
