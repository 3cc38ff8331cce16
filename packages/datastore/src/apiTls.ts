/**
 * TLS for the cluster API (the master API and every host's diags service): the server's files
 * (`--tls-cert`, `--tls-key`, and `--tls-ca` to take client certificates), the client's files
 * (`--api-ca`, `--api-cert`, `--api-key`), and who a request comes from: a client certificate
 * of the CA, or the cluster API token. One rule for both services.
 */
import { readFileSync } from 'node:fs';
import {
  request as httpRequest,
  type Agent as HttpAgent,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import { createSecureContext, TLSSocket, type SecureContextOptions } from 'node:tls';
import { bearerMatches } from './apiToken.js';

/** What an API server serves https with. */
export interface ApiServerTls {
  cert: Buffer;
  key: Buffer;
  /** Client certificates signed by it authenticate a request; without it only the token does. */
  ca: Buffer | undefined;
  /** The files they came from, for logs. */
  files: { cert: string; key: string; ca: string | undefined };
}

/** The server flags as given. */
export interface ApiServerTlsFlags {
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  tlsCa?: string | undefined;
}

/** The server flags as node:util parseArgs options. */
export const API_TLS_FLAG_OPTIONS = {
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
} as const;

export const API_TLS_FLAGS_USAGE = `  --tls-cert=<file> --tls-key=<file>
                           serve https with this certificate (PEM; it must name the address
                           clients use in its subjectAltName)
  --tls-ca=<file>          with them: a client certificate signed by this CA authenticates a
                           request as the API token does`;

/**
 * Reads and checks the server's TLS files (parsed, the key matched to the certificate) so that
 * a bad one stops the service before it listens. undefined: no TLS flags, plain http.
 */
export function apiServerTls(
  f: ApiServerTlsFlags,
  read: (file: string) => Buffer = readFileSync,
): { ok: true; value: ApiServerTls | undefined } | { ok: false; errors: string[] } {
  if (f.tlsCert === undefined && f.tlsKey === undefined && f.tlsCa === undefined) return { ok: true, value: undefined };
  const errors: string[] = [];
  if (f.tlsCert === undefined || f.tlsKey === undefined) {
    const given = Object.entries({ 'tls-cert': f.tlsCert, 'tls-key': f.tlsKey, 'tls-ca': f.tlsCa })
      .filter(([, v]) => v !== undefined)
      .map(([k]) => `--${k}`);
    errors.push(`https needs --tls-cert and --tls-key together (given: ${given.join(', ')})`);
  }
  const file = (flag: string, path: string | undefined): Buffer | undefined => {
    if (path === undefined) return undefined;
    try {
      return read(path);
    } catch (e) {
      errors.push(`--${flag}=${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      return undefined;
    }
  };
  const cert = file('tls-cert', f.tlsCert);
  const key = file('tls-key', f.tlsKey);
  const ca = file('tls-ca', f.tlsCa);
  if (errors.length || !cert || !key) return { ok: false, errors };
  try {
    // The parse node:tls does at listen time: a bad PEM or a key of another certificate fails here.
    createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
  } catch (e) {
    const files = [f.tlsCert, f.tlsKey, f.tlsCa].filter(Boolean).join(', ');
    return { ok: false, errors: [`--tls-cert/--tls-key/--tls-ca (${files}): ${(e as Error).message}`] };
  }
  return { ok: true, value: { cert, key, ca, files: { cert: f.tlsCert!, key: f.tlsKey!, ca: f.tlsCa } } };
}

/**
 * node:https server options. With a CA the server asks for a client certificate but lets a
 * client without one (or with one that does not verify) finish the handshake: the token still
 * works over TLS, and the request is answered 401 with the reason rather than cut.
 */
export function httpsServerOptions(
  tls: ApiServerTls,
): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
  const ca = tls.ca ? { ca: tls.ca } : {};
  return { cert: tls.cert, key: tls.key, ...ca, requestCert: tls.ca !== undefined, rejectUnauthorized: false };
}

/** Who a request comes from, or why it is refused. */
export type ApiAuth =
  | { ok: true; by: 'certificate'; subject: string }
  | { ok: true; by: 'token' }
  | { ok: false; reason: string /** A certificate was presented and did not verify. */; badCertificate?: true };

/**
 * A client certificate that verifies against the server's CA authenticates the request. One that
 * was presented and does not verify (another CA, expired) refuses it, whatever else it carries:
 * a client set up with the wrong certificate learns so. Otherwise the token decides.
 */
export function authenticateRequest(req: IncomingMessage, token: string | undefined): ApiAuth {
  const s = req.socket;
  if (s instanceof TLSSocket) {
    const peer = s.getPeerCertificate();
    const presented = peer !== null && typeof peer === 'object' && Object.keys(peer).length > 0;
    if (presented && s.authorized) return { ok: true, by: 'certificate', subject: String(peer.subject?.CN ?? '') };
    if (presented) {
      const reason = `the client certificate is not one of this server's CA (${String(s.authorizationError)})`;
      return { ok: false, reason, badCertificate: true };
    }
  }
  if (token !== undefined && bearerMatches(req.headers.authorization, token)) return { ok: true, by: 'token' };
  const sent = req.headers.authorization !== undefined;
  return { ok: false, reason: sent ? 'the token is not the cluster API token' : 'no token and no client certificate' };
}

/** What a client of the cluster API presents and trusts. */
export interface ApiClientTls {
  /** Verifies the server; without it the system's CAs do (never no verification). */
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface ApiClientTlsInput {
  apiCa?: string | undefined;
  apiCert?: string | undefined;
  apiKey?: string | undefined;
}

export class ApiTlsError extends Error {
  override name = 'ApiTlsError';
}

/** The client flags as node:util parseArgs options. */
export const API_CLIENT_TLS_FLAG_OPTIONS = {
  'api-ca': { type: 'string' },
  'api-cert': { type: 'string' },
  'api-key': { type: 'string' },
} as const;

/**
 * --api-ca/--api-cert/--api-key, else CALICO_API_CA_FILE, CALICO_API_CERT_FILE,
 * CALICO_API_KEY_FILE; the files are read here. undefined: none given.
 */
export function apiClientTls(
  input: ApiClientTlsInput,
  env: NodeJS.ProcessEnv = process.env,
  read: (file: string) => Buffer = readFileSync,
): ApiClientTls | undefined {
  /** The path and where it came from, for messages: a flag, else its variable. */
  type Source = { path: string; from: string };
  const pick = (flag: string, value: string | undefined, variable: string): Source | undefined => {
    if (value !== undefined) return { path: value, from: `--${flag}` };
    const v = env[variable];
    return v ? { path: v, from: variable } : undefined;
  };
  const ca = pick('api-ca', input.apiCa, 'CALICO_API_CA_FILE');
  const cert = pick('api-cert', input.apiCert, 'CALICO_API_CERT_FILE');
  const key = pick('api-key', input.apiKey, 'CALICO_API_KEY_FILE');
  if ((cert === undefined) !== (key === undefined)) {
    const missing = cert ? '--api-key' : '--api-cert';
    const given = (cert ?? key)!.from;
    throw new ApiTlsError(`${given} is given without ${missing}: a client certificate and its key go together`);
  }
  if (ca === undefined && cert === undefined) return undefined;
  const file = (f: Source): Buffer => {
    try {
      return read(f.path);
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new ApiTlsError(`${f.from}=${f.path}: cannot read it (${why})`);
    }
  };
  const out: ApiClientTls = {
    ...(ca ? { ca: file(ca) } : {}),
    ...(cert ? { cert: file(cert) } : {}),
    ...(key ? { key: file(key) } : {}),
  };
  try {
    createSecureContext(out);
  } catch (e) {
    const files = [ca, cert, key].flatMap((f) => (f ? [f.path] : [])).join(', ');
    throw new ApiTlsError(`--api-ca/--api-cert/--api-key (${files}): ${(e as Error).message}`);
  }
  return out;
}

/** Whether a client could authenticate with a certificate, so that a missing token is no reason to stop. */
export const hasClientCertificate = (tls: ApiClientTls | undefined): boolean => tls?.cert !== undefined;

export interface ApiCallOptions {
  method?: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string | undefined;
  /** For an https URL: the CA that verifies the server, and the client certificate to present. */
  tls?: ApiClientTls | undefined;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs?: number;
  /** A keep-alive agent of the URL's scheme (with the TLS options in it, for https). */
  agent?: HttpAgent | HttpsAgent;
}

export interface ApiAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * One call to the master API or a diags service, over http or https as the URL says; the
 * server's certificate is always verified. Rejects when no HTTP answer comes (refused, a TLS
 * failure, the timeout), with the reason.
 */
export function apiCall(url: URL | string, o: ApiCallOptions = {}): Promise<ApiAnswer> {
  const u = typeof url === 'string' ? new URL(url) : url;
  const https = u.protocol === 'https:';
  const headers: Record<string, string> = { ...o.headers };
  if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined) headers['content-length'] = String(Buffer.byteLength(o.body));
  return new Promise((resolve, reject) => {
    const agent = o.agent ? { agent: o.agent } : {};
    const opts = { method: o.method ?? 'GET', headers, timeout: o.timeoutMs ?? 10_000, ...agent };
    const onAnswer = (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    };
    // With an agent, its own TLS options apply.
    const tls = o.agent ? {} : (o.tls ?? {});
    const req = https ? httpsRequest(u, { ...opts, ...tls }, onAnswer) : httpRequest(u, opts, onAnswer);
    req.on('timeout', () => req.destroy(new Error(`no answer from ${u.host} within ${opts.timeout} ms`)));
    req.on('error', reject);
    req.end(o.body);
  });
}
