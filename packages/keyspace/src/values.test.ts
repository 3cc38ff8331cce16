import { describe, expect, it } from 'vitest';

import { KeyspaceError, KeyspaceErrorCode } from './errors.js';
import { extraKeySpecs } from './extraKeys.js';
import { seedKeySpecs, type CalicoKeyKind } from './keys.js';
import {
  decodeAddrs,
  oneIPv4Addr,
  decodeAsNum,
  decodeRouteProto,
  encodeRouteProto,
  decodeBgpPeer,
  decodeBird6Ip,
  decodeBirdIp,
  decodeConfigValue,
  decodeDefault,
  decodeEntry,
  decodeGroupName,
  decodeHostAlive,
  decodeIpAssignment,
  decodeIpPool,
  decodeMac,
  decodeMasterIp,
  decodeMember,
  decodeNodeMesh,
  decodeRouteReflector,
  decodeRule,
  decodeState,
  decodeUrl,
  encodeAddrs,
  encodeAsNum,
  encodeBgpPeer,
  encodeBird6Ip,
  encodeBirdIp,
  encodeDefault,
  encodeGroupName,
  encodeHostAlive,
  encodeIpAssignment,
  encodeIpPool,
  encodeMac,
  encodeMasterIp,
  encodeMember,
  encodeNodeMesh,
  encodeRouteReflector,
  encodeRule,
  encodeUrl,
  type DecodeResult,
  type Rule,
} from './values.js';

const RULE = '/calico/network/group/g1/rule/inbound/1';

/** Expects a decode failure with exactly these messages, each prefixed by the key. */
function failsWith(result: DecodeResult<unknown>, key: string, messages: string[]): void {
  expect(result).toEqual({ ok: false, errors: messages.map((m) => `${key}: ${m}`) });
}

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('rules: the seed examples', () => {
  it.each([
    [
      // The seed's own spelling: "port:" (sic) stands for "port".
      '{"group": null, "cidr": "10.65.0.0/24", "protocol": null, "port:": null}',
      { group: null, cidr: '10.65.0.0/24', family: 4, protocol: null, port: null },
      '{"group":null,"cidr":"10.65.0.0/24","protocol":null,"port":null}',
    ],
    [
      '{"group": "a935e8e1-008a-4e05-af4b-4b5701df417e", "cidr": null, "protocol": null, "port": null}',
      { group: 'a935e8e1-008a-4e05-af4b-4b5701df417e', cidr: null, family: null, protocol: null, port: null },
      '{"group":"a935e8e1-008a-4e05-af4b-4b5701df417e","cidr":null,"protocol":null,"port":null}',
    ],
    [
      '{"group": null, "cidr": "0.0.0.0/0", "protocol": "tcp", "port": "80"}',
      { group: null, cidr: '0.0.0.0/0', family: 4, protocol: 'tcp', port: 80 },
      '{"group":null,"cidr":"0.0.0.0/0","protocol":"tcp","port":80}',
    ],
  ] as const)('%s', (raw, rule, canonical) => {
    expect(decodeRule(RULE, raw)).toEqual({ ok: true, value: rule });
    expect(encodeRule(rule)).toBe(canonical);
    expect(decodeRule(RULE, canonical)).toEqual({ ok: true, value: rule });
  });
});

describe('rules that decode', () => {
  it.each<[string, Rule]>([
    [
      '{"group":null,"cidr":"::/0","protocol":"icmpv6","port":null}',
      { group: null, cidr: '::/0', family: 6, protocol: 'icmpv6', port: null },
    ],
    ['{"cidr":"10.65.0.9/24"}', { group: null, cidr: '10.65.0.0/24', family: 4, protocol: null, port: null }],
    [
      '{"cidr":"FD00:198:19::1/48","protocol":"UDP","port":53}',
      { group: null, cidr: 'fd00:198:19::/48', family: 6, protocol: 'udp', port: 53 },
    ],
    [
      '{"cidr":"::ffff:10.0.0.0/104","protocol":"tcp","port":1}',
      { group: null, cidr: '::ffff:10.0.0.0/104', family: 6, protocol: 'tcp', port: 1 },
    ],
    [
      '{"group":"g2","protocol":6,"port":65535}',
      { group: 'g2', cidr: null, family: null, protocol: 'tcp', port: 65535 },
    ],
    [
      '{"group":"g2","protocol":"17","port":"5353"}',
      { group: 'g2', cidr: null, family: null, protocol: 'udp', port: 5353 },
    ],
    ['{"group":"g2","protocol":132,"port":9}', { group: 'g2', cidr: null, family: null, protocol: 'sctp', port: 9 }],
    [
      '{"group":"g2","protocol":"UDPLite","port":9}',
      { group: 'g2', cidr: null, family: null, protocol: 'udplite', port: 9 },
    ],
    ['{"group":"g2","protocol":1}', { group: 'g2', cidr: null, family: null, protocol: 'icmp', port: null }],
    ['{"group":"g2","protocol":47,"port":null}', { group: 'g2', cidr: null, family: null, protocol: '47', port: null }],
    ['{"group":"g2","protocol":"0"}', { group: 'g2', cidr: null, family: null, protocol: '0', port: null }],
    ['{"group":"g2","protocol":255}', { group: 'g2', cidr: null, family: null, protocol: '255', port: null }],
    [
      '{"cidr":"0.0.0.0/0","protocol":"tcp","port:":443}',
      { group: null, cidr: '0.0.0.0/0', family: 4, protocol: 'tcp', port: 443 },
    ],
  ])('%s', (raw, rule) => {
    expect(decodeRule(RULE, raw)).toEqual({ ok: true, value: rule });
    // The canonical encoding decodes to the same rule.
    expect(decodeRule(RULE, encodeRule(rule))).toEqual({ ok: true, value: rule });
  });
});

