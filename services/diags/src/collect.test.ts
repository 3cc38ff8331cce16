import { describe, expect, it } from 'vitest';
import { collect, type SourceResult } from './collect.js';
import { SourceAbsent, SourceFailed, type Source } from './sources.js';

const dirs = { run: '/nonexistent/run', log: '/nonexistent/log', state: '/nonexistent/state' };
const src = (name: string, file: string, collectFn: Source['collect'], redact: Source['redact'] = 'text'): Source => ({
  name,
  how: `fake ${name}`,
  file,
  redact,
  collect: collectFn,
});

// A table of fake sources covering every outcome a real one can have.
const SOURCES: Source[] = [
  src('plain', 'a/plain.txt', async () => 'hello\n'),
  src('buffer', 'a/buffer.txt', async () => Buffer.from('bytes\n')),
  src('partial', 'a/partial.txt', async () => {
    throw new SourceFailed('iptables-save exited 1: broken', Buffer.from('*filter\n'));
  }),
  src('failed', 'a/failed.txt', async () => {
    throw new Error('birdc: connection refused; url https://u:pw@host/');
  }),
  src(
    'absent',
    'a/absent.json',
    async () => {
      throw new SourceAbsent('/run/agent-status.json does not exist');
    },
    'json',
  ),
  src('slow', 'a/slow.txt', () => new Promise(() => undefined)),
  src(
    'inspect',
    'docker/inspect.json',
    async () => JSON.stringify([{ Config: { Env: ['DB_PASSWORD=hunter2', 'CALICO_IP=198.19.0.2'] } }]),
    'json',
  ),
  src('logs', 'logs/', async () => ({
    files: [
      { name: 'node.log', data: Buffer.from('created with env DB hunter2\n') },
      { name: 'sub/bird.log', data: Buffer.from('up\n') },
    ],
    notes: ['big.log: only the last 10 of 20 bytes'],
  })),
  src('self', 'etcd/calico.json', async () => '{"password":"kept: the source redacts itself"}', 'self'),
];

describe('collect', () => {
  it('records every source in summary.json, keeps going past failures, and redacts', async () => {
    const seen: SourceResult[] = [];
    const c = await collect({
      host: 'h1',
      dirs,
      docker: 'unix:///nonexistent.sock',
      sources: SOURCES,
      timeoutMs: 50,
      onSource: (r) => seen.push(r),
    });
    const files = Object.fromEntries(c.entries.map((e) => [e.name, e.data.toString()]));
    expect(c.entries[0]!.name).toBe('summary.json');
    expect(Object.keys(files)).toEqual([
      'summary.json',
      'a/plain.txt',
      'a/buffer.txt',
      'a/partial.txt',
      'docker/inspect.json',
      'logs/node.log',
      'logs/sub/bird.log',
      'etcd/calico.json',
    ]);
    expect(seen.map((r) => r.name).sort()).toEqual(SOURCES.map((s) => s.name).sort());

    const s = c.summary;
    expect(JSON.parse(files['summary.json']!)).toEqual(s);
    expect(s).toMatchObject({
      kind: 'host',
      host: 'h1',
      docker: 'unix:///nonexistent.sock',
      dirs,
      counts: { ok: 5, absent: 1, error: 3 },
      failed: ['partial', 'failed', 'slow'],
      absent: ['absent'],
    });
    const by = Object.fromEntries(s.sources.map((r) => [r.name, r]));
    expect(s.sources.map((r) => r.name)).toEqual(SOURCES.map((x) => x.name));
    expect(by.plain).toMatchObject({ status: 'ok', file: 'a/plain.txt', how: 'fake plain', bytes: 6 });
    expect(by.partial).toMatchObject({ status: 'error', error: 'iptables-save exited 1: broken', bytes: 8 });
    // An error message is redacted like everything else.
    expect(by.failed).toMatchObject({
      status: 'error',
      error: 'birdc: connection refused; url https://u:[redacted]@host/',
      bytes: 0,
    });
    expect(by.absent).toMatchObject({ status: 'absent', error: '/run/agent-status.json does not exist', bytes: 0 });
    expect(by.slow!.status).toBe('error');
    expect(by.slow!.error).toMatch(/slow timed out after \d+ ms/);
    expect(by.logs).toMatchObject({
      status: 'ok',
      files: ['logs/node.log', 'logs/sub/bird.log'],
      notes: ['big.log: only the last 10 of 20 bytes'],
    });
    for (const r of s.sources) {
      expect(r.durationMs).toBeGreaterThanOrEqual(0);
      const mine = c.entries.filter((e) => e.name === r.file || (r.file.endsWith('/') && e.name.startsWith(r.file)));
      expect(r.bytes).toBe(mine.reduce((n, e) => n + e.data.length, 0));
    }

    // Env redacted structurally; the value it held is scrubbed from the logs too.
    expect(JSON.parse(files['docker/inspect.json']!)).toEqual([
      { Config: { Env: ['DB_PASSWORD=[redacted]', 'CALICO_IP=198.19.0.2'] } },
    ]);
    expect(files['logs/node.log']).toBe('created with env DB [redacted]\n');
    for (const [name, text] of Object.entries(files)) expect(text, name).not.toContain('hunter2');
    // A source that redacts itself is left as it wrote it.
    expect(files['etcd/calico.json']).toBe('{"password":"kept: the source redacts itself"}');
  });

  it('runs sources concurrently but keeps the table order', async () => {
    const started: string[] = [];
    const finished: string[] = [];
    const release = new Map<string, () => void>();
    // No source finishes before all three have started, so the run ends only if they run at
    // once; they then finish in the order b, c, a.
    const gated = (name: string) =>
      src(
        name,
        `${name}.txt`,
        () =>
          new Promise((r) => {
            started.push(name);
            release.set(name, () => (finished.push(name), r(name)));
            if (started.length === 3) for (const n of ['b', 'c', 'a']) release.get(n)!();
          }),
      );
    const c = await collect({ host: 'h1', dirs, sources: [gated('a'), gated('b'), gated('c')], concurrency: 3 });
    expect(started).toEqual(['a', 'b', 'c']);
    expect(finished).toEqual(['b', 'c', 'a']);
    expect(c.entries.map((e) => e.name)).toEqual(['summary.json', 'a.txt', 'b.txt', 'c.txt']);
  });
});
