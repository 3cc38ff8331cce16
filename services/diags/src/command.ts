import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  apiClientTls,
  ApiTlsError,
  ApiTokenError,
  apiTokenFileFrom,
  hasClientCertificate,
  readApiToken,
  type ApiClientTls,
  type Datastore,
} from '@calico/datastore';
import { archiveBaseName, writeArchive } from './archive.js';
import {
  DEFAULT_MAX_HOST_BYTES,
  discoverDiagsHosts,
  fetchCluster,
  hostFolders,
  type ClusterSummary,
} from './cluster.js';
import { collect, type HostSummary } from './collect.js';
import { SOURCES, type HostDirs } from './sources.js';
import { maskUrl, REDACTED, scrubSecrets, urlSecrets } from './redact.js';
import { upload, UploadError, type UploadMethod, type UploadTry } from './upload.js';

/** `calicoctl diags` (and `calico-diags collect`): what to collect, where to write it, where to upload it. */
export interface DiagsCommandOptions {
  host: string;
  dirs: HostDirs;
  docker?: string | undefined;
  datastore?: (() => Datastore) | undefined;
  /** A .tar.gz file name, or a directory to put it in; the system's temp directory by default. */
  output?: string | undefined;
  /** Else CALICO_DIAGS_UPLOAD_URL; none: no upload. */
  uploadUrl?: string | undefined;
  /** put (default) or post. */
  uploadMethod?: string | undefined;
  noUpload?: boolean | undefined;
  /** Upload this archive and collect nothing (the retry of a failed upload). */
  uploadFile?: string | undefined;
  /** Every host's diags service instead of this host. */
  cluster?: boolean | undefined;
  /** Seconds one host may take in cluster mode (60). */
  hostTimeout?: string | undefined;
  /** Largest archive taken from one host in cluster mode, in bytes or with a K/M/G suffix (256M). */
  maxHostBytes?: string | undefined;
  /** The cluster API token's file, sent to every host with cluster (else CALICO_API_TOKEN_FILE, /etc/calico/api-token). */
  apiTokenFile?: string | undefined;
  /**
   * With cluster, for https diags services: the CA that verifies them and a client certificate
   * of their CA (--api-ca/--api-cert/--api-key, else CALICO_API_CA_FILE, …_CERT_FILE, …_KEY_FILE).
   */
  apiCa?: string | undefined;
  apiCert?: string | undefined;
  apiKey?: string | undefined;
  /** Allow an upload over plain http (a warning instead of a refusal). */
  insecure?: boolean | undefined;
  json?: boolean | undefined;
  env?: NodeJS.ProcessEnv;
  /** For tests: upload attempts and the first backoff. */
  uploadTries?: number;
  uploadBackoffMs?: number;
  /** The command people retry with; "calicoctl diags" by default. */
  retryCommand?: string;
}

export interface DiagsIO {
  print(line: string): void;
  json(value: unknown): void;
  error(line: string): void;
  /** Shown only on a terminal (calicoctl's Context.progress). */
  progress(line: string): void;
}

export class DiagsUsageError extends Error {
  override name = 'DiagsUsageError';
}

/** Exit codes: 0 archive written (and uploaded when asked); 1 nothing could be written; 2 usage; 6 upload failed, archive kept. */
export const DIAGS_EXIT = { OK: 0, FAILED: 1, USAGE: 2, UPLOAD_FAILED: 6 } as const;

