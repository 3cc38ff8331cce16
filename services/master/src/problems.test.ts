import { describe, expect, it } from 'vitest';
import { buildView } from '@calico/client';
import type { SyncBatch, SyncUpdate } from '@calico/datastore';
import { fuzzEntries } from '@calico/keyspace';
import { BAD_KEY_MESSAGE, ProblemReporter } from './problems.js';

/** A logger that keeps what it was told. */
function recorder() {
  const lines: { level: string; ctx: { etcdKey: string; errors?: string[] }; msg: string }[] = [];
  const at = (level: string) => (ctx: { etcdKey: string; errors?: string[] }, msg: string) =>
    void lines.push({ level, ctx, msg });
  return { lines, logger: { warn: at('warn'), info: at('info'), error: at('error') } };
}

const put = (key: string, value: string, revision = 1): SyncUpdate => ({ type: 'put', key, value, revision });
const del = (key: string, revision = 1): SyncUpdate => ({ type: 'delete', key, revision });
const batch = (kind: SyncBatch['kind'], updates: SyncUpdate[]): SyncBatch => ({ kind, revision: 1, updates });

describe('ProblemReporter: each bad key once', () => {
  it('reports a bad key when first seen, not again on repeats or resyncs, and once more when fixed or deleted', () => {
    const { lines, logger } = recorder();
    const p = new ProblemReporter(logger);
    const rule = '/calico/network/group/g1/rule/inbound/1';
    const typo = '/calico/host/h1/bird-ip';
    const good = put('/calico/host/h1/bird_ip', '198.18.0.11');
    p.apply(batch('snapshot', [put(rule, '{"cidr":"300.0.0.0/8"}'), put(typo, '198.18.0.11'), good]));
    // A safety-net resync, a reconnect's resync and a repeated write: nothing new to say.
    p.apply(batch('resync', [put(rule, '{"cidr":"300.0.0.0/8"}', 2)]));
    p.apply(batch('watch', [put(typo, '198.18.0.11', 3)]));
    expect(lines.map((l) => [l.level, l.ctx.etcdKey])).toEqual([
      ['warn', rule],
      ['warn', typo],
    ]);
    expect(lines[0]).toEqual({
      level: 'warn',
      ctx: { etcdKey: rule, errors: [`${rule}: cidr "300.0.0.0/8" is not valid: octet "300" is greater than 255`] },
      msg: BAD_KEY_MESSAGE,
    });
    expect(p.size).toBe(2);
    // Wrong in another way: said again, with the new reason. Then fixed, then deleted.
    p.apply(batch('watch', [put(rule, '{"cidr":"10.0.0.0/33"}', 4)]));
    p.apply(batch('watch', [put(rule, '{"cidr":"10.0.0.0/8"}', 5), del(typo, 5)]));
    expect(lines.slice(2).map((l) => [l.level, l.msg])).toEqual([
      ['warn', BAD_KEY_MESSAGE],
      ['info', 'bad key fixed: it decodes now and is used'],
      ['info', 'bad key deleted'],
    ]);
    expect(p.size).toBe(0);
    // The control: deleting or rewriting a good key says nothing.
    p.apply(batch('watch', [del('/calico/host/h1/bird_ip', 6), put(rule, '{"cidr":"10.0.0.0/8"}', 6)]));
    expect(lines).toHaveLength(5);
  });

  // About 2 s alone, more beside the other packages on two cores: a ceiling of its own.
  it('10,000 fuzzed keys: one line each, the same keys GET /v1/problems lists, and a second pass adds none', () => {
    const entries = fuzzEntries({ seed: 7, count: 10_000, hugeBytes: 2 * 1024 * 1024 });
    const { lines, logger } = recorder();
    const p = new ProblemReporter(logger);
    const updates = entries.map((e, i) => put(e.key, e.value, i + 2));
    p.apply(batch('snapshot', updates.slice(0, 5_000)));
    p.apply(batch('watch', updates.slice(5_000)));
    p.apply(batch('resync', updates));
    const perKey = new Map<string, number>();
    for (const l of lines) perKey.set(l.ctx.etcdKey, (perKey.get(l.ctx.etcdKey) ?? 0) + 1);
    expect(lines.every((l) => l.level === 'warn')).toBe(true);
    expect(perKey.size).toBe(10_000);
    expect([...perKey.values()].every((n) => n === 1)).toBe(true);
    // Short lines whatever the value: a huge value is quoted in part, a long list counted.
    expect(Math.max(...lines.map((l) => JSON.stringify(l.ctx).length))).toBeLessThan(16 * 1024);
    const view = buildView(entries, 1);
    expect(view.problems.map((x) => x.key).sort()).toEqual([...perKey.keys()].sort());
    const said = new Map(lines.map((l) => [l.ctx.etcdKey, l.ctx.errors]));
    expect(view.problems.filter((x) => JSON.stringify(x.errors) !== JSON.stringify(said.get(x.key)))).toEqual([]);
  }, 60_000);
});