describe('rules that do not decode', () => {
  it.each<[string, string[]]>([
    ['not json', ['value is not valid JSON: "not json"']],
    ['[]', ['value must be a JSON object, got array']],
    ['null', ['value must be a JSON object, got null']],
    ['"x"', ['value must be a JSON object, got string']],
    ['{}', ['exactly one of group and cidr must be set, both are null']],
    [
      '{"group":null,"cidr":null,"protocol":null,"port":null}',
      ['exactly one of group and cidr must be set, both are null'],
    ],
    [
      '{"group":"g2","cidr":"10.0.0.0/8","protocol":null,"port":null}',
      ['exactly one of group and cidr must be set, both are set'],
    ],
    ['{"group":""}', ['group must not be empty']],
    ['{"group":"a/b"}', ['group "a/b" must not contain "/"']],
    ['{"group":5}', ['group must be a string, got number']],
    ['{"cidr":24}', ['cidr must be a string or null, got number']],
    ['{"cidr":"10.65.0.0"}', ['cidr "10.65.0.0" is not valid: missing prefix length (expected address/length)']],
    ['{"cidr":"10.65.0.256/24"}', ['cidr "10.65.0.256/24" is not valid: octet "256" is greater than 255']],
    ['{"cidr":"10.65.0.0/33"}', ['cidr "10.65.0.0/33" is not valid: prefix length 33 is greater than 32 for IPv4']],
    ['{"cidr":"::/129"}', ['cidr "::/129" is not valid: prefix length 129 is greater than 128 for IPv6']],
    ['{"cidr":"1::2::3/64"}', ['cidr "1::2::3/64" is not valid: "::" may appear only once']],
    ['{"cidr":"0.0.0.0/0","protocol":"icmp","port":8}', ['port must be null for protocol icmp']],
    ['{"cidr":"::/0","protocol":"icmpv6","port":"1"}', ['port must be null for protocol icmpv6']],
    ['{"cidr":"0.0.0.0/0","protocol":58,"port":1}', ['port must be null for protocol icmpv6']],
    ['{"cidr":"0.0.0.0/0","protocol":47,"port":80}', ['port must be null for protocol 47']],
    ['{"cidr":"0.0.0.0/0","protocol":null,"port":80}', ['port must be null when protocol is null (any protocol)']],
    ['{"cidr":"0.0.0.0/0","port:":80}', ['port must be null when protocol is null (any protocol)']],
    [
      '{"cidr":"0.0.0.0/0","protocol":"tcpx"}',
      ['protocol "tcpx" is not one of icmp, tcp, udp, icmpv6, sctp, udplite or a number from 0 to 255'],
    ],
    [
      '{"cidr":"0.0.0.0/0","protocol":"256"}',
      ['protocol "256" is not one of icmp, tcp, udp, icmpv6, sctp, udplite or a number from 0 to 255'],
    ],
    ['{"cidr":"0.0.0.0/0","protocol":256}', ['protocol 256 is not a protocol number from 0 to 255']],
    ['{"cidr":"0.0.0.0/0","protocol":6.5}', ['protocol 6.5 is not a protocol number from 0 to 255']],
    ['{"cidr":"0.0.0.0/0","protocol":true}', ['protocol must be a string, a number or null, got boolean']],
    ['{"cidr":"0.0.0.0/0","protocol":"tcp","port":0}', ['port 0 is out of range 1 to 65535']],
    ['{"cidr":"0.0.0.0/0","protocol":"tcp","port":65536}', ['port 65536 is out of range 1 to 65535']],
    ['{"cidr":"0.0.0.0/0","protocol":"tcp","port":"65536"}', ['port "65536" is out of range 1 to 65535']],
    ['{"cidr":"0.0.0.0/0","protocol":"tcp","port":-1}', ['port -1 is out of range 1 to 65535']],
    ['{"cidr":"0.0.0.0/0","protocol":"tcp","port":80.5}', ['port 80.5 is not an integer']],
    ['{"cidr":"0.0.0.0/0","protocol":"tcp","port":"80a"}', ['port "80a" is not a decimal integer']],
    ['{"cidr":"0.0.0.0/0","protocol":"tcp","port":" 80"}', ['port " 80" is not a decimal integer']],
    ['{"cidr":"0.0.0.0/0","protocol":"tcp","port":""}', ['port "" is not a decimal integer']],
    ['{"cidr":"0.0.0.0/0","protocol":"tcp","port":[80]}', ['port must be a number or a numeric string, got array']],
    ['{"cidr":"0.0.0.0/0","action":"allow"}', ['unknown field "action"']],
    [
      '{"cidr":"0.0.0.0/0","protocol":"tcp","port":80,"port:":null}',
      ['unknown field "port:" (it is read as "port" only when "port" is absent)'],
    ],
    [
      '{"group":"","cidr":"x","protocol":"bogus","port":0,"extra":1}',
      [
        'unknown field "extra"',
        'group must not be empty',
        'cidr "x" is not valid: missing prefix length (expected address/length)',
        'protocol "bogus" is not one of icmp, tcp, udp, icmpv6, sctp, udplite or a number from 0 to 255',
        'port 0 is out of range 1 to 65535',
      ],
    ],
  ])('%s', (raw, messages) => failsWith(decodeRule(RULE, raw), RULE, messages));

  it('names the key it was given', () => {
    const key = '/calico/network/group/g1/rule/outbound/7';
    failsWith(decodeRule(key, '{"cidr":"0.0.0.0/0","protocol":"icmp","port":8}'), key, [
      'port must be null for protocol icmp',
    ]);
  });
});

