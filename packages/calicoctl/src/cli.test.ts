import { describe, expect, it, vi } from 'vitest';
import { run } from './cli.js';
import { parseBirdProtocols } from './commands/status.js';
import { Context, table } from './context.js';

describe('calicoctl usage errors', () => {
  it.each([
    [['bogus'], 2, 'calicoctl: unknown command "bogus"; see: calicoctl --help'],
    [['addgroup'], 2, 'calicoctl: usage: calicoctl addgroup <NAME>'],
    [['addtogroup', 'only-one'], 2, 'calicoctl: usage: calicoctl addtogroup <CONTAINER> <GROUP>'],
    [['rule', 'add', 'g', 'sideways'], 2, 'calicoctl: direction must be inbound or outbound'],
    [
      ['node', '--ip=not-an-ip'],
      2,
      "calicoctl: --ip=<IPv4> is required: this host's address on the management network",
    ],
    [['node', '--ip=198.18.0.11', '--runtime=vm'], 2, 'calicoctl: --runtime=vm: docker or process'],
    [['check', 'a', 'b', '--port=eighty'], 2, 'calicoctl: --port=eighty: a number 1-65535'],
    [['--nope'], 2, "calicoctl: Unknown option '--nope'"],
    [['showgroups', '--etcd=localhost'], 2, 'calicoctl: flag: "localhost" is not host:port (e.g. 127.0.0.1:2379)'],
    [
      ['showgroups', '--etcd=https://127.0.0.1:1'],
      2,
      "calicoctl: etcd TLS: https://127.0.0.1:1 needs the CA that signed etcd's certificate",
    ],
    [
      ['showgroups', '--etcd=http://127.0.0.1:1', '--etcd-ca=/nonexistent/ca.pem'],
      2,
      'calicoctl: etcd TLS: --etcd-ca/--etcd-cert/--etcd-key (or ETCD_CA_CERT_FILE/ETCD_CERT_FILE/ETCD_KEY_FILE) given, but --etcd names http://127.0.0.1:1',
    ],
    [
      ['node', '--ip=198.18.0.11', '--hostname=h1', '--etcd=https://127.0.0.1:1'],
      2,
      'calicoctl: etcd TLS: https://127.0.0.1:1 needs the CA',
    ],
    [
      ['master', '--ip=198.18.0.1', '--etcd=127.0.0.1:1', '--etcd-cert=/c.pem'],
      2,
      'calicoctl: etcd TLS: a client certificate and its key must be given together',
    ],
    [['node', 'remove'], 2, 'calicoctl: usage: calicoctl node remove <HOSTNAME> [--remove-endpoints]'],
    [['node', 'remove', 'h1', 'h2'], 2, 'calicoctl: usage: calicoctl node remove <HOSTNAME> [--remove-endpoints]'],
    [
      ['node', '--ip=198.18.0.11', '--proxy-listen=0.0.0.0:2375'],
      2,
      'calicoctl: --proxy-listen=tcp://0.0.0.0:2375: not loopback and no --tlsverify',
    ],
    [
      ['node', '--ip=198.18.0.11', '--proxy-listen=127.0.0.1:2375', '--proxy-listen=tcp://198.18.0.11:2376'],
      2,
      'calicoctl: --proxy-listen=tcp://198.18.0.11:2376: not loopback',
    ],
    [
      ['node', '--ip=198.18.0.11', '--proxy-listen=unix://rel.sock'],
      2,
      'calicoctl: --proxy-listen=unix://rel.sock: a unix socket path must be absolute',
    ],
    [
      [
        'node',
        '--ip=198.18.0.11',
        '--tlsverify',
        '--tlscacert=/nonexistent/ca.pem',
        '--tlscert=/nonexistent/c.pem',
        '--tlskey=/nonexistent/k.pem',
      ],
      2,
      'calicoctl: --tlscacert=/nonexistent/ca.pem: cannot read it (ENOENT)',
    ],
    [
      ['master', '--ip=198.18.0.1', '--tls-cert=/nonexistent/c.pem'],
      2,
      'calicoctl: https needs --tls-cert and --tls-key together (given: --tls-cert)',
    ],
    [
      ['master', '--ip=198.18.0.1', '--tls-cert=/nonexistent/c.pem', '--tls-key=/nonexistent/k.pem'],
      2,
      'calicoctl: --tls-cert=/nonexistent/c.pem: cannot read it (ENOENT)',
    ],
    [
      ['node', '--ip=198.18.0.11', '--tls-key=/nonexistent/k.pem'],
      2,
      'calicoctl: https needs --tls-cert and --tls-key together (given: --tls-key)',
    ],
    [
      ['node', '--ip=198.18.0.11', '--runtime=docker', '--tls-cert=/nonexistent/c.pem'],
      2,
      'calicoctl: --tls-cert/--tls-key/--tls-ca are for the diags service, which --runtime=docker does not start',
    ],
    [
      ['status', '--hostname=h1', '--api-cert=/nonexistent/c.pem'],
      2,
      'calicoctl: --api-cert is given without --api-key',
    ],
    [
      ['status', '--hostname=h1', '--api-ca=/nonexistent/ca.pem'],
      2,
      'calicoctl: --api-ca=/nonexistent/ca.pem: cannot read it (ENOENT)',
    ],
    [
      ['master', '--ip=198.18.0.1', '--gc-dead-hosts-after=10'],
      2,
      'calicoctl: --gc-dead-hosts-after=10: a duration of at least 1s such as 30m, 12h or 7d (units ms, s, m, h, d), or off',
    ],
  ])('%j exits %i with the reason', async (argv, code, message) => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await run(argv)).toBe(code);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toContain(message);
    } finally {
      err.mockRestore();
    }
  });
});

