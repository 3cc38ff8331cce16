import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createLogger } from './logger.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, stream };
}

describe('createLogger', () => {
  it('writes one JSON line with name, context and message', () => {
    const { lines, stream } = capture();
    const log = createLogger({ name: 'node.proxy', destination: stream, base: { host: 'h1' } });
    log.info({ container: 'abc' }, 'container started; plumbing its network next');
    expect(lines[0]).toMatchObject({
      name: 'node.proxy',
      host: 'h1',
      container: 'abc',
      msg: 'container started; plumbing its network next',
      level: 30,
    });
  });

  it('masks secrets in contexts', () => {
    const { lines, stream } = capture();
    const log = createLogger({ name: 't', destination: stream });
    log.warn(
      {
        password: 'p',
        etcd: { tls: { key: 'PRIVATE' } },
        headers: { authorization: 'Bearer x' },
        key: '/calico/host/h1/bird_ip',
      },
      'x',
    );
    expect(JSON.stringify(lines[0])).not.toMatch(/PRIVATE|Bearer|"p"/);
    expect(lines[0]).toMatchObject({
      password: '[redacted]',
      etcd: { tls: { key: '[redacted]' } },
      key: '/calico/host/h1/bird_ip',
    });
  });
});
