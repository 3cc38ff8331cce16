import { describe, expect, it } from 'vitest';

import { KeyspaceError, KeyspaceErrorCode } from './errors.js';
import { bgpHostPeerKey } from './extraKeys.js';
import { birdIpKey, endpointAddrsKey, groupNameKey, groupPrefix, groupRuleKey } from './keys.js';
import {
  bgpHostDir,
  calicoDir,
  dirRange,
  endpointDir,
  groupDir,
  hostDir,
  rangeContains,
  workloadDir,
} from './range.js';

// etcd compares keys as bytes; this is the ground truth the string comparison must agree with.
function etcdIncludes(range: { start: string; end: string }, key: string): boolean {
  const k = Buffer.from(key);
  return Buffer.compare(k, Buffer.from(range.start)) >= 0 && Buffer.compare(k, Buffer.from(range.end)) < 0;
}

describe('dirRange', () => {
  it('ends the range at the prefix with its last byte incremented', () => {
    expect(dirRange('/calico/network/group/ab/')).toEqual({
      start: '/calico/network/group/ab/',
      end: '/calico/network/group/ab0',
    });
    expect(calicoDir()).toEqual({ start: '/calico/', end: '/calico0' });
  });

  it.each(['/calico/network/group/ab', '', '/calico/master/ip'])('refuses %j, which does not end in "/"', (prefix) => {
    let error: unknown;
    try {
      dirRange(prefix);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KeyspaceError);
    expect(error).toMatchObject({
      code: KeyspaceErrorCode.INVALID_PREFIX,
      message: `prefix "${prefix}" must end in "/"`,
    });
  });
});

describe("deleting group ab touches only group ab's keys", () => {
  const range = groupDir('ab');
  it.each([
    ['/calico/network/group/ab/name', true],
    ['/calico/network/group/ab/member/e1', true],
    [groupRuleKey('ab', 'outbound', 7), true],
    ['/calico/network/group/abc/name', false],
    ['/calico/network/group/ab0/name', false],
    ['/calico/network/group/ab-1/name', false],
    ['/calico/network/group/ab./name', false],
    ['/calico/network/group/ab', false],
    ['/calico/network/group/a/name', false],
    ['/calico/network/group/ab\u00e9/name', false],
    ['/calico/network/group/ab\u{1f600}/name', false],
  ])('%s: %s', (key, inside) => {
    expect(rangeContains(range, key)).toBe(inside);
    expect(etcdIncludes(range, key)).toBe(inside);
    expect(key.startsWith(groupPrefix('ab'))).toBe(inside);
  });
});

describe('directory ranges of hosts, workloads and endpoints', () => {
  const keys = [
    birdIpKey('h1'),
    birdIpKey('h10'),
    endpointAddrsKey('h1', 'c1', 'e1'),
    endpointAddrsKey('h1', 'c1', 'e10'),
    endpointAddrsKey('h1', 'c10', 'e1'),
    endpointAddrsKey('h10', 'c1', 'e1'),
    bgpHostPeerKey('h1', '198.18.0.1'),
    bgpHostPeerKey('h10', '198.18.0.1'),
    groupNameKey('h1'),
  ];

  it.each([
    [
      'hostDir(h1)',
      hostDir('h1'),
      [
        birdIpKey('h1'),
        endpointAddrsKey('h1', 'c1', 'e1'),
        endpointAddrsKey('h1', 'c1', 'e10'),
        endpointAddrsKey('h1', 'c10', 'e1'),
      ],
    ],
    [
      'workloadDir(h1, c1)',
      workloadDir('h1', 'c1'),
      [endpointAddrsKey('h1', 'c1', 'e1'), endpointAddrsKey('h1', 'c1', 'e10')],
    ],
    ['endpointDir(h1, c1, e1)', endpointDir('h1', 'c1', 'e1'), [endpointAddrsKey('h1', 'c1', 'e1')]],
    ['bgpHostDir(h1)', bgpHostDir('h1'), [bgpHostPeerKey('h1', '198.18.0.1')]],
    ['calicoDir()', calicoDir(), keys],
  ])('%s', (_name, range, expected) => {
    expect(keys.filter((k) => rangeContains(range, k))).toEqual(expected);
    expect(keys.filter((k) => etcdIncludes(range, k))).toEqual(expected);
  });
});
