import { describe, expect, it } from 'vitest';
import { loadNodeConfig } from './config.js';

const base = ['--ip=198.18.0.11', '--hostname=h1', `--wait-binary=${process.execPath}`];

describe('loadNodeConfig: where the proxy listens', () => {
  it('defaults to 127.0.0.1:2375 with no TLS and nothing insecure', () => {
    const r = loadNodeConfig(base, {});
    expect(r.ok && r.value.listen).toEqual({
      addresses: [{ kind: 'tcp', host: '127.0.0.1', port: 2375 }],
      tls: undefined,
      insecure: [],
    });
  });

  it('takes repeated flags, and commas within one (as the image passes CALICO_PROXY_LISTEN)', () => {
    const r = loadNodeConfig([...base, '--listen=tcp://127.0.0.1:2375,unix:///run/a.sock', '--listen=[::1]:2376'], {});
    expect(r.ok && r.value.listen.addresses).toEqual([
      { kind: 'tcp', host: '127.0.0.1', port: 2375 },
      { kind: 'unix', path: '/run/a.sock' },
      { kind: 'tcp', host: '::1', port: 2376 },
    ]);
    const e = loadNodeConfig(base, { CALICO_PROXY_LISTEN: 'unix:///run/b.sock, 127.0.0.2:2375' });
    expect(e.ok && e.value.listen.addresses).toEqual([
      { kind: 'unix', path: '/run/b.sock' },
      { kind: 'tcp', host: '127.0.0.2', port: 2375 },
    ]);
  });

  it('reports listen errors with the others, and refuses the Docker socket itself', () => {
    const r = loadNodeConfig(
      [...base, '--listen=0.0.0.0:2375', '--listen=unix:///var/run/docker.sock', '--lease-ttl=1'],
      {},
    );
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors).toEqual([
      expect.stringMatching(/^--listen=tcp:\/\/0\.0\.0\.0:2375: not loopback and no --tlsverify/),
      '--lease-ttl=1: a whole number of seconds, 2-3600',
    ]);
    const d = loadNodeConfig([...base, '--listen=unix:///var/run/docker.sock'], {});
    expect(!d.ok && d.errors).toEqual([
      '--listen=unix:///var/run/docker.sock is the Docker socket itself; listen somewhere else',
    ]);
  });

  it('--insecure-listen lets an address off loopback start, named as insecure', () => {
    const r = loadNodeConfig([...base, '--listen=0.0.0.0:2375', '--insecure-listen'], {});
    expect(r.ok && r.value.listen.insecure).toEqual([{ kind: 'tcp', host: '0.0.0.0', port: 2375 }]);
  });
});
