import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Dockerd,
  Etcd,
  Fabric,
  ensureBusyboxImage,
  requireRoot,
  waitFor,
  type ExecResult,
  type ManagedProcess,
  type NamespaceHost,
} from '@calico/testkit';
import { Datastore, resolveDatastoreConfig } from '@calico/datastore';
import {
  encodeIpAssignment,
  ipAssignmentKey,
  ipPoolKey,
  workloadPrefix,
  groupMemberKey,
  hostAliveKey,
  birdIpKey,
} from '@calico/keyspace';
import { LABELS } from './workload/createRequest.js';

const mainJs = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'dist', 'main.js');

describe('calico-node on a namespace host with real dockerd and etcd', () => {
  let dockerd: Dockerd;
  let etcd: Etcd;
  let fabric: Fabric;
  let h1: NamespaceHost;
  let ds: Datastore;
  let image: string;
  let node: ManagedProcess | undefined;
  let proxySock: string;
  let failed = false;

  function startNode(host: NamespaceHost, name: string, extra: string[] = []): ManagedProcess {
    return host.spawn(`calico-node-${name}-${Date.now()}`, [
      process.execPath,
      mainJs,
      `--hostname=${name}`,
      `--ip=${host.ip}`,
      `--etcd=${etcd.endpoints}`,
      `--docker=${dockerd.host}`,
      `--listen=unix://${join(host.dir, `${name}.sock`)}`,
      '--listen=127.0.0.1:2375',
      '--lease-ttl=3',
      ...extra,
    ]);
  }

  async function waitReady(p: ManagedProcess, sock: string): Promise<void> {
    await waitFor(
      'calico-node to be ready',
      async () => {
        if (!p.running) throw new Error('exited');
        return (
          (await dockerd.docker(['version', '--format', '{{.Server.Version}}'], { host: `unix://${sock}` })).code ===
            0 && p.log().includes('calico-node ready')
        );
      },
      30_000,
      () => p.log().slice(-4000),
    );
  }

  const docker = (args: string[], input?: string): Promise<ExecResult> =>
    dockerd.docker(args, { host: `unix://${proxySock}`, input });

  beforeAll(async () => {
    requireRoot();
    dockerd = await Dockerd.start();
    image = await ensureBusyboxImage(dockerd.host);
    fabric = await Fabric.create();
    const rootIp = await fabric.linkRoot();
    etcd = await Etcd.start({ listenIp: rootIp });
    h1 = await fabric.addHost('h1');
    ds = new Datastore(resolveDatastoreConfig({ etcd: etcd.endpoints, env: {} }));
    node = startNode(h1, 'h1');
    proxySock = join(h1.dir, 'h1.sock');
    await waitReady(node, proxySock);
  });

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });

  afterAll(async () => {
    if (failed && fabric)
      console.error(
        await fabric.dump(),
        '\n',
        etcd ? await etcd.etcdctl(['get', '--prefix', '/calico']).catch(() => '') : '',
      );
    ds?.close();
    await fabric?.destroy();
    await etcd?.stop();
    await dockerd?.stop();
  });

  async function keysUnder(prefix: string): Promise<string[]> {
    return (await ds.getPrefix(prefix)).kvs.map((kv) => kv.key);
  }

  it('registers the host: bird_ip and a live lease', async () => {
    expect(await ds.get(birdIpKey('h1'))).toBe(h1.ip);
    expect(await ds.get(hostAliveKey('h1'))).toMatch(/"since"/);
  });

  it('a container started with CALICO_IP has the address on eth0 before its first instruction, 100 times out of 100', async () => {
    for (let i = 1; i <= 100; i++) {
      const addr = `198.19.1.${i}`;
      const r = await docker([
        'run',
        '--rm',
        '-e',
        `CALICO_IP=${addr}`,
        image,
        'ip',
        '-4',
        '-o',
        'addr',
        'show',
        'eth0',
      ]);
      expect(r.code, `run ${i}: ${r.stderr}`).toBe(0);
      expect(r.stdout, `run ${i}`).toContain(`inet ${addr}/32`);
    }
    // Every --rm container released its address.
    await waitFor(
      'addresses released',
      async () => (await keysUnder('/calico/ipam/v4/assignment/')).length === 0,
      10_000,
    );
  });

  it('IPv6: the address and a default route, 100 times out of 100', async () => {
    for (let i = 1; i <= 100; i++) {
      const addr = `fd00:198:19:1::${i.toString(16)}`;
      const r = await docker([
        'run',
        '--rm',
        '-e',
        `CALICO_IP=${addr}`,
        image,
        'sh',
        '-c',
        'ip -6 -o addr show dev eth0 scope global; ip -6 route show default',
      ]);
      expect(r.code, `run ${i}: ${r.stderr}`).toBe(0);
      expect(r.stdout, `run ${i}`).toContain(`inet6 ${addr}/128`);
      expect(r.stdout, `run ${i}`).toContain('default via fe80::ecee:eeff:feee:eeee dev eth0');
    }
    await waitFor(
      'addresses released',
      async () => (await keysUnder('/calico/ipam/v6/assignment/')).length === 0,
      10_000,
    );
  });

  it.each([
    ['not-an-ip', 'CALICO_IP="not-an-ip" is not an IPv4 or IPv6 address, nor "auto"'],
    ['198.19.0.256', 'CALICO_IP="198.19.0.256" is not a valid IPv4 address'],
    ['198.19.0.5/24', 'is a network, not an address'],
    ['', 'CALICO_IP is empty'],
  ])('CALICO_IP=%j is refused with a clear message and leaves nothing behind', async (value, message) => {
    const before = (await docker(['ps', '-aq'])).stdout;
    const keysBefore = [...(await keysUnder('/calico/ipam/')), ...(await keysUnder('/calico/host/h1/workload/'))];
    const r = await docker(['run', '-d', '-e', `CALICO_IP=${value}`, image, 'sleep', '100']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
    expect((await docker(['ps', '-aq'])).stdout).toBe(before);
    expect([...(await keysUnder('/calico/ipam/')), ...(await keysUnder('/calico/host/h1/workload/'))]).toEqual(
      keysBefore,
    );
  });

  it('a taken address and --net=host are refused, and the first holder keeps its address', async () => {
    const a = await docker(['run', '-d', '-e', 'CALICO_IP=198.19.2.1', image, 'sleep', '300']);
    expect(a.code, a.stderr).toBe(0);
    const id = a.stdout.trim();
    try {
      const before = (await docker(['ps', '-aq'])).stdout;
      const b = await docker(['run', '-d', '-e', 'CALICO_IP=198.19.2.1', image, 'sleep', '300']);
      expect(b.code).not.toBe(0);
      expect(b.stderr).toContain('CALICO_IP 198.19.2.1 is already in use by container');
      const c = await docker(['run', '-d', '--net=host', '-e', 'CALICO_IP=198.19.2.2', image, 'sleep', '300']);
      expect(c.code).not.toBe(0);
      expect(c.stderr).toContain('CALICO_IP cannot be used with --net=host');
      expect((await docker(['ps', '-aq'])).stdout).toBe(before);
      expect(await ds.get(ipAssignmentKey('198.19.2.1'))).toContain(id);
      expect(await ds.get(ipAssignmentKey('198.19.2.2'))).toBeUndefined();
    } finally {
      await docker(['rm', '-f', id]);
    }
  });

  it('CALICO_IP=auto takes the lowest free address of a pool, and says so when there is none', async () => {
    const none = await docker(['run', '-d', '-e', 'CALICO_IP=auto', image, 'sleep', '300']);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('CALICO_IP=auto needs an IPv4 address pool, and there is none');
    await ds.put(ipPoolKey('198.19.200.0/30'), JSON.stringify({ cidr: '198.19.200.0/30' }));
    try {
      const a = (await docker(['run', '-d', '-e', 'CALICO_IP=auto', image, 'sleep', '300'])).stdout.trim();
      const b = (await docker(['run', '-d', '-e', 'CALICO_IP=auto', image, 'sleep', '300'])).stdout.trim();
      const full = await docker(['run', '-d', '-e', 'CALICO_IP=auto', image, 'sleep', '300']);
      expect((await docker(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', a])).stdout.trim()).toBe('198.19.200.1');
      expect((await docker(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', b])).stdout.trim()).toBe('198.19.200.2');
      expect(full.code).not.toBe(0);
      expect(full.stderr).toContain('every IPv4 pool is full (198.19.200.0/30)');
      await docker(['rm', '-f', a, b]);
    } finally {
      await ds.delete(ipPoolKey('198.19.200.0/30'));
    }
  });

  it('a create that dockerd rejects releases the reservation', async () => {
    const before = (await docker(['ps', '-aq'])).stdout;
    const r = await docker(['run', '-d', '--memory=1k', '-e', 'CALICO_IP=198.19.9.9', image, 'sleep', '300']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/[Mm]inimum memory limit/);
    expect((await docker(['ps', '-aq'])).stdout).toBe(before);
    expect(await ds.get(ipAssignmentKey('198.19.9.9'))).toBeUndefined();
  });

  it("a missing image gets dockerd's own answer and no reservation", async () => {
    const r = await docker(['run', '-d', '--pull=never', '-e', 'CALICO_IP=198.19.9.10', 'calico-missing:1', 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('No such image: calico-missing:1');
    expect(await ds.get(ipAssignmentKey('198.19.9.10'))).toBeUndefined();
  });

  it('versioned and unversioned API paths are both intercepted', async () => {
    const { request } = await import('node:http');
    const call = (path: string, body: unknown) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          { socketPath: proxySock, path, method: 'POST', headers: { 'content-type': 'application/json' } },
          (res) => {
            let b = '';
            res.on('data', (c: Buffer) => (b += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify(body));
      });
    for (const path of ['/containers/create', '/v1.41/containers/create']) {
      const r = await call(path, { Image: image, Cmd: ['true'], Env: ['CALICO_IP=nope'] });
      expect(r.status, path).toBe(400);
      expect(JSON.parse(r.body)).toEqual({ message: 'CALICO_IP="nope" is not an IPv4 or IPv6 address, nor "auto"' });
    }
  });

  it('without CALICO_IP the request passes untouched', async () => {
    const r = await docker(['run', '--rm', image, 'sh', '-c', 'ls /sys/class/net']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('lo');
  });

  it('inspect shows the address and MAC; the host reaches the container; restart keeps id, address and MAC', async () => {
    const r = await docker(['run', '-d', '-e', 'CALICO_IP=198.19.3.1', image, 'sleep', '300']);
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    try {
      const ip = (
        await docker(['inspect', '-f', '{{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}}', id])
      ).stdout.trim();
      const [addr, mac] = ip.split(' ');
      expect(addr).toBe('198.19.3.1');
      expect(mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      const ping = await h1.exec(['busybox', 'ping', '-c', '1', '-W', '2', '198.19.3.1']);
      expect(ping.code, ping.stdout + ping.stderr).toBe(0);
      const keys = await keysUnder(workloadPrefix('h1', id));
      // The seed's endpoint keys, and the container's name beside the endpoint directory.
      expect(keys.map((k) => k.split('/').pop()).sort()).toEqual(['addrs', 'mac', 'name', 'state']);

      const rs = await docker(['restart', '-t', '1', id]);
      expect(rs.code, rs.stderr).toBe(0);
      const after = (await docker(['exec', id, 'sh', '-c', 'ip -4 -o addr show eth0; cat /sys/class/net/eth0/address']))
        .stdout;
      expect(after).toContain('inet 198.19.3.1/32');
      expect(after).toContain(mac);
      expect(await keysUnder(workloadPrefix('h1', id))).toEqual(keys);
      const ping2 = await h1.exec(['busybox', 'ping', '-c', '1', '-W', '2', '198.19.3.1']);
      expect(ping2.code).toBe(0);
    } finally {
      await docker(['rm', '-f', id]);
    }
  });

  it('stop marks the endpoint inactive; rm releases keys, memberships and the address', async () => {
    const id = (await docker(['run', '-d', '-e', 'CALICO_IP=198.19.4.1', image, 'sleep', '300'])).stdout.trim();
    const eid = (await docker(['inspect', '-f', `{{index .Config.Labels "${LABELS.endpoint}"}}`, id])).stdout.trim();
    await ds.put(groupMemberKey('g1', eid), '');
    const stateKey = `${workloadPrefix('h1', id)}endpoint/${eid}/state`;
    expect(await ds.get(stateKey)).toBe('active');
    await docker(['stop', '-t', '1', id]);
    await waitFor('inactive', async () => (await ds.get(stateKey)) === 'inactive', 5_000);
    await docker(['rm', id]);
    await waitFor('released', async () => (await ds.get(ipAssignmentKey('198.19.4.1'))) === undefined, 5_000);
    expect(await keysUnder(workloadPrefix('h1', id))).toEqual([]);
    expect(await ds.get(groupMemberKey('g1', eid))).toBeUndefined();
  });

  it("containers killed and removed straight on dockerd are cleaned up from dockerd's events", async () => {
    const id = (await docker(['run', '-d', '-e', 'CALICO_IP=198.19.5.1', image, 'sleep', '300'])).stdout.trim();
    const eid = (await docker(['inspect', '-f', `{{index .Config.Labels "${LABELS.endpoint}"}}`, id])).stdout.trim();
    const stateKey = `${workloadPrefix('h1', id)}endpoint/${eid}/state`;
    // Nothing but the events stream can tell the running node: it reconciles only when it starts.
    const ofIt = `"container":"${id.slice(0, 12)}"`;
    const handled = (what: string) =>
      node!
        .log()
        .split('\n')
        .some((l) => l.includes(what) && l.includes(ofIt));
    const tail = () => node!.log().slice(-2000);
    expect(handled('workload stopped')).toBe(false);
    await dockerd.dockerOk(['kill', id]);
    await waitFor('inactive after a direct kill', async () => (await ds.get(stateKey)) === 'inactive', 15_000);
    await waitFor("the node's record of the stop", () => handled('workload stopped'), 5_000, tail);
    expect(handled('workload removed')).toBe(false);
    await dockerd.dockerOk(['rm', id]);
    const released = async () => (await ds.get(ipAssignmentKey('198.19.5.1'))) === undefined;
    await waitFor('released after a direct rm', released, 15_000);
    expect(await keysUnder(workloadPrefix('h1', id))).toEqual([]);
    await waitFor("the node's record of the removal", () => handled('workload removed'), 5_000, tail);
  });

  it('a restarted node heals what changed while it was down', async () => {
    const keep = (await docker(['run', '-d', '-e', 'CALICO_IP=198.19.6.1', image, 'sleep', '300'])).stdout.trim();
    const gone = (await docker(['run', '-d', '-e', 'CALICO_IP=198.19.6.2', image, 'sleep', '300'])).stdout.trim();
    const keepEid = (
      await docker(['inspect', '-f', `{{index .Config.Labels "${LABELS.endpoint}"}}`, keep])
    ).stdout.trim();
    await node!.stop();
    // While the node is down: one workload loses its veth, the other is removed.
    const hostIf = `cali${keepEid.replace(/-/g, '').slice(0, 11)}`;
    await h1.execOk(['ip', 'link', 'del', hostIf]);
    await dockerd.dockerOk(['rm', '-f', gone]);
    node = startNode(h1, 'h1');
    await waitReady(node, proxySock);
    const ping = await h1.exec(['busybox', 'ping', '-c', '1', '-W', '2', '198.19.6.1']);
    expect(ping.code, ping.stdout + ping.stderr).toBe(0);
    expect(await ds.get(ipAssignmentKey('198.19.6.2'))).toBeUndefined();
    expect(await keysUnder(workloadPrefix('h1', gone))).toEqual([]);
    await docker(['rm', '-f', keep]);
  });

  it('a restarted node reserves a lost address again for its running workload, and networks nothing whose address another holds', async () => {
    const lost = (await docker(['run', '-d', '-e', 'CALICO_IP=198.19.6.11', image, 'sleep', '300'])).stdout.trim();
    const taken = (await docker(['run', '-d', '-e', 'CALICO_IP=198.19.6.12', image, 'sleep', '300'])).stdout.trim();
    const eid = async (id: string) =>
      (await docker(['inspect', '-f', `{{index .Config.Labels "${LABELS.endpoint}"}}`, id])).stdout.trim();
    const [lostEid, takenEid] = [await eid(lost), await eid(taken)];
    const hostIf = (e: string) => `cali${e.replace(/-/g, '').slice(0, 11)}`;
    const pings = async (a: string) => (await h1.exec(['busybox', 'ping', '-c', '1', '-W', '1', a])).code === 0;
    // Control: both networked.
    expect(await pings('198.19.6.11')).toBe(true);
    expect(await pings('198.19.6.12')).toBe(true);
    const takenValue = await ds.get(ipAssignmentKey('198.19.6.12'));
    expect(takenValue).toContain(taken);
    await node!.stop();
    // While the node is down: one reservation is lost, the other now names another container
    // on another host; both veths are gone (as after a reboot).
    await ds.delete(ipAssignmentKey('198.19.6.11'));
    const other = encodeIpAssignment({
      host: 'h9',
      containerId: 'f'.repeat(64),
      endpointId: '99999999-9999-4999-8999-999999999999',
    });
    await ds.put(ipAssignmentKey('198.19.6.12'), other);
    for (const e of [lostEid, takenEid]) await h1.execOk(['ip', 'link', 'del', hostIf(e)]);
    node = startNode(h1, 'h1');
    await waitReady(node, proxySock);
    try {
      expect(await ds.get(ipAssignmentKey('198.19.6.11'))).toContain(lost);
      expect(await pings('198.19.6.11')).toBe(true);
      // The other holder keeps the address; the workload is not networked, and the log says why.
      expect(await ds.get(ipAssignmentKey('198.19.6.12'))).toBe(other);
      expect((await h1.exec(['ip', 'link', 'show', hostIf(takenEid)])).code).not.toBe(0);
      expect(node.log()).toMatch(
        new RegExp(
          `container ${taken.slice(0, 12)} is not networked: address 198\\.19\\.6\\.12 is reserved by container f{12} on host h9`,
        ),
      );
    } finally {
      await ds.delete(ipAssignmentKey('198.19.6.12'));
      await docker(['rm', '-f', lost, taken]);
    }
  });

  it('a container with our labels but no reservation and no endpoint record of its own is not networked', async () => {
    const real = (await docker(['run', '-d', '-e', 'CALICO_IP=198.19.6.21', image, 'sleep', '300'])).stdout.trim();
    const labels = (await docker(['inspect', '-f', '{{json .Config.Labels}}', real])).stdout.trim();
    await docker(['rm', '-f', real]);
    await waitFor('released', async () => (await ds.get(ipAssignmentKey('198.19.6.21'))) === undefined, 15_000);
    // The same labels on a container made straight on dockerd (what docker commit would copy).
    const args = Object.entries(JSON.parse(labels) as Record<string, string>).flatMap(([k, v]) => [
      '--label',
      `${k}=${v}`,
    ]);
    const forged = (await dockerd.dockerOk(['run', '-d', '--net', 'none', ...args, image, 'sleep', '300'])).trim();
    try {
      const ofIt = `container ${forged.slice(0, 12)} is not networked: address 198.19.6.21 has no reservation`;
      await waitFor(
        'the node to refuse it',
        () => node!.log().includes(ofIt),
        15_000,
        () => node!.log().slice(-2000),
      );
      expect(await ds.get(ipAssignmentKey('198.19.6.21'))).toBeUndefined();
      expect(await keysUnder(workloadPrefix('h1', forged))).toEqual([]);
      expect((await h1.exec(['busybox', 'ping', '-c', '1', '-W', '1', '198.19.6.21'])).code).not.toBe(0);
    } finally {
      await dockerd.dockerOk(['rm', '-f', forged]);
    }
  });

  it('a restarted node gives pending reservations to the containers created for them and releases those whose container never was or is gone', async () => {
    // A created container whose reservation is left pending, as when the node dies between
    // dockerd's answer to the create and recording the container on the reservation.
    const made = (await docker(['create', '-e', 'CALICO_IP=198.19.6.32', image, 'sleep', '300'])).stdout.trim();
    const madeEid = (
      await docker(['inspect', '-f', `{{index .Config.Labels "${LABELS.endpoint}"}}`, made])
    ).stdout.trim();
    await waitFor(
      'the create recorded on its reservation',
      async () => (await ds.get(ipAssignmentKey('198.19.6.32')))?.includes(made) ?? false,
      10_000,
    );
    await node!.stop();
    const pending = (endpointId: string, host = 'h1') =>
      encodeIpAssignment({ host, containerId: 'pending', endpointId });
    await ds.put(ipAssignmentKey('198.19.6.32'), pending(madeEid));
    // A create that never reached dockerd, and a container removed while the node was away.
    await ds.put(ipAssignmentKey('198.19.6.31'), pending('31313131-3131-4131-8131-313131313131'));
    await ds.put(
      ipAssignmentKey('198.19.6.33'),
      encodeIpAssignment({
        host: 'h1',
        containerId: 'e'.repeat(64),
        endpointId: '33333333-3333-4333-8333-333333333333',
      }),
    );
    // Control: another host's pending reservation (its create may be in flight) is not ours to release.
    const elsewhere = pending('34343434-3434-4434-8434-343434343434', 'h9');
    await ds.put(ipAssignmentKey('198.19.6.34'), elsewhere);
    node = startNode(h1, 'h1');
    await waitReady(node, proxySock);
    try {
      expect(await ds.get(ipAssignmentKey('198.19.6.31'))).toBeUndefined();
      expect(await ds.get(ipAssignmentKey('198.19.6.33'))).toBeUndefined();
      expect(await ds.get(ipAssignmentKey('198.19.6.34'))).toBe(elsewhere);
      expect(await ds.get(ipAssignmentKey('198.19.6.32'))).toBe(
        encodeIpAssignment({ host: 'h1', containerId: made, endpointId: madeEid }),
      );
      expect(node.log()).toContain('reconciled workloads');
      // Started now, it comes up with the address that was kept for it.
      expect((await docker(['start', made])).code).toBe(0);
      const ping = await h1.exec(['busybox', 'ping', '-c', '1', '-W', '2', '198.19.6.32']);
      expect(ping.code, ping.stdout + ping.stderr).toBe(0);
    } finally {
      await ds.delete(ipAssignmentKey('198.19.6.34'));
      await docker(['rm', '-f', made]);
    }
  });

  it('serves Prometheus metrics in its host: in sync, programmed, endpoints, plumbing and proxy requests by route', async () => {
    const scrape = async () =>
      h1.execOk([
        process.execPath,
        '-e',
        "fetch('http://127.0.0.1:9091/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))",
      ]);
    const value = (text: string, name: string) =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(`${name} `))
          ?.slice(name.length + 1) ?? NaN,
      );
    const before = await scrape();
    expect(value(before, 'calico_node_datastore_in_sync')).toBe(1);
    expect(value(before, 'calico_node_dataplane_programmed')).toBe(1);
    expect(value(before, 'calico_node_seconds_since_full_sync')).toBeGreaterThanOrEqual(0);
    const created = value(before, 'calico_node_proxy_requests_total{route="create",outcome="2xx"}') || 0;
    const plumbed = value(before, 'calico_node_plumb_seconds_count{outcome="ok"}') || 0;
    const id = (await docker(['run', '-d', '-e', 'CALICO_IP=198.19.6.31', image, 'sleep', '300'])).stdout.trim();
    try {
      await waitFor(
        'the endpoint in the metrics',
        async () => value(await scrape(), 'calico_node_local_endpoints') >= 1,
        10_000,
      );
      const after = await scrape();
      expect(value(after, 'calico_node_proxy_requests_total{route="create",outcome="2xx"}')).toBe(created + 1);
      expect(value(after, 'calico_node_plumb_seconds_count{outcome="ok"}')).toBe(plumbed + 1);
      expect(value(after, 'calico_node_proxy_requests_total{route="passthrough",outcome="2xx"}')).toBeGreaterThan(0);
      expect(value(after, 'calico_node_dataplane_apply_seconds_count{outcome="ok"}')).toBeGreaterThan(0);
    } finally {
      await docker(['rm', '-f', id]);
    }
  });

  it('a container restarted by its restart policy comes back with the same address and MAC', async () => {
    // It exits once (the marker file is in its own filesystem, kept across restarts).
    const id = (
      await docker([
        'run',
        '-d',
        '--restart=on-failure',
        '-e',
        'CALICO_IP=198.19.7.1',
        image,
        'sh',
        '-c',
        'if [ -e /ran ]; then exec sleep 300; fi; touch /ran; exit 1',
      ])
    ).stdout.trim();
    try {
      await waitFor(
        'the policy restart',
        async () =>
          (await docker(['inspect', '-f', '{{.RestartCount}} {{.State.Running}}', id])).stdout.trim() === '1 true',
        15_000,
      );
      await waitFor(
        'the address back after the policy restart',
        async () => (await h1.exec(['busybox', 'ping', '-c', '1', '-W', '1', '198.19.7.1'])).code === 0,
        10_000,
      );
      const eth0 = (await docker(['exec', id, 'ip', '-4', '-o', 'addr', 'show', 'eth0'])).stdout;
      expect(eth0).toContain('inet 198.19.7.1/32');
    } finally {
      await docker(['rm', '-f', id]);
    }
  });

  it('after dockerd restarts, always-restart containers come back networked and the events stream resumes', async () => {
    const id = (
      await docker(['run', '-d', '--restart=always', '-e', 'CALICO_IP=198.19.8.1', image, 'sleep', '300'])
    ).stdout.trim();
    const mac = (await docker(['inspect', '-f', '{{.NetworkSettings.MacAddress}}', id])).stdout.trim();
    await dockerd.restart();
    await waitFor(
      'the container back after the dockerd restart',
      async () => (await h1.exec(['busybox', 'ping', '-c', '1', '-W', '1', '198.19.8.1'])).code === 0,
      20_000,
    );
    const after = (await docker(['exec', id, 'cat', '/sys/class/net/eth0/address'])).stdout.trim();
    expect(after).toBe(mac);
    // The events stream was reopened: a direct rm is still seen.
    await dockerd.dockerOk(['rm', '-f', id]);
    await waitFor(
      'released after the dockerd restart',
      async () => (await ds.get(ipAssignmentKey('198.19.8.1'))) === undefined,
      5_000,
    );
  });

  it('a second node sharing the dockerd manages only its own containers', async () => {
    const h3 = await fabric.addHost('h3');
    const n3 = startNode(h3, 'h3');
    const sock3 = join(h3.dir, 'h3.sock');
    await waitReady(n3, sock3);
    const mine = (await docker(['run', '-d', '-e', 'CALICO_IP=198.19.10.1', image, 'sleep', '300'])).stdout.trim();
    const theirs = (
      await dockerd.docker(['run', '-d', '-e', 'CALICO_IP=198.19.10.2', image, 'sleep', '300'], {
        host: `unix://${sock3}`,
      })
    ).stdout.trim();
    try {
      expect((await h1.exec(['busybox', 'ping', '-c', '1', '-W', '2', '198.19.10.1'])).code).toBe(0);
      expect((await h3.exec(['busybox', 'ping', '-c', '1', '-W', '2', '198.19.10.2'])).code).toBe(0);
      // Each host has a veth for its own workload only.
      expect((await h1.execOk(['ip', '-o', 'route'])).includes('198.19.10.2')).toBe(false);
      expect((await h3.execOk(['ip', '-o', 'route'])).includes('198.19.10.1')).toBe(false);
      expect(await keysUnder(workloadPrefix('h1', theirs))).toEqual([]);
      expect(await keysUnder(workloadPrefix('h3', mine))).toEqual([]);
    } finally {
      await docker(['rm', '-f', mine, theirs]);
      await n3.stop();
    }
  });

  it('refuses a second node with the same host name or the same address', async () => {
    const h2 = await fabric.addHost('h2');
    const dupName = startNode(h2, 'h1', [`--listen=unix://${join(h2.dir, 'dup.sock')}`]);
    await dupName.waitExit(20_000);
    expect(dupName.running).toBe(false);
    expect(dupName.log()).toContain('host name "h1" is already in use by a live node');
    const dupIp = h2.spawn('dup-ip', [
      process.execPath,
      mainJs,
      '--hostname=h2',
      `--ip=${h1.ip}`,
      `--etcd=${etcd.endpoints}`,
      `--docker=${dockerd.host}`,
      `--listen=unix://${join(h2.dir, 'dup2.sock')}`,
    ]);
    await dupIp.waitExit(20_000);
    expect(dupIp.log()).toContain(`address ${h1.ip} is already used by live host "h1"`);
  });
});
