import { createRequire } from 'node:module';
import type { Datastore } from '@calico/datastore';
import { redactJsonText, redactText, scrubSecrets } from './redact.js';
import {
  SOURCES,
  SourceAbsent,
  SourceFailed,
  type HostDirs,
  type OutputFile,
  type Source,
  type SourceContext,
} from './sources.js';

const require = createRequire(import.meta.url);
export const TOOL = `@calico/diags ${(require('../package.json') as { version: string }).version}`;

/** One source's line in summary.json. */
export interface SourceResult {
  name: string;
  how: string;
  file: string;
  /** ok: collected; absent: its input does not exist here (not a failure); error: it failed, the rest went on. */
  status: 'ok' | 'absent' | 'error';
  durationMs: number;
  /** Bytes it put in the archive, after redaction. */
  bytes: number;
  /** For sources that write several files (logs). */
  files?: string[];
  error?: string;
  notes?: string[];
}

export interface HostSummary {
  kind: 'host';
  host: string;
  tool: string;
  createdAt: string;
  durationMs: number;
  dirs: HostDirs;
  docker: string;
  counts: { ok: number; absent: number; error: number };
  failed: string[];
  absent: string[];
  redaction: string;
  sources: SourceResult[];
}

export interface ArchiveEntry {
  name: string;
  data: Buffer;
}

/** A host's diags in memory: the files (summary.json first) and the summary itself. */
export interface Collection {
  host: string;
  createdAt: Date;
  entries: ArchiveEntry[];
  summary: HostSummary;
}

export interface CollectOptions {
  host: string;
  dirs: HostDirs;
  /** `docker -H` target; DOCKER_HOST or the default socket when absent. */
  docker?: string | undefined;
  datastore?: (() => Datastore) | undefined;
  sources?: readonly Source[];
  /** Sources run at once; they are mostly short commands waiting on the kernel. */
  concurrency?: number;
  /** Longest one source may take. */
  timeoutMs?: number;
  maxLogBytes?: number;
  /** Told as each source finishes (progress). */
  onSource?: (r: SourceResult) => void;
}

export const REDACTION_NOTE =
  'Secrets are masked as [redacted]: secret-looking flags (--etcd-key, --password…), NAME=value pairs and JSON fields whose name looks secret ' +
  '(PASSWORD, TOKEN, KEY, SECRET, CREDENTIAL…, case-insensitive), container Env values with such names, such values in the keyspace, ' +
  'URL passwords, the values of secret URL query parameters (sig, X-Amz-Signature, token, code…), ' +
  'Authorization headers and private keys (PEM, raw, escaped in JSON or base64); key files are left out; ' +
  'every value removed this way is also scrubbed from all other files.';

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * Collects every source on this host. A source that fails or is absent is recorded and the
 * rest is still collected: collect() itself does not fail on a source's account.
 */
export async function collect(o: CollectOptions): Promise<Collection> {
  const createdAt = new Date();
  const t0 = performance.now();
  const sources = o.sources ?? SOURCES;
  const ctx: SourceContext = {
    host: o.host,
    dirs: o.dirs,
    docker: o.docker ?? process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock',
    datastore: o.datastore,
    secrets: new Set(),
    timeoutMs: o.timeoutMs ?? 30_000,
    maxLogBytes: o.maxLogBytes ?? 32 * 1024 * 1024,
  };
  const results: { result: SourceResult; files: OutputFile[] }[] = new Array(sources.length);
  let next = 0;
  const worker = async () => {
    while (next < sources.length) {
      const i = next++;
      const s = sources[i]!;
      const r = await runSource(s, ctx);
      results[i] = r;
      o.onSource?.(r.result);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 4, sources.length) }, worker));

  // The last layer: whatever structured redaction found is removed from every other file too.
  const entries: ArchiveEntry[] = [];
  for (const r of results) {
    r.result.bytes = 0;
    for (const f of r.files) {
      const data = ctx.secrets.size ? Buffer.from(scrubSecrets(f.data.toString('utf8'), ctx.secrets)) : f.data;
      r.result.bytes += data.length;
      entries.push({ name: f.name, data });
    }
  }
  const list = results.map((r) => r.result);
  const summary: HostSummary = {
    kind: 'host',
    host: o.host,
    tool: TOOL,
    createdAt: createdAt.toISOString(),
    durationMs: Math.round(performance.now() - t0),
    dirs: o.dirs,
    docker: ctx.docker,
    counts: {
      ok: list.filter((r) => r.status === 'ok').length,
      absent: list.filter((r) => r.status === 'absent').length,
      error: list.filter((r) => r.status === 'error').length,
    },
    failed: list.filter((r) => r.status === 'error').map((r) => r.name),
    absent: list.filter((r) => r.status === 'absent').map((r) => r.name),
    redaction: REDACTION_NOTE,
    sources: list,
  };
  entries.unshift({ name: 'summary.json', data: Buffer.from(`${JSON.stringify(summary, null, 2)}\n`) });
  return { host: o.host, createdAt, entries, summary };
}

async function runSource(s: Source, ctx: SourceContext): Promise<{ result: SourceResult; files: OutputFile[] }> {
  const t = performance.now();
  const result: SourceResult = { name: s.name, how: s.how, file: s.file, status: 'ok', durationMs: 0, bytes: 0 };
  let raw: OutputFile[] = [];
  try {
    const out = await withTimeout(s.collect(ctx), ctx.timeoutMs + 1_000, s.name);
    if (typeof out === 'string' || Buffer.isBuffer(out)) raw = [{ name: s.file, data: Buffer.from(out) }];
    else {
      raw = out.files.map((f) => ({ name: `${s.file}${f.name}`, data: f.data }));
      if (out.notes?.length) result.notes = out.notes;
    }
  } catch (e) {
    result.status = e instanceof SourceAbsent ? 'absent' : 'error';
    result.error = redactText(errText(e));
    // A failed command's output up to the failure still helps (half an iptables dump is information).
    if (e instanceof SourceFailed && e.partial.length) raw = [{ name: s.file, data: e.partial }];
  }
  const files = raw.map((f) => ({ name: f.name, data: redactOutput(s, f.data, ctx) }));
  if (s.file.endsWith('/')) result.files = files.map((f) => f.name);
  result.bytes = files.reduce((n, f) => n + f.data.length, 0);
  result.durationMs = Math.round(performance.now() - t);
  return { result, files };
}

function redactOutput(s: Source, data: Buffer, ctx: SourceContext): Buffer {
  if (s.redact === 'self') return data;
  const text = data.toString('utf8');
  return Buffer.from(s.redact === 'json' ? redactJsonText(text, ctx.secrets) : redactText(text));
}
