import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import axios, { type AxiosResponse } from 'axios';

export type UploadMethod = 'put' | 'post';

export interface UploadOptions {
  url: string;
  method?: UploadMethod;
  /** Attempts in all (4). */
  tries?: number;
  /** Pause before the second attempt; doubles each time (500 ms → 0.5, 1, 2 s). */
  backoffMs?: number;
  /** Longest one attempt may take, body included. */
  timeoutMs?: number;
  /** Progress: each attempt's start and failure. */
  onAttempt?: (e: { attempt: number; tries: number; error?: string; retryInMs?: number }) => void;
  /** Bytes sent so far in the current attempt. */
  onProgress?: (sent: number, total: number) => void;
}

/** One attempt as it happened: when it started, how it failed and how long it waited before the next. */
export interface UploadTry {
  attempt: number;
  startedAt: string;
  error?: string;
  retryInMs?: number;
}

export interface UploadResult {
  /** Where the diags can be fetched: the server's Location, a URL in its answer, else the upload URL. */
  url: string;
  status: number;
  attempts: number;
  bytes: number;
  tries: UploadTry[];
}

export class UploadError extends Error {
  override name = 'UploadError';
  constructor(
    message: string,
    readonly attempts: number,
    readonly status?: number,
    readonly tries: UploadTry[] = [],
  ) {
    super(message);
  }
}

/** The delay before attempt n+1 (n from 1): exponential, so a struggling server gets room. */
export function backoffDelay(attempt: number, baseMs: number): number {
  return baseMs * 2 ** (attempt - 1);
}

/** Server errors, throttling and timeouts may pass; any other 4xx will answer the same again. */
export function isRetryable(status: number | undefined): boolean {
  return status === undefined || status >= 500 || status === 408 || status === 429;
}

/**
 * The URL to print after an upload: the Location header (relative ones resolved against the
 * upload URL), else a "url"/"location"/"link" field of a JSON answer, else the first http(s) URL
 * in a text answer, else the upload URL itself.
 */
export function answeredUrl(uploadUrl: string, headers: Record<string, unknown>, body: string): string {
  const loc = headers.location;
  if (typeof loc === 'string' && loc) {
    try {
      return new URL(loc, uploadUrl).href;
    } catch {
      // not a URL: look further
    }
  }
  const text = body.trim().slice(0, 64 * 1024);
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    for (const k of ['url', 'location', 'link', 'href'])
      if (typeof j[k] === 'string' && /^https?:\/\//.test(j[k])) return j[k];
  } catch {
    // not JSON
  }
  return /https?:\/\/[^\s"'<>]+/.exec(text)?.[0] ?? uploadUrl;
}

/** Uploads a file with PUT or POST (the raw .tar.gz as the body), retrying with exponential backoff. */
export async function upload(file: string, o: UploadOptions): Promise<UploadResult> {
  const tries = o.tries ?? 4;
  const method = o.method ?? 'put';
  const { size } = await stat(file);
  let last = '';
  let lastStatus: number | undefined;
  const record: UploadTry[] = [];
  for (let attempt = 1; attempt <= tries; attempt++) {
    const thisTry: UploadTry = { attempt, startedAt: new Date().toISOString() };
    record.push(thisTry);
    o.onAttempt?.({ attempt, tries });
    let res: AxiosResponse<string> | undefined;
    try {
      res = await axios.request<string>({
        url: o.url,
        method,
        // A fresh stream per attempt: a stream that was half sent cannot be rewound.
        data: createReadStream(file),
        headers: {
          'content-type': 'application/gzip',
          'content-length': String(size),
          'content-disposition': `attachment; filename="${basename(file)}"`,
        },
        maxBodyLength: Infinity,
        maxContentLength: 1024 * 1024,
        // A redirect would need the body sent again; we report the Location instead of following it.
        maxRedirects: 0,
        responseType: 'text',
        timeout: o.timeoutMs ?? 120_000,
        validateStatus: () => true,
        ...(o.onProgress ? { onUploadProgress: (p: { loaded: number }) => o.onProgress!(p.loaded, size) } : {}),
      });
    } catch (e) {
      last = (e as Error).message || String(e);
      lastStatus = undefined;
    }
    if (res) {
      const body = typeof res.data === 'string' ? res.data : JSON.stringify(res.data);
      if (res.status >= 200 && res.status < 400) {
        const url = answeredUrl(o.url, res.headers as Record<string, unknown>, body);
        return { url, status: res.status, attempts: attempt, bytes: size, tries: record };
      }
      lastStatus = res.status;
      last = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${body.trim() ? `: ${body.trim().slice(0, 200)}` : ''}`;
      if (!isRetryable(res.status)) {
        thisTry.error = last;
        throw new UploadError(`upload refused: ${last}`, attempt, res.status, record);
      }
    }
    thisTry.error = last;
    if (attempt < tries) {
      const delay = backoffDelay(attempt, o.backoffMs ?? 500);
      thisTry.retryInMs = delay;
      o.onAttempt?.({ attempt, tries, error: last, retryInMs: delay });
      await new Promise((r) => setTimeout(r, delay));
    } else o.onAttempt?.({ attempt, tries, error: last });
  }
  throw new UploadError(`upload failed after ${tries} tries: ${last}`, tries, lastStatus, record);
}
