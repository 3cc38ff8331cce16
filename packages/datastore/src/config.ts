import { readFileSync } from 'node:fs';

/** Where etcd is and how to reach it. */
export interface DatastoreConfig {
  /** Full URLs, e.g. http://127.0.0.1:2379. */
  endpoints: string[];
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Where the endpoints came from, for logs and error messages. */
  source: 'flag' | 'ETCD_ENDPOINTS' | 'ETCD_AUTHORITY' | 'default';
}

export interface DatastoreInput {
  /** --etcd=host:port[,host:port…] */
  etcd?: string | undefined;
  /** --etcd-ca, --etcd-cert, --etcd-key: file paths */
  etcdCa?: string | undefined;
  etcdCert?: string | undefined;
  etcdKey?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

export const DEFAULT_ETCD = '127.0.0.1:2379';

export class DatastoreConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatastoreConfigError';
  }
}

/**
 * Resolves endpoints in a fixed order: the --etcd flag, ETCD_ENDPOINTS, the seed's
 * ETCD_AUTHORITY, then 127.0.0.1:2379. TLS files come from flags or ETCD_CA_CERT_FILE,
 * ETCD_CERT_FILE, ETCD_KEY_FILE; with TLS, bare host:port entries become https. Schemes that
 * disagree with the TLS files, and https without a CA, are DatastoreConfigErrors.
 */
export function resolveDatastoreConfig(input: DatastoreInput = {}): DatastoreConfig {
  const env = input.env ?? process.env;
  let raw: string;
  let source: DatastoreConfig['source'];
  if (input.etcd !== undefined && input.etcd !== '') {
    raw = input.etcd;
    source = 'flag';
  } else if (env.ETCD_ENDPOINTS) {
    raw = env.ETCD_ENDPOINTS;
    source = 'ETCD_ENDPOINTS';
  } else if (env.ETCD_AUTHORITY) {
    raw = env.ETCD_AUTHORITY;
    source = 'ETCD_AUTHORITY';
  } else {
    raw = DEFAULT_ETCD;
    source = 'default';
  }
  const caFile = input.etcdCa ?? env.ETCD_CA_CERT_FILE;
  const certFile = input.etcdCert ?? env.ETCD_CERT_FILE;
  const keyFile = input.etcdKey ?? env.ETCD_KEY_FILE;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new DatastoreConfigError('etcd TLS: a client certificate and its key must be given together');
  }
  const tlsWanted = Boolean(caFile || certFile);
  const endpoints = parseEndpoints(raw, source, tlsWanted ? 'https' : 'http');
  checkSchemes(raw, endpoints, source, tlsWanted, caFile !== undefined && caFile !== '');
  const cfg: DatastoreConfig = { endpoints, source };
  if (tlsWanted) {
    cfg.tls = {
      ...(caFile ? { ca: readTlsFile('CA certificate', caFile) } : {}),
      ...(certFile ? { cert: readTlsFile('client certificate', certFile) } : {}),
      ...(keyFile ? { key: readTlsFile('client key', keyFile) } : {}),
    };
  }
  return cfg;
}

const TLS_FILES = '--etcd-ca/--etcd-cert/--etcd-key (or ETCD_CA_CERT_FILE/ETCD_CERT_FILE/ETCD_KEY_FILE)';

/**
 * One client reaches every endpoint the same way (etcd3 and gRPC take one set of credentials), so
 * the schemes must agree with the TLS files: a mix, TLS files with http://, or https:// with no CA
 * to check etcd's certificate is refused rather than quietly connecting some other way.
 */
function checkSchemes(
  raw: string,
  endpoints: string[],
  source: DatastoreConfig['source'],
  tls: boolean,
  ca: boolean,
): void {
  const from = source === 'flag' ? '--etcd' : source === 'default' ? 'the default endpoint' : source;
  const explicit = raw
    .split(',')
    .map((p) => /^\s*(https?):\/\//.exec(p)?.[1])
    .filter((x) => x !== undefined);
  if (explicit.includes('http') && explicit.includes('https')) {
    throw new DatastoreConfigError(
      `etcd: ${from} mixes http:// and https:// endpoints (${endpoints.join(', ')}); ` +
        'every endpoint is reached the same way: all https:// with TLS files, or all http://',
    );
  }
  const plain = endpoints.find((e) => e.startsWith('http://'));
  if (tls && plain !== undefined) {
    throw new DatastoreConfigError(
      `etcd TLS: ${TLS_FILES} given, but ${from} names ${plain}; use https:// (or host:port), or drop the TLS files`,
    );
  }
  const secure = endpoints.find((e) => e.startsWith('https://'));
  if (secure !== undefined && !ca) {
    throw new DatastoreConfigError(
      `etcd TLS: ${secure} needs the CA that signed etcd's certificate: --etcd-ca=<file> or ETCD_CA_CERT_FILE`,
    );
  }
}

function readTlsFile(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new DatastoreConfigError(`etcd TLS: cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

/** "a:1,b:2" or "http://a:1,https://b:2" → full URLs; names the bad entry otherwise. */
export function parseEndpoints(raw: string, source: string, scheme: 'http' | 'https'): string[] {
  const parts = raw
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (parts.length === 0) throw new DatastoreConfigError(`${source}: no etcd endpoint given`);
  return parts.map((p) => {
    const m = /^(?:(https?):\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(p);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port < 1 || port > 65535) {
      throw new DatastoreConfigError(`${source}: "${p}" is not host:port (e.g. 127.0.0.1:2379)`);
    }
    return `${m[1] ?? scheme}://${m[2]}:${port}`;
  });
}

/** The etcd flags every service and calicoctl take, as node:util parseArgs options. */
export const ETCD_FLAG_OPTIONS = {
  etcd: { type: 'string' },
  'etcd-ca': { type: 'string' },
  'etcd-cert': { type: 'string' },
  'etcd-key': { type: 'string' },
} as const;

/** Their lines for a --help text. */
export const ETCD_FLAGS_USAGE = `  --etcd=<host:port,...>   ETCD_ENDPOINTS, ETCD_AUTHORITY, else 127.0.0.1:2379
  --etcd-ca/--etcd-cert/--etcd-key=<file>   TLS to etcd`;

/** resolveDatastoreConfig from parsed flags; throws DatastoreConfigError naming what is wrong. */
export function datastoreConfigFromFlags(
  values: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): DatastoreConfig {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  return resolveDatastoreConfig({
    etcd: str('etcd'),
    etcdCa: str('etcd-ca'),
    etcdCert: str('etcd-cert'),
    etcdKey: str('etcd-key'),
    env,
  });
}
