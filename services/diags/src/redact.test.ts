import { describe, expect, it } from 'vitest';
import {
  isKeyFile,
  isSecretName,
  isSecretQueryParam,
  maskUrl,
  redactDockerInspect,
  redactJson,
  redactKeyspaceValue,
  redactText,
  scrubSecrets,
  urlSecrets,
} from './redact.js';

describe('isSecretName', () => {
  it.each([
    'PASSWORD',
    'DB_PASSWORD',
    'db_password',
    'MYSQL_ROOT_PASSWORD',
    'dbPassword',
    'PASSWD',
    'DB_PASS',
    'passphrase',
    'TOKEN',
    'GITHUB_TOKEN',
    'accessToken',
    'SECRET',
    'CLIENT_SECRET',
    'AWS_SECRET_ACCESS_KEY',
    'CREDENTIALS',
    'GOOGLE_APPLICATION_CREDENTIALS',
    'KEY',
    'key',
    'API_KEY',
    'apiKey',
    'SSHKEY',
    'ETCD_KEY_FILE',
    '--etcd-key',
    'etcdKey',
    'privateKey',
    'tls.key',
    'Authorization',
    'x-registry-auth',
    'Cookie',
  ])('%s is secret', (n) => expect(isSecretName(n)).toBe(true));
  it.each([
    'ETCD_AUTHORITY',
    'ETCD_ENDPOINTS',
    'CALICO_IP',
    'HOSTNAME',
    'PATH',
    '--etcd-cert',
    '--etcd-ca',
    'passive',
    'keyspace',
    'KEEPALIVE',
    'bird_ip',
    'LOG_LEVEL',
    'restarts',
    'Labels',
  ])('%s is not', (n) => expect(isSecretName(n)).toBe(false));
});

const b64 = (s: string) => Buffer.from(s).toString('base64');
const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----';

