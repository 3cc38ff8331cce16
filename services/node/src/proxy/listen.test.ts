import { describe, expect, it } from 'vitest';
import { groupIdIn, isLoopbackHost, listenConfig, parseListenAddress } from './listen.js';

describe('parseListenAddress: dockerd -H forms', () => {
  it.each([
    ['tcp://127.0.0.1:2375', { kind: 'tcp', host: '127.0.0.1', port: 2375 }],
    ['127.0.0.1:2375', { kind: 'tcp', host: '127.0.0.1', port: 2375 }],
    ['tcp://[::1]:2376', { kind: 'tcp', host: '::1', port: 2376 }],
    ['[fd00::1]:0', { kind: 'tcp', host: 'fd00::1', port: 0 }],
    ['localhost:2375', { kind: 'tcp', host: 'localhost', port: 2375 }],
    ['unix:///run/calico/docker.sock', { kind: 'unix', path: '/run/calico/docker.sock' }],
  ])('%s', (raw, want) => {
    expect(parseListenAddress(raw)).toEqual({ ok: true, value: want });
  });

  it.each([
    ['unix://relative.sock', '--listen=unix://relative.sock: a unix socket path must be absolute (unix:///path)'],
    ['tcp://127.0.0.1', '--listen=tcp://127.0.0.1: expected tcp://host:port, host:port or unix:///path'],
    ['127.0.0.1:70000', '--listen=127.0.0.1:70000: expected tcp://host:port, host:port or unix:///path'],
    ['http://127.0.0.1:2375', '--listen=http://127.0.0.1:2375: expected tcp://host:port, host:port or unix:///path'],
  ])('%s is refused', (raw, error) => {
    expect(parseListenAddress(raw)).toEqual({ ok: false, error });
  });
});

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.9.8.7', true],
    ['::1', true],
    ['localhost', true],
    ['0.0.0.0', false],
    ['::', false],
    ['198.18.0.11', false],
    ['127.example.com', false],
    ['myhost', false],
  ])('%s: %s', (host, want) => expect(isLoopbackHost(host)).toBe(want));
});

describe('listenConfig: TLS flags and the insecure-listen guard', () => {
  const files: Record<string, string> = { '/ca.pem': 'ca', '/cert.pem': 'cert', '/key.pem': 'key' };
  const read = (f: string) => {
    if (!(f in files)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return Buffer.from(files[f]!);
  };

  it('the default and loopback or unix addresses need nothing more', () => {
    const r = listenConfig({ listen: ['127.0.0.1:2375', 'tcp://[::1]:2375', 'unix:///run/x.sock'] }, read);
    expect(r.ok && r.value.insecure).toEqual([]);
    expect(r.ok && r.value.tls).toBe(undefined);
  });

  it('an address off loopback without --tlsverify is refused, and says how to fix it', () => {
    const r = listenConfig({ listen: ['0.0.0.0:2375', '127.0.0.1:2375'] }, read);
    expect(r).toEqual({
      ok: false,
      errors: [
        '--listen=tcp://0.0.0.0:2375: not loopback and no --tlsverify, so anyone who reaches it is root on this host; ' +
          'add --tlsverify --tlscacert --tlscert --tlskey, listen on 127.0.0.1 or a unix socket, or say --insecure-listen',
      ],
    });
  });

  it('--insecure-listen lets it through and names it as insecure', () => {
    const r = listenConfig(
      { listen: ['0.0.0.0:2375', '127.0.0.1:2375', 'unix:///x.sock'], insecureListen: true },
      read,
    );
    expect(r.ok && r.value.insecure).toEqual([{ kind: 'tcp', host: '0.0.0.0', port: 2375 }]);
  });

  it('--tls alone is still insecure off loopback: it admits any client', () => {
    const r = listenConfig({ listen: ['[::]:2376'], tls: true, tlscert: '/cert.pem', tlskey: '/key.pem' }, read);
    expect(r.ok).toBe(false);
    expect(
      !r.ok && r.errors.some((e) => e.startsWith('--listen=tcp://[::]:2376: not loopback and no --tlsverify')),
    ).toBe(true);
  });

  it('--tlsverify needs the CA, the certificate and the key; a missing file is named', () => {
    expect(listenConfig({ listen: ['0.0.0.0:2376'], tlsverify: true }, read)).toEqual({
      ok: false,
      errors: [
        '--tlscacert=<file> is required with --tlsverify',
        '--tlscert=<file> is required with --tlsverify',
        '--tlskey=<file> is required with --tlsverify',
      ],
    });
    const r = listenConfig(
      { listen: ['0.0.0.0:2376'], tlsverify: true, tlscacert: '/nope.pem', tlscert: '/cert.pem', tlskey: '/key.pem' },
      read,
    );
    expect(r).toEqual({ ok: false, errors: ['--tlscacert=/nope.pem: cannot read it (ENOENT)'] });
  });

  it('files that are not PEM are refused at start', () => {
    const r = listenConfig(
      { listen: ['0.0.0.0:2376'], tlsverify: true, tlscacert: '/ca.pem', tlscert: '/cert.pem', tlskey: '/key.pem' },
      read,
    );
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors).toHaveLength(1);
    expect(!r.ok && r.errors[0]).toMatch(/^--tlscacert\/--tlscert\/--tlskey \(\/ca.pem, \/cert.pem, \/key.pem\): /);
  });

  it('certificate flags without --tls or --tlsverify are an error, not silently plain', () => {
    expect(listenConfig({ listen: ['127.0.0.1:2375'], tlscert: '/cert.pem' }, read)).toEqual({
      ok: false,
      errors: ['--tlscert is given but TLS is off: add --tlsverify (or --tls)'],
    });
  });
});

describe('groupIdIn', () => {
  const etcGroup = 'root:x:0:\ndockerish:x:7:\ndocker:x:108:alice,bob\n';
  it('finds the group by exact name', () => {
    expect(groupIdIn(etcGroup, 'docker')).toBe(108);
    expect(groupIdIn(etcGroup, 'root')).toBe(0);
  });
  it('is undefined when there is no such group', () => expect(groupIdIn(etcGroup, 'dock')).toBe(undefined));
});
