import { describe, expect, it } from 'vitest';
import { formatDuration, loadMasterConfig, parseDuration, parseListen } from './config.js';
import { apiUrl } from './master.js';

const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadMasterConfig(argv, env);

describe('loadMasterConfig', () => {
  it('takes defaults from --ip', () => {
    const r = load(['--ip=198.18.0.1']);
    expect(r.ok && r.value).toMatchObject({
      ip: '198.18.0.1',
      listen: { host: '198.18.0.1', port: 7600 },
      gcDeadHostsAfterMs: null,
      gcIntervalMs: 5_000,
      apiTokenFile: '/etc/calico/api-token',
      logLevel: 'info',
    });
    expect(r.ok && r.value.datastore.endpoints).toEqual(['http://127.0.0.1:2379']);
  });

  it('flags win over the environment, which wins over defaults', () => {
    const env = {
      CALICO_MASTER_IP: '198.18.0.9',
      CALICO_MASTER_LISTEN: '0.0.0.0:9000',
      CALICO_GC_DEAD_HOSTS_AFTER: '12h',
      CALICO_API_TOKEN_FILE: '/e/t',
      ETCD_ENDPOINTS: '10.0.0.1:2379',
      LOG_LEVEL: 'debug',
    };
    const fromEnv = load([], env);
    expect(fromEnv.ok && fromEnv.value).toMatchObject({
      ip: '198.18.0.9',
      listen: { host: '0.0.0.0', port: 9000 },
      gcDeadHostsAfterMs: 12 * 3_600_000,
      apiTokenFile: '/e/t',
      logLevel: 'debug',
    });
    const r = load(
      [
        '--ip=fd00::1',
        '--listen=127.0.0.1:0',
        '--gc-dead-hosts-after=1s',
        '--gc-interval=0.2',
        '--etcd=127.0.0.1:1234',
        '--api-token-file=/f/t',
        '--log-level=warn',
      ],
      env,
    );
    expect(r.ok && r.value).toMatchObject({
      ip: 'fd00::1',
      listen: { host: '127.0.0.1', port: 0 },
      gcDeadHostsAfterMs: 1_000,
      gcIntervalMs: 200,
      apiTokenFile: '/f/t',
      logLevel: 'warn',
    });
    expect(r.ok && r.value.datastore.endpoints).toEqual(['http://127.0.0.1:1234']);
  });

  it('an IPv6 --ip listens on [ip]:7600', () => {
    const r = load(['--ip=FD00:0::1']);
    expect(r.ok && r.value.listen).toEqual({ host: 'fd00::1', port: 7600 });
  });

  it('reports every error at once', () => {
    const r = load([
      '--listen=nowhere',
      '--gc-dead-hosts-after=10',
      '--gc-interval=0',
      '--etcd=bad',
      '--log-level=loud',
    ]);
    expect(r.ok ? [] : r.errors).toEqual([
      '--ip is required: the address of this master on the management network',
      '--listen=nowhere: expected host:port or [IPv6]:port (port 0-65535)',
      'flag: "bad" is not host:port (e.g. 127.0.0.1:2379)',
      '--gc-dead-hosts-after=10: a duration of at least 1s such as 30m, 12h or 7d (units ms, s, m, h, d), or off',
      '--gc-interval=0: seconds, 0.01 to 86400 (decimals allowed)',
      '--log-level=loud: one of trace, debug, info, warn, error, fatal, silent',
    ]);
    const bad = load(['--ip=1.2.3']);
    expect(bad.ok ? [] : bad.errors).toEqual(['--ip=1.2.3: not an IPv4 or IPv6 address']);
    const unknown = load(['--bogus', '--ip=1.2.3', 'extra', '--gc-dead-hosts-after']);
    expect(unknown.ok ? [] : unknown.errors).toEqual([
      'unknown option --bogus',
      '--gc-dead-hosts-after needs a value (--gc-dead-hosts-after=...)',
      'unexpected argument "extra"',
      '--ip=1.2.3: not an IPv4 or IPv6 address',
    ]);
  });

  it('--gc-dead-hosts-after is off by default and takes durations', () => {
    const on = (v: string) => {
      const r = load(['--ip=198.18.0.1', `--gc-dead-hosts-after=${v}`]);
      return r.ok ? r.value.gcDeadHostsAfterMs : r.errors;
    };
    expect([on('off'), on('1s'), on('30m'), on('1h30m'), on('7d'), on('1.5h')]).toEqual([
      null,
      1_000,
      1_800_000,
      5_400_000,
      604_800_000,
      5_400_000,
    ]);
    expect(on('500ms')).toEqual([
      '--gc-dead-hosts-after=500ms: a duration of at least 1s such as 30m, 12h or 7d (units ms, s, m, h, d), or off',
    ]);
    expect(on('0s')).toHaveLength(1);
    expect(on('soon')).toHaveLength(1);
  });

  it.each<[string, number | null | undefined, string]>([
    ['90s', 90_000, '1m30s'],
    ['1h30m', 5_400_000, '1h30m'],
    ['2d12h', 216_000_000, '2d12h'],
    ['250ms', 250, '250ms'],
    ['off', null, ''],
    ['10', undefined, ''],
    ['1h 30m', undefined, ''],
    ['-5m', undefined, ''],
  ])('parseDuration(%s) and back', (s, ms, back) => {
    expect(parseDuration(s)).toBe(ms);
    if (typeof ms === 'number') expect(formatDuration(ms)).toBe(back);
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
  ])('api_url for --ip=%s listening on %s', (ip, host, want) =>
    expect(apiUrl({ ip, listen: { host, port: 7600 } }, 7600)).toBe(want),
  );

  it('api_url is https when the master serves TLS', () => {
    const tls = {
      cert: Buffer.from(''),
      key: Buffer.from(''),
      ca: undefined,
      files: { cert: '/c', key: '/k', ca: undefined },
    };
    expect(apiUrl({ ip: 'fd00::1', listen: { host: '::', port: 7600 }, tls }, 7600)).toBe('https://[fd00::1]:7600/');
  });

  it('serves plain http without --tls-*; TLS flags are checked with every other problem', () => {
    const plain = load(['--ip=198.18.0.1']);
    expect(plain.ok && plain.value.tls).toBe(undefined);
    const r = load(['--tls-cert=/nope/cert.pem', '--tls-ca=/nope/ca.pem', '--log-level=loud']);
    expect(r.ok ? [] : r.errors).toEqual([
      '--ip is required: the address of this master on the management network',
      'https needs --tls-cert and --tls-key together (given: --tls-cert, --tls-ca)',
      '--tls-cert=/nope/cert.pem: cannot read it (ENOENT)',
      '--tls-ca=/nope/ca.pem: cannot read it (ENOENT)',
      '--log-level=loud: one of trace, debug, info, warn, error, fatal, silent',
    ]);
    const key = load(['--ip=198.18.0.1', '--tls-cert=/nope/cert.pem', '--tls-key=/nope/key.pem']);
    expect(key.ok ? [] : key.errors).toEqual([
      '--tls-cert=/nope/cert.pem: cannot read it (ENOENT)',
      '--tls-key=/nope/key.pem: cannot read it (ENOENT)',
    ]);
  });
});