export const fmtBytes = (n: number) =>
  n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} kB` : `${(n / 1024 / 1024).toFixed(1)} MB`;

/** Quotes for a POSIX shell only when needed, so the printed retry command can be pasted. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function retryCommand(
  prefix: string,
  file: string,
  url: string,
  method: UploadMethod,
  insecure = false,
): string {
  const flags = `${method === 'post' ? ' --upload-method=post' : ''}${insecure ? ' --insecure' : ''}`;
  return `${prefix} --upload-file=${shellQuote(file)} --upload-url=${shellQuote(url)}${flags}`;
}

/** "256M", "1g", "4096": bytes, with an optional binary K/M/G suffix (KiB, MiB and GiB are read the same). */
export function parseBytes(s: string): number | undefined {
  const m = /^(\d+)\s*(?:([kmg])(?:i?b)?|b)?$/i.exec(s.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * 1024 ** ({ k: 1, m: 2, g: 3 }[m[2]?.toLowerCase() as 'k' | 'm' | 'g'] ?? 0);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

interface Checked {
  url: string | undefined;
  method: UploadMethod;
  hostTimeoutMs: number;
  maxHostBytes: number;
}

/** Validates the options before anything is collected or sent; a DiagsUsageError says what is wrong. */
export function checkOptions(o: DiagsCommandOptions): Checked {
  const method = (o.uploadMethod ?? 'put').toLowerCase();
  if (method !== 'put' && method !== 'post')
    throw new DiagsUsageError(`--upload-method=${o.uploadMethod}: put or post`);
  const url = o.uploadUrl ?? (o.env ?? process.env).CALICO_DIAGS_UPLOAD_URL ?? undefined;
  if (url !== undefined) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new DiagsUsageError(`upload URL "${maskUrl(url)}" is not an absolute URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new DiagsUsageError(`upload URL "${maskUrl(url)}": http or https`);
    }
    // Plain http shows the archive, and any signature in the URL, to everyone on the way.
    if (u.protocol === 'http:' && !o.insecure && !o.noUpload) {
      throw new DiagsUsageError(
        `upload URL "${maskUrl(url)}" is plain http: the archive would travel unencrypted; ` +
          'use https, or --insecure to send it anyway',
      );
    }
  }
  if (o.uploadFile !== undefined && o.noUpload)
    throw new DiagsUsageError('--upload-file uploads an archive; it cannot go with --no-upload');
  if (o.uploadFile !== undefined && !url)
    throw new DiagsUsageError('--upload-file needs --upload-url (or CALICO_DIAGS_UPLOAD_URL)');
  if (o.uploadFile !== undefined && o.cluster)
    throw new DiagsUsageError('--upload-file uploads an existing archive; it cannot go with --cluster');
  const hostTimeoutMs = Number(o.hostTimeout ?? '60') * 1000;
  if (!(hostTimeoutMs > 0)) throw new DiagsUsageError(`--host-timeout=${o.hostTimeout}: seconds, more than 0`);
  const maxHostBytes = o.maxHostBytes === undefined ? DEFAULT_MAX_HOST_BYTES : parseBytes(o.maxHostBytes);
  if (maxHostBytes === undefined) {
    throw new DiagsUsageError(`--max-host-bytes=${o.maxHostBytes}: bytes, e.g. 268435456 or 256M`);
  }
  return { url, method, hostTimeoutMs, maxHostBytes };
}

async function outputFile(output: string | undefined, base: string): Promise<string> {
  const dir =
    output === undefined ||
    output.endsWith('/') ||
    (await stat(output)
      .then((s) => s.isDirectory())
      .catch(() => false))
      ? (output ?? tmpdir())
      : undefined;
  if (dir === undefined) return output!;
  // Names carry the second: two runs within one must not overwrite each other.
  for (let i = 0; ; i++) {
    const f = join(dir, `${base}${i ? `-${i}` : ''}.tar.gz`);
    if (
      !(await stat(f)
        .then(() => true)
        .catch(() => false))
    )
      return f;
  }
}

/**
 * Collects (this host, or every host's diags service with cluster), writes one .tar.gz, prints
 * its path, uploads it when a URL is given and prints the URL the server answered. A failed
 * upload keeps the file and prints the command that retries it.
 */