describe('redactText', () => {
  it.each([
    // command lines
    [
      'calico-node --etcd=1.2.3.4:2379 --etcd-key=/etc/calico/key.pem --ip=198.18.0.11',
      'calico-node --etcd=1.2.3.4:2379 --etcd-key=[redacted] --ip=198.18.0.11',
    ],
    [
      'calico-node --etcd-key /etc/calico/key.pem --ip 198.18.0.11',
      'calico-node --etcd-key [redacted] --ip 198.18.0.11',
    ],
    ['mysql --password="p4ss word" -h db', 'mysql --password=[redacted] -h db'],
    ['cli --token abc123 --verbose', 'cli --token [redacted] --verbose'],
    ['cli --no-key --verbose', 'cli --no-key --verbose'],
    ['run --etcd-cert=/c.pem --etcd-ca=/ca.pem', 'run --etcd-cert=/c.pem --etcd-ca=/ca.pem'],
    // environment assignments
    [
      'docker run -e DB_PASSWORD=hunter2 -e CALICO_IP=198.19.0.2 busybox',
      'docker run -e DB_PASSWORD=[redacted] -e CALICO_IP=198.19.0.2 busybox',
    ],
    [
      'ETCD_AUTHORITY=127.0.0.1:2379 ETCD_KEY_FILE=/k.pem calicoctl',
      'ETCD_AUTHORITY=127.0.0.1:2379 ETCD_KEY_FILE=[redacted] calicoctl',
    ],
    ["export API_TOKEN='a b c'", 'export API_TOKEN=[redacted]'],
    ['GET /x?user=bob&token=s3cr3t&n=1', 'GET /x?user=bob&token=[redacted]&n=1'],
    // JSON text, such as a pino log line or the supervisor's spec
    ['{"level":30,"password":"hunter2","msg":"x"}', '{"level":30,"password":"[redacted]","msg":"x"}'],
    [
      '{"argv":["node","--etcd-key=/k.pem","--ip=1.2.3.4"]}',
      '{"argv":["node","--etcd-key=[redacted]","--ip=1.2.3.4"]}',
    ],
    [
      '{"argv":["node","--etcd-key","/k.pem","--ip","1.2.3.4"]}',
      '{"argv":["node","--etcd-key","[redacted]","--ip","1.2.3.4"]}',
    ],
    ['{"Env":["DB_PASSWORD=hunter2","A=b"]}', '{"Env":["DB_PASSWORD=[redacted]","A=b"]}'],
    ['{"etcdKey": "/secret/k.pem", "etcdCert": "/c.pem"}', '{"etcdKey": "[redacted]", "etcdCert": "/c.pem"}'],
    // URLs and headers
    ['etcd at https://root:hunter2@10.0.0.1:2379/', 'etcd at https://root:[redacted]@10.0.0.1:2379/'],
    ['redis://:hunter2@10.0.0.1:6379/0', 'redis://:[redacted]@10.0.0.1:6379/0'],
    ['https://u:p@ss@h/x', 'https://u:[redacted]@h/x'],
    ['{"upstream":"https://u:pw12@x/"}', '{"upstream":"https://u:[redacted]@x/"}'],
    ['https://h:8080/x?mail=a@b.example', 'https://h:8080/x?mail=a@b.example'],
    ['Authorization: Bearer eyJhbGciOi.x.y', 'Authorization: [redacted]'],
    ['authorization=Basic dXNlcjpwYXNz', 'authorization=[redacted]'],
    ['{"headers":{"authorization":"Bearer x.y"}}', '{"headers":{"authorization":"[redacted]"}}'],
    // BIRD's peer passwords
    [
      'protocol bgp p1 { password "hunter2"; neighbor 1.2.3.4 as 64511; }',
      'protocol bgp p1 { password "[redacted]"; neighbor 1.2.3.4 as 64511; }',
    ],
    // private keys
    ['a\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----\nb', 'a\n[redacted private key]\nb'],
    // a cut key goes as far as its base64 does, and the text after it stays
    ['x -----BEGIN PRIVATE KEY-----\nMIIE\nab+/ (cut) y', 'x [redacted private key](cut) y'],
    // escaped inside a JSON string (a log line, a keyspace value), with and without its END line
    [
      String.raw`{"tls":"-----BEGIN PRIVATE KEY-----\nMIIEvQ+/=\n-----END PRIVATE KEY-----\n","n":1}`,
      String.raw`{"tls":"[redacted private key]\n","n":1}`,
    ],
    [String.raw`{"tls":"-----BEGIN EC PRIVATE KEY-----\nMHcCAQ\nBBQ","n":1}`, '{"tls":"[redacted private key]","n":1}'],
    [
      String.raw`"{\"k\":\"-----BEGIN RSA PRIVATE KEY-----\\nMIIE\\n-----END RSA PRIVATE KEY-----\"}"`,
      String.raw`"{\"k\":\"[redacted private key]\"}"`,
    ],
    ['-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQdG\n-----END PGP PRIVATE KEY BLOCK-----', '[redacted private key]'],
    ['-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----', '[redacted private key]'],
    // base64 once more, as a Kubernetes secret holds it; a certificate, raw or in base64, stays
    [`tls.key: ${b64('-----BEGIN PRIVATE KEY-----\nMIIE\n')} x`, 'tls.key: [redacted private key] x'],
    [`ca: ${b64('-----BEGIN CERTIFICATE-----\nMIIB\n')}`, `ca: ${b64('-----BEGIN CERTIFICATE-----\nMIIB\n')}`],
    [CERT, CERT],
    // nothing secret: untouched
    ['198.19.0.2 dev cali1234567890a scope link', '198.19.0.2 dev cali1234567890a scope link'],
    [
      '-A cali-fw-cali1234 -m comment --comment "cali:abc" -j DROP',
      '-A cali-fw-cali1234 -m comment --comment "cali:abc" -j DROP',
    ],
    ['passive on; keepalive time 3;', 'passive on; keepalive time 3;'],
  ])('%j', (input, want) => expect(redactText(input)).toBe(want));
});

// Signed URLs: the signature and credential values go, every other parameter stays; each row's control is the
// same URL without the secret parameter, unchanged.
const SIGNED: [string, string, string][] = [
  [
    'Azure SAS',
    'https://acct.blob.core.windows.net/c/d.tgz?sv=2022-11-02&se=2026-12-01T00%3A00Z&sr=b&sp=cw&sig=AbC%2Bd%2Fe%3D',
    'https://acct.blob.core.windows.net/c/d.tgz?sv=2022-11-02&se=2026-12-01T00%3A00Z&sr=b&sp=cw&sig=[redacted]',
  ],
  [
    'S3 presigned',
    'https://b.s3.amazonaws.com/d.tgz?X-Amz-Algorithm=AWS4-HMAC-SHA256' +
      '&X-Amz-Credential=AKIAEXAMPLE%2F20261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261201T000000Z' +
      '&X-Amz-Expires=900&X-Amz-Security-Token=FwoGZX&X-Amz-SignedHeaders=host&X-Amz-Signature=9f3b2c',
    'https://b.s3.amazonaws.com/d.tgz?X-Amz-Algorithm=AWS4-HMAC-SHA256' +
      '&X-Amz-Credential=[redacted]&X-Amz-Date=20261201T000000Z' +
      '&X-Amz-Expires=900&X-Amz-Security-Token=[redacted]&X-Amz-SignedHeaders=host&X-Amz-Signature=[redacted]',
  ],
  [
    'GCS signed',
    'https://storage.googleapis.com/b/d.tgz?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p.iam' +
      '&X-Goog-Date=20261201T000000Z&X-Goog-Expires=600&X-Goog-SignedHeaders=host&X-Goog-Signature=7a8b9c',
    'https://storage.googleapis.com/b/d.tgz?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=[redacted]' +
      '&X-Goog-Date=20261201T000000Z&X-Goog-Expires=600&X-Goog-SignedHeaders=host&X-Goog-Signature=[redacted]',
  ],
  [
    'S3 v2',
    'https://b.s3.amazonaws.com/d?Expires=1764547200&Signature=vjbyP%2B',
    'https://b.s3.amazonaws.com/d?Expires=1764547200&Signature=[redacted]',
  ],
  [
    'OAuth',
    'https://app/cb?state=xyz&code=4%2F0Ad&scope=email#access_token=ya29.a0&expires_in=3599',
    'https://app/cb?state=xyz&code=[redacted]&scope=email#access_token=[redacted]&expires_in=3599',
  ],
  [
    'API key',
    'https://maps.example/api?key=AIzaSyEXAMPLE&q=x&apikey=k123&password=pw',
    'https://maps.example/api?key=[redacted]&q=x&apikey=[redacted]&password=[redacted]',
  ],
  ['a path in a log line', 'PUT /upload?token=t0k3n&name=d.tgz 201', 'PUT /upload?token=[redacted]&name=d.tgz 201'],
];

