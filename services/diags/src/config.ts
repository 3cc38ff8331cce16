import { parseArgs } from 'node:util';
import { hostname as osHostname } from 'node:os';
import { isIP } from 'node:net';
import {
  API_CLIENT_TLS_FLAG_OPTIONS,
  API_TLS_FLAG_OPTIONS,
  API_TLS_FLAGS_USAGE,
  apiServerTls,
  apiTokenFileFrom,
  datastoreConfigFromFlags,
  ETCD_FLAG_OPTIONS,
  type ApiServerTls,
  type DatastoreConfig,
} from '@calico/datastore';
import { serviceHostName } from '@calico/keyspace';
import { defaultHostDirs, type HostDirs } from './sources.js';

/** The flags of a collection, `calico-diags collect`'s and `calicoctl diags`'s alike. */
export const DIAGS_COLLECT_FLAG_OPTIONS = {
  output: { type: 'string' },
  'upload-url': { type: 'string' },
  'upload-method': { type: 'string' },
  'no-upload': { type: 'boolean' },
  'upload-file': { type: 'string' },
  cluster: { type: 'boolean' },
  'host-timeout': { type: 'string' },
  'max-host-bytes': { type: 'string' },
  insecure: { type: 'boolean' },
} as const;

export const USAGE = `calico-diags: one host's diagnostics, with secrets redacted

  calico-diags [serve] --listen=<ip:port>   serve GET /diags (this host's .tar.gz) and register
        [--advertise-url=<url>]             /calico/host/<hostname>/diags_url (http://<listen>/)
        [--lease-ttl=<s>]                   the registration's lease (30)
        [--tls-cert=<f> --tls-key=<f> [--tls-ca=<f>]]   serve https (below)
  calico-diags collect                      collect here and now, as "calicoctl diags" does:
        [--output=<file|dir>] [--upload-url=<url>] [--upload-method=put|post] [--no-upload]
        [--upload-file=<archive>] [--insecure] [--cluster [--host-timeout=<s>] [--max-host-bytes=<n>]
        [--api-ca=<f>] [--api-cert=<f> --api-key=<f>]] [--json]

  --upload-url=<url>       CALICO_DIAGS_UPLOAD_URL; https (plain http only with --insecure); its
                           password and signature values are masked wherever it is printed
  --max-host-bytes=<n>     with --cluster: the largest archive taken from one host (256M; K/M/G
                           suffixes), unpacked at most 8 times that; a host over it is not collected

  --api-token-file=<file>  CALICO_API_TOKEN_FILE, else /etc/calico/api-token (made by calico-master;
                           copy it to every host, mode 0600): serve wants it on GET /diags,
                           --cluster sends it to every host
${API_TLS_FLAGS_USAGE}
  --api-ca=<file>          with --cluster: CALICO_API_CA_FILE; the CA that verifies https diags
                           services (else the system's CAs)
  --api-cert/--api-key=<file>   CALICO_API_CERT_FILE/CALICO_API_KEY_FILE: a client certificate
                           of their CA, which authenticates without the token
  --hostname=<name>        CALICO_HOSTNAME, else the machine's host name
  --etcd=<host:port,...>   ETCD_ENDPOINTS, ETCD_AUTHORITY, else 127.0.0.1:2379
  --etcd-ca/--etcd-cert/--etcd-key=<file>
  --run-dir=<dir>          /var/run/calico/<hostname> (node.state.json, agent-status.json)
  --log-dir=<dir>          /var/log/calico/<hostname> (every file in it is collected)
  --state-dir=<dir>        /var/lib/calico/<hostname> (bird.conf, bird.ctl)
  --docker=<url>           DOCKER_HOST, else unix:///var/run/docker.sock
  --log-level=<level>      LOG_LEVEL, else info`;

interface Common {
  hostname: string;
  datastore: DatastoreConfig | undefined;
  /** Why the datastore config is unusable; only the sources that need etcd fail on it. */
  datastoreError: string | undefined;
  dirs: HostDirs;
  docker: string | undefined;
  /** The cluster API token's file (read when needed: serve on each GET /diags, collect with --cluster). */
  apiTokenFile: string;
  logLevel: string;
}

export type DiagsCli =
  | ({
      mode: 'serve';
      listen: { host: string; port: number };
      /** Else the bound address. */
      advertiseUrl: string | undefined;
      leaseTtl: number;
      /** https (--tls-cert/--tls-key); with --tls-ca, client certificates of it authenticate too. */
      tls: ApiServerTls | undefined;
    } & Common)
  | ({
      mode: 'collect';
      output: string | undefined;
      uploadUrl: string | undefined;
      uploadMethod: string | undefined;
      noUpload: boolean;
      uploadFile: string | undefined;
      cluster: boolean;
      hostTimeout: string | undefined;
      maxHostBytes: string | undefined;
      insecure: boolean;
      json: boolean;
      /** --api-ca/--api-cert/--api-key, read by the command (else CALICO_API_*_FILE). */
      apiCa: string | undefined;
      apiCert: string | undefined;
      apiKey: string | undefined;
    } & Common);

