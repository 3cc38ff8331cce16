import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatastoreConfigError, parseEndpoints, resolveDatastoreConfig, type DatastoreInput } from './config.js';

describe('resolveDatastoreConfig', () => {
  it.each([
    [{ etcd: 'a:1,b:2', env: { ETCD_ENDPOINTS: 'x:9', ETCD_AUTHORITY: 'y:9' } }, ['http://a:1', 'http://b:2'], 'flag'],
    [{ env: { ETCD_ENDPOINTS: 'x:9', ETCD_AUTHORITY: 'y:9' } }, ['http://x:9'], 'ETCD_ENDPOINTS'],
    [{ env: { ETCD_AUTHORITY: 'localhost:4001' } }, ['http://localhost:4001'], 'ETCD_AUTHORITY'],
    [{ env: {} }, ['http://127.0.0.1:2379'], 'default'],
    [{ etcd: '', env: { ETCD_AUTHORITY: 'y:9' } }, ['http://y:9'], 'ETCD_AUTHORITY'],
  ])('takes endpoints in order: flag, ETCD_ENDPOINTS, ETCD_AUTHORITY, default (%#)', (input, endpoints, source) => {
    const cfg = resolveDatastoreConfig(input);
    expect(cfg.endpoints).toEqual(endpoints);
    expect(cfg.source).toBe(source);
    expect(cfg.tls).toBeUndefined();
  });

  it('reads TLS files and switches bare endpoints to https', () => {
    const d = mkdtempSync(join(tmpdir(), 'ds-tls-'));
    for (const f of ['ca', 'cert', 'key']) writeFileSync(join(d, f), `${f}-pem`);
    const cfg = resolveDatastoreConfig({
      etcd: '10.0.0.1:2379,https://h:1',
      etcdCa: join(d, 'ca'),
      env: { ETCD_CERT_FILE: join(d, 'cert'), ETCD_KEY_FILE: join(d, 'key') },
    });
    expect(cfg.endpoints).toEqual(['https://10.0.0.1:2379', 'https://h:1']);
    expect(cfg.tls?.ca?.toString()).toBe('ca-pem');
    expect(cfg.tls?.cert?.toString()).toBe('cert-pem');
    expect(cfg.tls?.key?.toString()).toBe('key-pem');
  });

  describe('schemes that disagree with the TLS files are refused, never a quiet fallback', () => {
    const d = mkdtempSync(join(tmpdir(), 'ds-tls-'));
    for (const f of ['ca', 'cert', 'key']) writeFileSync(join(d, f), `${f}-pem`);
    const ca = join(d, 'ca');
    const cert = join(d, 'cert');
    const key = join(d, 'key');
    const files = '--etcd-ca/--etcd-cert/--etcd-key (or ETCD_CA_CERT_FILE/ETCD_CERT_FILE/ETCD_KEY_FILE) given';
    it.each<[string, DatastoreInput, string | string[]]>([
      [
        'https with no CA',
        { etcd: 'https://e:2379', env: {} },
        "etcd TLS: https://e:2379 needs the CA that signed etcd's certificate: --etcd-ca=<file> or ETCD_CA_CERT_FILE",
      ],
      ['  control: the same with --etcd-ca', { etcd: 'https://e:2379', etcdCa: ca, env: {} }, ['https://e:2379']],
      [
        'a client certificate with no CA',
        { etcd: 'e:2379', etcdCert: cert, etcdKey: key, env: {} },
        "etcd TLS: https://e:2379 needs the CA that signed etcd's certificate",
      ],
      [
        '  control: the same with ETCD_CA_CERT_FILE',
        { etcd: 'e:2379', etcdCert: cert, etcdKey: key, env: { ETCD_CA_CERT_FILE: ca } },
        ['https://e:2379'],
      ],
      [
        'TLS files with an http:// endpoint',
        { etcd: 'http://e:2379', etcdCa: ca, etcdCert: cert, etcdKey: key, env: {} },
        `etcd TLS: ${files}, but --etcd names http://e:2379; use https:// (or host:port), or drop the TLS files`,
      ],
      [
        'TLS files from the environment with http:// in ETCD_ENDPOINTS',
        { env: { ETCD_ENDPOINTS: 'e:1,http://f:2', ETCD_CA_CERT_FILE: ca } },
        `etcd TLS: ${files}, but ETCD_ENDPOINTS names http://f:2`,
      ],
      [
        '  control: bare endpoints with TLS files',
        { etcd: 'e:1,f:2', etcdCa: ca, env: {} },
        ['https://e:1', 'https://f:2'],
      ],
      [
        'mixed schemes',
        { etcd: 'https://e:1,http://f:2', env: {} },
        'etcd: --etcd mixes http:// and https:// endpoints (https://e:1, http://f:2); every endpoint is reached the same way',
      ],
      [
        'mixed schemes with TLS files',
        { env: { ETCD_AUTHORITY: 'http://e:1,https://f:2' }, etcdCa: ca },
        'etcd: ETCD_AUTHORITY mixes http:// and https:// endpoints',
      ],
      ['  control: all http:// with no TLS files', { etcd: 'http://e:1,f:2', env: {} }, ['http://e:1', 'http://f:2']],
    ])('%s', (_, input, want) => {
      if (Array.isArray(want)) expect(resolveDatastoreConfig(input).endpoints).toEqual(want);
      else {
        expect(() => resolveDatastoreConfig(input)).toThrow(DatastoreConfigError);
        expect(() => resolveDatastoreConfig(input)).toThrow(want);
      }
    });
  });

  it('refuses a certificate without its key, and unreadable files', () => {
    expect(() => resolveDatastoreConfig({ etcdCert: '/x', env: {} })).toThrow(
      'etcd TLS: a client certificate and its key must be given together',
    );
    expect(() => resolveDatastoreConfig({ etcdCa: '/nonexistent/ca.pem', env: {} })).toThrow(
      /^etcd TLS: cannot read CA certificate \/nonexistent\/ca.pem: ENOENT/,
    );
  });
});