describe('user:password@ without a scheme, and a token as the user name', () => {
  it.each([
    ['https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@git.example/o/r.git', 'https://[redacted]@git.example/o/r.git'],
    ['proxy=squid:s3cr3t@10.0.0.1:3128', 'proxy=squid:[redacted]@10.0.0.1:3128'],
    ['dsn admin:hunter2@db.example:5432/app', 'dsn admin:[redacted]@db.example:5432/app'],
    // JSON with escaped slashes, as some encoders write it.
    [
      '{"url":"https:\\/\\/deploy:s3cr3t@reg.example\\/v2"}',
      '{"url":"https:\\/\\/deploy:[redacted]@reg.example\\/v2"}',
    ],
    [
      '{"remote":"https:\\/\\/ghp_abc123@git.example\\/o\\/r"}',
      '{"remote":"https:\\/\\/[redacted]@git.example\\/o\\/r"}',
    ],
  ])('%s', (text, want) => {
    expect(maskUrl(text)).toBe(want);
    expect(redactText(text)).toBe(want);
  });
  it.each([
    // The controls: an image pinned by digest, an ssh user, an e-mail address and a time stay.
    'busybox:1.36@sha256:0123abcd',
    'ssh://git@github.com/o/r',
    '{"remote":"ssh:\\/\\/git@github.com\\/o\\/r"}',
    'mail ops@example.org at 10:30',
  ])('%s is left as it is', (text) => {
    expect(maskUrl(text)).toBe(text);
  });
});