describe('encodeRule', () => {
  it('writes the canonical form of looser input', () => {
    expect(encodeRule({ cidr: '10.65.0.1/24', protocol: 'TCP', port: '80' })).toBe(
      '{"group":null,"cidr":"10.65.0.0/24","protocol":"tcp","port":80}',
    );
    expect(encodeRule({ group: 'g2', protocol: 17 })).toBe('{"group":"g2","cidr":null,"protocol":"udp","port":null}');
  });

  it('refuses what it could not decode', () => {
    const e = thrown(() => encodeRule({ group: 'g2', cidr: '10.0.0.0/8', protocol: 'icmp', port: 8 }));
    expect(e).toBeInstanceOf(KeyspaceError);
    expect(e).toMatchObject({
      code: KeyspaceErrorCode.INVALID_VALUE,
      message:
        'invalid rule: exactly one of group and cidr must be set, both are set; port must be null for protocol icmp',
    });
  });
});

describe('defaults', () => {
  const key = '/calico/network/group/g1/rule/inbound_default';
  it.each(['deny', ' deny\n'])('%j is deny', (raw) =>
    expect(decodeDefault(key, raw)).toEqual({ ok: true, value: 'deny' }),
  );
  it.each(['DENY', 'allow', '', '"deny"'])('%j is refused', (raw) =>
    failsWith(decodeDefault(key, raw), key, [
      `default must be "deny" (the only supported value), got ${JSON.stringify(raw)}`,
    ]),
  );
  it('encodes', () => expect(encodeDefault()).toBe('deny'));
});

describe('endpoint addrs', () => {
  const key = '/calico/host/host1/workload/docker/c1/endpoint/e1/addrs';
  it('decodes and normalises', () => {
    expect(decodeAddrs(key, '[{"addr":"FD00:198:19::0001"},{"addr":"198.19.0.1"}]')).toEqual({
      ok: true,
      value: [
        { addr: 'fd00:198:19::1', family: 6 },
        { addr: '198.19.0.1', family: 4 },
      ],
    });
  });

  it('reads the one-address form the node writes without JSON.parse, and agrees with the full read', () => {
    expect(oneIPv4Addr('[{"addr":"198.19.0.1"}]')).toBe('198.19.0.1');
    for (const raw of [
      '[{"addr":"198.19.0.1"}]',
      '[{"addr":"198.19.0.01"}]',
      '[{"addr":"198.19.0.1 "}]',
      '[{"addr":"fd00::1"}]',
      '[{"addr":"198.19.0.1"},{"addr":"198.19.0.2"}]',
      '[{"addr":"198.19.0.1"}] ',
      '[{"addr": "198.19.0.1"}]',
      '[{"addr":"256.0.0.1"}]',
      '[{"addr":""}]',
    ]) {
      const full = decodeAddrs(key, raw);
      const one = oneIPv4Addr(raw);
      // Either the full read has exactly that one IPv4 address, or the fast path stays out of it.
      if (one !== null) expect(full).toEqual({ ok: true, value: [{ addr: one, family: 4 }] });
      else expect(raw === '[{"addr":"198.19.0.1"}]').toBe(false);
    }
  });

  it.each<[string, string[]]>([
    ['{}', ['addrs must be a JSON array, got object']],
    ['[]', ['addrs must not be empty']],
    ['["198.19.0.1"]', ['addrs[0] must be an object like {"addr": "198.19.0.1"}, got string']],
    ['[{}]', ['addrs[0].addr is missing']],
    ['[{"addr":7}]', ['addrs[0].addr must be an IPv4 or IPv6 address string, got number']],
    ['[{"addr":"198.19.0.1/32"}]', ['addrs[0].addr "198.19.0.1/32" must be an address without a prefix length']],
    [
      '[{"addr":"198.19.0.256"}]',
      ['addrs[0].addr "198.19.0.256" is not an IPv4 or IPv6 address: octet "256" is greater than 255'],
    ],
    ['[{"addr":"198.19.0.1","mask":32}]', ['addrs[0]: unknown field "mask"']],
    ['[{"addr":"fd00::1"},{"addr":"198.19.0.1"},{"addr":"FD00:0::1"}]', ['addrs[2].addr fd00::1 duplicates addrs[0]']],
    [
      '[{"addr":"198.19.0.1"},null,{"addr":"x"}]',
      [
        'addrs[1] must be an object like {"addr": "198.19.0.1"}, got null',
        'addrs[2].addr "x" is not an IPv4 or IPv6 address: expected four dot-separated decimal octets',
      ],
    ],
  ])('%s', (raw, messages) => failsWith(decodeAddrs(key, raw), key, messages));

  it('encodes strings or {addr} objects canonically', () => {
    expect(encodeAddrs(['198.19.0.1', { addr: 'FD00::1' }])).toBe('[{"addr":"198.19.0.1"},{"addr":"fd00::1"}]');
    expect(() => encodeAddrs([])).toThrow('invalid addrs: addrs must not be empty');
  });
});

