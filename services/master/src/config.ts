import { parseArgs } from 'node:util';
import { canonicalIP, isIP } from '@calico/keyspace';
import {
  API_TLS_FLAG_OPTIONS,
  API_TLS_FLAGS_USAGE,
  apiServerTls,
  apiTokenFileFrom,
  datastoreConfigFromFlags,
  ETCD_FLAG_OPTIONS,
  type ApiServerTls,
  type DatastoreConfig,
} from '@calico/datastore';

export interface MasterConfig {
  /** This master's address, published as /calico/master/ip. */
  ip: string;
  /** Where the HTTP API listens; port 0 picks a free one. */
  listen: { host: string; port: number };
  datastore: DatastoreConfig;
  /**
   * Remove a host that has been down this long, continuously and in sync, as
   * `calicoctl node remove --remove-endpoints` does; null: never.
   */
  gcDeadHostsAfterMs: number | null;
  gcIntervalMs: number;
  /** The cluster API token's file: read, or made at first start (0600). */
  apiTokenFile: string;
  /** https with these files (--tls-cert/--tls-key); with --tls-ca, client certificates of it authenticate too. */
  tls: ApiServerTls | undefined;
  logLevel: string;
}

export const DEFAULT_PORT = 7600;

export const MASTER_USAGE = `calico-master: the cluster's API, garbage collector and metrics (never in the data path)

  --ip=<IP>                this master's address, published as /calico/master/ip  required
                           (CALICO_MASTER_IP)
  --listen=<host:port>     CALICO_MASTER_LISTEN, else <ip>:${DEFAULT_PORT}; [v6]:port for IPv6
  --etcd=<host:port,...>   ETCD_ENDPOINTS, ETCD_AUTHORITY, else 127.0.0.1:2379
  --etcd-ca/--etcd-cert/--etcd-key=<file>   TLS to etcd
  --gc-dead-hosts-after=<duration>   CALICO_GC_DEAD_HOSTS_AFTER, else off: remove a host
                           that has been down (no liveness key) that long, continuously and in
                           sync with etcd, with its workloads, memberships and addresses, as
                           "calicoctl node remove --remove-endpoints" does; e.g. 30m, 12h, 7d
  --gc-interval=<seconds>  CALICO_GC_INTERVAL, else 5: how often the master looks at hosts
  --api-token-file=<file>  CALICO_API_TOKEN_FILE, else /etc/calico/api-token: the token every
                           API call but GET /healthz must send (Authorization: Bearer); made
                           (32 random bytes, mode 0600) if absent; a file others may read is refused
${API_TLS_FLAGS_USAGE}
  --log-level=<level>      LOG_LEVEL, else info`;

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "90s", "30m", "1h30m", "7d" → milliseconds; "off" → null; undefined when it is neither. */
export function parseDuration(s: string): number | null | undefined {
  if (s === 'off') return null;
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(s)) return undefined;
  let ms = 0;
  for (const [, n, , unit] of s.matchAll(/(\d+(\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(n) * UNITS[unit!]!;
  return Math.round(ms);
}

/** Milliseconds as the largest units that add up to them exactly: 5400000 → "1h30m". */
export function formatDuration(ms: number): string {
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of Object.entries(UNITS).reverse()) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out || '0s';
}

/** The shortest --gc-dead-hosts-after accepted (tests use it); a cluster wants longer than any reboot or upgrade. */
export const MIN_DEAD_HOSTS_AFTER_MS = 1_000;
export const DURATION_RULE = 'a duration of at least 1s such as 30m, 12h or 7d (units ms, s, m, h, d), or off';

/** "host:port" or "[v6]:port" → parts; undefined when it is neither. */
export function parseListen(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  const port = Number(m?.[3]);
  if (!m || port > 65535) return undefined;
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && isIP(host) !== 6) return undefined;
  return { host, port };
}

/** Flags, then environment, then defaults; every problem is reported, not just the first. */
export function loadMasterConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { ok: true; value: MasterConfig } | { ok: false; errors: string[] } {
  const options = {
    ip: { type: 'string' },
    listen: { type: 'string' },
    ...ETCD_FLAG_OPTIONS,
    'gc-dead-hosts-after': { type: 'string' },
    'gc-interval': { type: 'string' },
    'api-token-file': { type: 'string' },
    ...API_TLS_FLAG_OPTIONS,
    'log-level': { type: 'string' },
    help: { type: 'boolean' },
  } as const;
  // Not strict: an unknown flag is reported alongside every other problem instead of alone.
  const { values, positionals } = parseArgs({ args: argv, options, strict: false, allowPositionals: true }) as {
    values: Record<string, string | boolean | undefined>;
    positionals: string[];
  };
  const errors: string[] = [];
  for (const [k, v] of Object.entries(values)) {
    if (!(k in options)) errors.push(`unknown option --${k}`);
    else if (options[k as keyof typeof options].type === 'string' && typeof v !== 'string')
      errors.push(`--${k} needs a value (--${k}=...)`);
  }
  for (const p of positionals) errors.push(`unexpected argument "${p}"`);
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const rawIp = str('ip') ?? env.CALICO_MASTER_IP ?? '';
  const ip = canonicalIP(rawIp);
  if (!rawIp) errors.push('--ip is required: the address of this master on the management network');
  else if (!ip) errors.push(`--ip=${rawIp}: not an IPv4 or IPv6 address`);
  const listenRaw =
    str('listen') ??
    env.CALICO_MASTER_LISTEN ??
    (ip ? (isIP(ip) === 6 ? `[${ip}]:${DEFAULT_PORT}` : `${ip}:${DEFAULT_PORT}`) : undefined);
  const listen = listenRaw === undefined ? undefined : parseListen(listenRaw);
  if (listenRaw !== undefined && !listen)
    errors.push(`--listen=${listenRaw}: expected host:port or [IPv6]:port (port 0-65535)`);
  let datastore: DatastoreConfig | undefined;
  try {
    datastore = datastoreConfigFromFlags(values, env);
  } catch (e) {
    errors.push((e as Error).message);
  }
  const seconds = (flag: string, envName: string, dflt: string, min: number, rule: string): number => {
    const raw = str(flag) ?? env[envName] ?? dflt;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > 86_400) errors.push(`--${flag}=${raw}: ${rule}`);
    return Math.round(n * 1000);
  };
  const deadRaw = str('gc-dead-hosts-after') ?? env.CALICO_GC_DEAD_HOSTS_AFTER ?? 'off';
  const gcDeadHostsAfterMs = parseDuration(deadRaw);
  if (gcDeadHostsAfterMs === undefined || (gcDeadHostsAfterMs ?? Infinity) < MIN_DEAD_HOSTS_AFTER_MS) {
    errors.push(`--gc-dead-hosts-after=${deadRaw}: ${DURATION_RULE}`);
  }
  const gcIntervalMs = seconds(
    'gc-interval',
    'CALICO_GC_INTERVAL',
    '5',
    0.01,
    'seconds, 0.01 to 86400 (decimals allowed)',
  );
  const apiTokenFile = apiTokenFileFrom(str('api-token-file'), env);
  const tls = apiServerTls({ tlsCert: str('tls-cert'), tlsKey: str('tls-key'), tlsCa: str('tls-ca') });
  if (!tls.ok) errors.push(...tls.errors);
  const logLevel = str('log-level') ?? env.LOG_LEVEL ?? 'info';
  if (!LEVELS.includes(logLevel)) errors.push(`--log-level=${logLevel}: one of ${LEVELS.join(', ')}`);
  if (errors.length || !ip || !listen || !datastore || gcDeadHostsAfterMs === undefined || !tls.ok) {
    return { ok: false, errors };
  }
  const value = { ip, listen, datastore, gcDeadHostsAfterMs, gcIntervalMs, apiTokenFile, tls: tls.value, logLevel };
  return { ok: true, value };
}
