import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execOk } from './exec.js';

/** A certificate and its key, as files; `dir` also holds ca.pem when made for a docker client. */
export interface CertFiles {
  cert: string;
  key: string;
}

/** A test CA made with openssl, that issues server and client certificates. */
export class TestCa {
  private serial = 1;

  private constructor(
    readonly dir: string,
    readonly name: string,
    /** The CA's certificate (PEM file). */
    readonly cert: string,
    private readonly key: string,
    private readonly days: number,
  ) {}

  /** A new CA in dir (made if missing), EC P-256; it and what it issues are valid `days` (1). */
  static async create(dir: string, name = 'calico-test-ca', opts: { days?: number } = {}): Promise<TestCa> {
    const days = String(opts.days ?? 1);
    await mkdir(dir, { recursive: true });
    const key = join(dir, `${name}-key.pem`);
    const cert = join(dir, `${name}.pem`);
    await execOk(['openssl', 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
    await chmod(key, 0o600);
    await execOk([
      'openssl',
      'req',
      '-x509',
      '-new',
      '-key',
      key,
      '-sha256',
      '-days',
      days,
      '-subj',
      `/CN=${name}`,
      '-out',
      cert,
    ]);
    return new TestCa(dir, name, cert, key, Number(days));
  }

  /**
   * Issues a certificate: a server one names its addresses (subjectAltName IP:… and DNS:…, which
   * the docker CLI checks against DOCKER_HOST), a client one is for TLS client authentication.
   */
  async issue(
    name: string,
    opts: { server?: { ips?: string[]; dns?: string[] }; client?: boolean },
  ): Promise<CertFiles> {
    const key = join(this.dir, `${name}-key.pem`);
    const csr = join(this.dir, `${name}.csr`);
    const cert = join(this.dir, `${name}.pem`);
    const ext = join(this.dir, `${name}.ext`);
    const lines: string[] = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment'];
    const usage: string[] = [];
    if (opts.server) {
      usage.push('serverAuth');
      const san = [...(opts.server.ips ?? []).map((i) => `IP:${i}`), ...(opts.server.dns ?? []).map((d) => `DNS:${d}`)];
      if (san.length) lines.push(`subjectAltName=${san.join(',')}`);
    }
    if (opts.client) usage.push('clientAuth');
    if (usage.length) lines.push(`extendedKeyUsage=${usage.join(',')}`);
    await writeFile(ext, `${lines.join('\n')}\n`);
    await execOk(['openssl', 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
    await chmod(key, 0o600);
    await execOk(['openssl', 'req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', csr]);
    await execOk([
      'openssl',
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      this.cert,
      '-CAkey',
      this.key,
      '-set_serial',
      String(this.serial++),
      '-days',
      String(this.days),
      '-sha256',
      '-extfile',
      ext,
      '-out',
      cert,
    ]);
    return { cert, key };
  }

  /**
   * A DOCKER_CERT_PATH folder for the docker CLI: ca.pem (this CA, to check the server) and,
   * unless `client` is null, cert.pem/key.pem of a client certificate (of `client.ca`, this CA
   * by default).
   */
  async dockerCertPath(dir: string, client: { ca?: TestCa } | null = {}): Promise<string> {
    await mkdir(dir, { recursive: true });
    await execOk(['cp', this.cert, join(dir, 'ca.pem')]);
    if (client) {
      const issuer = client.ca ?? this;
      const c = await issuer.issue(`client-${this.serial}-${Date.now() % 100000}`, { client: true });
      await execOk(['cp', c.cert, join(dir, 'cert.pem')]);
      await execOk(['cp', c.key, join(dir, 'key.pem')]);
    }
    return dir;
  }
}