export async function runDiags(o: DiagsCommandOptions, io: DiagsIO): Promise<number> {
  const { url, method, hostTimeoutMs, maxHostBytes } = checkOptions(o);
  const retryPrefix = o.retryCommand ?? 'calicoctl diags';
  let file: string;
  let bytes: number;
  let report: Record<string, unknown>;
  let line: string;

  if (o.uploadFile !== undefined) {
    file = o.uploadFile;
    bytes = (
      await stat(file).catch(() => {
        throw new DiagsUsageError(`--upload-file=${file}: no such file`);
      })
    ).size;
    report = { file, bytes };
    line = `archive: ${file} (${fmtBytes(bytes)})`;
  } else if (o.cluster) {
    if (!o.datastore) throw new DiagsUsageError('--cluster needs etcd (--etcd=…) to find the hosts');
    let tls: ApiClientTls | undefined;
    try {
      tls = apiClientTls({ apiCa: o.apiCa, apiCert: o.apiCert, apiKey: o.apiKey }, o.env ?? process.env);
    } catch (e) {
      if (e instanceof ApiTlsError) throw new DiagsUsageError(e.message);
      throw e;
    }
    let apiToken: string | undefined;
    try {
      apiToken = readApiToken(apiTokenFileFrom(o.apiTokenFile, o.env ?? process.env));
    } catch (e) {
      if (!(e instanceof ApiTokenError)) throw e;
      // A client certificate authenticates to an https diags service on its own.
      if (!hasClientCertificate(tls)) {
        const why =
          "--cluster sends the cluster API token (or a client certificate, --api-cert) to every host's diags service";
        io.error(`${why}: ${e.message}`);
        return DIAGS_EXIT.FAILED;
      }
    }
    const ds = o.datastore();
    const hosts = await discoverDiagsHosts(ds);
    if (hosts.length === 0) {
      io.error('no host is registered under /calico/host/ in etcd; nothing to collect');
      return DIAGS_EXIT.FAILED;
    }
    const createdAt = new Date();
    const base = archiveBaseName('cluster', createdAt);
    file = await outputFile(o.output, base);
    io.progress(`fetching the diags of ${hosts.length} host(s): ${hosts.map((h) => h.host).join(', ')}…`);
    const work = await mkdtemp(join(tmpdir(), 'calico-diags-'));
    let summary: ClusterSummary;
    try {
      summary = await fetchCluster(hosts, {
        workDir: work,
        timeoutMs: hostTimeoutMs,
        maxBytes: maxHostBytes,
        apiToken,
        tls,
        onHost: (r) =>
          io.progress(
            `  ${r.host.padEnd(16)} ${r.status === 'ok' ? `${fmtBytes(r.bytes).padStart(9)}  ${(r.durationMs / 1000).toFixed(1)} s` : `${r.status.toUpperCase()}: ${r.error}`}`,
          ),
      });
      io.progress(`writing ${file}…`);
      ({ bytes } = await writeArchive(
        file,
        base,
        {
          entries: [{ name: 'summary.json', data: Buffer.from(`${JSON.stringify(summary, null, 2)}\n`) }],
          dirs: await hostFolders(work),
        },
        createdAt,
      ));
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    report = {
      kind: 'cluster',
      file,
      bytes,
      hosts: summary.hosts.map((h) => ({ host: h.host, status: h.status, ...(h.error ? { error: h.error } : {}) })),
      failed: summary.failed,
    };
    line = `archive: ${file} (${fmtBytes(bytes)}; ${summary.counts.ok} of ${summary.hosts.length} host(s)${
      summary.failed.length
        ? `; not collected: ${summary.hosts
            .filter((h) => h.status !== 'ok')
            .map((h) => `${h.host} (${h.error})`)
            .join(', ')}`
        : ''
    })`;
  } else {
    io.progress(`collecting the diags of ${o.host} (${SOURCES.length} sources)…`);
    let n = 0;
    const c = await collect({
      host: o.host,
      dirs: o.dirs,
      docker: o.docker,
      datastore: o.datastore,
      onSource: (r) =>
        io.progress(
          `  [${String(++n).padStart(2)}/${SOURCES.length}] ${r.name.padEnd(16)} ${r.status === 'ok' ? `${fmtBytes(r.bytes).padStart(9)}  ${r.durationMs} ms` : `${r.status === 'absent' ? 'absent' : 'FAILED'}: ${r.error}`}`,
        ),
    });
    const base = archiveBaseName(o.host, c.createdAt);
    file = await outputFile(o.output, base);
    io.progress(`writing ${file}…`);
    ({ bytes } = await writeArchive(file, base, { entries: c.entries }, c.createdAt));
    const s: HostSummary = c.summary;
    report = { kind: 'host', host: o.host, file, bytes, failed: s.failed, absent: s.absent };
    line = `archive: ${file} (${fmtBytes(bytes)}; ${s.sources.length} sources: ${s.counts.ok} ok, ${s.counts.absent} absent, ${s.counts.error} failed${s.failed.length ? `: ${s.failed.join(', ')}` : ''}; see summary.json)`;
  }

  const finish = (upload: Record<string, unknown>, code: number) => {
    if (o.json) io.json({ ...report, upload });
    return code;
  };
  if (!o.json) io.print(line);
  if (o.noUpload || !url) {
    const reason = o.noUpload
      ? 'not uploaded (--no-upload)'
      : 'not uploaded: no --upload-url given (nor CALICO_DIAGS_UPLOAD_URL)';
    if (!o.json) io.print(reason);
    return finish({ skipped: reason }, DIAGS_EXIT.OK);
  }
  // The URL as shown anywhere (progress, result, JSON, errors): its password and signature values masked, and
  // scrubbed from whatever echoes them (a server's answer, an error message).
  const secrets = urlSecrets(url);
  const shown = maskUrl(url);
  const clean = (text: string) => scrubSecrets(maskUrl(text), secrets);
  if (new URL(url).protocol === 'http:') {
    io.error(`warning: uploading over plain http (--insecure): ${shown} and the archive travel unencrypted`);
  }
  let quarter = 0;
  try {
    const r = await upload(file, {
      url,
      method,
      // Big archives show how far they got, a quarter at a time; small ones go too fast to matter.
      onProgress: (sent, total) => {
        if (total < 1024 * 1024 || sent * 4 < (quarter + 1) * total) return;
        quarter = Math.floor((sent * 4) / total);
        io.progress(`  ${fmtBytes(sent)} of ${fmtBytes(total)} sent`);
      },
      ...(o.uploadTries !== undefined ? { tries: o.uploadTries } : {}),
      ...(o.uploadBackoffMs !== undefined ? { backoffMs: o.uploadBackoffMs } : {}),
      onAttempt: (a) => {
        quarter = 0;
        const next = a.retryInMs !== undefined ? `; next in ${(a.retryInMs / 1000).toFixed(1)} s` : '';
        io.progress(
          a.error === undefined
            ? `uploading ${fmtBytes(bytes)} to ${shown} (${method.toUpperCase()}, try ${a.attempt}/${a.tries})…`
            : `  try ${a.attempt} failed: ${clean(a.error)}${next}`,
        );
      },
    });
    const answered = clean(r.url);
    if (!o.json) io.print(`url: ${answered}`);
    const tries = cleanTries(r.tries, clean);
    return finish({ url: answered, status: r.status, attempts: r.attempts, tries }, DIAGS_EXIT.OK);
  } catch (e) {
    const msg = clean(e instanceof UploadError ? e.message : `upload failed: ${(e as Error).message}`);
    const retry = retryCommand(retryPrefix, file, shown, method, o.insecure === true);
    const fill = shown === url ? '' : ` (with the URL's ${REDACTED} values filled in)`;
    io.error(msg);
    io.error(`the archive is kept at ${file}; to retry the upload: ${retry}${fill}`);
    const tries = e instanceof UploadError ? { tries: cleanTries(e.tries, clean) } : {};
    return finish({ error: msg, retry, ...tries }, DIAGS_EXIT.UPLOAD_FAILED);
  }
}

const cleanTries = (tries: UploadTry[], clean: (t: string) => string): UploadTry[] =>
  tries.map((t) => (t.error === undefined ? t : { ...t, error: clean(t.error) }));
