import { mkdir, readFile, readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Agent as HttpsAgent } from 'node:https';
import axios from 'axios';
import type { ApiClientTls, Datastore } from '@calico/datastore';
import { decodeUrl, hostsPrefix, parseKey } from '@calico/keyspace';
import { runTool } from '@calico/proc';
import { TOOL } from './collect.js';

export interface ClusterHost {
  host: string;
  /** Its diags service, or null when the host is known but registered none. */
  url: string | null;
}

/** One host's line in the cluster summary. */
export interface HostFetchResult {
  host: string;
  url: string | null;
  /** ok: its folder is complete; error: it did not answer in time or its archive broke (a folder may hold what arrived); missing: no diags service registered. */
  status: 'ok' | 'error' | 'missing';
  durationMs: number;
  bytes: number;
  error?: string;
  /** Sources that failed on that host, from its own summary.json. */
  failedSources?: string[];
}

export interface ClusterSummary {
  kind: 'cluster';
  tool: string;
  createdAt: string;
  durationMs: number;
  counts: { ok: number; error: number; missing: number };
  /** Hosts whose diags are not (completely) here. */
  failed: string[];
  hosts: HostFetchResult[];
}

/** Every host under /calico/host/, with the diags URL it registered (if any). */
export async function discoverDiagsHosts(ds: Datastore): Promise<ClusterHost[]> {
  const hosts = new Map<string, string | null>();
  for (const kv of (await ds.getPrefix(hostsPrefix)).kvs) {
    const host = kv.key.slice(hostsPrefix.length).split('/')[0];
    if (!host) continue;
    if (!hosts.has(host)) hosts.set(host, null);
    const k = parseKey(kv.key);
    if (k.kind === 'diagsUrl') {
      const u = decodeUrl(kv.key, kv.value);
      if (u.ok) hosts.set(host, u.value);
    }
  }
  return [...hosts].sort(([a], [b]) => a.localeCompare(b)).map(([host, url]) => ({ host, url }));
}

/** 256 MiB: a host's archive is text and compresses well; a real one is a few MB (logs are capped at 32 MiB each). */
export const DEFAULT_MAX_HOST_BYTES = 256 * 1024 * 1024;
/** Unpacked, the tar may be this many times the archive's bound: text compresses 5–10×, a gzip bomb far more. */
export const UNPACKED_FACTOR = 8;

class OverBound extends Error {}

/** Passes bytes through, counting them, and fails once more than max have passed. */
function bounded(max: number, what: string, onBytes?: (n: number) => void): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      n += chunk.length;
      onBytes?.(n);
      if (n > max) cb(new OverBound(`${what} is over ${max} bytes (--max-host-bytes); what arrived is left out`));
      else cb(null, chunk);
    },
  });
}

/** A host name as a folder name: never "." or "..". */
export const hostFolder = (host: string) => (/^\.+$/.test(host) ? host.replace(/\./g, '_') : host);

export interface FetchOptions {
  /** Each host's folder is made under this directory. */
  workDir: string;
  /** Longest one host may take, collection and transfer together. */
  timeoutMs: number;
  /** Hosts fetched at once. */
  concurrency?: number;
  /** Largest archive taken from one host (DEFAULT_MAX_HOST_BYTES); unpacked, UNPACKED_FACTOR times that. */
  maxBytes?: number;
  /** The cluster API token, sent to every host's diags service. */
  apiToken: string | undefined;
  /** For https diags services: the CA that verifies them, and a client certificate of theirs. */
  tls?: ApiClientTls | undefined;
  onHost?: (r: HostFetchResult) => void;
}

/**
 * Fetches every host's archive (GET <url>/diags) concurrently, each into its own folder under
 * workDir. A host that does not answer, answers an error or times out is recorded; the others are
 * still delivered.
 */
export async function fetchCluster(hosts: ClusterHost[], o: FetchOptions): Promise<ClusterSummary> {
  const t0 = performance.now();
  const createdAt = new Date();
  const results: HostFetchResult[] = new Array(hosts.length);
  let next = 0;
  const httpsAgent = new HttpsAgent({ ...o.tls });
  const worker = async () => {
    while (next < hosts.length) {
      const i = next++;
      const r = await fetchHost(hosts[i]!, o, httpsAgent);
      results[i] = r;
      o.onHost?.(r);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 16, hosts.length) }, worker));
  } finally {
    httpsAgent.destroy();
  }
  const by = (s: HostFetchResult['status']) => results.filter((r) => r.status === s).length;
  return {
    kind: 'cluster',
    tool: TOOL,
    createdAt: createdAt.toISOString(),
    durationMs: Math.round(performance.now() - t0),
    counts: { ok: by('ok'), error: by('error'), missing: by('missing') },
    failed: results.filter((r) => r.status !== 'ok').map((r) => r.host),
    hosts: results,
  };
}

