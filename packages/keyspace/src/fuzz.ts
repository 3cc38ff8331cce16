/**
 * Seeded hostile entries for fuzzing whatever reads /calico/: every one is refused by
 * decodeEntry (its value does not decode, its host segment is not a host name, or its key has
 * no layout), and most are near misses made from this package's own layouts and decoders: a
 * rule with port 65536, a bird_ip key spelt bird-ip, a rule index 01, a host segment with a
 * newline. Names are the fuzzer's own (hosts fz-…, groups fzg…, addresses in 203.0.113.0/24 and
 * 2001:db8::/32), so no entry lands on a key of a live cluster; of the keys a cluster has once,
 * only /calico/bgp/v1/global/{as_num,node_mesh} can be written (a cluster being fuzzed leaves
 * them unset), never /calico/master/*. The same seed gives the same entries.
 */
import { parseKey } from './keys.js';
import { isHostName } from './names.js';
import { decodeEntry } from './values.js';

export const fuzzClasses = [
  'bad-json',
  'wrong-shape',
  'wrong-type',
  'near-miss',
  'huge',
  'unicode',
  'control',
  'newline-in-segment',
  'one-level-off',
  'bad-host',
  'random-path',
] as const;

export type FuzzClass = (typeof fuzzClasses)[number];

export interface FuzzEntry {
  key: string;
  value: string;
  class: FuzzClass;
}

export interface FuzzOptions {
  seed: number;
  count: number;
  /** Bytes of all huge values together; 8 MiB by default. Each is 64 KiB to 1 MiB (etcd takes 1.5 MiB a request). */
  hugeBytes?: number;
}

/** mulberry32: small, fast and the same on every platform. Answers in [0, 1). */
export function fuzzRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;

const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T>(r: Rand, list: readonly T[]): T => list[Math.floor(r() * list.length)] as T;
const hex = (r: Rand, digits: number): string =>
  Array.from({ length: digits }, () => int(r, 0, 15).toString(16)).join('');

const HOSTS = ['fz-a', 'fz-b', 'fz-c', 'fz-d', 'fz-e.example'];
const host = (r: Rand) => pick(r, HOSTS);
const v4 = (r: Rand) => `203.0.113.${int(r, 1, 254)}`;
const v6 = (r: Rand) => `2001:db8::${int(r, 1, 0xffff).toString(16)}`;
const cid = (r: Rand) => `fzc${hex(r, 12)}`;
const eid = (r: Rand) => `fze${hex(r, 8)}`;
const gid = (r: Rand) => `fzg${hex(r, 8)}`;

/** Host segments that break the one rule, each a near miss of a real name. */
function badHostName(r: Rand): string {
  const h = host(r).split('.')[0] as string;
  return pick(r, [
    h.toUpperCase(),
    h.replace('-', '_'),
    `${h} x`,
    `${h}\nx`,
    `-${h}`,
    `${h}-`,
    `${h}..example`,
    `${h}é`,
    `${h}\u0000`,
    `${h}\u202e`,
    `${h}\t`,
    'x'.repeat(64),
    `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.${'e'.repeat(13)}`,
    '..',
    '.',
    '\uff46\uff5a', // fullwidth "fz"
    `${h}\r`,
  ]);
}

interface Layout {
  /** A key of this layout with fuzz names; host is the host segment where the layout has one. */
  key(r: Rand, hostName: string): string;
  hasHost: boolean;
  /** A value that decodes: what a near-miss key carries, so that only the key is wrong. */
  good(r: Rand): string;
  /** Values that do not decode, by class. */
  bad: Partial<Record<FuzzClass, (r: Rand) => string>>;
  json: boolean;
}

const hostDir = (h: string) => `/calico/host/${h}`;
const endpointDir = (r: Rand, h: string) => `${hostDir(h)}/workload/docker/${cid(r)}/endpoint/${eid(r)}`;
const groupDir = (r: Rand) => `/calico/network/group/${gid(r)}`;

