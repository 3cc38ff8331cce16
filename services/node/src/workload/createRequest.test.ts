import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import {
  checkNetworkMode,
  effectiveCommand,
  rewriteCreate,
  serialize,
  waitScript,
  LABELS,
  WAIT_MOUNT,
} from './createRequest.js';
import { readRequestBody } from '../proxy/requestBody.js';

const parseCreateBody = (raw: Buffer) => {
  const r = readRequestBody('create', raw);
  return r.ok ? { ok: true as const, value: r.value ?? {} } : r;
};

const body = (o: unknown) => Buffer.from(JSON.stringify(o));

describe('create request', () => {
  it('keeps integers beyond 2^53 exactly as sent', () => {
    const raw = Buffer.from('{"Image":"busybox","HostConfig":{"Memory":9223372036854775807,"NanoCpus":1.5e9}}');
    const p = parseCreateBody(raw);
    if (!p.ok) throw new Error(p.message);
    const out = serialize(p.value).toString();
    expect(out).toContain('"Memory":9223372036854775807');
    expect(out).toContain('"NanoCpus":1.5e9');
  });

  it.each([
    [{}, undefined],
    [{ HostConfig: { NetworkMode: 'default' } }, undefined],
    [{ HostConfig: { NetworkMode: 'bridge' } }, undefined],
    [{ HostConfig: { NetworkMode: 'none' } }, undefined],
    [
      { HostConfig: { NetworkMode: 'host' } },
      "CALICO_IP cannot be used with --net=host: the container would share the host's network instead of getting its own address",
    ],
    [
      { HostConfig: { NetworkMode: 'container:abc' } },
      "CALICO_IP cannot be used with --net=container:abc: the container would share another container's network",
    ],
    [
      { HostConfig: { NetworkMode: 'mynet' } },
      'CALICO_IP cannot be used with --net=mynet: Calico gives the container its network; leave --net out',
    ],
    [
      { NetworkingConfig: { EndpointsConfig: { mynet: {} } } },
      'CALICO_IP cannot be used with --network mynet: Calico gives the container its network; leave --network out',
    ],
  ])('network mode %j', (doc, msg) => {
    const p = parseCreateBody(body(doc));
    if (!p.ok) throw new Error(p.message);
    expect(checkNetworkMode(p.value)).toBe(msg);
  });

  it.each([
    ['image only', {}, { Entrypoint: ['/init'], Cmd: ['serve'] }, { entrypoint: ['/init'], cmd: ['serve'] }],
    [
      'request cmd replaces image cmd',
      { Cmd: ['sh'] },
      { Entrypoint: ['/init'], Cmd: ['serve'] },
      { entrypoint: ['/init'], cmd: ['sh'] },
    ],
    [
      'request entrypoint drops image cmd',
      { Entrypoint: ['/x'] },
      { Entrypoint: ['/init'], Cmd: ['serve'] },
      { entrypoint: ['/x'], cmd: [] },
    ],
    [
      '--entrypoint ""',
      { Entrypoint: [''], Cmd: ['ls'] },
      { Entrypoint: ['/init'], Cmd: ['serve'] },
      { entrypoint: [], cmd: ['ls'] },
    ],
    [
      'empty entrypoint list takes image cmd',
      { Entrypoint: [] },
      { Entrypoint: ['/init'], Cmd: ['serve'] },
      { entrypoint: [], cmd: ['serve'] },
    ],
    [
      'string forms',
      { Entrypoint: '/x', Cmd: 'y' },
      { Entrypoint: null, Cmd: null },
      { entrypoint: ['/x'], cmd: ['y'] },
    ],
  ])('effective command: %s', (_n, doc, image, want) => {
    const p = parseCreateBody(body(doc));
    if (!p.ok) throw new Error(p.message);
    expect(effectiveCommand(p.value, image)).toEqual(want);
  });

  it('rewrites networking, labels, the wait program and keeps everything else', () => {
    const p = parseCreateBody(
      body({
        Image: 'busybox',
        Env: ['CALICO_IP=198.19.0.5'],
        Labels: { mine: '1' },
        HostConfig: { Binds: ['/a:/b'], NetworkMode: 'default', Memory: 5 },
        NetworkingConfig: { EndpointsConfig: {} },
      }),
    );
    if (!p.ok) throw new Error(p.message);
    const out = rewriteCreate(p.value, {
      hostname: 'h1',
      endpointId: 'e1',
      mac: 'ee:00:00:00:00:01',
      addrs: ['198.19.0.5'],
      families: [4],
      waitBinary: '/bin/busybox',
      command: { entrypoint: ['/init'], cmd: ['serve', '--port', '80'] },
    });
    const o = JSON.parse(serialize(out).toString());
    expect(o.HostConfig).toEqual({ Binds: ['/a:/b', `/bin/busybox:${WAIT_MOUNT}:ro`], NetworkMode: 'none', Memory: 5 });
    expect(o.NetworkingConfig).toBeUndefined();
    expect(o.Labels).toEqual({
      mine: '1',
      [LABELS.host]: 'h1',
      [LABELS.endpoint]: 'e1',
      [LABELS.addrs]: '198.19.0.5',
      [LABELS.mac]: 'ee:00:00:00:00:01',
    });
    expect(o.Entrypoint.slice(0, 3)).toEqual([WAIT_MOUNT, 'sh', '-c']);
    expect(o.Entrypoint.slice(4)).toEqual(['calico-wait', '/init']);
    expect(o.Cmd).toEqual(['serve', '--port', '80']);
    expect(o.Env).toEqual(['CALICO_IP=198.19.0.5']);
  });

  it('the wait script is valid shell that execs the workload with its arguments intact', () => {
    const script = waitScript([4, 6])
      .replace(`W=${WAIT_MOUNT}`, 'W=busybox')
      .replace(/until .*; do/, 'until true; do');
    const r = spawnSync('busybox', ['sh', '-c', script, 'calico-wait', 'printf', '%s|', 'a b', '$x', ''], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('a b|$x||');
  });
});