describe('secrets in URLs', () => {
  it.each(SIGNED)('%s: masked in text, JSON strings and keyspace values', (_what, url, want) => {
    expect(maskUrl(url)).toBe(want);
    expect(redactText(`uploading to ${url} (PUT)`)).toBe(`uploading to ${want} (PUT)`);
    expect(redactJson({ upload: { url }, list: [url] })).toEqual({ upload: { url: want }, list: [want] });
    expect(redactKeyspaceValue('/calico/config/UploadUrl', url)).toBe(want);
    expect(redactKeyspaceValue('/calico/config/Upload', JSON.stringify({ url }))).toBe(JSON.stringify({ url: want }));
    // The control: the parameters that are not secret, alone, pass untouched.
    const plain = want.replace(/[?&#][\w.%-]+=\[redacted\]/g, '').replace(/^([^?]*)&/, '$1?');
    expect(plain).not.toContain('[redacted]');
    expect(redactText(plain)).toBe(plain);
  });
  it.each([
    ['sig', true],
    ['Signature', true],
    ['X-Amz-Signature', true],
    ['x-goog-signature', true],
    ['X-Amz-Credential', true],
    ['X-Amz-Security-Token', true],
    ['token', true],
    ['access_token', true],
    ['code', true],
    ['key', true],
    ['apikey', true],
    ['password', true],
    ['%73ig', true],
    ['se', false],
    ['sp', false],
    ['sv', false],
    ['sr', false],
    ['X-Amz-SignedHeaders', false],
    ['X-Amz-Date', false],
    ['X-Amz-Expires', false],
    ['state', false],
    ['name', false],
  ] as const)('query parameter %s secret: %s', (name, want) => expect(isSecretQueryParam(name)).toBe(want));
  it('finds the secret values of a URL, as written and decoded', () => {
    const want = ['p%40ss', 'p@ss', 'a%2Bb', 'a+b', 'tok'];
    expect(urlSecrets('https://u:p%40ss@h/up?sv=1&sig=a%2Bb&token=tok')).toEqual(want);
    expect(urlSecrets('https://h/up?sv=1&se=2')).toEqual([]);
  });
});

describe('redactJson', () => {
  it('masks secret fields, Env values (spaces included) and the value after a bare secret flag', () => {
    const sink = new Set<string>();
    const out = redactJson(
      {
        role: 'node',
        token: 'tok-123',
        nested: { DB_PASSWORD: 'hunter2', count: 3, enabled: true, keep: null },
        argv: ['node', 'main.js', '--etcd-key', '/etc/k.pem', '--ip', '1.2.3.4'],
        Env: ['DB_PASSWORD=hunter 2 with spaces', 'CALICO_IP=198.19.0.2', 'PATH=/bin'],
      },
      sink,
    );
    expect(out).toEqual({
      role: 'node',
      token: '[redacted]',
      nested: { DB_PASSWORD: '[redacted]', count: 3, enabled: true, keep: null },
      argv: ['node', 'main.js', '--etcd-key', '[redacted]', '--ip', '1.2.3.4'],
      Env: ['DB_PASSWORD=[redacted]', 'CALICO_IP=198.19.0.2', 'PATH=/bin'],
    });
    expect([...sink].sort()).toEqual(['/etc/k.pem', 'hunter 2 with spaces', 'hunter2', 'tok-123']);
  });
});

describe('redactDockerInspect', () => {
  it('masks Config.Env values whose names look secret, and nothing else', () => {
    const inspect = [
      {
        Id: 'abc',
        Name: '/db',
        Args: ['-c', 'exec sleep 600'],
        Config: {
          Env: ['DB_PASSWORD=hunter2', 'api_token=t0k', 'MyCredential=c', 'CALICO_IP=198.19.0.2', 'PATH=/usr/bin'],
          Labels: { 'org.projectcalico.host': 'h1', 'org.projectcalico.addrs': '198.19.0.2' },
        },
      },
    ];
    const sink = new Set<string>();
    const out = JSON.parse(redactDockerInspect(JSON.stringify(inspect), sink)) as typeof inspect;
    expect(out[0]!.Config.Env).toEqual([
      'DB_PASSWORD=[redacted]',
      'api_token=[redacted]',
      'MyCredential=[redacted]',
      'CALICO_IP=198.19.0.2',
      'PATH=/usr/bin',
    ]);
    expect(out[0]!.Config.Labels).toEqual(inspect[0]!.Config.Labels);
    expect(sink).toEqual(new Set(['hunter2', 't0k', 'c']));
  });
  it('keeps text that is not JSON, redacted as text', () => {
    expect(redactDockerInspect('Error: DB_PASSWORD=x')).toBe('Error: DB_PASSWORD=[redacted]');
  });
});

describe('redactKeyspaceValue', () => {
  it.each([
    ['/calico/host/h1/bird_ip', '198.18.0.11', '198.18.0.11'],
    ['/calico/host/monkey/bird_ip', '198.18.0.12', '198.18.0.12'],
    [
      '/calico/network/group/g1/rule/inbound/1',
      '{"group":null,"cidr":"10.0.0.0/8","protocol":"tcp","port":80}',
      '{"group":null,"cidr":"10.0.0.0/8","protocol":"tcp","port":80}',
    ],
    ['/calico/config/EtcdPassword', 'hunter2', '[redacted]'],
    ['/calico/config/DockerAuthToken', 'abc', '[redacted]'],
    [
      '/calico/config/Upstream',
      '{"url":"https://u:pw@x/","token":"t"}',
      '{"url":"https://u:[redacted]@x/","token":"[redacted]"}',
    ],
    ['/calico/config/Cmd', 'run --password=pw', 'run --password=[redacted]'],
    ['/calico/config/Broken', '{not json password="x"', '{not json password=[redacted]'],
  ])('%s', (key, value, want) => expect(redactKeyspaceValue(key, value)).toBe(want));
});

describe('scrubSecrets', () => {
  it.each([
    ['pino line {"msg":"env DB hunter2 seen"}', ['hunter2'], 'pino line {"msg":"env DB [redacted] seen"}'],
    ['a hunter2 b hunter2', ['hunter2'], 'a [redacted] b [redacted]'],
    ['short values stay: on 1', ['on', '1'], 'short values stay: on 1'],
    ['nothing', [], 'nothing'],
  ])('%j', (text, secrets, want) => expect(scrubSecrets(text, secrets)).toBe(want));
});

describe('isKeyFile', () => {
  it.each([
    ['tls/client.key', '', true],
    ['etcd-key.pem', '', true],
    ['private.txt', '', true],
    ['notes.txt', 'hello\n-----BEGIN EC PRIVATE KEY-----\n', true],
    ['calico-node.log', '{"level":30}', false],
    ['bird/bird.conf', 'router id 1.2.3.4;', false],
  ])('%s', (name, head, want) => expect(isKeyFile(name, head)).toBe(want));
});
