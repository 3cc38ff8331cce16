import { hostname as osHostname } from 'node:os';
import { resolve } from 'node:path';
import {
  Datastore,
  resolveDatastoreConfig,
  DatastoreConfigError,
  apiTokenFileFrom,
  readApiToken,
  apiClientTls,
  ApiTlsError,
  type ApiClientTls,
} from '@calico/datastore';
import { CalicoClient, ClientError } from '@calico/client';
import { hostNameError } from '@calico/keyspace';

/** Flags every command understands. */
export interface GlobalFlags {
  etcd?: string | undefined;
  etcdCa?: string | undefined;
  etcdCert?: string | undefined;
  etcdKey?: string | undefined;
  json?: boolean | undefined;
  hostname?: string | undefined;
  apiTokenFile?: string | undefined;
  /** For an https master and diags services: the CA that verifies them, a client certificate of theirs. */
  apiCa?: string | undefined;
  apiCert?: string | undefined;
  apiKey?: string | undefined;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** What a command gets: output that knows whether it talks to a person, and lazy etcd access. */
export class Context {
  private dsInstance: Datastore | undefined;

  constructor(
    readonly flags: GlobalFlags,
    readonly out: NodeJS.WritableStream = process.stdout,
    readonly err: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr,
    readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /**
   * This host's name: --hostname, CALICO_HOSTNAME, else the machine's. It names etcd directories
   * and paths that reset removes, so a name that breaks the one rule stops the command first.
   */
  get hostname(): string {
    const name = this.flags.hostname ?? this.env.CALICO_HOSTNAME ?? osHostname();
    const bad = hostNameError(name);
    if (bad === undefined) return name;
    const from =
      this.flags.hostname !== undefined
        ? '--hostname'
        : this.env.CALICO_HOSTNAME !== undefined
          ? 'CALICO_HOSTNAME'
          : "the machine's host name";
    throw new UsageError(`${from}: ${bad}; say which host with --hostname=<NAME>`);
  }

  get ds(): Datastore {
    if (!this.dsInstance) {
      let cfg;
      try {
        cfg = resolveDatastoreConfig({
          etcd: this.flags.etcd,
          etcdCa: this.flags.etcdCa,
          etcdCert: this.flags.etcdCert,
          etcdKey: this.flags.etcdKey,
          env: this.env,
        });
      } catch (e) {
        if (e instanceof DatastoreConfigError) throw new UsageError(e.message);
        throw e;
      }
      this.dsInstance = new Datastore(cfg, { callTimeoutMs: 5_000 });
    }
    return this.dsInstance;
  }

  /**
   * The etcd TLS files calicoctl connects with (flags, else ETCD_CA_CERT_FILE, ETCD_CERT_FILE,
   * ETCD_KEY_FILE), absolute: the services it starts connect the same way from any folder.
   */
  get etcdTls(): { ca?: string; cert?: string; key?: string } {
    void this.ds.config; // the whole etcd configuration is checked first
    const abs = (flag: string | undefined, env: string | undefined) => {
      const p = flag ?? env;
      return p ? resolve(p) : undefined;
    };
    const ca = abs(this.flags.etcdCa, this.env.ETCD_CA_CERT_FILE);
    const cert = abs(this.flags.etcdCert, this.env.ETCD_CERT_FILE);
    const key = abs(this.flags.etcdKey, this.env.ETCD_KEY_FILE);
    return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
  }

  /** --etcd-ca/--etcd-cert/--etcd-key for a service calicoctl starts, from etcdTls. */
  get etcdTlsFlags(): string[] {
    const t = this.etcdTls;
    return [
      ...(t.ca ? [`--etcd-ca=${t.ca}`] : []),
      ...(t.cert ? [`--etcd-cert=${t.cert}`] : []),
      ...(t.key ? [`--etcd-key=${t.key}`] : []),
    ];
  }

  /** The cluster API token's file: --api-token-file, CALICO_API_TOKEN_FILE, else /etc/calico/api-token. */
  get apiTokenFile(): string {
    return apiTokenFileFrom(this.flags.apiTokenFile, this.env);
  }

  /** The cluster API token, for the master API and the diags services; an ApiTokenError says why not. */
  apiToken(): string {
    return readApiToken(this.apiTokenFile);
  }

  /**
   * --api-ca/--api-cert/--api-key (else CALICO_API_CA_FILE, CALICO_API_CERT_FILE,
   * CALICO_API_KEY_FILE), read; undefined when none is given. A bad file is a usage error.
   */
  apiTls(): ApiClientTls | undefined {
    try {
      const { apiCa, apiCert, apiKey } = this.flags;
      return apiClientTls({ apiCa, apiCert, apiKey }, this.env);
    } catch (e) {
      if (e instanceof ApiTlsError) throw new UsageError(e.message);
      throw e;
    }
  }

  get client(): CalicoClient {
    let host: string | undefined;
    try {
      host = this.hostname;
    } catch {
      host = undefined; // not a host name: every host's keys are read, as without one
    }
    return new CalicoClient(this.ds, { host });
  }

  get etcdEndpoints(): string {
    return this.ds.config.endpoints.map((u) => u.replace(/^https?:\/\//, '')).join(',');
  }

  print(text = ''): void {
    this.out.write(`${text}\n`);
  }

  json(value: unknown): void {
    this.out.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Progress for people: shown on a terminal, silent in pipes and scripts. */
  progress(text: string): void {
    if (this.err.isTTY) this.err.write(`${text}\n`);
  }

  close(): void {
    this.dsInstance?.close();
  }
}

export { ClientError };

/** Lays rows out in columns. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(headers), ...rows.map(line)].join('\n');
}