/** Truncated, unbalanced, or not JSON at all: each once a value of the layout. */
function badJson(r: Rand, good: string): string {
  return pick(r, [
    good.slice(0, Math.max(1, int(r, 1, good.length - 1))),
    `${good}}`,
    `${good},`,
    good.replace(/"/g, "'"),
    `{${good}`,
    '',
    ' ',
    'NaN',
    'undefined',
    '{"a":1,}',
    '[1,]',
    '\u0000',
    '{"a":"\\x41"}',
    '{"a":01}',
    '\ufeff{}',
  ]);
}

const wrongShape = (r: Rand) => pick(r, ['[]', '{}', 'null', 'true', '0', '"x"', '[{}]', '[[]]', '{"":{}}', '[null]']);

const RULE_GOOD = '{"group":null,"cidr":"203.0.113.0/24","protocol":"tcp","port":80}';
const ALIVE_GOOD = '{"since":"2026-01-01T00:00:00.000Z","pid":1}';

const layouts = {
  birdIp: {
    key: (_r, h) => `${hostDir(h)}/bird_ip`,
    hasHost: true,
    json: false,
    good: v4,
    bad: {
      'near-miss': (r) =>
        pick(r, ['300.1.1.1', '203.0.113.010', v6(r), `${v4(r)}/32`, 'localhost', '203.0.113', `${v4(r)} 1`, '0x7f.1']),
      unicode: (r) => pick(r, ['\uff12\uff10\uff13.0.113.1', '203.0.113.\u0661', '203\u30020.113.1']),
      control: (r) => `${v4(r)}\u0000`,
      'newline-in-segment': (r) => `${v4(r)}\nprotocol bgp evil { neighbor 203.0.113.66 as 1; }`,
    },
  },
  bird6Ip: {
    key: (_r, h) => `${hostDir(h)}/bird6_ip`,
    hasHost: true,
    json: false,
    good: v6,
    bad: {
      'near-miss': (r) => pick(r, [v4(r), 'fe80::1%eth0', '2001:db8::g', '2001:db8:::1', `${v6(r)}/128`]),
      control: (r) => `${v6(r)}\u0007`,
    },
  },
  endpointAddrs: {
    key: (r, h) => `${endpointDir(r, h)}/addrs`,
    hasHost: true,
    json: true,
    good: (r) => `[{"addr":"${v4(r)}"}]`,
    bad: {
      'near-miss': (r) => {
        const a = v4(r);
        return pick(r, [
          '[]',
          `[{"addr":"${a}"},{"addr":"${a}"}]`,
          `[{"addr":"${a}/32"}]`,
          `["${a}"]`,
          `[{"addr":"${a}","x":1}]`,
          '[{"addr":"::ffff:zz"}]',
        ]);
      },
      'wrong-type': (r) =>
        pick(r, [
          '[{"addr":5}]',
          '[{"addr":null}]',
          '[{"addr":["203.0.113.1"]}]',
          '{"addr":"203.0.113.1"}',
          '[{"addr":true}]',
        ]),
      unicode: () => '[{"addr":"\uff12\uff10\uff13.0.113.1"}]',
    },
  },
  endpointMac: {
    key: (r, h) => `${endpointDir(r, h)}/mac`,
    hasHost: true,
    json: false,
    good: () => 'ee:ee:ee:ee:ee:ee',
    bad: {
      'near-miss': (r) =>
        pick(r, [
          'ee:ee:ee:ee:ee',
          'ee-ee-ee-ee-ee-ee',
          'gg:ee:ee:ee:ee:ee',
          'ee:ee:ee:ee:ee:ee:ee',
          '"ee:ee:ee:ee:ee:ee"',
          'eeeeeeeeeeee',
        ]),
      control: () => 'ee:ee:ee\r:ee:ee:ee',
    },
  },
  endpointState: {
    key: (r, h) => `${endpointDir(r, h)}/state`,
    hasHost: true,
    json: false,
    good: () => 'active',
    bad: {
      'near-miss': (r) =>
        pick(r, ['Active', 'running', 'ACTIVE', '"active"', 'active,inactive', 'inactive!', 'deleted']),
      control: (r) => pick(r, ['active\u0000', '\u001b[31mactive']),
      unicode: (r) => pick(r, ['\u0430ctive', 'act\u200bive']),
    },
  },
  groupName: {
    key: (r) => `${groupDir(r)}/name`,
    hasHost: false,
    json: false,
    good: () => 'fuzz',
    bad: {
      'near-miss': (r) => pick(r, ['', '   ', 'x'.repeat(257)]),
      control: (r) => pick(r, ['web\u0007', 'line1\nline2', 'a\u001b[2Jb', 'tab\tinside']),
      unicode: () => '\u{1f600}'.repeat(257),
    },
  },
  groupRule: {
    key: (r) => `${groupDir(r)}/rule/${pick(r, ['inbound', 'outbound'])}/${int(r, 1, 99)}`,
    hasHost: false,
    json: true,
    good: () => RULE_GOOD,
    bad: {
      'near-miss': (r) =>
        pick(r, [
          '{"group":null,"cidr":null,"protocol":null,"port":null}',
          '{"group":"fzg1","cidr":"203.0.113.0/24"}',
          '{"cidr":"203.0.113.0/24","protocol":"tcp","port":0}',
          '{"cidr":"203.0.113.0/24","protocol":"tcp","port":65536}',
          '{"cidr":"203.0.113.0/24","protocol":256}',
          '{"cidr":"203.0.113.0/24","protocol":"icmp","port":80}',
          '{"cidr":"203.0.113.0/24","port":80}',
          '{"cidr":"203.0.113.0/33"}',
          '{"cidr":"300.0.0.0/8"}',
          '{"cidr":"203.0.113.0/24","protocol":"tcpx"}',
          '{"cidr":"203.0.113.0/24","protocol":"tcp","port":80,"port:":80}',
          '{"cidr":"203.0.113.0/24","action":"allow"}',
          '{"group":"a/b"}',
          '{"group":""}',
          '{"cidr":"fe80::1%eth0/64"}',
        ]),
      'wrong-type': (r) =>
        pick(r, [
          '{"cidr":"203.0.113.0/24","protocol":"tcp","port":"eighty"}',
          '{"cidr":"203.0.113.0/24","protocol":"tcp","port":1.5}',
          '{"cidr":"203.0.113.0/24","protocol":"tcp","port":true}',
          '{"cidr":"203.0.113.0/24","protocol":{}}',
          '{"cidr":42}',
          '{"group":7}',
          '{"cidr":["203.0.113.0/24"]}',
          '{"cidr":"203.0.113.0/24","protocol":"tcp","port":[80]}',
        ]),
      unicode: (r) =>
        pick(r, ['{"cidr":"\uff12\uff10\uff13.0.113.0/24"}', '{"cidr":"203.0.113.0/24","protocol":"t\u0441p"}']),
      control: () => '{"cidr":"203.0.113.0/24","protocol":"tcp\\u0000"}',
    },
  },
  groupDefault: {
    key: (r) => `${groupDir(r)}/rule/${pick(r, ['inbound', 'outbound'])}_default`,
    hasHost: false,
    json: false,
    good: () => 'deny',
    bad: {
      'near-miss': (r) => pick(r, ['allow', 'Deny', 'DENY', 'deny deny', '"deny"', 'reject', '']),
      unicode: (r) => pick(r, ['d\u0435ny', 'deny\u200b']),
      control: () => 'deny\u0000',
    },
  },
  hostAlive: {
    key: (_r, h) => `${hostDir(h)}/alive`,
    hasHost: true,
    json: true,
    good: () => ALIVE_GOOD,
    bad: {
      'near-miss': (r) =>
        pick(r, [
          '{"since":"yesterday"}',
          '{"since":"2026-13-01T00:00:00Z"}',
          '{"since":"2026-01-01T00:00:00Z","pid":0}',
          '{"pid":1}',
          '{"since":"2026-01-01T00:00:00Z","host":"fz-a"}',
        ]),
      'wrong-type': (r) =>
        pick(r, [
          '{"since":5}',
          '{"since":"2026-01-01T00:00:00Z","pid":"1"}',
          '{"since":null}',
          '{"since":["2026-01-01T00:00:00Z"]}',
        ]),
    },
  },
  diagsUrl: {
    key: (_r, h) => `${hostDir(h)}/diags_url`,
    hasHost: true,
    json: false,
    good: () => 'http://203.0.113.1:9099/',
    bad: { 'near-miss': (r) => pick(r, ['ftp://203.0.113.1/', 'not a url', '/diags', 'javascript:alert(1)', '']) },
  },
  routeProto: {
    key: (_r, h) => `${hostDir(h)}/route_proto`,
    hasHost: true,
    json: false,
    good: () => '80',
    bad: { 'near-miss': (r) => pick(r, ['12', '4', '256', '0x50', '80.0', '-80', 'boot', '080']) },
  },
  ipAssignment: {
    key: (r) => (r() < 0.7 ? `/calico/ipam/v4/assignment/${v4(r)}` : `/calico/ipam/v6/assignment/${v6(r)}`),
    hasHost: false,
    json: true,
    good: () => '{"host":"fz-a","containerId":"fzc1"}',
    bad: {
      'near-miss': (r) =>
        pick(r, [
          '{"host":"fz-a"}',
          '{"containerId":"fzc1"}',
          '{"host":"a/b","containerId":"c"}',
          '{"host":"","containerId":"c"}',
          '{"host":"fz-a","containerId":"c","x":1}',
        ]),
      'wrong-type': (r) =>
        pick(r, [
          '{"host":5,"containerId":"c"}',
          '{"host":"fz-a","containerId":["c"]}',
          '{"host":"fz-a","containerId":"c","endpointId":7}',
        ]),
    },
  },
  ipPool: {
    key: (r) => `/calico/ipam/v4/pool/203.0.113.${pick(r, [0, 64, 128])}-26`,
    hasHost: false,
    json: true,
    good: () => '{"cidr":"203.0.113.0/26"}',
    bad: {
      'near-miss': (r) =>
        pick(r, ['{"cidr":"198.51.100.0/26"}', '{}', '{"cidr":"x"}', '{"cidr":"203.0.113.0/26","x":1}']),
      'wrong-type': () => '{"cidr":26}',
    },
  },
  bgpGlobalAsNum: {
    key: () => '/calico/bgp/v1/global/as_num',
    hasHost: false,
    json: false,
    good: () => '64512',
    bad: { 'near-miss': (r) => pick(r, ['0', '-1', '4294967296', 'AS64512', '1e3', '']) },
  },
  bgpGlobalNodeMesh: {
    key: () => '/calico/bgp/v1/global/node_mesh',
    hasHost: false,
    json: true,
    good: () => '{"enabled":true}',
    bad: { 'wrong-type': (r) => pick(r, ['{"enabled":"yes"}', '{"enabled":1}', '{"enabled":null}', '{}']) },
  },
  bgpGlobalPeer: {
    key: (r) => `/calico/bgp/v1/global/peer_v4/${v4(r)}`,
    hasHost: false,
    json: true,
    good: () => '{"ip":"203.0.113.200","as_num":64512}',
    bad: {
      'near-miss': (r) => pick(r, ['{"ip":"198.51.100.1","as_num":64512}', '{"ip":"203.0.113.1"}', '{"as_num":64512}']),
      'wrong-type': (r) =>
        pick(r, ['{"ip":"203.0.113.1","as_num":"x"}', '{"ip":5,"as_num":1}', '{"ip":"203.0.113.1","as_num":0}']),
    },
  },
  bgpHostAsNum: {
    key: (_r, h) => `/calico/bgp/v1/host/${h}/as_num`,
    hasHost: true,
    json: false,
    good: () => '64512',
    bad: { 'near-miss': (r) => pick(r, ['0', '4294967296', 'AS1', ' ', '1.0']) },
  },
  bgpHostPeer: {
    key: (r, h) => `/calico/bgp/v1/host/${h}/peer_v4/${v4(r)}`,
    hasHost: true,
    json: true,
    good: () => '{"ip":"203.0.113.200","as_num":64512}',
    bad: {
      'near-miss': (r) => pick(r, ['{"ip":"198.51.100.1","as_num":64512}', '{"ip":"203.0.113.1","as_num":4294967296}']),
      'wrong-type': () => '{"ip":["203.0.113.1"],"as_num":1}',
    },
  },
  bgpHostRouteReflector: {
    key: (_r, h) => `/calico/bgp/v1/host/${h}/route_reflector`,
    hasHost: true,
    json: true,
    good: () => '{"cluster_id":"1.0.0.1"}',
    bad: {
      'near-miss': (r) => pick(r, ['{"cluster_id":"1.0.0"}', '{}', '{"cluster_id":"1.0.0.1","x":1}']),
      'wrong-type': (r) => pick(r, ['{"cluster_id":5}', '{"cluster_id":null}']),
    },
  },
  workloadName: {
    key: (r, h) => `${hostDir(h)}/workload/docker/${cid(r)}/name`,
    hasHost: true,
    json: false,
    good: () => 'fuzz',
    bad: {
      'near-miss': (r) => pick(r, ['has space', '', '-leading', 'a/b']),
      unicode: () => 'n\u00e4me',
      control: () => 'name\u0000',
    },
  },
  refusedWorkload: {
    key: (r, h) => `${hostDir(h)}/refused/${cid(r)}`,
    hasHost: true,
    json: false,
    good: () => 'no reservation backs its labels',
    bad: { 'near-miss': (r) => pick(r, ['', 'two\nlines', '   ']) },
  },
  groupMember: {
    key: (r) => `${groupDir(r)}/member/${eid(r)}`,
    hasHost: false,
    json: false,
    good: () => '',
    bad: {},
  },
  config: {
    key: (r) => `/calico/config/fz${hex(r, 6)}`,
    hasHost: false,
    json: false,
    good: () => 'x',
    bad: {},
  },
} satisfies Record<string, Layout>;

/** Each layout seen as a Layout, so its key takes (r, host) whatever its own literal declares. */
const byName: Record<keyof typeof layouts, Layout> = layouts;
const LAYOUTS: Layout[] = Object.values(byName);
const WITH_BAD = LAYOUTS.filter((l) => Object.keys(l.bad).length > 0);
const JSON_LAYOUTS = LAYOUTS.filter((l) => l.json);
const WITH_HOST = LAYOUTS.filter((l) => l.hasHost);

/** Cyrillic letters that look like Latin ones. */
const LOOK_ALIKES: Record<string, string> = { a: '\u0430', e: '\u0435', i: '\u0456', o: '\u043e' };

/** A segment spelt almost right: case, separator, one letter more or less, a look-alike letter, an invisible one. */
function misspell(r: Rand, seg: string): string {
  const at = int(r, 0, Math.max(0, seg.length - 1));
  return pick(r, [
    seg.toUpperCase(),
    seg.charAt(0).toUpperCase() + seg.slice(1),
    seg.includes('_') ? seg.replace('_', '-') : `${seg}_`,
    `${seg}s`,
    seg.slice(0, -1),
    `${seg.slice(0, at)}${seg.slice(at + 1)}`,
    `${seg} `,
    ` ${seg}`,
    `${seg.slice(0, at)}\u200b${seg.slice(at)}`,
    seg.replace(/[aeio]/, (c) => LOOK_ALIKES[c] ?? c),
  ]);
}

const INDEX_NEAR_MISSES = ['0', '01', '-1', '1.5', '1e3', ' 1', '1 ', '\uff11', '9'.repeat(20), '0x1', '+1', '1\n'];
const ADDRESS_NEAR_MISSES = [
  '203.0.113.01',
  '2001:DB8::1',
  '2001:db8:0:0::1',
  '2001:0db8::1',
  '203.0.113.1%eth0',
  '::ffff:203.0.113.1',
];
const POOL_NEAR_MISSES = ['203.0.113.1-24', '203.0.113.0-33', '203.0.113.0', '203.0.113.0_24', '203.0.113.0--24'];

const lastAs = (segs: readonly string[], last: string) => `/calico/${[...segs.slice(0, -1), last].join('/')}`;

/** A key of a layout moved one step: a segment added, dropped, misspelt, emptied, or a part spelt non-canonically. */
function oneLevelOff(r: Rand, key: string): string {
  const segs = key.slice('/calico/'.length).split('/');
  const i = int(r, 0, segs.length - 1);
  const seg = segs[i] as string;
  switch (int(r, 0, 6)) {
    case 0:
      return `${key}/${pick(r, ['x', 'value', '1', 'addrs', 'name', 'bird_ip'])}`;
    case 1:
      return `/calico/${segs.slice(0, -1).join('/')}`;
    case 2:
      return `/calico/${[...segs.slice(0, i), misspell(r, seg), ...segs.slice(i + 1)].join('/')}`;
    case 3:
      return `/calico/${[...segs.slice(0, i), '', ...segs.slice(i)].join('/')}`;
    case 4:
      return `${key}/`;
    case 5:
      // the rule index, or an address or pool in the key, spelt another way
      if (/^[1-9][0-9]*$/.test(segs.at(-1) ?? '')) return lastAs(segs, pick(r, INDEX_NEAR_MISSES));
      if (key.includes('/pool/')) return lastAs(segs, pick(r, POOL_NEAR_MISSES));
      return lastAs(segs, pick(r, ADDRESS_NEAR_MISSES));
    default:
      // a segment swapped with its neighbour
      if (i + 1 >= segs.length) return `/calico/${segs.slice(1).join('/')}`;
      return `/calico/${[...segs.slice(0, i), segs[i + 1], seg, ...segs.slice(i + 2)].join('/')}`;
  }
}

const RANDOM_CHARS = [
  ...'az09-_. "\'\\%*?',
  '\n',
  '\t',
  '\u0000',
  '\u001b',
  'é',
  '\u00ad',
  '\u200b',
  '\u202e',
  '\ufeff',
  '\u{1f600}',
  '\u4e2d',
];

function randomPath(r: Rand): string {
  const segment = () => Array.from({ length: int(r, 1, 12) }, () => pick(r, RANDOM_CHARS)).join('');
  const segs = Array.from({ length: int(r, 1, 6) }, segment);
  const top = pick(r, [
    '',
    'host/',
    'network/',
    'network/group/',
    'bgp/v1/',
    'ipam/',
    'master/',
    'hosts/',
    'Network/',
    'netw0rk/',
    'bgp/v2/',
  ]);
  return `/calico/${top}${segs.join('/')}`;
}

/** A huge value that does not decode, from a few shapes that cost decoders differently. */
function hugeEntry(r: Rand, size: number): { key: string; value: string } {
  const h = host(r);
  switch (int(r, 0, 5)) {
    case 0:
      return { key: byName.groupDefault.key(r, h), value: `allow${'x'.repeat(size - 5)}` };
    case 1: {
      // one duplicate address after another: one message each, unless capped
      const item = `{"addr":"${v4(r)}"}`;
      const n = Math.floor((size - 2) / (item.length + 1));
      return { key: byName.endpointAddrs.key(r, h), value: `[${Array.from({ length: n }, () => item).join(',')}]` };
    }
    case 2: {
      const fields: string[] = [];
      for (let i = 0, length = 40; length + 10 < size; i++) {
        const f = `"f${i.toString(36)}":1`;
        fields.push(f);
        length += f.length + 1;
      }
      return { key: byName.groupRule.key(r, h), value: `{"cidr":"203.0.113.0/24",${fields.join(',')}}` };
    }
    case 3: {
      // nested as deep as the size allows, where messages show the field
      const depth = Math.floor(size / 2) - 32;
      const deep = `${'['.repeat(depth)}${']'.repeat(depth)}`;
      return pick(r, [
        { key: byName.hostAlive.key(r, h), value: `{"since":${deep}}` },
        { key: byName.hostAlive.key(r, h), value: `{"since":"2026-01-01T00:00:00Z","pid":${deep}}` },
        { key: byName.bgpGlobalNodeMesh.key(r, h), value: `{"enabled":${deep}}` },
        { key: byName.groupRule.key(r, h), value: `{"cidr":${deep}}` },
      ]);
    }
    case 4:
      return { key: byName.groupName.key(r, h), value: 'n'.repeat(size) };
    default:
      return { key: byName.birdIp.key(r, badHostName(r)), value: `${v4(r)}${'\n'.repeat(8)}${'x'.repeat(size - 30)}` };
  }
}

// A margin inside 64 KiB to 1 MiB, for the brackets and the prefixes of the shapes above.
const HUGE_MIN = 64 * 1024 + 64;
const HUGE_MAX = 1024 * 1024 - 64;

/**
 * Whether a key could be a live cluster's: a host segment that is a host name but not one of the
 * fuzzer's, or a group id not of its own (a misspelt "fz-a" is "z-a"), or one under /calico/master/.
 */
function mayBeLive(key: string): boolean {
  if (key.startsWith('/calico/master/')) return true;
  const k = parseKey(key);
  if ('host' in k && isHostName(k.host) && !k.host.startsWith('fz-')) return true;
  return 'groupId' in k && !k.groupId.replace(/[\r\n]/g, '').startsWith('fzg');
}

/** What decodeEntry says of it: only refused entries are kept. */
function refused(key: string, value: string): boolean {
  return !decodeEntry(key, value).ok;
}

function makeEntry(r: Rand, cls: Exclude<FuzzClass, 'huge'>): { key: string; value: string } {
  switch (cls) {
    case 'bad-json': {
      const l = pick(r, JSON_LAYOUTS);
      return { key: l.key(r, host(r)), value: badJson(r, l.good(r)) };
    }
    case 'wrong-shape': {
      const l = pick(r, JSON_LAYOUTS);
      return { key: l.key(r, host(r)), value: wrongShape(r) };
    }
    case 'one-level-off': {
      const l = pick(r, LAYOUTS);
      return { key: oneLevelOff(r, l.key(r, host(r))), value: l.good(r) };
    }
    case 'bad-host': {
      const l = pick(r, WITH_HOST);
      return { key: l.key(r, badHostName(r)), value: l.good(r) };
    }
    case 'newline-in-segment': {
      const l = pick(r, LAYOUTS);
      const key = l.key(r, host(r));
      const segs = key.split('/');
      const i = int(r, 2, segs.length - 1);
      const seg = segs[i] as string;
      const at = int(r, 0, seg.length);
      segs[i] = `${seg.slice(0, at)}${pick(r, ['\n', '\r\n', '\n\n'])}${seg.slice(at)}`;
      // In a free segment (an id) the key is still one of its layout: then the value is what is wrong.
      const bad = Object.values(l.bad);
      const value = bad.length > 0 ? (pick(r, bad) as (r: Rand) => string)(r) : l.good(r);
      return { key: segs.join('/'), value };
    }
    case 'random-path':
      return { key: randomPath(r), value: pick(r, ['', 'x', '{}', '198.18.0.1', RULE_GOOD]) };
    default: {
      // near-miss, wrong-type, unicode, control: a layout's own bad values of that class
      const ls = WITH_BAD.filter((l) => l.bad[cls] !== undefined);
      const l = pick(r, ls);
      return { key: l.key(r, host(r)), value: (l.bad[cls] as (r: Rand) => string)(r) };
    }
  }
}

/** Shares of the classes (huge is drawn apart, within its byte budget). */
const WEIGHTS: [Exclude<FuzzClass, 'huge'>, number][] = [
  ['near-miss', 24],
  ['bad-json', 10],
  ['wrong-shape', 8],
  ['wrong-type', 10],
  ['one-level-off', 16],
  ['bad-host', 10],
  ['unicode', 6],
  ['control', 6],
  ['newline-in-segment', 6],
  ['random-path', 4],
];
const TOTAL_WEIGHT = WEIGHTS.reduce((s, [, w]) => s + w, 0);

function drawClass(r: Rand): Exclude<FuzzClass, 'huge'> {
  let x = r() * TOTAL_WEIGHT;
  for (const [cls, w] of WEIGHTS) if ((x -= w) < 0) return cls;
  return 'near-miss';
}

/**
 * `count` entries with distinct keys, every one refused by decodeEntry. About one in a hundred
 * is huge while the byte budget lasts. A key is never one of /calico/master/.
 */
export function fuzzEntries(opts: FuzzOptions): FuzzEntry[] {
  const r = fuzzRandom(opts.seed);
  let hugeLeft = opts.hugeBytes ?? 8 * 1024 * 1024;
  const seen = new Set<string>();
  const out: FuzzEntry[] = [];
  for (let tries = 0; out.length < opts.count; tries++) {
    if (tries > opts.count * 100) {
      throw new Error(`fuzzEntries: cannot make ${opts.count} distinct entries (seed ${opts.seed})`);
    }
    let cls: FuzzClass;
    let e: { key: string; value: string };
    if (hugeLeft >= HUGE_MIN && r() < 0.01) {
      const size = Math.min(hugeLeft, int(r, HUGE_MIN, HUGE_MAX));
      cls = 'huge';
      e = hugeEntry(r, size);
      if (refused(e.key, e.value) && !seen.has(e.key) && !mayBeLive(e.key)) hugeLeft -= e.value.length;
    } else {
      cls = drawClass(r);
      e = makeEntry(r, cls);
    }
    if (seen.has(e.key) || mayBeLive(e.key) || !refused(e.key, e.value)) continue;
    seen.add(e.key);
    out.push({ key: e.key, value: e.value, class: cls });
  }
  return out;
}