describe('scalar endpoint values', () => {
  const key = '/calico/host/host1/workload/docker/c1/endpoint/e1/mac';
  it('mac: lowercased, colon-separated', () => {
    expect(decodeMac(key, 'AA:bb:CC:dd:ee:0F')).toEqual({ ok: true, value: 'aa:bb:cc:dd:ee:0f' });
    expect(encodeMac('EE:EE:EE:EE:EE:EE')).toBe('ee:ee:ee:ee:ee:ee');
  });
  it.each(['aa:bb:cc:dd:ee', 'aa-bb-cc-dd-ee-ff', 'aabb.ccdd.eeff', 'gg:bb:cc:dd:ee:ff', 'aa:bb:cc:dd:ee:ff:00', ''])(
    'mac %j is refused',
    (raw) => failsWith(decodeMac(key, raw), key, [`mac ${JSON.stringify(raw)} is not of the form aa:bb:cc:dd:ee:ff`]),
  );

  const stateKey = '/calico/host/host1/workload/docker/c1/endpoint/e1/state';
  it.each([
    ['active', 'active'],
    ['inactive', 'inactive'],
    [' active\n', 'active'],
  ])('state %j', (raw, state) => expect(decodeState(stateKey, raw)).toEqual({ ok: true, value: state }));
  it.each(['Active', 'up', ''])('state %j is refused', (raw) =>
    failsWith(decodeState(stateKey, raw), stateKey, [
      `state must be "active" or "inactive", got ${JSON.stringify(raw)}`,
    ]),
  );
});

describe('group name and members', () => {
  const key = '/calico/network/group/g1/name';
  it.each([
    ['  web servers \n', 'web servers'],
    ['a'.repeat(256), 'a'.repeat(256)],
    ['\u{1f600}'.repeat(256), '\u{1f600}'.repeat(256)], // counted in code points, not UTF-16 units
    ['Zürich frontends', 'Zürich frontends'],
  ])('%j', (raw, name) => expect(decodeGroupName(key, raw)).toEqual({ ok: true, value: name }));

  it.each([
    ['', 'name must not be empty'],
    [' \t\n', 'name must not be empty'],
    ['a'.repeat(257), 'name is 257 characters long, more than 256'],
    ['a\tb', 'name must not contain control characters, found U+0009'],
    ['a\u0000b', 'name must not contain control characters, found U+0000'],
    ['a\u007fb', 'name must not contain control characters, found U+007F'],
    ['a\u0085b', 'name must not contain control characters, found U+0085'],
  ])('%j is refused', (raw, message) => failsWith(decodeGroupName(key, raw), key, [message]));

  it('encodes trimmed', () => expect(encodeGroupName(' web ')).toBe('web'));

  it('ignores whatever value a member key holds', () => {
    const member = '/calico/network/group/g1/member/e1';
    for (const raw of ['', 'x', '{"not":"checked"}'])
      expect(decodeMember(member, raw)).toEqual({ ok: true, value: null });
    expect(encodeMember()).toBe('');
  });
});

