/** What keeps slow, idle or many clients from pinning the proxy. */
export interface ProxyLimits {
  /** A request head (line and headers) must arrive whole within this, from its first byte (ms). */
  headerTimeoutMs: number;
  /** The longest silence from the client while the proxy reads a request body (ms). */
  bodyIdleTimeoutMs: number;
  /** A kept-alive connection with no request in progress is closed after this (ms). */
  idleTimeoutMs: number;
  /** Client connections open at once, over every listener; beyond it new ones get a 503. */
  maxConnections: number;
}

/**
 * The docker CLI sends each request whole at once and opens a new connection when the proxy
 * closed an idle one, so these cost it nothing; streams (`logs -f`, `events`, `attach`, `wait`)
 * are answers or hijacked connections, and no timeout applies to those.
 */
export const DEFAULT_PROXY_LIMITS: ProxyLimits = {
  headerTimeoutMs: 10_000,
  bodyIdleTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
  maxConnections: 1024,
};

/** Events that may come by the thousand under attack: the first logged at once, then one line per interval. */
export class Throttled {
  private last = -Infinity;
  private count = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one event; returns how many happened since the last line when a line is due, else undefined. */
  note(): number | undefined {
    this.count++;
    const t = this.now();
    if (t - this.last < this.intervalMs) return undefined;
    const n = this.count;
    this.last = t;
    this.count = 0;
    return n;
  }
}
