import { describe, expect, it } from 'vitest';
import { apiClientTls, apiServerTls } from './apiTls.js';

const files: Record<string, string> = { '/ca.pem': 'ca', '/cert.pem': 'cert', '/key.pem': 'key' };
const read = (f: string) => {
  if (!(f in files)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
  return Buffer.from(files[f]!);
};

describe('apiServerTls: --tls-cert, --tls-key, --tls-ca', () => {
  it('no flag: plain http', () => {
    expect(apiServerTls({}, read)).toEqual({ ok: true, value: undefined });
  });

  it.each<[Parameters<typeof apiServerTls>[0], string[]]>([
    [{ tlsCert: '/cert.pem' }, ['https needs --tls-cert and --tls-key together (given: --tls-cert)']],
    [
      { tlsKey: '/key.pem', tlsCa: '/ca.pem' },
      ['https needs --tls-cert and --tls-key together (given: --tls-key, --tls-ca)'],
    ],
    [{ tlsCa: '/ca.pem' }, ['https needs --tls-cert and --tls-key together (given: --tls-ca)']],
    [{ tlsCert: '/cert.pem', tlsKey: '/nope.pem' }, ['--tls-key=/nope.pem: cannot read it (ENOENT)']],
    [
      { tlsCert: '/x.pem', tlsKey: '/key.pem', tlsCa: '/y.pem' },
      ['--tls-cert=/x.pem: cannot read it (ENOENT)', '--tls-ca=/y.pem: cannot read it (ENOENT)'],
    ],
  ])('%j is refused: %j', (flags, errors) => {
    expect(apiServerTls(flags, read)).toEqual({ ok: false, errors });
  });

  it('files that are not PEM are refused at start, naming them', () => {
    const r = apiServerTls({ tlsCert: '/cert.pem', tlsKey: '/key.pem', tlsCa: '/ca.pem' }, read);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors).toHaveLength(1);
    expect(!r.ok && r.errors[0]).toMatch(/^--tls-cert\/--tls-key\/--tls-ca \(\/cert.pem, \/key.pem, \/ca.pem\): /);
  });
});

describe('apiClientTls: --api-ca, --api-cert, --api-key, else CALICO_API_*_FILE', () => {
  it('none given: undefined (the system CAs verify an https server, no certificate is presented)', () => {
    expect(apiClientTls({}, {}, read)).toBe(undefined);
    expect(apiClientTls({}, { CALICO_API_CA_FILE: '' }, read)).toBe(undefined);
  });

  it('a certificate needs its key, from flags or the environment', () => {
    expect(() => apiClientTls({ apiCert: '/cert.pem' }, {}, read)).toThrow(
      '--api-cert is given without --api-key: a client certificate and its key go together',
    );
    expect(() => apiClientTls({}, { CALICO_API_KEY_FILE: '/key.pem' }, read)).toThrow(
      'CALICO_API_KEY_FILE is given without --api-cert: a client certificate and its key go together',
    );
  });

  it('a flag wins over its variable, and a file that cannot be read is named with where it came from', () => {
    const env = { CALICO_API_CA_FILE: '/env-ca.pem' };
    expect(() => apiClientTls({}, env, read)).toThrow('CALICO_API_CA_FILE=/env-ca.pem: cannot read it (ENOENT)');
    expect(() => apiClientTls({ apiCa: '/flag-ca.pem' }, env, read)).toThrow(
      '--api-ca=/flag-ca.pem: cannot read it (ENOENT)',
    );
  });

  it('files that are not PEM are refused', () => {
    expect(() => apiClientTls({ apiCert: '/cert.pem', apiKey: '/key.pem' }, {}, read)).toThrow(
      /^--api-ca\/--api-cert\/--api-key \(\/cert.pem, \/key.pem\): /,
    );
  });
});
