import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { DevCluster } from '@calico/devcluster';
import { requireRoot, waitFor } from '@calico/testkit';
import { containersNamed, hostCounts, keyCounts } from './counts.js';

/** What came back on one raw connection, and whether the other side closed it. */
interface Exchange {
  text: string;
  closed: boolean;
  /** Status codes of the HTTP answers in text, in order. */
  statuses: number[];
}

const statusesOf = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

/**
 * Writes bytes on a new connection in one write and collects what comes back until the other
 * side closes, `until` says enough, or nothing more came for quietMs.
 */
function exchange(
  socketPath: string,
  bytes: string,
  opts: { until?: (x: Exchange) => boolean; quietMs?: number } = {},
): Promise<Exchange> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    let text = '';
    let quiet: NodeJS.Timeout | undefined;
    const snap = (closed: boolean): Exchange => ({ text, closed, statuses: statusesOf(text) });
    const finish = (closed: boolean) => {
      clearTimeout(quiet);
      s.removeAllListeners('data');
      s.destroy();
      resolve(snap(closed));
    };
    const arm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => finish(false), opts.quietMs ?? 3_000);
    };
    s.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (opts.until?.(snap(false))) finish(false);
      else arm();
    });
    s.on('error', () => undefined);
    s.on('close', () => finish(true));
    s.on('connect', () => {
      s.write(bytes);
      arm();
    });
  });
}