describe('addresses: master ip, bird_ip, bird6_ip', () => {
  const master = '/calico/master/ip';
  const bird = '/calico/host/host1/bird_ip';
  const bird6 = '/calico/host/host1/bird6_ip';
  it('decodes and normalises', () => {
    expect(decodeMasterIp(master, '198.18.0.1')).toEqual({ ok: true, value: '198.18.0.1' });
    expect(decodeMasterIp(master, ' FD00::0001\n')).toEqual({ ok: true, value: 'fd00::1' });
    expect(decodeBirdIp(bird, '198.18.0.2')).toEqual({ ok: true, value: '198.18.0.2' });
    expect(decodeBird6Ip(bird6, 'fd00:0:0::2')).toEqual({ ok: true, value: 'fd00::2' });
  });

  it.each([
    [
      decodeMasterIp,
      master,
      'x',
      'value "x" is not an IPv4 or IPv6 address: expected four dot-separated decimal octets',
    ],
    [decodeBirdIp, bird, 'fd00::1', 'value "fd00::1" is not an IPv4 address: it is IPv6'],
    [decodeBirdIp, bird, '198.18.0.0/24', 'value "198.18.0.0/24" must be an address without a prefix length'],
    [decodeBird6Ip, bird6, '198.18.0.1', 'value "198.18.0.1" is not an IPv6 address: it is IPv4'],
  ])('%#: %s %j', (decode, key, raw, message) => failsWith(decode(key, raw), key, [message]));

  it('encodes', () => {
    expect(encodeMasterIp('FD00::1')).toBe('fd00::1');
    expect(encodeBirdIp('198.18.0.1')).toBe('198.18.0.1');
    expect(encodeBird6Ip('fd00::0:1')).toBe('fd00::1');
    expect(() => encodeBirdIp('fd00::1')).toThrow(
      'invalid bird_ip: value "fd00::1" is not an IPv4 address: it is IPv6',
    );
  });
});

describe('IP reservations and pools', () => {
  const key = '/calico/ipam/v4/assignment/198.19.0.1';
  it.each([
    ['{"host":"host1","containerId":"c1","endpointId":"e1"}', { host: 'host1', containerId: 'c1', endpointId: 'e1' }],
    ['{"host":"host1","containerId":"c1"}', { host: 'host1', containerId: 'c1' }],
    ['{"host":"host1","containerId":"c1","endpointId":null}', { host: 'host1', containerId: 'c1' }],
  ])('assignment %s', (raw, value) => expect(decodeIpAssignment(key, raw)).toEqual({ ok: true, value }));

  it.each<[string, string[]]>([
    ['{"containerId":"c1"}', ['host is missing']],
    ['{"host":"","containerId":"c1"}', ['host must not be empty']],
    [
      '{"host":"h","containerId":"c/1","endpointId":3}',
      ['containerId "c/1" must not contain "/"', 'endpointId must be a string, got number'],
    ],
    ['{"host":"h","containerId":"c","pod":"x"}', ['unknown field "pod"']],
  ])('assignment %s is refused', (raw, messages) => failsWith(decodeIpAssignment(key, raw), key, messages));

  it('encodes assignments', () => {
    expect(encodeIpAssignment({ host: 'h', containerId: 'c' })).toBe('{"host":"h","containerId":"c"}');
    expect(encodeIpAssignment({ host: 'h', containerId: 'c', endpointId: 'e' })).toBe(
      '{"host":"h","containerId":"c","endpointId":"e"}',
    );
  });

  const pool = '/calico/ipam/v4/pool/198.19.0.0-16';
  it('decodes a pool that matches its key', () => {
    expect(decodeIpPool(pool, '{"cidr":"198.19.0.0/16"}')).toEqual({
      ok: true,
      value: { cidr: '198.19.0.0/16', family: 4 },
    });
    expect(decodeIpPool(pool, '{"cidr":"198.19.7.7/16"}')).toEqual({
      ok: true,
      value: { cidr: '198.19.0.0/16', family: 4 },
    });
    expect(encodeIpPool('FD00:198:19::1/48')).toBe('{"cidr":"fd00:198:19::/48"}');
  });
  it.each<[string, string[]]>([
    ['{"cidr":"198.19.0.0/24"}', ['cidr 198.19.0.0/24 does not match the pool in the key (198.19.0.0/16)']],
    ['{}', ['cidr is missing']],
    ['{"cidr":"198.19.0.0"}', ['cidr "198.19.0.0" is not valid: missing prefix length (expected address/length)']],
  ])('pool %s is refused', (raw, messages) => failsWith(decodeIpPool(pool, raw), pool, messages));
});

