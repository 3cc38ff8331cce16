import { describe, expect, it } from 'vitest';
import { parseDockerHost, describeUpstream } from './upstream.js';
import { ProxyError, toProxyError } from './errors.js';

describe('parseDockerHost', () => {
  it.each([
    ['unix:///var/run/docker.sock', { kind: 'unix', path: '/var/run/docker.sock' }],
    ['/tmp/d.sock', { kind: 'unix', path: '/tmp/d.sock' }],
    ['tcp://127.0.0.1:2375', { kind: 'tcp', host: '127.0.0.1', port: 2375 }],
    ['localhost:2375', { kind: 'tcp', host: 'localhost', port: 2375 }],
    ['tcp://[::1]:2376', { kind: 'tcp', host: '::1', port: 2376 }],
  ])('%s', (raw, want) => {
    expect(parseDockerHost(raw)).toEqual(want);
  });

  it.each([
    ['unix://relative.sock', 'docker host "unix://relative.sock": a unix socket path must be absolute'],
    ['tcp://host', 'docker host "tcp://host": expected unix:///path/to/docker.sock or tcp://host:port'],
    ['tcp://h:99999', 'docker host "tcp://h:99999": expected unix:///path/to/docker.sock or tcp://host:port'],
  ])('refuses %s', (raw, msg) => {
    expect(() => parseDockerHost(raw)).toThrow(msg);
  });

  it('describes an upstream the way DOCKER_HOST spells it', () => {
    expect(describeUpstream(parseDockerHost('/x.sock'))).toBe('unix:///x.sock');
  });
});

describe('toProxyError', () => {
  it('keeps a ProxyError and maps its code to the status dockerd would use', () => {
    const e = new ProxyError('CONFLICT', 'taken');
    expect(toProxyError(e)).toBe(e);
    expect(e.status).toBe(409);
  });
  it('turns anything else into INTERNAL, keeping the stack', () => {
    const cause = new Error('boom');
    const p = toProxyError(cause);
    expect([p.code, p.status, p.message]).toEqual(['INTERNAL', 500, 'calico: boom']);
    expect(p.stack).toBe(cause.stack);
  });
});