describe('parseEndpoints', () => {
  it('accepts host:port, IPv6 in brackets and URLs', () => {
    expect(parseEndpoints('[::1]:2379, https://e.example:443/', 'flag', 'http')).toEqual([
      'http://[::1]:2379',
      'https://e.example:443',
    ]);
  });
  it.each([
    ['', 'flag: no etcd endpoint given'],
    ['localhost', 'flag: "localhost" is not host:port (e.g. 127.0.0.1:2379)'],
    ['a:0', 'flag: "a:0" is not host:port (e.g. 127.0.0.1:2379)'],
    ['a:70000', 'flag: "a:70000" is not host:port (e.g. 127.0.0.1:2379)'],
    ['ftp://a:1', 'flag: "ftp://a:1" is not host:port (e.g. 127.0.0.1:2379)'],
  ])('names the bad entry: %j', (raw, msg) => {
    expect(() => parseEndpoints(raw, 'flag', 'http')).toThrow(msg);
  });
});

describe('datastoreConfigFromFlags', () => {
  it('reads the parsed etcd flags as resolveDatastoreConfig does', async () => {
    const { datastoreConfigFromFlags, ETCD_FLAG_OPTIONS } = await import('./config.js');
    expect(Object.keys(ETCD_FLAG_OPTIONS)).toEqual(['etcd', 'etcd-ca', 'etcd-cert', 'etcd-key']);
    expect(datastoreConfigFromFlags({ etcd: 'a:1', other: true }, {}).endpoints).toEqual(['http://a:1']);
    expect(datastoreConfigFromFlags({}, { ETCD_AUTHORITY: 'b:2' }).source).toBe('ETCD_AUTHORITY');
    expect(() => datastoreConfigFromFlags({ 'etcd-cert': '/x' }, {})).toThrow(
      'a client certificate and its key must be given together',
    );
  });
});
