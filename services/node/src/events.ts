import type Docker from 'dockerode';
import type { Logger } from '@calico/log';
import type { Workloads } from './workloads.js';

interface DockerEvent {
  Type?: string;
  Action?: string;
  status?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  time?: number;
  timeNano?: number;
}

/**
 * Follows dockerd's container events so that what happens outside the proxy (a restart
 * policy, `docker kill` straight to dockerd, `rm`, a daemon restart) gets the same lifecycle.
 * The stream dies with dockerd; it is reopened with `since` the last event seen, so nothing
 * that happened in between is missed.
 */
export class EventsWatcher {
  private stream: NodeJS.ReadableStream | undefined;
  private stopped = false;
  private lastNano: bigint | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private buf = '';
  private readonly connected: Promise<void>;
  private markConnected!: () => void;

  constructor(
    private readonly docker: Docker,
    private readonly workloads: Workloads,
    private readonly logger: Logger,
  ) {
    this.connected = new Promise((r) => (this.markConnected = r));
  }

  /** Resolves once the first stream is open. */
  start(): Promise<void> {
    void this.open();
    return this.connected;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const s = this.stream as unknown as { destroy?: () => void } | undefined;
    s?.destroy?.();
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    const opts: Record<string, unknown> = { filters: { type: ['container'], event: ['start', 'die', 'destroy'] } };
    if (this.lastNano !== undefined) {
      // `since` takes seconds with a nanosecond fraction.
      const s = this.lastNano / 1_000_000_000n;
      const ns = this.lastNano % 1_000_000_000n;
      opts.since = `${s}.${ns.toString().padStart(9, '0')}`;
    }
    try {
      // No timeout on this request: an events stream is quiet for as long as nothing happens.
      const stream = (await this.docker.getEvents(opts)) as NodeJS.ReadableStream;
      this.stream = stream;
      this.failures = 0;
      this.buf = '';
      this.markConnected();
      this.logger.info({ since: opts.since ?? 'now' }, 'following docker events');
      stream.on('data', (c: Buffer) => this.onData(c));
      const reopen = (why: string) => () => {
        if (this.stream !== stream || this.stopped) return;
        this.stream = undefined;
        this.retry(why);
      };
      stream.on('end', reopen('events stream ended'));
      stream.on('close', reopen('events stream closed'));
      stream.on('error', (e: Error) => reopen(`events stream failed: ${e.message}`)());
    } catch (e) {
      this.retry(`cannot open the events stream: ${(e as Error).message}`);
    }
  }

  private retry(why: string): void {
    if (this.stopped) return;
    const delay = Math.min(200 * 2 ** this.failures++, 5_000);
    this.logger.warn({ retryInMs: delay }, `${why}; reopening it in ${delay} ms from the last event seen`);
    this.timer = setTimeout(() => void this.open(), delay);
  }

  /** A chunk may hold several events or part of one: split on newlines and keep the rest. */
  private onData(chunk: Buffer): void {
    this.buf += chunk.toString('utf8');
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let ev: DockerEvent;
      try {
        ev = JSON.parse(line) as DockerEvent;
      } catch {
        this.logger.warn({ line: line.slice(0, 200) }, 'unreadable docker event skipped');
        continue;
      }
      if (ev.timeNano !== undefined) this.lastNano = BigInt(ev.timeNano);
      this.handle(ev);
    }
  }

  private handle(ev: DockerEvent): void {
    const id = ev.Actor?.ID ?? ev.id;
    const action = ev.Action ?? ev.status;
    if (!id || ev.Type !== 'container') return;
    const attrs = ev.Actor?.Attributes;
    // Events carry the container's labels: other hosts' and plain containers are not ours.
    if (!this.workloads.owns(attrs)) return;
    const work =
      action === 'start'
        ? this.workloads.ensureRunning(id)
        : action === 'die'
          ? this.workloads.stopped(id, attrs)
          : action === 'destroy'
            ? this.workloads.removed(id, attrs)
            : undefined;
    work?.catch((e: unknown) => {
      this.logger.error(
        { container: id.slice(0, 12), action, err: String(e) },
        'handling a docker event failed; the next event or a node restart will try again',
      );
    });
  }
}
