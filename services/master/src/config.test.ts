import { describe, expect, it } from 'vitest';
import { loadMasterConfig, parseListen } from './config.js';
import { apiUrl } from './master.js';

const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadMasterConfig(argv, env);

describe('loadMasterConfig', () => {
  it('takes defaults from --ip', () => {
    const r = load(['--ip=198.18.0.1']);
    expect(r.ok && r.value).toMatchObject({ ip: '198.18.0.1', listen: { host: '198.18.0.1', port: 7600 }, gcGraceMs: 60_000, gcIntervalMs: 5_000, logLevel: 'info' });
    expect(r.ok && r.value.datastore.endpoints).toEqual(['http://127.0.0.1:2379']);
  });

  it('flags win over the environment, which wins over defaults', () => {
    const env = { CALICO_MASTER_IP: '198.18.0.9', CALICO_MASTER_LISTEN: '0.0.0.0:9000', CALICO_GC_GRACE: '30', ETCD_ENDPOINTS: '10.0.0.1:2379', LOG_LEVEL: 'debug' };
    const fromEnv = load([], env);
    expect(fromEnv.ok && fromEnv.value).toMatchObject({ ip: '198.18.0.9', listen: { host: '0.0.0.0', port: 9000 }, gcGraceMs: 30_000, logLevel: 'debug' });
    const r = load(['--ip=fd00::1', '--listen=127.0.0.1:0', '--gc-grace=1', '--gc-interval=0.2', '--etcd=127.0.0.1:1234', '--log-level=warn'], env);
    expect(r.ok && r.value).toMatchObject({ ip: 'fd00::1', listen: { host: '127.0.0.1', port: 0 }, gcGraceMs: 1_000, gcIntervalMs: 200, logLevel: 'warn' });
    expect(r.ok && r.value.datastore.endpoints).toEqual(['http://127.0.0.1:1234']);
  });

  it('an IPv6 --ip listens on [ip]:7600', () => {
    const r = load(['--ip=FD00:0::1']);
    expect(r.ok && r.value.listen).toEqual({ host: 'fd00::1', port: 7600 });
  });

  it('reports every error at once', () => {
    const r = load(['--listen=nowhere', '--gc-grace=-1', '--gc-interval=0', '--etcd=bad', '--log-level=loud']);
    expect(r.ok ? [] : r.errors).toEqual([
      '--ip is required: the address of this master on the management network',
      '--listen=nowhere: expected host:port or [IPv6]:port (port 0-65535)',
      'flag: "bad" is not host:port (e.g. 127.0.0.1:2379)',
      '--gc-grace=-1: seconds, 0 to 86400 (decimals allowed)',
      '--gc-interval=0: seconds, 0.01 to 86400 (decimals allowed)',
      '--log-level=loud: one of trace, debug, info, warn, error, fatal, silent',
    ]);
    const bad = load(['--ip=1.2.3']);
    expect(bad.ok ? [] : bad.errors).toEqual(['--ip=1.2.3: not an IPv4 or IPv6 address']);
    const unknown = load(['--bogus', '--ip=1.2.3', 'extra', '--gc-grace']);
    expect(unknown.ok ? [] : unknown.errors).toEqual(['unknown option --bogus', '--gc-grace needs a value (--gc-grace=...)', 'unexpected argument "extra"', '--ip=1.2.3: not an IPv4 or IPv6 address']);
  });

  it.each<[string, unknown]>([
    ['127.0.0.1:7600', { host: '127.0.0.1', port: 7600 }],
    ['[::1]:80', { host: '::1', port: 80 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['::1:80', undefined],
    ['[nope]:80', undefined],
    ['host:70000', undefined],
  ])('parseListen(%s)', (s, want) => expect(parseListen(s)).toEqual(want));

  it.each<[string, string, string]>([
    ['198.18.0.1', '198.18.0.1', 'http://198.18.0.1:7600/'],
    ['198.18.0.1', '0.0.0.0', 'http://198.18.0.1:7600/'],
    ['fd00::1', '::', 'http://[fd00::1]:7600/'],
    ['198.18.0.1', 'master.example', 'http://master.example:7600/'],
  ])('api_url for --ip=%s listening on %s', (ip, host, want) => expect(apiUrl({ ip, listen: { host, port: 7600 } }, 7600)).toBe(want));
});
