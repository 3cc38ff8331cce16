import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { bgpInputFrom, bgpKeyFilter, birdView } from './model.js';
import { renderBirdConf } from './render.js';

const j = (o: unknown) => JSON.stringify(o);
const hosts = (n: number, v6 = false): [string, string][] =>
  Array.from({ length: n }, (_, i) => [
    [`/calico/host/h${i + 1}/bird_ip`, `198.18.0.${11 + i}`] as [string, string],
    ...(v6 ? [[`/calico/host/h${i + 1}/bird6_ip`, `fd00:198:18::${(11 + i).toString(16)}`] as [string, string]] : []),
  ]).flat();

/** An endpoint of `host` with these addresses (ids derived from n). */
const endpoint = (host: string, n: number, ...addrs: string[]): [string, string] => {
  const hex = n.toString(16).padStart(12, '0');
  return [`/calico/host/${host}/workload/docker/c${hex}/endpoint/e${hex}/addrs`, j(addrs.map((addr) => ({ addr })))];
};
const pool4: [string, string] = ['/calico/ipam/v4/pool/198.19.0.0-16', j({ cidr: '198.19.0.0/16' })];

/** BIRD's own parser must accept every rendered config. */
function birdAccepts(text: string): { ok: boolean; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'bgp-render-'));
  try {
    const f = join(dir, 'bird.conf');
    writeFileSync(f, text);
    const r = spawnSync('bird', ['-p', '-c', f], { encoding: 'utf8' });
    return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const cases: [string, [string, string][], string][] = [
  ['full mesh of three hosts, no pools', hosts(3), 'h2'],
  [
    'pools restrict what is carried',
    [
      ...hosts(2),
      ['/calico/ipam/v4/pool/198.19.0.0-16', j({ cidr: '198.19.0.0/16' })],
      ['/calico/ipam/v6/pool/fd00:198:19::-48', j({ cidr: 'fd00:198:19::/48' })],
    ],
    'h1',
  ],
  ['IPv6: a second session and kernel6 when both hosts have IPv6 addresses', [...hosts(3, true)], 'h1'],
  [
    'AS numbers: global, and per host (eBGP between different ASes)',
    [...hosts(3), ['/calico/bgp/v1/global/as_num', '65001'], ['/calico/bgp/v1/host/h3/as_num', '65003']],
    'h1',
  ],
  [
    'global and per-host peers; a host peer overrides the global one for the same address',
    [
      ...hosts(2),
      ['/calico/bgp/v1/global/peer_v4/198.18.0.100', j({ ip: '198.18.0.100', as_num: 65100 })],
      ['/calico/bgp/v1/global/peer_v4/198.18.0.101', j({ ip: '198.18.0.101', as_num: 64511 })],
      ['/calico/bgp/v1/host/h1/peer_v4/198.18.0.101', j({ ip: '198.18.0.101', as_num: 65101 })],
    ],
    'h1',
  ],
  [
    'route reflector: the reflector side',
    [
      ...hosts(4),
      ['/calico/bgp/v1/global/node_mesh', j({ enabled: false })],
      ['/calico/bgp/v1/host/h1/route_reflector', j({ cluster_id: '1.0.0.1' })],
      ['/calico/bgp/v1/host/h2/route_reflector', j({ cluster_id: '1.0.0.1' })],
    ],
    'h1',
  ],
  [
    'route reflector: a client peers only with the reflectors',
    [
      ...hosts(4),
      ['/calico/bgp/v1/global/node_mesh', j({ enabled: false })],
      ['/calico/bgp/v1/host/h1/route_reflector', j({ cluster_id: '1.0.0.1' })],
      ['/calico/bgp/v1/host/h2/route_reflector', j({ cluster_id: '1.0.0.1' })],
    ],
    'h4',
  ],
  [
    "only this host's endpoint addresses are taken from the kernel, with the node's route protocol",
    [
      ...hosts(2, true),
      pool4,
      ['/calico/host/h1/route_proto', '80'],
      ['/calico/host/h2/route_proto', '90'],
      endpoint('h1', 1, '198.19.0.2'),
      endpoint('h1', 2, '198.19.0.3', 'fd00:198:19::3'),
      endpoint('h1', 3, '198.19.0.10'),
      endpoint('h2', 4, '198.19.1.2'),
    ],
    'h1',
  ],
  [
    'a host whose node has not published its route protocol yet: any protocol, still only its endpoints',
    [...hosts(2), endpoint('h1', 1, '198.19.0.2')],
    'h1',
  ],
  [
    'mesh off and no reflector: no BGP sessions at all',
    [...hosts(3), ['/calico/bgp/v1/global/node_mesh', j({ enabled: false })]],
    'h1',
  ],
];

describe('bird.conf rendering', () => {
  it.each(cases)('%s', (_name, kvs, host) => {
    const text = renderBirdConf(
      birdView(bgpInputFrom(new Map(kvs)), host, { logFile: '/var/lib/calico/test/bird.log' }),
    );
    expect(text).toMatchSnapshot();
    const r = birdAccepts(text);
    expect(r.ok, r.out).toBe(true);
  });

  it('the higher address of a pair is the passive side, so two hosts never collide', () => {
    const input = bgpInputFrom(new Map(hosts(3)));
    const h1 = birdView(input, 'h1').peers;
    const h3 = birdView(input, 'h3').peers;
    expect(h1.map((p) => [p.ip, p.passive])).toEqual([
      ['198.18.0.12', false],
      ['198.18.0.13', false],
    ]);
    expect(h3.map((p) => [p.ip, p.passive])).toEqual([
      ['198.18.0.11', true],
      ['198.18.0.12', true],
    ]);
  });

  it('a host without bird_ip cannot be rendered, with a reason', () => {
    expect(() => birdView(bgpInputFrom(new Map(hosts(2))), 'h9')).toThrow(
      'host "h9" has no bird_ip yet: start calico-node on it with --ip',
    );
  });

  it('bad keys are reported and skipped, never fatal', () => {
    const input = bgpInputFrom(
      new Map([...hosts(2), ['/calico/bgp/v1/global/as_num', 'sixty-four'], ['/calico/bgp/v1/global/node_mesh', '{']]),
    );
    expect([...input.problems.keys()].sort()).toEqual([
      '/calico/bgp/v1/global/as_num',
      '/calico/bgp/v1/global/node_mesh',
    ]);
    expect(birdView(input, 'h1').asNum).toBe(64511);
  });

  it('a host segment that is not a host name never reaches bird.conf; a valid host beside it still does', () => {
    const evil = 'x\nprotocol bgp evil { local as 1; neighbor 203.0.113.9 as 2; ipv4 { import all; export all; }; }\n#';
    const bad = [
      `/calico/host/${evil}/bird_ip`,
      `/calico/host/UPPER/bird_ip`,
      `/calico/host/a..b/bird_ip`,
      `/calico/host/${'a'.repeat(64)}/bird_ip`,
    ];
    const input = bgpInputFrom(
      new Map([
        ...hosts(2),
        ...bad.map((k, i): [string, string] => [k, `198.18.0.${50 + i}`]),
        ['/calico/host/h-new/bird_ip', '198.18.0.40'],
      ]),
    );
    expect([...input.problems.keys()].sort()).toEqual([...bad].sort());
    const text = renderBirdConf(birdView(input, 'h1'));
    expect(text).not.toContain('evil');
    expect(text).not.toContain('203.0.113.9');
    for (let i = 0; i < bad.length; i++) expect(text).not.toContain(`198.18.0.${50 + i}`);
    expect(text).toContain('neighbor 198.18.0.40 as 64511;');
    expect(birdAccepts(text).ok).toBe(true);
  });

  it('a host claiming a bird_ip that is taken is left out and reported; the rest keep their sessions', () => {
    const input = bgpInputFrom(
      new Map([...hosts(3), ['/calico/host/h9/bird_ip', '198.18.0.12'], ['/calico/host/h0/bird_ip', '198.18.0.11']]),
    );
    const view = birdView(input, 'h1');
    expect(view.skipped.map((s) => s.host).sort()).toEqual(['h0', 'h9']);
    expect(view.peers.map((p) => p.ip)).toEqual(['198.18.0.12', '198.18.0.13']);
    expect(view.skipped.find((s) => s.host === 'h9')!.reason).toContain("host h2's");
    expect(birdAccepts(renderBirdConf(view)).ok).toBe(true);
  });

  it('reads endpoint addresses and the route protocol of its own host only', () => {
    const mine = endpoint('h1', 1, '198.19.0.2');
    const theirs = endpoint('h2', 2, '198.19.1.2');
    const keep = bgpKeyFilter('h1');
    const keys = [mine[0], theirs[0], '/calico/host/h1/route_proto', '/calico/host/h2/route_proto'];
    expect(keys.map(keep)).toEqual([true, false, true, false]);
    expect(keep('/calico/host/h2/bird_ip')).toBe(true);
    expect(keep(`/calico/host/h1/workload/docker/c1/endpoint/e1/mac`)).toBe(false);
    // Given every host's keys, the view still names only its own host's endpoints.
    const view = birdView(bgpInputFrom(new Map([...hosts(2), mine, theirs])), 'h1');
    expect(view.endpoints).toEqual({ v4: ['198.19.0.2/32'], v6: [], count: 1 });
  });

  it('an endpoint value that does not decode is reported and left out; the others are exported', () => {
    const bad: [string, string] = [endpoint('h1', 9, '198.19.0.9')[0], '[{"addr": "198.19.0.9/32"}]'];
    const input = bgpInputFrom(new Map([...hosts(2), endpoint('h1', 1, '198.19.0.2'), bad]));
    expect([...input.problems.keys()]).toEqual([bad[0]]);
    const text = renderBirdConf(birdView(input, 'h1'));
    expect(text).toContain('198.19.0.2/32');
    expect(text).not.toContain('198.19.0.9');
  });

  it('a thousand endpoints: one prefix each in one set, short lines, and BIRD accepts it', () => {
    const addr = (i: number) => `198.19.${Math.floor(i / 250)}.${(i % 250) + 2}`;
    const eps = Array.from({ length: 1000 }, (_, i) => endpoint('h1', i + 1, addr(i)));
    const text = renderBirdConf(birdView(bgpInputFrom(new Map([...hosts(2), pool4, ...eps])), 'h1'));
    const at = (f: string) => text.indexOf(`function ${f}()`);
    const set = text.slice(at('calico_endpoint_v4'), at('calico_endpoint_v6'));
    expect(set.match(/198\.19\.\d+\.\d+\/32/g)?.length).toBe(1000);
    const lines = set.split('\n').filter((l) => l.includes('/32'));
    expect(lines.length).toBeLessThan(200);
    // Four spaces, up to 100 characters of prefixes, a comma.
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(105);
    expect(birdAccepts(text).ok).toBe(true);
  });

  it('a thousand-host mesh renders and BIRD accepts it', () => {
    const kvs = Array.from({ length: 1000 }, (_, i): [string, string] => [
      `/calico/host/h${i}/bird_ip`,
      `10.${Math.floor(i / 250)}.${i % 250}.1`,
    ]);
    const text = renderBirdConf(birdView(bgpInputFrom(new Map(kvs)), 'h0'));
    expect((text.match(/^protocol bgp /gm) ?? []).length).toBe(999);
    expect(birdAccepts(text).ok).toBe(true);
  });
});
