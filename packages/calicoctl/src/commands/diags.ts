import { runDiags, DiagsUsageError } from '@calico/diags';
import { UsageError, type Context } from '../context.js';
import { hostDirs } from '../paths.js';

export const DIAGS_USAGE = `usage: calicoctl diags [--output=<file|dir>] [--upload-url=<url>] [--upload-method=put|post] [--no-upload]
                      [--insecure] [--cluster [--host-timeout=<s>] [--max-host-bytes=<n>]] [--upload-file=<archive>]
                      [--run-dir=<dir>] [--log-dir=<dir>] [--state-dir=<dir>] [--docker=<url>]`;

/** The flags of `calicoctl diags`, as cli.ts parses them (kebab-case there, camelCase here). */
export interface DiagsFlags {
  /** --output: the .tar.gz, or a directory for it (default: the system's temp directory). */
  output?: string | undefined;
  /** --upload-url (else CALICO_DIAGS_UPLOAD_URL); without one, nothing is uploaded. */
  uploadUrl?: string | undefined;
  /** --upload-method=put|post (put). */
  uploadMethod?: string | undefined;
  /** --no-upload */
  noUpload?: boolean | undefined;
  /** --upload-file: upload this archive and collect nothing (what a failed upload says to run). */
  uploadFile?: string | undefined;
  /** --cluster: every host's diags service, one archive with a folder per host. */
  cluster?: boolean | undefined;
  /** --host-timeout: seconds one host may take in cluster mode (60). */
  hostTimeout?: string | undefined;
  /** --max-host-bytes: the largest archive taken from one host in cluster mode (256M). */
  maxHostBytes?: string | undefined;
  /** --insecure: allow an upload over plain http. */
  insecure?: boolean | undefined;
  /** --docker: the Docker API to ask (DOCKER_HOST, else unix:///var/run/docker.sock). */
  docker?: string | undefined;
  runDir?: string | undefined;
  logDir?: string | undefined;
  stateDir?: string | undefined;
}

/**
 * calicoctl diags: collect this host's diags (or, with --cluster, every host's) into one .tar.gz,
 * print its path, upload it and print the URL. Exit codes: 0 archive written (and uploaded when
 * asked); 1 it could not be written; 2 usage; 6 the upload failed (the archive is kept and the
 * retry command printed). The work is @calico/diags's, shared with `calico-diags collect`.
 */
export async function diags(ctx: Context, args: string[], f: DiagsFlags): Promise<number> {
  if (args.length) throw new UsageError(DIAGS_USAGE);
  const host = ctx.hostname;
  try {
    return await runDiags(
      {
        host,
        dirs: hostDirs(host, { runDir: f.runDir, logDir: f.logDir, stateDir: f.stateDir }),
        docker: f.docker ?? ctx.env.DOCKER_HOST,
        // Lazy: a bad etcd configuration fails the etcd sources alone, not the whole collection.
        datastore: () => ctx.ds,
        output: f.output,
        uploadUrl: f.uploadUrl,
        uploadMethod: f.uploadMethod,
        noUpload: f.noUpload,
        uploadFile: f.uploadFile,
        cluster: f.cluster,
        hostTimeout: f.hostTimeout,
        maxHostBytes: f.maxHostBytes,
        insecure: f.insecure,
        apiTokenFile: ctx.apiTokenFile,
        apiCa: ctx.flags.apiCa,
        apiCert: ctx.flags.apiCert,
        apiKey: ctx.flags.apiKey,
        json: ctx.flags.json,
        env: ctx.env,
      },
      {
        print: (l) => ctx.print(l),
        json: (v) => ctx.json(v),
        error: (l) => ctx.err.write(`calicoctl: ${l}\n`),
        progress: (l) => ctx.progress(l),
      },
    );
  } catch (e) {
    if (e instanceof DiagsUsageError) throw new UsageError(`${e.message}\n${DIAGS_USAGE}`);
    throw e;
  }
}
