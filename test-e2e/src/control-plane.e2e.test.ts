import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { diagsUrlKey, encodeRule, groupRuleKey } from '@calico/keyspace';
import { requireRoot, waitFor, type ManagedProcess } from '@calico/testkit';
import { startWorkload, writeGroup, type Workload } from './helpers.js';
import { sendFrom, type Connection } from './traffic.js';

const require = createRequire(import.meta.url);
const calicoctlJs = join(dirname(require.resolve('@calico/calicoctl/package.json')), 'dist', 'main.js');
const diagsJs = join(
  dirname(createRequire(require.resolve('@calico/calicoctl/package.json')).resolve('@calico/diags/package.json')),
  'dist',
  'main.js',
);
const PROBE = fileURLToPath(new URL('../probe/traffic.mjs', import.meta.url));
const DIAGS_PORT = 9099;
/** Listeners that are not the control plane, on the control plane's own addresses. */
const OTHER_PORT = 7000;

/**
 * Workloads do not reach the control plane: etcd, the master API, diags and BGP on other hosts,
 * all real and on namespace hosts that route back to the workload, so that only the policy keeps
 * it out. A listener on another port of the same addresses shows the path is open, and a rule
 * naming an address opens its control plane.
 */
describe('a workload and the control plane', () => {
  let cluster: DevCluster;
  let A: Workload;
  let dir: string;
  const procs: ManagedProcess[] = [];
  let failed = false;

  const h1 = () => cluster.host('h1');
  const h2 = () => cluster.host('h2');
  const control = () => cluster.control!;
  const etcdPort = () => Number(cluster.etcd.endpoints.split(':')[1]);
  /** Not 2380 here: the node learns it from etcd's member list. */
  const peerPort = () => Number(new URL(cluster.etcd.members[0]!.peerUrl).port);
  const masterPort = () => Number(new URL(cluster.masterUrl!).port);
  const calicoctl = (args: string[]) =>
    h1().ns.exec([process.execPath, calicoctlJs, ...args, '--hostname=h1', `--etcd=${cluster.etcd.endpoints}`]);

  /** The control plane as seen from A, and a listener beside each address that is not. */
  const targets = (): Record<string, Connection> => ({
    etcd: { dst: control().ip, protocol: 'tcp', port: etcdPort() },
    'etcd peer': { dst: control().ip, protocol: 'tcp', port: peerPort() },
    master: { dst: control().ip, protocol: 'tcp', port: masterPort() },
    bgp: { dst: h2().ns.ip, protocol: 'tcp', port: 179 },
    diags: { dst: h2().ns.ip, protocol: 'tcp', port: DIAGS_PORT },
    'control host, another port': { dst: control().ip, protocol: 'tcp', port: OTHER_PORT },
    'h2, another port': { dst: h2().ns.ip, protocol: 'tcp', port: OTHER_PORT },
  });
  /** Which of targets() A can open a TCP connection to. */
  const reached = async (): Promise<Record<string, boolean>> => {
    const t = Object.entries(targets());
    const r = await sendFrom(
      cluster,
      A,
      A.addr,
      t.map(([, c]) => c),
    );
    return Object.fromEntries(t.map(([name], i) => [name, r[i]!.ok]));
  };

  beforeAll(async () => {
    requireRoot();
    dir = await mkdtemp(join(tmpdir(), 'calico-ctl-plane-'));
    cluster = await DevCluster.start({ hosts: ['h1', 'h2'], bgp: true, master: true, controlHost: true });
    A = await startWorkload(cluster, h1(), 'A', '198.19.20.1');
    // The control host runs no BIRD: it routes A's address back to h1 by hand (h2 learns it over BGP).
    await control().execOk(['ip', 'route', 'add', `${A.addr}/32`, 'via', h1().ns.ip]);
    const diags = h2().ns.spawn('calico-diags', [
      process.execPath,
      diagsJs,
      'serve',
      '--hostname=h2',
      `--listen=${h2().ns.ip}:${DIAGS_PORT}`,
      `--etcd=${cluster.etcd.endpoints}`,
      `--docker=${cluster.dockerd.host}`,
      `--run-dir=${join(dir, 'run')}`,
      `--log-dir=${join(dir, 'log')}`,
      `--state-dir=${join(dir, 'state')}`,
    ]);
    procs.push(diags);
    const registered = async () => (await cluster.ds.get(diagsUrlKey('h2'))) !== undefined;
    await waitFor('diags to register', registered, 20_000, () => diags.log().slice(-2000));
    for (const ns of [control(), h2().ns]) {
      const p = ns.spawn(`listen-${OTHER_PORT}`, [process.execPath, PROBE, 'listen', ns.ip, String(OTHER_PORT)]);
      procs.push(p);
      await waitFor(
        `the listener on ${ns.ip}`,
        () => p.log().includes('ready'),
        10_000,
        () => p.log(),
      );
    }
    const session = async () => (await h1().birdc('show protocols')).stdout.includes('Established');
    await waitFor('h1 and h2 in BGP session', session, 30_000);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    for (const p of procs) await p.stop();
    // The control host is one of the fabric's hosts: its dump is in the cluster's.
    if (failed && cluster) console.error(await cluster.dump());
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('with outbound 0.0.0.0/0, A opens none of etcd, master, diags or BGP, but other ports there', async () => {
    let members: string[] = [];
    await waitFor(
      'h1 to know the whole control plane',
      async () => {
        members = (await h1().ns.execOk(['ipset', 'list', 'cali4-ctl'])).split('\n');
        return [
          `${control().ip},tcp:${etcdPort()}`,
          `${control().ip},tcp:2380`,
          `${control().ip},tcp:${peerPort()}`,
          `${control().ip},tcp:${masterPort()}`,
          `${h2().ns.ip},tcp:179`,
          `${h2().ns.ip},tcp:${DIAGS_PORT}`,
          `${h1().ns.ip},tcp:179`,
        ].every((m) => members.includes(m));
      },
      20_000,
      () => members.join('\n'),
    );
    // Before any group, nothing at all: the controls below are this rule's doing.
    expect(Object.values(await reached()).some(Boolean)).toBe(false);
    const outbound = [{ cidr: '0.0.0.0/0' }];
    await writeGroup(cluster, { groupId: 'g-out', name: 'out', members: [A.endpointId], outbound });
    await waitFor('A reaches the listeners', async () => (await reached())['h2, another port'] === true, 15_000);
    expect(await reached()).toEqual({
      etcd: false,
      'etcd peer': false,
      master: false,
      bgp: false,
      diags: false,
      'control host, another port': true,
      'h2, another port': true,
    });
  });

  it('calicoctl check says why', async () => {
    const r = await calicoctl(['check', A.addr, control().ip, '--protocol=tcp', `--port=${etcdPort()}`]);
    console.log(`calicoctl check ${A.addr} ${control().ip} --protocol=tcp --port=${etcdPort()}\n${r.stdout}`);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('DENIED');
    expect(r.stdout).toContain(
      `denied: ${control().ip} port ${etcdPort()} is the control plane ` +
        `(etcd client port on ${control().ip}:${etcdPort()}); ` +
        `only an outbound rule naming ${control().ip}/32 opens it for ${A.endpointId}`,
    );
    // The peer port etcd lists for its member (not 2380 here).
    const peer = await calicoctl(['check', A.addr, control().ip, '--protocol=tcp', `--port=${peerPort()}`]);
    expect(peer.stdout).toContain(`(etcd peer port on ${control().ip}:${peerPort()})`);
    const bgp = await calicoctl(['check', A.addr, h2().ns.ip, '--protocol=tcp', '--port=179']);
    expect(bgp.stdout).toContain(`(BGP of host h2 on ${h2().ns.ip}:179)`);
    // The control: another port of the same address.
    const other = await calicoctl(['check', A.addr, control().ip, '--protocol=tcp', `--port=${OTHER_PORT}`]);
    expect(other.stdout).toContain('ALLOWED');
  });

  it('a rule naming an address opens its control plane, and only its', async () => {
    await cluster.ds.put(groupRuleKey('g-out', 'outbound', 2), encodeRule({ cidr: `${control().ip}/32` }));
    await waitFor('A reaches etcd', async () => (await reached()).etcd === true, 15_000);
    expect(await reached()).toEqual({
      etcd: true,
      'etcd peer': true,
      master: true,
      bgp: false,
      diags: false,
      'control host, another port': true,
      'h2, another port': true,
    });
    const r = await calicoctl(['check', A.addr, control().ip, '--protocol=tcp', `--port=${etcdPort()}`]);
    console.log(`after the rule:\n${r.stdout}`);
    expect(r.stdout).toContain('ALLOWED');
    expect(r.stdout).toContain(
      `${control().ip} port ${etcdPort()} is the control plane (etcd client port on ${control().ip}:${etcdPort()}), ` +
        'opened by outbound rule 2 of group out (g-out)',
    );
    await cluster.ds.put(groupRuleKey('g-out', 'outbound', 3), encodeRule({ cidr: `${h2().ns.ip}/32` }));
    await waitFor('A reaches BGP on h2', async () => (await reached()).bgp === true, 15_000);
    expect(Object.values(await reached()).every(Boolean)).toBe(true);
    // Taken away again: closed again.
    await cluster.ds.delete(groupRuleKey('g-out', 'outbound', 2));
    await cluster.ds.delete(groupRuleKey('g-out', 'outbound', 3));
    await waitFor(
      'etcd and BGP closed again',
      async () => {
        const r = await reached();
        return !r.etcd && !r['etcd peer'] && !r.master && !r.bgp && !r.diags && r['h2, another port'] === true;
      },
      15_000,
    );
  });
});
