import type { ServerResponse } from 'node:http';

/** The kinds of failure the proxy reports, and the status dockerd would use for each. */
export const ProxyErrorCode = {
  BAD_REQUEST: 400,
  NOT_FOUND: 404,
  TIMEOUT: 408,
  CONFLICT: 409,
  TOO_LARGE: 413,
  UPSTREAM: 502,
  INTERNAL: 500,
} as const;
export type ProxyErrorCode = keyof typeof ProxyErrorCode;

/** An error the docker CLI will print as it prints dockerd's own: `{"message": "..."}`. */
export class ProxyError extends Error {
  constructor(
    readonly code: ProxyErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ProxyError';
  }

  get status(): number {
    return ProxyErrorCode[this.code];
  }
}

/** Anything thrown becomes a ProxyError; unknown errors are INTERNAL and keep their stack. */
export function toProxyError(e: unknown): ProxyError {
  if (e instanceof ProxyError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const p = new ProxyError('INTERNAL', `calico: ${err.message}`, { cause: err });
  if (err.stack) p.stack = err.stack;
  return p;
}

export function sendDockerError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ message });
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  };
  // The rest of an oversize or stalled body is not read: this connection cannot carry another request.
  if (status === 413 || status === 408 || status === 503) headers.Connection = 'close';
  res.writeHead(status, headers);
  res.end(body);
}