describe('host liveness', () => {
  const key = '/calico/host/host1/alive';
  it.each([
    ['{"since":"2024-05-01T12:00:00Z","pid":4242}', { since: '2024-05-01T12:00:00.000Z', pid: 4242 }],
    ['{"since":"2024-05-01T14:00:00.5+02:00"}', { since: '2024-05-01T12:00:00.500Z' }],
  ])('%s', (raw, value) => expect(decodeHostAlive(key, raw)).toEqual({ ok: true, value }));

  it.each<[string, string[]]>([
    ['{}', ['since is missing']],
    ['{"since":"yesterday"}', ['since must be an ISO 8601 time like "2024-05-01T12:00:00.000Z", got "yesterday"']],
    ['{"since":1714564800}', ['since must be an ISO 8601 time like "2024-05-01T12:00:00.000Z", got 1714564800']],
    ['{"since":"2024-05-01T12:00:00Z","pid":0}', ['pid must be a positive integer, got 0']],
    [
      '{"since":"2024-05-01T12:00:00Z","pid":"12","host":"h"}',
      ['unknown field "host"', 'pid must be a positive integer, got "12"'],
    ],
  ])('%s is refused', (raw, messages) => failsWith(decodeHostAlive(key, raw), key, messages));

  it('encodes', () => {
    expect(encodeHostAlive({ since: '2024-05-01T12:00:00Z', pid: 7 })).toBe(
      '{"since":"2024-05-01T12:00:00.000Z","pid":7}',
    );
    expect(encodeHostAlive({ since: '2024-05-01T12:00:00.000Z' })).toBe('{"since":"2024-05-01T12:00:00.000Z"}');
  });
});

describe('route_proto', () => {
  const key = '/calico/host/host1/route_proto';
  it.each([
    ['80', 80],
    [' 5\n', 5],
    ['255', 255],
  ])('%j', (raw, n) => expect(decodeRouteProto(key, raw)).toEqual({ ok: true, value: n }));
  it.each(['0', '3', '4', '256', '080', '80.0', 'boot', ''])('%j is refused', (raw) => {
    const why = `value ${JSON.stringify(raw)} is not a kernel route protocol (an integer from 5 to 255)`;
    failsWith(decodeRouteProto(key, raw), key, [why]);
  });
  it("BIRD's own protocol is refused", () => {
    failsWith(decodeRouteProto(key, '12'), key, ["value 12 is BIRD's own route protocol"]);
  });
  it('encodes what it decodes', () => {
    expect(encodeRouteProto(80)).toBe('80');
    expect(() => encodeRouteProto(3)).toThrow('is not a kernel route protocol');
  });
});

describe('BGP settings', () => {
  const asKey = '/calico/bgp/v1/global/as_num';
  it.each([
    ['64512', 64512],
    [' 65000\n', 65000],
    ['1', 1],
    ['4294967295', 4294967295],
  ])('as_num %j', (raw, n) => expect(decodeAsNum(asKey, raw)).toEqual({ ok: true, value: n }));
  it.each(['0', '4294967296', '64512.5', 'AS64512', '064512', ''])('as_num %j is refused', (raw) =>
    failsWith(decodeAsNum(asKey, raw), asKey, [
      `value ${JSON.stringify(raw)} is not an AS number (an integer from 1 to 4294967295)`,
    ]),
  );

  const meshKey = '/calico/bgp/v1/global/node_mesh';
  it('node_mesh', () => {
    expect(decodeNodeMesh(meshKey, '{"enabled":false}')).toEqual({ ok: true, value: { enabled: false } });
    failsWith(decodeNodeMesh(meshKey, '{"enabled":"yes"}'), meshKey, ['enabled must be true or false, got "yes"']);
    failsWith(decodeNodeMesh(meshKey, '{}'), meshKey, ['enabled is missing']);
  });

  const peerKey = '/calico/bgp/v1/global/peer_v4/198.18.0.254';
  const hostPeerKey = '/calico/bgp/v1/host/host1/peer_v4/198.18.0.254';
  it('peers', () => {
    const value = { ip: '198.18.0.254', asNum: 64512 };
    expect(decodeBgpPeer(peerKey, '{"ip":"198.18.0.254","as_num":64512}')).toEqual({ ok: true, value });
    expect(decodeBgpPeer(hostPeerKey, '{"ip":"198.18.0.254","as_num":"64512"}')).toEqual({ ok: true, value });
  });
  it.each<[string, string, string[]]>([
    [
      peerKey,
      '{"ip":"198.18.0.1","as_num":64512}',
      ['ip 198.18.0.1 does not match the peer in the key (198.18.0.254)'],
    ],
    [
      hostPeerKey,
      '{"ip":"198.18.0.1","as_num":64512}',
      ['ip 198.18.0.1 does not match the peer in the key (198.18.0.254)'],
    ],
    [peerKey, '{"ip":"198.18.0.254","as_num":0}', ['as_num 0 is out of range 1 to 4294967295']],
    [peerKey, '{"ip":"fd00::1"}', ['ip "fd00::1" is not an IPv4 address: it is IPv6', 'as_num is missing']],
  ])('peer %s %s is refused', (key, raw, messages) => failsWith(decodeBgpPeer(key, raw), key, messages));

  const rrKey = '/calico/bgp/v1/host/host1/route_reflector';
  it('route_reflector', () => {
    expect(decodeRouteReflector(rrKey, '{"cluster_id":"1.0.0.1"}')).toEqual({
      ok: true,
      value: { clusterId: '1.0.0.1' },
    });
    failsWith(decodeRouteReflector(rrKey, '{"cluster_id":"1.0.0"}'), rrKey, [
      'cluster_id "1.0.0" is not a dotted quad: expected four dot-separated decimal octets',
    ]);
    failsWith(decodeRouteReflector(rrKey, '{"cluster_id":1}'), rrKey, [
      'cluster_id must be a dotted-quad string like "1.0.0.1", got number',
    ]);
  });

  it('encodes', () => {
    expect(encodeAsNum(64512)).toBe('64512');
    expect(() => encodeAsNum(0)).toThrow(
      'invalid as_num: value "0" is not an AS number (an integer from 1 to 4294967295)',
    );
    expect(encodeNodeMesh({ enabled: true })).toBe('{"enabled":true}');
    expect(encodeBgpPeer({ ip: '198.18.0.254', asNum: 64512 })).toBe('{"ip":"198.18.0.254","as_num":64512}');
    expect(encodeRouteReflector({ clusterId: '1.0.0.1' })).toBe('{"cluster_id":"1.0.0.1"}');
  });
});