export function loadConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { ok: true; value: DiagsCli } | { ok: false; errors: string[] } {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        hostname: { type: 'string' },
        ...ETCD_FLAG_OPTIONS,
        'run-dir': { type: 'string' },
        'log-dir': { type: 'string' },
        'state-dir': { type: 'string' },
        docker: { type: 'string' },
        'api-token-file': { type: 'string' },
        'log-level': { type: 'string' },
        listen: { type: 'string' },
        'advertise-url': { type: 'string' },
        'lease-ttl': { type: 'string' },
        ...API_TLS_FLAG_OPTIONS,
        ...API_CLIENT_TLS_FLAG_OPTIONS,
        ...DIAGS_COLLECT_FLAG_OPTIONS,
        json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    }));
  } catch (e) {
    return { ok: false, errors: [(e as Error).message] };
  }
  const errors: string[] = [];
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const mode = positionals[0] ?? 'serve';
  if ((mode !== 'serve' && mode !== 'collect') || positionals.length > 1)
    errors.push(`unexpected "${positionals.join(' ')}": serve or collect`);
  const { name: hostname, error: badName } = serviceHostName(str('hostname'), env.CALICO_HOSTNAME, osHostname());
  if (badName) errors.push(badName);
  let datastore: DatastoreConfig | undefined;
  let datastoreError: string | undefined;
  try {
    datastore = datastoreConfigFromFlags(values, env);
  } catch (e) {
    datastoreError = (e as Error).message;
  }
  const common: Common = {
    hostname,
    datastore,
    datastoreError,
    dirs: defaultHostDirs(hostname, { runDir: str('run-dir'), logDir: str('log-dir'), stateDir: str('state-dir') }),
    docker: str('docker') ?? env.DOCKER_HOST,
    apiTokenFile: apiTokenFileFrom(str('api-token-file'), env),
    logLevel: str('log-level') ?? env.LOG_LEVEL ?? 'info',
  };
  if (mode === 'collect') {
    if (errors.length) return { ok: false, errors };
    return {
      ok: true,
      value: {
        mode,
        ...common,
        output: str('output'),
        uploadUrl: str('upload-url'),
        uploadMethod: str('upload-method'),
        noUpload: values['no-upload'] === true,
        uploadFile: str('upload-file'),
        cluster: values.cluster === true,
        hostTimeout: str('host-timeout'),
        maxHostBytes: str('max-host-bytes'),
        insecure: values.insecure === true,
        json: values.json === true,
        apiCa: str('api-ca'),
        apiCert: str('api-cert'),
        apiKey: str('api-key'),
      },
    };
  }
  // The service must register in etcd: a bad etcd config is fatal here.
  if (datastoreError) errors.push(datastoreError);
  const listen = str('listen');
  const m = listen ? /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(listen) : null;
  if (!m || !isIP(m[1]!) || Number(m[2]) > 65535)
    errors.push(`--listen=${listen ?? ''}: <ip>:<port> of this host, e.g. 198.18.0.11:9300`);
  const advertiseUrl = str('advertise-url');
  if (m && !advertiseUrl && (m[1] === '0.0.0.0' || m[1] === '::'))
    errors.push(`--listen=${listen}: with a wildcard address, say where others reach it with --advertise-url`);
  const leaseTtl = Number(str('lease-ttl') ?? '30');
  if (!Number.isInteger(leaseTtl) || leaseTtl < 2)
    errors.push(`--lease-ttl=${str('lease-ttl')}: whole seconds, at least 2`);
  const tls = apiServerTls({ tlsCert: str('tls-cert'), tlsKey: str('tls-key'), tlsCa: str('tls-ca') });
  if (!tls.ok) errors.push(...tls.errors);
  if (advertiseUrl !== undefined && tls.ok && tls.value && !advertiseUrl.startsWith('https://')) {
    errors.push(`--advertise-url=${advertiseUrl}: the service serves https (--tls-cert), so its URL is https://…`);
  }
  if (errors.length || !m || !tls.ok) return { ok: false, errors };
  const listenAt = { host: m[1]!, port: Number(m[2]) };
  return { ok: true, value: { mode: 'serve', ...common, listen: listenAt, advertiseUrl, leaseTtl, tls: tls.value } };
}
