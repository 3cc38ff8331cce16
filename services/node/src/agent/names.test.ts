/**
 * The names and hash comments the agent writes into the kernel, against values computed once
 * outside this code, in the shell: base64url of SHA-256, with '-' and '_' written as 'x', cut
 * to length.
 *   h() { openssl dgst -sha256 -binary | basenc --base64url | tr -- '-_' 'xx' | cut -c1-$1; }
 *   printf '%s' g6 | h 20                                       # a group's set name
 *   printf '%s\0%s\0%s' cali-tw-aaaaaaaaaaa 1 '-j DROP' | h 16   # a rule's hash comment
 */
import { describe, expect, it } from 'vitest';
import { groupSetName, ruleHash } from './names.js';

describe('groupSetName: cali<family>g- and 20 characters of the hash of the group id', () => {
  it.each([
    ['g', 4, 'cali4g-zQqphWFHtsW0xyt9xuXa'],
    ['g', 6, 'cali6g-zQqphWFHtsW0xyt9xuXa'],
    // base64url gives TS9LZoz8SOYFnTbpEya_ and BE5yf6N4P8_iHVT-BDCm: '_' and '-' become 'x'.
    ['g2', 4, 'cali4g-TS9LZoz8SOYFnTbpEyax'],
    ['g6', 4, 'cali4g-BE5yf6N4P8xiHVTxBDCm'],
    ['big2', 4, 'cali4g-9xywuzgdPMszI3OECwQk'],
  ] as const)('group %j, IPv%i: %s', (groupId, family, name) => {
    expect(groupSetName(groupId, family)).toBe(name);
  });
});

describe('ruleHash: 16 characters of the hash of "<chain>\\0<position>\\0<rule>"', () => {
  it.each([
    [
      'cali-tw-aaaaaaaaaaa',
      0,
      '-m set --match-set cali4g-zQqphWFHtsW0xyt9xuXa src -p tcp -m tcp --dport 80 -j RETURN',
      'F9Y2scHXr1EKxhwI',
    ],
    ['cali-tw-aaaaaaaaaaa', 1, '-j DROP', 'N581PlVCHJ37T17z'],
    ['cali-fw-a00000002bc', 0, '! -s 10.65.2.188/32 -j DROP', 'c7rxFpzru7iJIlCW'],
    ['cali-fw-a00000002bc', 1, '-m set --match-set cali4g-9xywuzgdPMszI3OECwQk dst -j RETURN', 'nMxMkDIHhGWtVlHC'],
    ['cali-fw-a00000002bc', 2, '-j DROP', '7dnBTabGoimE9FVG'],
    ['cali-fw-a00000002bc', 1, '-m set --match-set cali4-ctl dst,dst -j DROP', 'ctuGf69ZG5ucPCM9'],
  ] as const)('%s, rule %i: %j → %s', (chain, index, rule, hash) => {
    expect(ruleHash(chain, index, rule)).toBe(hash);
  });
});