describe('service URLs and config', () => {
  const key = '/calico/host/host1/diags_url';
  it.each([
    ['http://198.18.0.1:9000', 'http://198.18.0.1:9000/'],
    [' https://master.example:8443/api\n', 'https://master.example:8443/api'],
    ['http://[fd00::1]:9000/', 'http://[fd00::1]:9000/'],
  ])('%j', (raw, url) => expect(decodeUrl(key, raw)).toEqual({ ok: true, value: url }));
  it.each(['ftp://198.18.0.1/', '198.18.0.1:9000', 'not a url', ''])('%j is refused', (raw) =>
    failsWith(decodeUrl(key, raw), key, [`value ${JSON.stringify(raw)} is not an absolute http or https URL`]),
  );
  it('encodes', () => expect(encodeUrl('http://198.18.0.1:9000')).toBe('http://198.18.0.1:9000/'));

  it('config values are passed through untouched', () => {
    expect(decodeConfigValue('/calico/config/log_level', ' debug\n')).toEqual({ ok: true, value: ' debug\n' });
  });
});

describe('decodeEntry', () => {
  // One valid value per kind; the Record makes a new kind without a sample fail to compile.
  const samples: Record<CalicoKeyKind, string> = {
    masterIp: '198.18.0.1',
    birdIp: '198.18.0.2',
    endpointAddrs: '[{"addr":"198.19.0.1"}]',
    endpointMac: 'ee:ee:ee:ee:ee:ee',
    endpointState: 'active',
    groupName: 'web',
    groupMember: '',
    groupRule: '{"group": null, "cidr": "0.0.0.0/0", "protocol": "tcp", "port": "80"}',
    groupDefault: 'deny',
    masterApiUrl: 'http://198.18.0.1:8080/',
    bird6Ip: 'fd00::2',
    hostAlive: '{"since":"2024-05-01T12:00:00.000Z"}',
    diagsUrl: 'http://198.18.0.2:9000/',
    routeProto: '80',
    ipAssignment: '{"host":"host1","containerId":"c0ffee"}',
    ipPool: 'unused', // chosen per example below, since v4 and v6 pools differ
    bgpGlobalAsNum: '64512',
    bgpGlobalNodeMesh: '{"enabled":true}',
    bgpGlobalPeer: '{"ip":"198.18.0.254","as_num":64513}',
    bgpHostAsNum: '64514',
    bgpHostPeer: '{"ip":"198.18.0.254","as_num":64513}',
    bgpHostRouteReflector: '{"cluster_id":"1.0.0.1"}',
    config: 'debug',
    workloadName: 'web-1',
    refusedWorkload: 'address 198.19.0.1 is reserved by container c0ffee on host host1',
  };
  const poolSamples: Record<string, string> = {
    '/calico/ipam/v4/pool/198.19.0.0-16': '{"cidr":"198.19.0.0/16"}',
    '/calico/ipam/v6/pool/fd00:198:19::-48': '{"cidr":"fd00:198:19::/48"}',
  };

  it.each([...seedKeySpecs, ...extraKeySpecs].map((s) => [s.example, s] as const))('%s', (example, spec) => {
    const raw = spec.kind === 'ipPool' ? (poolSamples[example] ?? '') : samples[spec.kind];
    const r = decodeEntry(example, raw);
    expect(r.ok, JSON.stringify(r)).toBe(true);
    if (r.ok) expect(r.value.key.kind).toBe(spec.kind);
  });

  it('pairs the parsed key with the decoded value', () => {
    const key = '/calico/network/group/g1/rule/inbound/2';
    expect(decodeEntry(key, '{"group": "g2", "cidr": null, "protocol": null, "port": null}')).toEqual({
      ok: true,
      value: {
        key: { kind: 'groupRule', groupId: 'g1', direction: 'inbound', index: 2 },
        value: { group: 'g2', cidr: null, family: null, protocol: null, port: null },
      },
    });
  });

  it('reports keys outside the keyspace and bad values', () => {
    failsWith(decodeEntry('/calico/unknown', 'x'), '/calico/unknown', ['not a key of the /calico keyspace']);
    failsWith(decodeEntry('/calico/host/host1/bird_ip', 'x'), '/calico/host/host1/bird_ip', [
      'value "x" is not an IPv4 address: expected four dot-separated decimal octets',
    ]);
  });

  it.each(['HOST1', 'a b', '..', '-x', 'h1\n', 'x'.repeat(64)])(
    'refuses the host segment %j, whatever the value',
    (host) => {
      const key = `/calico/host/${host}/bird_ip`;
      const r = decodeEntry(key, '198.18.0.11');
      expect(r.ok).toBe(false);
      expect(r.ok ? [] : r.errors).toEqual([
        expect.stringMatching(
          /: the host segment is not a host name: host name .* (is not valid|has a label of 64 characters); use lowercase letters/,
        ),
      ]);
      // The control: the same key of a host name decodes.
      expect(decodeEntry('/calico/host/host1/bird_ip', '198.18.0.11').ok).toBe(true);
    },
  );
});

