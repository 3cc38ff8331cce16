import { parseArgs } from 'node:util';
import { hostname as osHostname } from 'node:os';
import { existsSync } from 'node:fs';
import { serviceHostName, isIP } from '@calico/keyspace';
import { datastoreConfigFromFlags, ETCD_FLAG_OPTIONS, type DatastoreConfig } from '@calico/datastore';
import { parseDockerHost, type Upstream } from './proxy/upstream.js';
import { DEFAULT_PROXY_LIMITS, type ProxyLimits } from './proxy/limits.js';
import { listenConfig, type ListenConfig } from './proxy/listen.js';

/** The proxy's TLS flags, as dockerd spells them, and --insecure-listen: calico-node's and `calicoctl node`'s alike. */
export const PROXY_TLS_FLAG_OPTIONS = {
  tlsverify: { type: 'boolean' },
  tls: { type: 'boolean' },
  tlscacert: { type: 'string' },
  tlscert: { type: 'string' },
  tlskey: { type: 'string' },
  'insecure-listen': { type: 'boolean' },
} as const;

export interface NodeConfig {
  hostname: string;
  ip: string;
  ip6: string | undefined;
  datastore: DatastoreConfig;
  upstream: Upstream;
  /** Where the proxy listens, its TLS, and which listeners are insecure by the user's choice. */
  listen: ListenConfig;
  waitBinary: string;
  leaseTtlSeconds: number;
  logLevel: string;
  /** Traffic from a workload to its own host, until /calico/config/EndpointToHostAction says otherwise. */
  endpointToHost: 'drop' | 'accept' | 'policy';
  /** How often the agent rereads the kernel to repair what others changed (ms). */
  dataplaneResyncMs: number;
  /** Where the agent's own view is written every few seconds, for diags (none by default). */
  statusFile: string | undefined;
  /** /proc/sys, or a writable mount of it (/host/proc/sys in a container, whose own is read-only). */
  procSys: string;
  /** Where GET /metrics is served (Prometheus text), or null for nowhere. */
  metricsListen: { host: string; port: number } | null;
  /** The proxy's timeouts and connection cap. */
  proxyLimits: ProxyLimits;
}

export const NODE_USAGE = `calico-node: Docker API proxy, workload plumber and policy agent for one host

  --ip=<IPv4>              this host's address for BGP (written as bird_ip)      required
  --ip6=<IPv6>             this host's IPv6 address for BGP
  --hostname=<name>        CALICO_HOSTNAME, else the machine's host name
  --etcd=<host:port,...>   ETCD_ENDPOINTS, ETCD_AUTHORITY, else 127.0.0.1:2379
  --etcd-ca/--etcd-cert/--etcd-key=<file>   TLS to etcd
  --docker=<upstream>      CALICO_DOCKER_HOST, else unix:///var/run/docker.sock
  --listen=<addr>          CALICO_PROXY_LISTEN, else 127.0.0.1:2375 (either comma-separated);
                           tcp://host:port, host:port or unix:///path (mode 0660, group
                           docker), repeatable
  --tlsverify              TCP listeners serve TLS and admit only clients with a certificate
                           signed by --tlscacert (as dockerd's --tlsverify)
  --tls                    TCP listeners serve TLS without asking clients for a certificate
  --tlscacert/--tlscert/--tlskey=<file>   the CA, and the proxy's certificate and key (PEM)
  --insecure-listen        allow a TCP address off loopback without --tlsverify (anyone who
                           reaches it is root here); logged and shown by calicoctl status
  --wait-binary=<file>     static busybox bind-mounted into workloads (/bin/busybox)
  --lease-ttl=<seconds>    host liveness lease (10)
  --endpoint-to-host=drop|accept|policy
                           traffic from a workload to this host (drop); the etcd key
                           /calico/config/EndpointToHostAction overrides it
  --dataplane-resync=<s>   reread iptables/ipset and repair them this often (30)
  --status-file=<file>     write the agent's view (sync status, desired vs applied) there, for diags
  --metrics-listen=<host:port>|none
                           CALICO_METRICS_LISTEN, else 127.0.0.1:9091: Prometheus metrics at /metrics
  --proc-sys=<dir>         CALICO_PROC_SYS, else /proc/sys: where per-interface sysctls are written
                           (a container's own /proc/sys is read-only: mount the host's /proc)
  --proxy-header-timeout=<s>   a request head must arrive whole within this (10)
  --proxy-body-timeout=<s>     the longest silence while a request body is read (30)
  --proxy-idle-timeout=<s>     a kept-alive connection with no request is closed after this (60)
  --proxy-max-connections=<n>  client connections open at once; beyond, new ones get a 503 (1024)
                           (streams such as logs -f, events, attach and wait are never cut)
  --log-level=<level>      LOG_LEVEL, else info`;

