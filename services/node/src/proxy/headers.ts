import type { OutgoingHttpHeaders } from 'node:http';

/** Hop-by-hop headers belong to one connection; the proxy manages its own. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

/** The end-to-end headers of a raw header list (as node:http gives it), names as sent. */
export function endToEndHeaders(raw: string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (HOP_BY_HOP.has(name.toLowerCase())) continue;
    const prev = out[name];
    const v = raw[i + 1]!;
    out[name] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
  }
  return out;
}

/** A JSON error in dockerd's shape as raw bytes, for a socket no longer under node:http. */
export function rawDockerError(status: number, reason: string, message: string): string {
  const body = JSON.stringify({ message });
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}