describe('addrs: the one-address fast path', () => {
  it('decodes exactly like the full path (forced here by a leading space JSON allows)', () => {
    const values = [
      '198.19.0.1',
      '0.0.0.0',
      '255.255.255.255',
      '198.19.0.01',
      '256.0.0.1',
      '1.2.3',
      '198.19.0.1"},{"addr":"198.19.0.2',
      'fd00::1',
      '',
    ];
    for (const v of values) {
      const raw = `[{"addr":"${v}"}]`;
      expect(decodeAddrs('/k', raw), raw).toEqual(decodeAddrs('/k', ` ${raw}`));
    }
  });
});

describe('hostile values: decoders stay small and never throw', () => {
  const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  const aliveKey = '/calico/host/host1/alive';
  const meshKey = '/calico/bgp/v1/global/node_mesh';

  it('a field of 100,000 nested arrays is named by its kind (String() of it overflows the stack)', () => {
    const nested = JSON.parse(deep(100_000)) as unknown;
    // The control: what the message used to be built from.
    expect(() => String(nested)).toThrow(RangeError);
    failsWith(decodeHostAlive(aliveKey, `{"since":${deep(100_000)}}`), aliveKey, [
      'since must be an ISO 8601 time like "2024-05-01T12:00:00.000Z", got array',
    ]);
    failsWith(decodeHostAlive(aliveKey, `{"since":"2024-05-01T12:00:00Z","pid":${deep(100_000)}}`), aliveKey, [
      'pid must be a positive integer, got array',
    ]);
    const mesh = decodeNodeMesh(meshKey, `{"enabled":{"a":${deep(100_000)}}}`);
    failsWith(mesh, meshKey, ['enabled must be true or false, got object']);
    expect(decodeEntry(meshKey, `{"enabled":${deep(100_000)}}`).ok).toBe(false);
  });

  it('quotes at most 77 characters of a huge value', () => {
    const key = '/calico/network/group/g1/rule/inbound_default';
    const raw = `allow${'x'.repeat(1024 * 1024)}`;
    const quoted = `"allow${'x'.repeat(72)}..."`;
    failsWith(decodeDefault(key, raw), key, [`default must be "deny" (the only supported value), got ${quoted}`]);
    // Cut on a code point: an emoji is never split into half a surrogate pair.
    const emoji = `"${'😀'.repeat(77)}..."`;
    failsWith(decodeMac('/k', '😀'.repeat(100)), '/k', [`mac ${emoji} is not of the form aa:bb:cc:dd:ee:ff`]);
    const rule = decodeRule('/k', `{"${'f'.repeat(100_000)}":1,"cidr":"0.0.0.0/0"}`);
    expect(rule).toEqual({ ok: false, errors: [`/k: unknown field "${'f'.repeat(77)}..."`] });
    // The control: a short value is quoted whole.
    failsWith(decodeDefault(key, 'allow'), key, ['default must be "deny" (the only supported value), got "allow"']);
  });

  it('gives a value at most ten messages and a count of the rest', () => {
    const key = '/calico/host/host1/workload/docker/c1/endpoint/e1/addrs';
    const raw = JSON.stringify(Array.from({ length: 50_000 }, () => 5));
    const item = 'must be an object like {"addr": "198.19.0.1"}, got number';
    const r = decodeAddrs(key, raw);
    expect(r.ok ? [] : r.errors).toEqual([
      ...Array.from({ length: 10 }, (_, i) => `${key}: addrs[${i}] ${item}`),
      `${key}: and 49990 more problems in this value`,
    ]);
    // The control: ten problems are all shown, with no count.
    const ten = decodeAddrs(key, JSON.stringify(Array.from({ length: 10 }, () => 5)));
    expect(ten.ok ? [] : ten.errors).toHaveLength(10);
  });
});
