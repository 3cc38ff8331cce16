import type { Lease } from 'etcd3';
import type { Datastore } from './datastore.js';
import type { Logger } from './logger.js';

export interface LeaseKeeperOptions {
  ttlSeconds: number;
  logger?: Logger;
  /** First retry delay after a failed grant; doubles up to 5 s. */
  retryMs?: number;
  /** Told when the lease is lost and when it is held again (with its keys re-put). */
  onStatus?: (held: boolean, reason: string) => void;
}

export class LeaseConflictError extends Error {
  constructor(
    readonly key: string,
    readonly existing: string,
  ) {
    super(`${key} is already held by someone else (value ${JSON.stringify(existing)})`);
    this.name = 'LeaseConflictError';
  }
}

interface Entry {
  value: string;
  exclusive: boolean;
}

/**
 * Keys that live as long as this process does: bound to one lease, kept alive, and put again
 * under a fresh lease when the old one is lost (expired while etcd was away, or revoked).
 */
export class LeaseKeeper {
  private lease: Lease | undefined;
  private readonly entries = new Map<string, Entry>();
  private stopped = false;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private held = false;
  private regrant: Promise<void> | undefined;

  constructor(
    private readonly ds: Datastore,
    private readonly opts: LeaseKeeperOptions,
  ) {}

  get isHeld(): boolean {
    return this.held;
  }

  async leaseId(): Promise<string> {
    if (!this.lease) throw new Error('lease not granted yet');
    return this.lease.grant();
  }

  /** Grants the lease. Call before put()/claim(). */
  async start(): Promise<void> {
    await this.grant();
    this.setHeld(true, 'granted');
  }

  /** Puts key under the lease, now and after every re-grant. */
  async put(key: string, value: string): Promise<void> {
    this.entries.set(key, { value, exclusive: false });
    await this.writeEntry(key, { value, exclusive: false });
  }

  /**
   * Puts key under the lease only if nobody holds it (or it already has our value); throws
   * LeaseConflictError otherwise. Used for names that must be unique among live processes.
   */
  async claim(key: string, value: string): Promise<void> {
    await this.writeEntry(key, { value, exclusive: true });
    this.entries.set(key, { value, exclusive: true });
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
    await this.ds.delete(key);
  }

  /** Revokes the lease (its keys go at once) unless keepKeys, which lets them expire instead. */
  async stop(opts: { keepKeys?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const l = this.lease;
    this.lease = undefined;
    if (!l) return;
    l.removeAllListeners();
    l.on('lost', () => undefined);
    if (opts.keepKeys) l.release();
    else await l.revoke().catch(() => undefined);
  }

  private async writeEntry(key: string, e: Entry): Promise<void> {
    const id = await this.leaseId();
    if (!e.exclusive) {
      await this.ds.client.put(key).value(e.value).lease(id).exec();
      return;
    }
    const r = await this.ds.createIfAbsent(key, e.value, id);
    if (r.created) return;
    if (r.existing === e.value) {
      // Ours from before (same value): move it onto the current lease.
      await this.ds.client.put(key).value(e.value).lease(id).exec();
      return;
    }
    throw new LeaseConflictError(key, r.existing);
  }

  private async grant(): Promise<void> {
    const lease = this.ds.client.lease(this.opts.ttlSeconds, { autoKeepAlive: true });
    lease.on('lost', (err) => this.onLost(lease, err));
    try {
      await lease.grant();
    } catch (e) {
      lease.removeAllListeners();
      lease.on('lost', () => undefined);
      lease.release();
      throw e;
    }
    this.lease = lease;
    this.failures = 0;
  }

  private setHeld(held: boolean, reason: string): void {
    if (held === this.held) return;
    this.held = held;
    try {
      this.opts.onStatus?.(held, reason);
    } catch (e) {
      this.ds.logger.error({ err: String(e) }, 'lease status handler threw; carrying on');
    }
  }

  private onLost(lease: Lease, err: Error): void {
    if (this.stopped || lease !== this.lease) return;
    const log = this.opts.logger ?? this.ds.logger;
    log.warn(
      { err: err.message, keys: [...this.entries.keys()] },
      'lease lost; granting a new one and putting its keys again',
    );
    this.setHeld(false, `lost: ${err.message}`);
    this.lease = undefined;
    lease.removeAllListeners();
    lease.on('lost', () => undefined);
    this.regrant ??= this.retryGrant().finally(() => (this.regrant = undefined));
  }

  private async retryGrant(): Promise<void> {
    const log = this.opts.logger ?? this.ds.logger;
    while (!this.stopped) {
      try {
        await this.grant();
        for (const [key, e] of this.entries) await this.writeEntry(key, e);
        // Held again only once every key is back, so that "held" means "all keys present".
        this.setHeld(true, 'granted again');
        log.info({ keys: [...this.entries.keys()] }, 'lease granted again; keys restored');
        return;
      } catch (e) {
        if (e instanceof LeaseConflictError) {
          log.error({ key: e.key, existing: e.existing }, `${e.message}; not taking it back`);
          this.setHeld(false, e.message);
          return;
        }
        const delay = Math.min((this.opts.retryMs ?? 250) * 2 ** this.failures++, 2_000);
        log.warn({ err: String(e), retryInMs: delay }, `lease grant failed; retrying in ${delay} ms`);
        await new Promise((r) => {
          this.timer = setTimeout(r, delay);
        });
      }
    }
  }
}
