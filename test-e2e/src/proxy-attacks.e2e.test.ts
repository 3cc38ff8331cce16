import { beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import type { DevCluster } from '@calico/devcluster';
import { waitFor } from '@calico/testkit';
import { LABELS } from '@calico/node';
import { containersNamed, hostCounts, keyCounts } from './counts.js';
import { clusterForSuite } from './helpers.js';

interface RawResponse {
  status: number;
  headers: string;
  body: string;
}

/** One request written byte for byte on a unix socket (the proxy's or dockerd's), and its answer. */
function rawRequest(
  socketPath: string,
  head: string,
  body: Buffer | string = '',
  opts: { chunked?: boolean } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    const chunks: Buffer[] = [];
    let answered = false;
    const done = () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const at = text.indexOf('\r\n\r\n');
      if (at < 0) return reject(new Error(`no HTTP answer: ${JSON.stringify(text.slice(0, 200))}`));
      const headers = text.slice(0, at);
      let rest = text.slice(at + 4);
      if (/\r\ntransfer-encoding: chunked/i.test(headers)) {
        let out = '';
        for (;;) {
          const nl = rest.indexOf('\r\n');
          const n = parseInt(rest.slice(0, nl), 16);
          if (!(n > 0)) break;
          out += rest.slice(nl + 2, nl + 2 + n);
          rest = rest.slice(nl + 2 + n + 2);
        }
        rest = out;
      }
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1]),
        headers,
        body: Buffer.from(rest, 'latin1').toString('utf8'),
      });
    };
    s.on('data', (c: Buffer) => {
      answered = true;
      chunks.push(c);
    });
    // An oversize upload is cut off once the answer is sent: what came back is the answer.
    let failure: Error | undefined;
    s.on('error', (e) => (failure = e));
    s.on('close', () => (chunks.length || !failure ? done() : reject(failure)));
    s.on('connect', () => {
      const b = typeof body === 'string' ? Buffer.from(body) : body;
      const framing = opts.chunked ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${b.length}\r\n`;
      const h = Buffer.from(
        `${head}\r\nHost: docker\r\nContent-Type: application/json\r\n${framing}Connection: close\r\n\r\n`,
      );
      // One write, never half-closed: like the docker CLI, the client waits for the answer.
      if (!opts.chunked) return void s.write(Buffer.concat([h, b]));
      s.write(h);
      const step = 256 * 1024;
      const next = (i: number): void => {
        if (answered || s.destroyed) return;
        if (i >= b.length) return void s.write('0\r\n\r\n');
        const part = b.subarray(i, i + step);
        const ok = s.write(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
        if (ok) next(i + step);
        else s.once('drain', () => next(i + step));
      };
      next(0);
    });
  });
}

/**
 * Each class of request that could be read one way by the proxy and another by dockerd, sent
 * raw to the real proxy in front of the real dockerd: each is refused with a 4xx that says why
 * and leaves nothing behind, and in the same test a control shows what it would have done.
 */
describe('the proxy reads each request as dockerd does', () => {
  let cluster: DevCluster;
  let n = 0;

  const started = clusterForSuite({ hosts: ['h1'] });
  beforeAll(() => {
    cluster = started();
  });

  const proxy = () => cluster.host('h1').proxySocket;
  const dockerd = () => cluster.dockerd.socketPath;
  const createBody = (extra: string) =>
    `{"Image":"${cluster.image}","Cmd":["sleep","60"],"Env":["CALICO_IP=198.19.7.${++n}"]${extra}}`;

  async function snapshot() {
    return {
      containers: (await containersNamed(cluster, 'pa-')).map((c) => c.name),
      keys: await keyCounts(cluster),
      veths: (await hostCounts(cluster.host('h1'))).veths,
    };
  }
  /** Refused by the proxy with a 4xx that says why, and nothing of ours left behind. */
  async function expectRefused(
    r: RawResponse,
    status: number,
    why: RegExp,
    before: Awaited<ReturnType<typeof snapshot>>,
  ) {
    expect(r.status, r.body).toBe(status);
    expect((JSON.parse(r.body) as { message: string }).message).toMatch(why);
    expect(await snapshot()).toEqual(before);
  }
  /** A control's container, as dockerd made it; removed, and the node's keys for it released. */
  async function inspectAndRemove(r: RawResponse, before: Awaited<ReturnType<typeof snapshot>>) {
    expect(r.status, r.body).toBe(201);
    const id = (JSON.parse(r.body) as { Id: string }).Id;
    const doc = JSON.parse(await cluster.dockerd.dockerOk(['inspect', id]))[0] as {
      HostConfig: { NetworkMode: string; Privileged: boolean };
      Config: { Labels: Record<string, string> | null; Env: string[] };
    };
    await cluster.dockerd.dockerOk(['rm', '-f', id]);
    await waitFor(
      'the control leaves nothing behind',
      async () => JSON.stringify(await snapshot()) === JSON.stringify(before),
      15_000,
    );
    const env = doc.Config.Env.filter((e) => !e.startsWith('PATH='));
    return {
      networkMode: doc.HostConfig.NetworkMode,
      privileged: doc.HostConfig.Privileged,
      calico: doc.Config.Labels?.[LABELS.host] === 'h1',
      env,
    };
  }

  it('encoded paths: %63reate is intercepted like create, an encoded "/" is refused; dockerd would create both', async () => {
    const before = await snapshot();
    const hostNet = ',"HostConfig":{"NetworkMode":"host"}';
    for (const target of [
      '/containers/%63reate?name=pa-enc',
      '/%63ontainers/create?name=pa-enc',
      '/v1.41/containers/cr%65ate?name=pa-enc',
      'http://docker/containers/create?name=pa-enc',
    ]) {
      await expectRefused(
        await rawRequest(proxy(), `POST ${target} HTTP/1.1`, createBody(hostNet)),
        400,
        /CALICO_IP cannot be used with --net=host/,
        before,
      );
      // Control: dockerd routes the same path to create and gives the container the host's network.
      expect(
        await inspectAndRemove(await rawRequest(dockerd(), `POST ${target} HTTP/1.1`, createBody(hostNet)), before),
      ).toMatchObject({ networkMode: 'host' });
    }
    // Intercepted exactly like /containers/create: the Calico rewrite happens.
    expect(
      await inspectAndRemove(
        await rawRequest(proxy(), 'POST /containers/%63reate?name=pa-enc HTTP/1.1', createBody('')),
        before,
      ),
    ).toMatchObject({ networkMode: 'none', privileged: false, calico: true });
    await expectRefused(
      await rawRequest(proxy(), 'POST /containers%2Fcreate?name=pa-enc HTTP/1.1', createBody(hostNet)),
      400,
      /encoded "\/" \(%2F\)/,
      before,
    );
    expect(
      await inspectAndRemove(
        await rawRequest(dockerd(), 'POST /containers%2Fcreate?name=pa-enc HTTP/1.1', createBody(hostNet)),
        before,
      ),
    ).toMatchObject({ networkMode: 'host' });
  });

  it('dot segments and "//": refused; dockerd redirects them to create', async () => {
    const before = await snapshot();
    const hostNet = ',"HostConfig":{"NetworkMode":"host"}';
    for (const [target, clean] of [
      ['/containers/../containers/create', '/containers/create'],
      ['/v1.41/containers/%2E%2E/containers/create', '/v1.41/containers/create'],
      ['/containers/./create', '/containers/create'],
      ['//containers/create', '/containers/create'],
    ] as const) {
      await expectRefused(
        await rawRequest(proxy(), `POST ${target}?name=pa-dot HTTP/1.1`, createBody(hostNet)),
        400,
        /not in canonical form/,
        before,
      );
      // Control: dockerd answers 301 to the create route; a client that follows it with its body gets a host-network container.
      const d = await rawRequest(dockerd(), `POST ${target}?name=pa-dot HTTP/1.1`, createBody(hostNet));
      expect(d.status).toBe(301);
      expect(d.headers).toContain(`Location: ${clean}?name=pa-dot`);
      expect(
        await inspectAndRemove(
          await rawRequest(dockerd(), `POST ${clean}?name=pa-dot HTTP/1.1`, createBody(hostNet)),
          before,
        ),
      ).toMatchObject({ networkMode: 'host' });
    }
  });

  it('version prefixes: every form dockerd routes is intercepted; forms it does not route pass to its 404', async () => {
    const before = await snapshot();
    const hostNet = ',"HostConfig":{"NetworkMode":"host"}';
    for (const v of ['/v1.041', '/v01.41', '/v1.41.', '/v1.41.0', '/v1.40']) {
      await expectRefused(
        await rawRequest(proxy(), `POST ${v}/containers/create?name=pa-ver HTTP/1.1`, createBody(hostNet)),
        400,
        /--net=host/,
        before,
      );
      expect(
        await inspectAndRemove(
          await rawRequest(dockerd(), `POST ${v}/containers/create?name=pa-ver HTTP/1.1`, createBody(hostNet)),
          before,
        ),
      ).toMatchObject({ networkMode: 'host' });
    }
    // dockerd's router is case-sensitive: these reach no route, through the proxy or not.
    for (const target of [
      '/V1.41/containers/create',
      '/CONTAINERS/create',
      '/containers/Create',
      '/v/containers/create',
    ]) {
      for (const socket of [proxy(), dockerd()]) {
        const r = await rawRequest(socket, `POST ${target}?name=pa-ver HTTP/1.1`, createBody(hostNet));
        expect(r.status, `${target}: ${r.body}`).toBe(404);
        expect(await snapshot()).toEqual(before);
      }
    }
  });

  it('an upgrade header on create is refused; dockerd would have created the container', async () => {
    const before = await snapshot();
    const head = 'POST /containers/create?name=pa-up HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp';
    const body = createBody(',"HostConfig":{"NetworkMode":"host"}');
    await expectRefused(await rawRequest(proxy(), head, body), 400, /does not upgrade the connection/, before);
    expect(await inspectAndRemove(await rawRequest(dockerd(), head, body), before)).toMatchObject({
      networkMode: 'host',
    });
  });

  it('duplicate and case-variant keys are refused naming the key; dockerd acts on the last, merging', async () => {
    const before = await snapshot();
    const cases: [string, RegExp, { networkMode?: string; privileged?: boolean; env?: string[] }][] = [
      // dockerd merges the second HostConfig into the first: host network from the variant.
      [
        ',"HostConfig":{"NetworkMode":"none"},"hostconfig":{"NetworkMode":"host"}',
        /sets HostConfig twice \(as "HostConfig" and "hostconfig"\)/,
        { networkMode: 'host' },
      ],
      [
        ',"HostConfig":{"NetworkMode":"none"},"Ho\u017ftConfig":{"NetworkMode":"host"}',
        /sets HostConfig twice/,
        { networkMode: 'host' },
      ],
      [
        ',"HostConfig":{"Privileged":true},"HostConfig":{"NetworkMode":"none"}',
        /sets HostConfig twice/,
        { networkMode: 'none', privileged: true },
      ],
      [
        ',"HostConfig":{"NetworkMode":"none","networkmode":"host"}',
        /sets HostConfig.NetworkMode twice/,
        { networkMode: 'host' },
      ],
      // dockerd takes the last Env: the container runs without the CALICO_IP the proxy saw.
      [',"env":["A=1"]', /sets Env twice \(as "Env" and "env"\)/, { env: ['A=1'] }],
    ];
    for (const [extra, why, harm] of cases) {
      await expectRefused(
        await rawRequest(proxy(), 'POST /containers/create?name=pa-dup HTTP/1.1', createBody(extra)),
        400,
        why,
        before,
      );
      expect(
        await inspectAndRemove(
          await rawRequest(dockerd(), 'POST /containers/create?name=pa-dup HTTP/1.1', createBody(extra)),
          before,
        ),
      ).toMatchObject(harm);
    }
    // Case variants alone are read as dockerd reads them: `env` is Env, so CALICO_IP in it is intercepted.
    const lower = `{"image":"${cluster.image}","cmd":["sleep","60"],"env":["CALICO_IP=198.19.7.${++n}"],"hostconfig":{"networkmode":"host"}}`;
    await expectRefused(
      await rawRequest(proxy(), 'POST /containers/create?name=pa-dup HTTP/1.1', lower),
      400,
      /--net=host/,
      before,
    );
    expect(
      await inspectAndRemove(
        await rawRequest(dockerd(), 'POST /containers/create?name=pa-dup HTTP/1.1', lower),
        before,
      ),
    ).toMatchObject({ networkMode: 'host' });
    // The same body without the variant is accepted and intercepted.
    expect(
      await inspectAndRemove(
        await rawRequest(
          proxy(),
          'POST /containers/create?name=pa-dup HTTP/1.1',
          createBody(',"HostConfig":{"NetworkMode":"none"}'),
        ),
        before,
      ),
    ).toMatchObject({ networkMode: 'none', privileged: false, calico: true });
  });

  it('a body that is not one JSON object is refused, not forwarded; dockerd would act on the first object', async () => {
    const before = await snapshot();
    const first = createBody(',"HostConfig":{"NetworkMode":"host"}');
    for (const [body, why] of [
      [`${first}{"Image":"x"}`, /more data after the first JSON value/],
      [`${first} trailing`, /more data after the first JSON value/],
    ] as const) {
      await expectRefused(
        await rawRequest(proxy(), 'POST /containers/create?name=pa-obj HTTP/1.1', body),
        400,
        why,
        before,
      );
      expect(
        await inspectAndRemove(
          await rawRequest(dockerd(), 'POST /containers/create?name=pa-obj HTTP/1.1', body),
          before,
        ),
      ).toMatchObject({ networkMode: 'host' });
    }
    for (const [body, why] of [
      [`[${first}]`, /must be one JSON object, not a array/],
      ['"x"', /must be one JSON object, not a string/],
      ['', /has no body/],
    ] as const) {
      await expectRefused(
        await rawRequest(proxy(), 'POST /containers/create?name=pa-obj HTTP/1.1', body),
        400,
        why,
        before,
      );
    }
  });

  it('an oversize create body gets 413, declared or chunked; dockerd would accept it', async () => {
    const before = await snapshot();
    const big = createBody(`,"Labels":{"big":"${'x'.repeat(17 * 1024 * 1024)}"}`);
    await expectRefused(
      await rawRequest(proxy(), 'POST /containers/create?name=pa-big HTTP/1.1', big),
      413,
      /over 16777216 bytes/,
      before,
    );
    await expectRefused(
      await rawRequest(proxy(), 'POST /containers/create?name=pa-big HTTP/1.1', big, { chunked: true }),
      413,
      /over 16777216 bytes/,
      before,
    );
    expect(
      await inspectAndRemove(await rawRequest(dockerd(), 'POST /containers/create?name=pa-big HTTP/1.1', big), before),
    ).toMatchObject({ networkMode: 'default' });
    // The proxy serves other clients on its next connections.
    expect((await cluster.host('h1').docker(['version', '--format', '{{.Server.Version}}'])).code).toBe(0);
  });

  it('a host config on start (API < 1.24) at the top level is checked; dockerd would switch the network', async () => {
    const before = await snapshot();
    const ours = await rawRequest(proxy(), 'POST /containers/create?name=pa-start HTTP/1.1', createBody(''));
    expect(ours.status, ours.body).toBe(201);
    const id = (JSON.parse(ours.body) as { Id: string }).Id;
    for (const body of [
      '{"NetworkMode":"host"}',
      '{"networkmode":"host"}',
      '{"HostConfig":{"NetworkMode":"host"}}',
      '{"HostConfig":null,"NetworkMode":"host"}',
    ]) {
      const r = await rawRequest(proxy(), `POST /v1.23/containers/${id}/start HTTP/1.1`, body);
      expect(r.status, `${body}: ${r.body}`).toBe(400);
      expect((JSON.parse(r.body) as { message: string }).message).toMatch(/--net=host/);
      expect(
        (
          await cluster.dockerd.dockerOk(['inspect', '-f', '{{.State.Running}} {{.HostConfig.NetworkMode}}', id])
        ).trim(),
      ).toBe('false none');
    }
    await inspectAndRemove(ours, before);
    // Control: a plain container (not ours, so not plumbed) that exits at once, started straight on
    // dockerd with the top-level field: dockerd gives it the host's network.
    const plain = await rawRequest(
      dockerd(),
      'POST /containers/create?name=pa-start HTTP/1.1',
      `{"Image":"${cluster.image}","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}`,
    );
    expect(plain.status, plain.body).toBe(201);
    const pid = (JSON.parse(plain.body) as { Id: string }).Id;
    const d = await rawRequest(dockerd(), `POST /v1.23/containers/${pid}/start HTTP/1.1`, '{"NetworkMode":"host"}');
    expect(d.status, d.body).toBe(204);
    expect((await cluster.dockerd.dockerOk(['inspect', '-f', '{{.HostConfig.NetworkMode}}', pid])).trim()).toBe('host');
    await cluster.dockerd.dockerOk(['rm', '-f', pid]);
    expect(await snapshot()).toEqual(before);
  });

  it('exec create with a case-variant key is refused; dockerd would take the last', async () => {
    const before = await snapshot();
    const ok = await rawRequest(proxy(), 'POST /containers/create?name=pa-exec HTTP/1.1', createBody(''));
    expect(ok.status, ok.body).toBe(201);
    const id = (JSON.parse(ok.body) as { Id: string }).Id;
    expect((await cluster.host('h1').docker(['start', id])).code).toBe(0);
    const body = '{"Cmd":["id"],"cmd":["sh","-c","echo smuggled"],"AttachStdout":true}';
    const r = await rawRequest(proxy(), `POST /containers/${id}/%65xec HTTP/1.1`, body);
    expect(r.status, r.body).toBe(400);
    expect((JSON.parse(r.body) as { message: string }).message).toMatch(/sets Cmd twice \(as "Cmd" and "cmd"\)/);
    // Control: dockerd creates the exec with the last Cmd.
    const d = await rawRequest(dockerd(), `POST /containers/${id}/exec HTTP/1.1`, body);
    expect(d.status, d.body).toBe(201);
    const exec = await rawRequest(dockerd(), `GET /exec/${(JSON.parse(d.body) as { Id: string }).Id}/json HTTP/1.1`);
    expect((JSON.parse(exec.body) as { ProcessConfig: { entrypoint: string } }).ProcessConfig.entrypoint).toBe('sh');
    // The same exec without the variant goes through the proxy.
    expect((await rawRequest(proxy(), `POST /containers/${id}/exec HTTP/1.1`, '{"Cmd":["id"]}')).status).toBe(201);
    await inspectAndRemove(ok, before);
  });
});
