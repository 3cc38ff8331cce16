import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TestCa, exec, waitFor, type Dockerd, type Etcd, type Fabric, type NamespaceHost } from '@calico/testkit';
import type { Datastore } from '@calico/datastore';
import { decodeUrl, diagsUrlKey } from '@calico/keyspace';
import { CalicoctlHosts, calicoctlJs } from './calicoctlHosts.js';

/**
 * The seed's getting-started scenario on two namespace hosts, driven only by calicoctl and the
 * docker CLI through each host's proxy, ending with calicoctl reset leaving nothing behind.
 */
describe('getting started with calicoctl and the docker CLI', () => {
  let dockerd: Dockerd;
  let etcd: Etcd;
  let fabric: Fabric;
  let ds: Datastore;
  let dir: string;
  let image: string;
  /** The CA of h2's diags service, which serves https (calicoctl node --tls-*). */
  let apiCa: TestCa;
  let hosts: Record<string, NamespaceHost>;
  let env: CalicoctlHosts;

  /** The cluster API token's file: the master makes it here, calicoctl and diags read it. */
  const tokenFlag = () => `--api-token-file=${join(dir, 'etc-calico', 'api-token')}`;
  /** calicoctl as a person on host h would run it: in h's network namespace. */
  const calicoctl = (h: string, args: string[]) => env.calicoctl(h, args);
  /** calicoctl master stop, as run on the machine that runs the master (the root namespace). */
  const masterStop = () =>
    exec([
      process.execPath,
      calicoctlJs,
      'master',
      'stop',
      `--etcd=${etcd.endpoints}`,
      `--run-dir=${join(dir, 'master', 'run')}`,
    ]);
  const docker = (h: string, args: string[]) =>
    dockerd.docker(args, { host: `unix://${join(dir, h, 'run', 'docker.sock')}` });
  const ping = async (h: string, name: string, addr: string) =>
    (await docker(h, ['exec', name, 'ping', '-c', '1', '-W', '1', addr])).code === 0;

  beforeAll(async () => {
    env = await CalicoctlHosts.start('calico-ctl-e2e-', (d) => [
      `--api-token-file=${join(d, 'etc-calico', 'api-token')}`,
    ]);
    ({ dir, dockerd, image, fabric, etcd, ds, hosts } = env);
  });
  afterEach((ctx) => env?.note(ctx));
  afterAll(async () => {
    await env?.stop(masterStop);
  });

  it('starts the master and a node on each host, and status says so', async () => {
    const m = await exec(
      [
        process.execPath,
        calicoctlJs,
        'master',
        `--ip=${fabric.rootLink!.ip}`,
        '--listen=198.18.0.1:0'.replace(':0', ':7655'),
        `--etcd=${etcd.endpoints}`,
        tokenFlag(),
        `--run-dir=${join(dir, 'master', 'run')}`,
        `--log-dir=${join(dir, 'master', 'log')}`,
      ],
      { timeoutMs: 90_000 },
    );
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout).toContain('calico-master is running');
    apiCa = await TestCa.create(join(dir, 'api-ca'));
    const h2Diags = await apiCa.issue('diags-h2', { server: { ips: [hosts.h2!.ip] } });
    const diagsTls: Record<string, string[]> = {
      h1: [],
      h2: [`--tls-cert=${h2Diags.cert}`, `--tls-key=${h2Diags.key}`, `--tls-ca=${apiCa.cert}`],
    };
    for (const [h, ns] of Object.entries(hosts)) {
      const r = await calicoctl(h, ['node', `--ip=${ns.ip}`, `--docker=${dockerd.host}`, ...diagsTls[h]!]);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toContain(`calico-node is running on ${h}`);
    }
    await waitFor(
      'the BGP session up on h1',
      async () => (await calicoctl('h1', ['status'])).stdout.includes('Established'),
      30_000,
    );
    const st = await calicoctl('h1', ['status', '--json']);
    expect(st.code).toBe(0);
    const j = JSON.parse(st.stdout) as {
      node: string;
      bgp: { peer: string; type: string; state: string }[];
      master: string;
      etcd: string;
      policy: string;
      metrics: string;
    };
    expect(j.node).toBe('running');
    expect(j.bgp).toEqual([expect.objectContaining({ peer: hosts.h2!.ip, type: 'mesh', state: 'up' })]);
    expect(j.master).toMatch(/^reachable at http:\/\/198\.18\.0\.1:7655\//);
    expect(j.etcd).toBe('reachable');
    // The node's own word on its policy, and where its metrics are.
    expect(j.policy).toMatch(/^in sync with etcd, programmed in the kernel/);
    expect(j.metrics).toBe('http://127.0.0.1:9091/metrics');
    const text = (await calicoctl('h1', ['status'])).stdout;
    expect(text).toContain('metrics: http://127.0.0.1:9091/metrics');
    const scraped = await hosts.h1!.execOk([
      process.execPath,
      '-e',
      "fetch('http://127.0.0.1:9091/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))",
    ]);
    expect(scraped).toMatch(/^calico_node_dataplane_programmed 1$/m);
  });

  it('runs the getting-started scenario: A, B, C on host 1, D, E on host 2', async () => {
    const workloads = [
      ['A', 'h1', '198.19.1.1'],
      ['B', 'h1', '198.19.1.2'],
      ['C', 'h1', '198.19.1.3'],
      ['D', 'h2', '198.19.2.4'],
      ['E', 'h2', '198.19.2.5'],
    ] as const;
    const pairs = workloads.flatMap((a) => workloads.filter((b) => b !== a).map((b) => [a, b] as const));
    const sorted = async (results: Promise<string | null>[]) =>
      (await Promise.all(results)).filter((x): x is string => x !== null).sort();
    /** What `calicoctl check` (explain over etcd) says of a ping between each pair. */
    const checked = () =>
      sorted(
        pairs.map(async ([a, b]) =>
          (await calicoctl('h1', ['check', a[2], b[2], '--protocol=icmp'])).code === 0 ? `${a[0]}->${b[0]}` : null,
        ),
      );
    const observed = () =>
      sorted(pairs.map(async ([a, b]) => ((await ping(a[1], `workload-${a[0]}`, b[2])) ? `${a[0]}->${b[0]}` : null)));
    for (const [name, h, ip] of workloads) {
      const r = await docker(h, [
        'run',
        '-d',
        '--name',
        `workload-${name}`,
        '-e',
        `CALICO_IP=${ip}`,
        image,
        'sleep',
        '3600',
      ]);
      expect(r.code, r.stderr).toBe(0);
    }
    expect(await checked()).toEqual([]);
    expect(await observed()).toEqual([]);

    for (const g of ['GROUP_A_C_E', 'GROUP_B', 'GROUP_D'])
      expect((await calicoctl('h1', ['addgroup', g])).code).toBe(0);
    for (const [h, c, g] of [
      ['h1', 'workload-A', 'GROUP_A_C_E'],
      ['h1', 'workload-C', 'GROUP_A_C_E'],
      ['h2', 'workload-E', 'GROUP_A_C_E'],
      ['h1', 'workload-B', 'GROUP_B'],
      ['h2', 'workload-D', 'GROUP_D'],
    ] as const) {
      const r = await calicoctl(h, ['addtogroup', c, g]);
      expect(r.code, r.stderr).toBe(0);
    }
    const shown = await calicoctl('h1', ['showgroups']);
    expect(shown.stdout).toMatch(/GROUP_A_C_E\s+3/);

    // calicoctl check answers as the guide does, and the packets follow it.
    const want = await checked();
    expect(want).toEqual(['A->C', 'A->E', 'C->A', 'C->E', 'E->A', 'E->C']);
    let last: string[] = [];
    await waitFor(
      'the ping matrix to match calicoctl check',
      async () => JSON.stringify((last = await observed())) === JSON.stringify(want),
      30_000,
      () => `last seen: ${JSON.stringify(last)}`,
    );

    const ok = await calicoctl('h1', ['check', 'workload-A', 'workload-E']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^ALLOWED/);
    const no = await calicoctl('h1', ['check', 'workload-A', 'workload-D']);
    expect(no.code).toBe(1);
    expect(no.stdout).toMatch(/^DENIED/);
  });

  it('rules and pools through calicoctl, with clear errors for bad input', async () => {
    const bad = await calicoctl('h1', [
      'rule',
      'add',
      'GROUP_B',
      'inbound',
      '--cidr=0.0.0.0/0',
      '--protocol=icmp',
      '--port=80',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('port must be null for protocol icmp');
    const add = await calicoctl('h1', ['rule', 'add', 'GROUP_B', 'inbound', '--cidr=0.0.0.0/0', '--protocol=icmp']);
    expect(add.code, add.stderr).toBe(0);
    await waitFor('A pings B now', () => ping('h1', 'workload-A', '198.19.1.2'), 20_000);
    expect((await calicoctl('h1', ['rule', 'show', 'GROUP_B'])).stdout).toContain('cidr 0.0.0.0/0 icmp');
    expect((await calicoctl('h1', ['pool', 'add', '198.19.100.0/24'])).code).toBe(0);
    const auto = await docker('h2', [
      'run',
      '-d',
      '--name',
      'workload-auto',
      '-e',
      'CALICO_IP=auto',
      image,
      'sleep',
      '3600',
    ]);
    expect(auto.code, auto.stderr).toBe(0);
    expect(
      (await docker('h2', ['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'workload-auto'])).stdout.trim(),
    ).toBe('198.19.100.1');
    const nf = await calicoctl('h1', ['addtogroup', 'no-such-container', 'GROUP_B']);
    expect(nf.code).toBe(3);
    expect(nf.stderr).toContain('no Calico container has the id, id prefix or name "no-such-container"');
  });

  it('diags --cluster gathers every host into one archive; h2 serves it over https', async () => {
    const diagsUrl = async (h: string) => {
      const v = await ds.get(diagsUrlKey(h));
      const u = v === undefined ? undefined : decodeUrl(diagsUrlKey(h), v);
      return u?.ok ? u.value : undefined;
    };
    await waitFor(
      'both diags services to register their URLs',
      async () => (await diagsUrl('h1')) !== undefined && (await diagsUrl('h2')) !== undefined,
      20_000,
    );
    expect(await diagsUrl('h1')).toBe(`http://${hosts.h1!.ip}:7601/`);
    expect(await diagsUrl('h2')).toBe(`https://${hosts.h2!.ip}:7601/`);
    const collect = async (name: string, extra: string[]) => {
      const out = join(dir, name);
      await exec(['mkdir', '-p', out]);
      const r = await calicoctl('h1', ['diags', '--cluster', '--no-upload', `--output=${out}`, ...extra]);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      const archive = (await exec(['sh', '-c', `ls ${out}/*.tar.gz`])).stdout.trim();
      expect(archive).toMatch(/calico-diags-cluster-.*\.tar\.gz$/);
      const list = (await exec(['tar', '-tzf', archive])).stdout;
      expect(list).toMatch(/summary\.json/);
      return list;
    };
    // Without the CA, h2's certificate is not trusted: h1 alone is in the archive.
    const untrusted = await collect('diags-out-no-ca', []);
    expect(untrusted).toMatch(/\/h1\/.*iptables-save\.txt/);
    expect(untrusted).not.toMatch(/\/h2\/.*iptables-save\.txt/);
    const list = await collect('diags-out', [`--api-ca=${apiCa.cert}`]);
    expect(list).toMatch(/\/h1\/.*iptables-save\.txt/);
    expect(list).toMatch(/\/h2\/.*iptables-save\.txt/);
  });

  it('showgroups --detailed, removegroup, pool remove, version and --json answer as documented', async () => {
    const detailed = await calicoctl('h1', ['showgroups', '--detailed']);
    expect(detailed.code).toBe(0);
    expect(detailed.stdout).toMatch(/^GROUP_A_C_E {2}[0-9a-f-]{36}\n {2}members:$/m);
    // Members are listed by endpoint id, so their order is not fixed.
    for (const w of ['workload-A on h1', 'workload-C on h1', 'workload-E on h2'])
      expect(detailed.stdout).toMatch(new RegExp(`^ {4}[0-9a-f-]{36} {2}${w}$`, 'm'));
    expect(detailed.stdout).toContain('inbound (default deny):');
    const json = JSON.parse((await calicoctl('h1', ['showgroups', '--json'])).stdout) as { name: string }[];
    expect(json.map((g) => g.name).sort()).toEqual(['GROUP_A_C_E', 'GROUP_B', 'GROUP_D']);
    expect((await calicoctl('h1', ['addgroup', 'TEMP'])).code).toBe(0);
    const rm = await calicoctl('h1', ['removegroup', 'TEMP']);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toMatch(/^Removed group TEMP/);
    expect((await calicoctl('h1', ['removegroup', 'TEMP'])).code).toBe(3);
    expect((await calicoctl('h1', ['pool', 'remove', '198.19.100.0/24'])).code).toBe(0);
    expect((await calicoctl('h1', ['pool', 'show'])).stdout).toContain('No pools');
    const v = await calicoctl('h1', ['version']);
    expect(v.stdout).toMatch(/^calicoctl +0\.1\.0$/m);
    expect(v.stdout).toMatch(/^bird +2\./m);
  });

  it('a crashed service is restarted by its supervisor', async () => {
    const stateFile = join(dir, 'h1', 'run', 'node.state.json');
    const before = JSON.parse(await readFile(stateFile, 'utf8')) as {
      services: Record<string, { pid: number; restarts: number }>;
    };
    const pid = before.services['calico-node']!.pid;
    process.kill(pid, 'SIGKILL');
    await waitFor(
      'calico-node restarted',
      async () => {
        const now = JSON.parse(await readFile(stateFile, 'utf8')) as typeof before;
        const s = now.services['calico-node']!;
        return s.pid !== null && s.pid !== pid && s.restarts === before.services['calico-node']!.restarts + 1;
      },
      20_000,
    );
    await waitFor('the proxy answering again', async () => (await docker('h1', ['ps', '-q'])).code === 0, 30_000);
    expect(await ping('h1', 'workload-A', '198.19.1.3')).toBe(true);
  });

  it('node stop and master stop stop the supervised services; status then says the node is not running', async () => {
    const stop = await calicoctl('h2', ['node', 'stop']);
    expect(stop.code, stop.stderr).toBe(0);
    expect(stop.stdout).toContain('calico-node on h2 stopped');
    const st = await calicoctl('h2', ['status']);
    expect(st.code).toBe(1);
    expect(st.stdout).toContain('calico-node NOT running');
    const again = await calicoctl('h2', ['node', `--ip=${hosts.h2!.ip}`, `--docker=${dockerd.host}`]);
    expect(again.code, again.stderr).toBe(0);
    const ms = await masterStop();
    expect(ms.stdout).toContain('calico-master stopped');
  });

  it('reset refuses a host name or a directory that reaches beyond the host, and changes nothing', async () => {
    const h9 = await fabric.addHost('h9');
    // Each run in a throwaway mount namespace with tmpfs over /var/lib and /run: whatever reset
    // removed there, the machine's own directories are never at stake. The listing shows what is left.
    const inThrowaway = async (args: string) => {
      const script = [
        'set -e',
        'mount -t tmpfs tmpfs /var/lib',
        'mount -t tmpfs tmpfs /run',
        'mkdir -p /var/lib/calico/h9 /run/calico/h9 /var/lib/calico/h8',
        'touch /var/lib/marker /run/marker /var/lib/calico/h9/bird.conf /run/calico/h9/node.pid /var/lib/calico/h8/keep',
        'ln -s /var/lib /var/lib/calico/h7',
        'set +e',
        `${process.execPath} ${calicoctlJs} reset ${args} --etcd=${etcd.endpoints} 2>&1`,
        'echo "rc=$?"',
        'find /var/lib /run | sort',
      ].join('\n');
      return (
        await h9.exec(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script], { timeoutMs: 60_000 })
      ).stdout;
    };
    const everything = [
      '/run/calico/h9/node.pid',
      '/run/marker',
      '/var/lib/calico/h7',
      '/var/lib/calico/h8/keep',
      '/var/lib/calico/h9/bird.conf',
      '/var/lib/marker',
    ];
    const refused: [string, RegExp][] = [
      ['--hostname=..', /calicoctl: --hostname: host name "\.\." is not valid; use lowercase letters.*\nrc=2\n/],
      [
        '--hostname=h7',
        /calicoctl: reset of h7 refused, nothing was changed: \/var\/lib\/calico\/h7 resolves to \/var\/lib; .*\nrc=1\n/,
      ],
      [
        '--hostname=h9 --state-dir=/var/lib/calico/..',
        /calicoctl: reset of h9 refused, nothing was changed: \/var\/lib\/calico\/\.\. is too near the root.*\nrc=1\n/,
      ],
    ];
    for (const [args, said] of refused) {
      const out = await inThrowaway(args);
      expect(out, args).toMatch(said);
      for (const f of everything) expect(out, `${args}: ${f}`).toContain(`${f}\n`);
    }
    // The control: the same run for h9 itself removes its directories, and only those.
    const out = await inThrowaway('--hostname=h9');
    expect(out).toMatch(/reset h9: removed .* 2 file\(s\).*\nrc=0\n/);
    for (const f of ['/run/calico/h9/node.pid', '/var/lib/calico/h9/bird.conf']) expect(out).not.toContain(f);
    for (const f of ['/run/marker', '/var/lib/calico/h7', '/var/lib/calico/h8/keep', '/var/lib/marker'])
      expect(out).toContain(`${f}\n`);
  });

  it('reset on both hosts leaves no veth, route, chain, ipset or key', async () => {
    for (const h of ['h1', 'h2']) {
      const r = await calicoctl(h, ['reset']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^reset h\d: removed \d+ service/);
    }
    for (const ns of Object.values(hosts)) {
      expect(await ns.execOk(['sh', '-c', 'ls /sys/class/net | grep ^cali || true'])).toBe('');
      expect(await ns.execOk(['sh', '-c', 'ip route show proto bird; ip -6 route show proto bird'])).toBe('');
      expect(await ns.execOk(['sh', '-c', 'iptables-save; ip6tables-save'])).not.toMatch(/cali/);
      expect(await ns.execOk(['ipset', 'list', '-n'])).toBe('');
    }
    const keys = (await ds.getPrefix('/calico/')).kvs.map((kv) => kv.key);
    expect(
      keys.filter(
        (k) => k.startsWith('/calico/host/') || k.startsWith('/calico/ipam/v4/assignment/') || k.includes('/member/'),
      ),
    ).toEqual([]);
    // Safe to run twice.
    const again = await calicoctl('h1', ['reset']);
    expect(again.stdout).toContain(
      'removed 0 service(s), 0 interface(s), 0 route(s), 0 chain(s), 0 ipset(s), 0 file(s), 0 etcd key(s)',
    );
  });
});
