import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';

const env = { CALICO_HOSTNAME: 'h1' };

describe('loadConfig', () => {
  it("serves by default, with calicoctl's directory layout", () => {
    const c = loadConfig(['--listen=198.18.0.11:9300', '--etcd=198.18.0.1:2379'], env);
    expect(c).toMatchObject({
      ok: true,
      value: {
        mode: 'serve',
        hostname: 'h1',
        listen: { host: '198.18.0.11', port: 9300 },
        advertiseUrl: undefined,
        leaseTtl: 30,
        dirs: { run: '/var/run/calico/h1', log: '/var/log/calico/h1', state: '/var/lib/calico/h1' },
      },
    });
  });
  it('collects with the same options as calicoctl diags', () => {
    const c = loadConfig(
      [
        'collect',
        '--log-dir=/l',
        '--upload-url=http://127.0.0.1:1/',
        '--upload-method=post',
        '--no-upload',
        '--cluster',
        '--json',
      ],
      env,
    );
    expect(c).toMatchObject({
      ok: true,
      value: {
        mode: 'collect',
        dirs: { log: '/l' },
        uploadUrl: 'http://127.0.0.1:1/',
        uploadMethod: 'post',
        noUpload: true,
        cluster: true,
        json: true,
      },
    });
  });
  it('reads --insecure and --max-host-bytes for collect', () => {
    const c = loadConfig(
      ['collect', '--upload-url=http://127.0.0.1:1/', '--insecure', '--cluster', '--max-host-bytes=64M'],
      env,
    );
    expect(c).toMatchObject({ ok: true, value: { mode: 'collect', insecure: true, maxHostBytes: '64M' } });
    expect(loadConfig(['collect'], env)).toMatchObject({
      ok: true,
      value: { insecure: false, maxHostBytes: undefined },
    });
  });
  it('serve: plain http without --tls-*; --tls-ca alone or a missing file is refused', () => {
    const plain = loadConfig(['--listen=198.18.0.11:9300'], env);
    expect(plain.ok && plain.value.mode === 'serve' && plain.value.tls).toBe(undefined);
    const alone = loadConfig(['--listen=198.18.0.11:9300', '--tls-ca=/ca.pem'], env);
    expect(alone.ok ? [] : alone.errors).toEqual([
      'https needs --tls-cert and --tls-key together (given: --tls-ca)',
      '--tls-ca=/ca.pem: cannot read it (ENOENT)',
    ]);
    const missing = loadConfig(['--listen=198.18.0.11:9300', '--tls-cert=/nope/c.pem', '--tls-key=/nope/k.pem'], env);
    expect(missing.ok ? [] : missing.errors).toEqual([
      '--tls-cert=/nope/c.pem: cannot read it (ENOENT)',
      '--tls-key=/nope/k.pem: cannot read it (ENOENT)',
    ]);
  });
  it('collect takes the client TLS files for --cluster, read when it runs', () => {
    const c = loadConfig(['collect', '--cluster', '--api-ca=/ca.pem', '--api-cert=/c.pem', '--api-key=/k.pem'], env);
    expect(c).toMatchObject({
      ok: true,
      value: { mode: 'collect', apiCa: '/ca.pem', apiCert: '/c.pem', apiKey: '/k.pem' },
    });
  });
  it('lets collect run with a broken etcd config: only the sources needing etcd fail', () => {
    const c = loadConfig(['collect', '--etcd=nonsense'], env);
    expect(c.ok && c.value.datastore === undefined && c.value.datastoreError).toMatch(/not host:port/);
  });
  it.each([
    [['--etcd=127.0.0.1:2379'], '--listen=: <ip>:<port> of this host, e.g. 198.18.0.11:9300'],
    [['--listen=nohost:1'], '--listen=nohost:1: <ip>:<port> of this host, e.g. 198.18.0.11:9300'],
    [
      ['--listen=0.0.0.0:9300'],
      '--listen=0.0.0.0:9300: with a wildcard address, say where others reach it with --advertise-url',
    ],
    [['--listen=1.2.3.4:1', '--lease-ttl=1'], '--lease-ttl=1: whole seconds, at least 2'],
    [['--listen=1.2.3.4:1', '--etcd=bad'], 'ETCD'],
    [['bogus', '--listen=1.2.3.4:1'], 'unexpected "bogus": serve or collect'],
    [['--nope'], "Unknown option '--nope'"],
    [['--listen=1.2.3.4:1', '--hostname=Host_1'], 'host name "Host_1" is not valid; use lowercase letters'],
  ])('%j', (argv, msg) => {
    const c = loadConfig(argv, env);
    expect(c.ok).toBe(false);
    if (!c.ok) expect(c.errors.join('\n')).toContain(msg === 'ETCD' ? 'not host:port' : msg);
  });
});
