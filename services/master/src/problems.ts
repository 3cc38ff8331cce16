/**
 * The master's word on bad keys, in its log: each key under /calico/ that no service uses (its
 * value does not decode, its host segment is not a host name, or it has no layout) is reported
 * once, when the master first sees it, again only if it goes wrong in another way, and once
 * more when it is fixed or deleted. A resync or a repeated value says nothing new, so a
 * keyspace full of bad keys is one line each, not one per resync. One decode per update;
 * GET /v1/problems lists the same keys, in the same words, from the master's view.
 */
import { keyProblems } from '@calico/client';
import type { SyncBatch } from '@calico/datastore';

/** What the reporter logs through (a pino Logger is one). */
export interface ProblemLog {
  warn(ctx: { etcdKey: string; errors: string[] }, msg: string): void;
  info(ctx: { etcdKey: string }, msg: string): void;
  error(ctx: { etcdKey: string; err: unknown }, msg: string): void;
}

export const BAD_KEY_MESSAGE =
  'key ignored by every service: it does not decode, its host segment is not a host name, or it has no layout; ' +
  'GET /v1/problems lists it until it is fixed or deleted';

export class ProblemReporter {
  /** Bad key → its errors as reported (joined): what has been said, so it is not said again. */
  private readonly reported = new Map<string, string>();

  constructor(private readonly logger: ProblemLog) {}

  /** Bad keys known now. */
  get size(): number {
    return this.reported.size;
  }

  /** Takes one syncer batch (snapshot, watch or resync); never throws, so the master's sync never stalls on it. */
  apply(batch: SyncBatch): void {
    for (const u of batch.updates) {
      try {
        this.update(u.key, u.type === 'put' ? u.value : undefined);
      } catch (e) {
        const msg = 'checking a key failed (a bug); it is not reported, the master goes on';
        this.logger.error({ etcdKey: u.key, err: (e as Error).stack }, msg);
      }
    }
  }

  private update(key: string, value: string | undefined): void {
    const errors = value === undefined ? undefined : keyProblems(key, value);
    const before = this.reported.get(key);
    if (errors !== undefined) {
      const said = errors.join('\n');
      if (before === said) return;
      this.reported.set(key, said);
      this.logger.warn({ etcdKey: key, errors }, BAD_KEY_MESSAGE);
      return;
    }
    if (before === undefined) return;
    this.reported.delete(key);
    const what = value === undefined ? 'bad key deleted' : 'bad key fixed: it decodes now and is used';
    this.logger.info({ etcdKey: key }, what);
  }
}