describe('calicoctl node remove checks the host name before etcd', () => {
  /** A context whose etcd must not be touched. */
  class NoEtcd extends Context {
    override get ds(): never {
      throw new Error('etcd was asked');
    }
  }
  const attempt = async (argv: string[]) => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const code = await run(argv, (f) => new NoEtcd(f));
      return { code, stderr: err.mock.calls.map((c) => String(c[0])).join('') };
    } finally {
      err.mockRestore();
    }
  };

  it.each(['H2', 'h2/alive', '../h2', 'h_2', 'h2.'])('%s is a usage error, and etcd is never asked', async (name) => {
    const r = await attempt(['node', 'remove', name, '--remove-endpoints']);
    expect(r).toEqual({
      code: 2,
      stderr: expect.stringMatching(
        /^calicoctl: host name ".*" is not valid; use lowercase letters, digits, "-" and "\."/,
      ),
    });
  });

  it('a good name goes on to etcd (the control)', async () => {
    expect(await attempt(['node', 'remove', 'h2', '--remove-endpoints'])).toEqual({
      code: 1,
      stderr: 'calicoctl: etcd was asked\n',
    });
  });
});

describe('status helpers', () => {
  it('reads BGP sessions from birdc show protocols', () => {
    const text = [
      'BIRD 2.0.12 ready.',
      'Name       Proto      Table      State  Since         Info',
      'device1    Device     ---        up     06:53:17.982  ',
      'kernel4    Kernel     master4    up     06:53:17.982  ',
      'Mesh_198_18_0_12 BGP        ---        up     06:53:18.747  Established   ',
      'RRClient_198_18_0_13 BGP    ---        start  06:53:18.747  Active        Socket: Connection refused',
      'Mesh_fd00_198_18__c BGP     ---        up     06:53:19.000  Established',
      'Global_198_18_0_100 BGP     ---        start  06:53:19.000  Connect',
    ].join('\n');
    expect(parseBirdProtocols(text)).toEqual([
      { peer: '198.18.0.12', type: 'mesh', state: 'up', since: '06:53:18.747', info: 'Established' },
      {
        peer: '198.18.0.13',
        type: 'rr-client',
        state: 'start',
        since: '06:53:18.747',
        info: 'Active Socket: Connection refused',
      },
      { peer: 'fd00:198:18::c', type: 'mesh', state: 'up', since: '06:53:19.000', info: 'Established' },
      { peer: '198.18.0.100', type: 'global', state: 'start', since: '06:53:19.000', info: 'Connect' },
    ]);
  });

  it('lays out tables', () => {
    expect(
      table(
        ['A', 'LONGER'],
        [
          ['xyz', '1'],
          ['', '22'],
        ],
      ),
    ).toBe('A    LONGER\nxyz  1\n     22');
  });
});

describe('the host name a command acts for', () => {
  it.each([
    [{ hostname: '..' }, {}, '--hostname: host name ".." is not valid'],
    [{ hostname: 'Host1' }, {}, '--hostname: host name "Host1" is not valid'],
    [{}, { CALICO_HOSTNAME: 'a/b' }, 'CALICO_HOSTNAME: host name "a/b" is not valid'],
  ])('%j %j is refused before anything else', (flags, env, message) => {
    const ctx = new Context(flags, process.stdout, process.stderr, env);
    expect(() => ctx.hostname).toThrow(message);
  });

  it('a host name by the rule is used as given (the control)', () => {
    expect(new Context({ hostname: 'h1.example' }, process.stdout, process.stderr, {}).hostname).toBe('h1.example');
    expect(new Context({}, process.stdout, process.stderr, { CALICO_HOSTNAME: 'h2' }).hostname).toBe('h2');
  });
});