async function fetchHost(h: ClusterHost, o: FetchOptions, httpsAgent: HttpsAgent): Promise<HostFetchResult> {
  const t = performance.now();
  const done = (status: HostFetchResult['status'], bytes: number, error?: string): HostFetchResult => ({
    host: h.host,
    url: h.url,
    status,
    durationMs: Math.round(performance.now() - t),
    bytes,
    ...(error ? { error } : {}),
  });
  if (!h.url) return done('missing', 0, `no diags service registered (/calico/host/${h.host}/diags_url is absent)`);
  const dir = join(o.workDir, hostFolder(h.host));
  await mkdir(dir, { recursive: true });
  const signal = AbortSignal.timeout(o.timeoutMs);
  let bytes = 0;
  try {
    // Host to host on the cluster network: never through an HTTP proxy from the environment.
    const res = await axios.get(new URL('diags', h.url).href, {
      responseType: 'stream',
      signal,
      proxy: false,
      validateStatus: () => true,
      maxRedirects: 0,
      httpsAgent,
      headers: o.apiToken === undefined ? {} : { authorization: `Bearer ${o.apiToken}` },
    });
    const body = res.data as NodeJS.ReadableStream;
    if (res.status !== 200) {
      let text = '';
      for await (const c of body) text += c.toString();
      throw new Error(`HTTP ${res.status}: ${text.trim().slice(0, 300)}`);
    }
    // Debian's tar unpacks it: it refuses absolute and ".." paths, and --strip-components drops
    // the host's own top folder so the host's files sit straight in <host>/. We gunzip, so the
    // unpacked size is bounded too.
    const tarArgv = ['tar', '-xf', '-', '-C', dir, '--strip-components=1', '--no-same-owner', '--no-same-permissions'];
    const max = o.maxBytes ?? DEFAULT_MAX_HOST_BYTES;
    const count = bounded(max, 'the archive', (n) => (bytes = n));
    const unpacked = bounded(max * UNPACKED_FACTOR, 'the unpacked archive');
    // A failed download, bad gzip or a bound passed fails `unpacked`: the runner kills tar and
    // reports it as the input's failure.
    void pipeline(body, count, createGunzip(), unpacked).catch(() => undefined);
    const tar = await runTool(tarArgv, { input: unpacked, ignoreStdout: true, timeoutMs: o.timeoutMs });
    if (tar.error?.kind === 'input') {
      const e = tar.error.cause;
      // What arrived is a fraction of a host that would not fit: none of it goes into the archive.
      if (e instanceof OverBound) await rm(dir, { recursive: true, force: true });
      const z = (e as { code?: unknown }).code;
      if (typeof z === 'string' && z.startsWith('Z_')) {
        throw new Error(`the archive did not unpack (gzip: ${(e as Error).message})`);
      }
      throw e;
    }
    if (tar.error?.kind === 'exit') {
      throw new Error(`the archive did not unpack (tar exited ${tar.code}: ${tar.stderr.trim().slice(0, 300)})`);
    }
    if (tar.error) throw new Error(`the archive did not unpack (${tar.error.message})`);
    const r = done('ok', bytes);
    try {
      r.failedSources = (JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8')) as { failed: string[] }).failed;
    } catch {
      r.failedSources = ['summary.json (missing or unreadable)'];
    }
    return r;
  } catch (e) {
    await rmdir(dir).catch(() => undefined); // only if nothing arrived
    const msg = signal.aborted
      ? `no complete answer within ${Math.round(o.timeoutMs / 1000)} s`
      : axios.isAxiosError(e)
        ? `${e.code ?? ''} ${e.message}`.trim()
        : (e as Error).message;
    return done('error', bytes, msg);
  }
}

/** Lists the host folders that hold something, for the archive. */
export async function hostFolders(workDir: string): Promise<{ path: string; as: string }[]> {
  const out: { path: string; as: string }[] = [];
  for (const d of await readdir(workDir, { withFileTypes: true }))
    if (d.isDirectory()) out.push({ path: join(workDir, d.name), as: d.name });
  return out;
}