/** Flags, then environment, then defaults; every problem is reported, not just the first. */
export function loadNodeConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { ok: true; value: NodeConfig } | { ok: false; errors: string[] } {
  const errors: string[] = [];
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ip: { type: 'string' },
        ip6: { type: 'string' },
        hostname: { type: 'string' },
        ...ETCD_FLAG_OPTIONS,
        docker: { type: 'string' },
        listen: { type: 'string', multiple: true },
        ...PROXY_TLS_FLAG_OPTIONS,
        'wait-binary': { type: 'string' },
        'lease-ttl': { type: 'string' },
        'log-level': { type: 'string' },
        'endpoint-to-host': { type: 'string' },
        'dataplane-resync': { type: 'string' },
        'status-file': { type: 'string' },
        'proc-sys': { type: 'string' },
        'metrics-listen': { type: 'string' },
        'proxy-header-timeout': { type: 'string' },
        'proxy-body-timeout': { type: 'string' },
        'proxy-idle-timeout': { type: 'string' },
        'proxy-max-connections': { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (e) {
    return { ok: false, errors: [(e as Error).message] };
  }
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const ip = str('ip') ?? '';
  if (!ip) errors.push('--ip is required: the address of this host on the management network');
  else if (isIP(ip) !== 4) errors.push(`--ip=${ip}: not an IPv4 address`);
  const ip6 = str('ip6');
  if (ip6 !== undefined && isIP(ip6) !== 6) errors.push(`--ip6=${ip6}: not an IPv6 address`);
  const { name: hostname, error: badName } = serviceHostName(str('hostname'), env.CALICO_HOSTNAME, osHostname());
  if (badName) errors.push(badName);
  let datastore: DatastoreConfig | undefined;
  try {
    datastore = datastoreConfigFromFlags(values, env);
  } catch (e) {
    errors.push((e as Error).message);
  }
  let upstream: Upstream | undefined;
  try {
    upstream = parseDockerHost(str('docker') ?? env.CALICO_DOCKER_HOST ?? 'unix:///var/run/docker.sock');
  } catch (e) {
    errors.push(`--docker: ${(e as Error).message}`);
  }
  const listenFlag = values.listen as string[] | undefined;
  // Commas separate addresses in a flag too: the image's start.sh passes CALICO_PROXY_LISTEN as one.
  const listenRaw = (listenFlag?.length ? listenFlag : [env.CALICO_PROXY_LISTEN ?? '127.0.0.1:2375'])
    .flatMap((v) => v.split(','))
    .map((s) => s.trim())
    .filter(Boolean);
  const listenR = listenConfig({
    listen: listenRaw,
    tlsverify: values.tlsverify === true,
    tls: values.tls === true,
    tlscacert: str('tlscacert'),
    tlscert: str('tlscert'),
    tlskey: str('tlskey'),
    insecureListen: values['insecure-listen'] === true,
  });
  if (!listenR.ok) errors.push(...listenR.errors);
  else if (upstream?.kind === 'unix') {
    for (const a of listenR.value.addresses) {
      if (a.kind === 'unix' && a.path === upstream.path) {
        errors.push(`--listen=unix://${a.path} is the Docker socket itself; listen somewhere else`);
      }
    }
  }
  const waitBinary = str('wait-binary') ?? '/bin/busybox';
  if (!existsSync(waitBinary))
    errors.push(`--wait-binary=${waitBinary}: no such file (install Debian's busybox-static)`);
  const ttlRaw = str('lease-ttl') ?? '10';
  const leaseTtlSeconds = Number(ttlRaw);
  if (!Number.isInteger(leaseTtlSeconds) || leaseTtlSeconds < 2 || leaseTtlSeconds > 3600)
    errors.push(`--lease-ttl=${ttlRaw}: a whole number of seconds, 2-3600`);
  const logLevel = str('log-level') ?? env.LOG_LEVEL ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal'].includes(logLevel))
    errors.push(`--log-level=${logLevel}: one of trace, debug, info, warn, error, fatal`);
  const e2h = str('endpoint-to-host') ?? env.CALICO_ENDPOINT_TO_HOST ?? 'drop';
  if (e2h !== 'drop' && e2h !== 'accept' && e2h !== 'policy')
    errors.push(`--endpoint-to-host=${e2h}: one of drop, accept, policy`);
  const resyncRaw = str('dataplane-resync') ?? '30';
  const resyncS = Number(resyncRaw);
  if (!Number.isFinite(resyncS) || resyncS < 0)
    errors.push(`--dataplane-resync=${resyncRaw}: seconds, 0 to turn it off`);
  const metricsRaw = str('metrics-listen') ?? env.CALICO_METRICS_LISTEN ?? '127.0.0.1:9091';
  let metricsListen: NodeConfig['metricsListen'] = null;
  if (metricsRaw !== 'none') {
    const m = /^(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d{1,5})$/.exec(metricsRaw);
    const host = m?.[1]?.replace(/^\[|\]$/g, '') ?? '';
    if (!m || isIP(host) === 0 || Number(m[2]) > 65535)
      errors.push(`--metrics-listen=${metricsRaw}: expected <IP>:<port> (port 0: any free one) or none`);
    else metricsListen = { host, port: Number(m[2]) };
  }
  const seconds = (flag: string, dflt: number): number => {
    const raw = str(flag);
    if (raw === undefined) return dflt;
    const v = Number(raw);
    if (!/^\d+(\.\d+)?$/.test(raw) || v < 0.1 || v > 86_400) {
      errors.push(`--${flag}=${raw}: seconds, 0.1 to 86400`);
      return dflt;
    }
    return Math.round(v * 1000);
  };
  const maxConnRaw = str('proxy-max-connections') ?? String(DEFAULT_PROXY_LIMITS.maxConnections);
  const maxConnections = Number(maxConnRaw);
  if (!/^\d+$/.test(maxConnRaw) || maxConnections < 1 || maxConnections > 1_000_000) {
    errors.push(`--proxy-max-connections=${maxConnRaw}: a whole number, 1 to 1000000`);
  }
  const proxyLimits: ProxyLimits = {
    headerTimeoutMs: seconds('proxy-header-timeout', DEFAULT_PROXY_LIMITS.headerTimeoutMs),
    bodyIdleTimeoutMs: seconds('proxy-body-timeout', DEFAULT_PROXY_LIMITS.bodyIdleTimeoutMs),
    idleTimeoutMs: seconds('proxy-idle-timeout', DEFAULT_PROXY_LIMITS.idleTimeoutMs),
    maxConnections,
  };
  if (errors.length || !datastore || !upstream || !listenR.ok) return { ok: false, errors };
  const listen = listenR.value;
  return {
    ok: true,
    value: {
      hostname,
      ip,
      ip6,
      datastore,
      upstream,
      listen,
      waitBinary,
      leaseTtlSeconds,
      logLevel,
      endpointToHost: e2h as NodeConfig['endpointToHost'],
      dataplaneResyncMs: resyncS * 1000,
      statusFile: str('status-file'),
      procSys: str('proc-sys') ?? env.CALICO_PROC_SYS ?? '/proc/sys',
      metricsListen,
      proxyLimits,
    },
  };
}