/** A request as raw bytes: head lines, then a JSON body framed by Content-Length. */
function request(line: string, body = '', extra: string[] = []): string {
  const head = [line, 'Host: docker', ...extra];
  if (body || line.startsWith('POST'))
    head.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`);
  return `${head.join('\r\n')}\r\n\r\n${body}`;
}

const UPGRADE = ['Connection: Upgrade', 'Upgrade: tcp'];

/** An open connection that says nothing more, and when it was closed by the other side. */
interface Held {
  socket: Socket;
  closed: boolean;
  text: string;
}

function hold(socketPath: string, first?: string): Promise<Held> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const h: Held = { socket, closed: false, text: '' };
    socket.on('data', (c: Buffer) => {
      h.text += c.toString('latin1');
      if (first && /\r\n\r\nOK$/.test(h.text)) resolve(h);
    });
    socket.on('close', () => (h.closed = true));
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      if (!first) return resolve(h);
      socket.write(first);
    });
    setTimeout(() => reject(new Error(`no answer on a held connection: ${JSON.stringify(h.text)}`)), 10_000).unref();
  });
}

/** Writes bytes one at a time, delayMs apart, until all are sent or the connection closes. */
function dribble(socketPath: string, bytes: string, delayMs: number): Promise<{ sentAll: boolean; text: string }> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    let text = '';
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    s.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (i >= bytes.length && /\r\n\r\n/.test(text)) {
        clearTimeout(timer);
        s.destroy();
        resolve({ sentAll: true, text });
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ sentAll: i >= bytes.length, text });
    });
    const next = () => {
      if (s.destroyed || i >= bytes.length) return;
      s.write(bytes[i++]!);
      timer = setTimeout(next, delayMs);
    };
    s.on('connect', next);
  });
}

const HEADER_S = 2;
const BODY_S = 2;
const IDLE_S = 5;
const MAX_CONN = 12;

/**
 * The proxy's connection handling, attacked raw on the real proxy in front of the real dockerd
 * (short limits via flags), each attack beside a control that sends the same bytes straight to
 * dockerd: upgrades only where dockerd upgrades and only after its 101, and no slow, idle or
 * numerous client pins the proxy, while streams outlive every timeout.
 */
describe('the proxy hands over connections only when dockerd does, and cannot be pinned', () => {
  let cluster: DevCluster;
  let failed = false;
  let n = 0;
  const plain: string[] = [];

  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start({
      hosts: ['h1'],
      nodeArgs: [
        `--proxy-header-timeout=${HEADER_S}`,
        `--proxy-body-timeout=${BODY_S}`,
        `--proxy-idle-timeout=${IDLE_S}`,
        `--proxy-max-connections=${MAX_CONN}`,
      ],
    });
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (plain.length) await cluster?.dockerd.docker(['rm', '-f', ...plain]);
    if (failed && cluster)
      console.error(`${await cluster.dump()}\n===== node =====\n${cluster.host('h1').node?.log().slice(-6000)}`);
    await cluster?.stop();
  });

  const proxy = () => cluster.host('h1').proxySocket;
  const dockerd = () => cluster.dockerd.socketPath;
  const smuggled = (name: string) =>
    request(
      `POST /containers/create?name=${name} HTTP/1.1`,
      `{"Image":"${cluster.image}","Cmd":["sleep","60"],"Env":["CALICO_IP=198.19.8.${++n}"],` +
        '"HostConfig":{"NetworkMode":"host"}}',
    );

  async function snapshot() {
    const containers = (await containersNamed(cluster, 'pu-'))
      .map((c) => c.name)
      .filter((c) => !c.startsWith('pu-plain'));
    return { containers, keys: await keyCounts(cluster), veths: (await hostCounts(cluster.host('h1'))).veths };
  }
  /** A plain running container made straight on dockerd (not ours), and an exec on it. */
  async function plainExec(body: string): Promise<{ container: string; exec: string }> {
    const container = (
      await cluster.dockerd.dockerOk([
        'run',
        '-d',
        '--net',
        'none',
        '--name',
        `pu-plain-${++n}`,
        cluster.image,
        'sleep',
        '120',
      ])
    ).trim();
    plain.push(container);
    const r = await exchange(
      dockerd(),
      request(`POST /containers/${container}/exec HTTP/1.1`, body, ['Connection: close']),
    );
    const exec = (JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)) as { Id: string }).Id;
    return { container, exec };
  }
  const smuggledNetworkMode = async (name: string) => {
    const mode = (await cluster.dockerd.dockerOk(['inspect', '-f', '{{.HostConfig.NetworkMode}}', name])).trim();
    await cluster.dockerd.dockerOk(['rm', '-f', name]);
    return mode;
  };

  it('a request pipelined behind an upgrade never reaches dockerd; straight, dockerd makes its container', async () => {
    const before = await snapshot();
    const detached = '{"Detach":true,"Tty":false}';
    // dockerdStatuses: what dockerd answers to the same bytes; a trailing 201 is the smuggled create run.
    const cases: { what: string; first: () => Promise<string>; proxyStatus: number; dockerdStatuses: number[] }[] = [
      {
        // dockerd 20.10 writes an attach error on the hijacked connection and closes it.
        what: 'attach to a missing container',
        first: async () => request('POST /containers/pu-missing/attach?stream=1&stdout=1 HTTP/1.1', '', UPGRADE),
        proxyStatus: 404,
        dockerdStatuses: [404],
      },
      {
        what: 'a route that does not upgrade (dockerd answers it and reads on)',
        first: async () => request('GET /_ping HTTP/1.1', '', UPGRADE),
        proxyStatus: 400,
        dockerdStatuses: [200, 201],
      },
      {
        what: 'a detached exec start (dockerd answers 200 without hijacking)',
        first: async () =>
          request(`POST /exec/${(await plainExec('{"Cmd":["true"]}')).exec}/start HTTP/1.1`, detached, UPGRADE),
        proxyStatus: 200,
        dockerdStatuses: [200, 201],
      },
      {
        what: 'a path dockerd redirects (301) to attach',
        first: async () => request('POST /containers/pu-missing/../pu-missing/attach HTTP/1.1', '', UPGRADE),
        proxyStatus: 400,
        dockerdStatuses: [301, 201],
      },
    ];
    for (const c of cases) {
      const name = `pu-smuggled-${++n}`;
      const viaProxy = await exchange(proxy(), (await c.first()) + smuggled(name));
      expect(viaProxy.statuses, `${c.what}: ${viaProxy.text}`).toEqual([c.proxyStatus]);
      expect(viaProxy.closed, c.what).toBe(true);
      expect(await snapshot(), c.what).toEqual(before);
      // Control: the same bytes in one write straight to dockerd.
      const until = (x: Exchange) => x.statuses.length >= c.dockerdStatuses.length;
      const direct = await exchange(dockerd(), (await c.first()) + smuggled(name), { until });
      expect(direct.statuses, `${c.what}: ${direct.text}`).toEqual(c.dockerdStatuses);
      if (c.dockerdStatuses.at(-1) === 201) expect(await smuggledNetworkMode(name), c.what).toBe('host');
      else expect(await snapshot(), c.what).toEqual(before);
    }
    expect(await snapshot()).toEqual(before);
  });

  it('after dockerd answers 101 the connection is the stream: bytes behind the request reach the process', async () => {
    const before = await snapshot();
    const { exec } = await plainExec('{"Cmd":["cat"],"AttachStdin":true,"AttachStdout":true,"Tty":true}');
    const name = `pu-smuggled-${++n}`;
    const r = await exchange(
      proxy(),
      request(`POST /exec/${exec}/start HTTP/1.1`, '{"Detach":false,"Tty":true}', UPGRADE) + smuggled(name),
      {
        until: (x) => x.text.includes('"HostConfig"'),
      },
    );
    expect(r.text).toMatch(/^HTTP\/1\.1 101 UPGRADED\r\n/);
    expect(r.text).toContain('Upgrade: tcp');
    // cat on a terminal echoes what it read: the held bytes went into the stream, not to the router.
    expect(r.text).toContain(`POST /containers/create?name=${name}`);
    expect(await snapshot()).toEqual(before);
  });

  it('BuildKit routes upgrade through the proxy as on dockerd; others with an upgrade header are refused', async () => {
    for (const line of ['POST /grpc HTTP/1.1', 'POST /session HTTP/1.1']) {
      const bytes = () =>
        request(line, '', ['Connection: Upgrade', 'Upgrade: h2c', `X-Docker-Expose-Session-Uuid: pu-s${++n}`]);
      const direct = await exchange(dockerd(), bytes(), { until: (x) => x.statuses.length > 0, quietMs: 2_000 });
      const viaProxy = await exchange(proxy(), bytes(), { until: (x) => x.statuses.length > 0, quietMs: 2_000 });
      expect(direct.statuses[0], `${line}: ${direct.text}`).toBe(101);
      expect(viaProxy.statuses[0], `${line}: ${viaProxy.text}`).toBe(101);
    }
    const build = await exchange(
      proxy(),
      request('POST /build?version=2 HTTP/1.1', '', ['Connection: Upgrade', 'Upgrade: h2c']),
    );
    expect(build.statuses).toEqual([400]);
    expect(build.text).toContain('does not upgrade the connection');
  });

  it('a client dribbling its request head is cut at the header timeout, others served; dockerd waits', async () => {
    const head = request('GET /_ping HTTP/1.1', '', [`X-Slow: ${'s'.repeat(60)}`]);
    const slow = dribble(proxy(), head, 100);
    const silent = exchange(proxy(), '', { quietMs: (HEADER_S + 5) * 1000 });
    // Served meanwhile.
    const ok = await cluster.host('h1').docker(['version', '--format', '{{.Server.Version}}']);
    expect(ok.code, ok.stderr).toBe(0);
    const cut = await slow;
    expect(cut.sentAll).toBe(false);
    expect(statusesOf(cut.text)).toEqual([408]);
    expect(cut.text).toContain(`did not arrive whole within ${HEADER_S} s`);
    // A connection that never says anything is closed the same way.
    const mute = await silent;
    expect({ closed: mute.closed, statuses: mute.statuses }).toEqual({ closed: true, statuses: [408] });
    // Control: dockerd takes the same dribble to its end and answers it.
    const [direct, directMute] = await Promise.all([
      dribble(dockerd(), head, 100),
      exchange(dockerd(), '', { quietMs: (HEADER_S + 2) * 1000 }),
    ]);
    expect(direct.sentAll).toBe(true);
    expect(statusesOf(direct.text)).toEqual([200]);
    expect({ closed: directMute.closed, statuses: directMute.statuses }).toEqual({ closed: false, statuses: [] });
  });

  it('a stalled request body is cut with 408 and leaves nothing; dockerd waits and then acts on it', async () => {
    const before = await snapshot();
    const vol = `pu-vol-${++n}`;
    for (const [line, body] of [
      ['POST /volumes/create HTTP/1.1', `{"Name":"${vol}"}`],
      [
        `POST /containers/create?name=pu-stall-${n} HTTP/1.1`,
        `{"Image":"${cluster.image}","Env":["CALICO_IP=198.19.8.${++n}"]}`,
      ],
    ] as const) {
      const full = request(line, body);
      const part = full.slice(0, full.length - 5);
      const r = await exchange(proxy(), part, { quietMs: (BODY_S + 5) * 1000 });
      expect(r.statuses, `${line}: ${r.text}`).toEqual([408]);
      expect(r.text).toContain('the request body stalled');
      expect(r.closed).toBe(true);
    }
    expect((await cluster.dockerd.docker(['volume', 'inspect', vol])).code).not.toBe(0);
    expect(await snapshot()).toEqual(before);
    // Control: dockerd keeps the stalled upload open past the same time, then creates the volume.
    const full = request('POST /volumes/create HTTP/1.1', `{"Name":"${vol}"}`);
    const s = connect(dockerd());
    let text = '';
    let closed = false;
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('close', () => (closed = true));
    await new Promise((r) => s.on('connect', r));
    s.write(full.slice(0, full.length - 5));
    await new Promise((r) => setTimeout(r, (BODY_S + 2) * 1000));
    expect({ closed, text }).toEqual({ closed: false, text: '' });
    s.write(full.slice(full.length - 5));
    await waitFor('dockerd to answer the completed upload', () => statusesOf(text).length > 0, 10_000);
    s.destroy();
    expect(statusesOf(text)).toEqual([201]);
    await cluster.dockerd.dockerOk(['volume', 'rm', vol]);
  });

  it('idle connections cannot hold the proxy: over the cap a 503, idle ones closed; dockerd keeps all', async () => {
    const ping = request('GET /_ping HTTP/1.1');
    // The cap's worth of connections, each kept alive after one request.
    const held = await Promise.all(Array.from({ length: MAX_CONN }, () => hold(proxy(), ping)));
    const over = await exchange(proxy(), ping);
    expect(over.statuses, over.text).toEqual([503]);
    expect(over.text).toContain(`over its limit of ${MAX_CONN}`);
    const cli = await cluster.host('h1').docker(['version', '--format', '{{.Server.Version}}']);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain('--proxy-max-connections');
    expect(cluster.host('h1').node?.log()).toContain('connection cap reached');
    // The proxy closes every one of them at the idle timeout ...
    await waitFor('the proxy to close the held connections', () => held.every((h) => h.closed), (IDLE_S + 5) * 1000);
    // ... and serves again.
    const again = await cluster.host('h1').docker(['version', '--format', '{{.Server.Version}}']);
    expect(again.code, again.stderr).toBe(0);
    // Control: dockerd serves one more than the cap and keeps every idle connection past the same time.
    const direct = await Promise.all(Array.from({ length: MAX_CONN }, () => hold(dockerd(), ping)));
    expect((await exchange(dockerd(), ping, { until: (x) => x.statuses.length > 0 })).statuses).toEqual([200]);
    await new Promise((r) => setTimeout(r, (IDLE_S + 2) * 1000));
    expect(direct.filter((h) => h.closed).length).toBe(0);
    for (const h of direct) h.socket.destroy();
  });

  it('logs -f, events, wait, attach and exec -i through the proxy outlive every timeout', async () => {
    const quiet = HEADER_S + BODY_S + IDLE_S + 1;
    const id = (
      await cluster
        .host('h1')
        .docker([
          'run',
          '-d',
          '--name',
          `pu-stream-${++n}`,
          cluster.image,
          'sh',
          '-c',
          `sleep 2; echo first; sleep ${quiet + 2}; echo second`,
        ])
    ).stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const since = Math.floor(Date.now() / 1000) - 2;
    const d = (args: string[], input?: string) => cluster.host('h1').docker(args, input);
    const [logs, events, wait, attach, exec] = await Promise.all([
      d(['logs', '-f', id]),
      d([
        'events',
        '--since',
        String(since),
        '--until',
        String(since + quiet + 10),
        '--filter',
        `container=${id}`,
        '--filter',
        'event=die',
        '--format',
        '{{.Action}}',
      ]),
      d(['wait', id]),
      d(['attach', '--no-stdin', id]),
      d(['exec', '-i', id, 'sh', '-c', `sleep ${quiet}; cat`], 'through-stdin\n'),
    ]);
    expect({ code: logs.code, out: logs.stdout }).toEqual({ code: 0, out: 'first\nsecond\n' });
    expect({ code: events.code, out: events.stdout.trim() }).toEqual({ code: 0, out: 'die' });
    expect({ code: wait.code, out: wait.stdout.trim() }).toEqual({ code: 0, out: '0' });
    expect({ code: attach.code, out: attach.stdout }).toEqual({ code: 0, out: 'first\nsecond\n' });
    expect({ code: exec.code, out: exec.stdout }).toEqual({ code: 0, out: 'through-stdin\n' });
    await cluster.dockerd.dockerOk(['rm', '-f', id]);
  });
});
