import { describe, expect, it } from 'vitest';
import { stringify } from 'lossless-json';
import { readRequestBody } from './requestBody.js';
import { checkNetworkMode } from '../workload/createRequest.js';
import { calicoIpFromEnv } from '../workload/calicoIp.js';

const read = (route: Parameters<typeof readRequestBody>[0], text: string) => readRequestBody(route, Buffer.from(text));
const ENV = '"Env":["CALICO_IP=198.19.0.5"]';

describe('readRequestBody: what dockerd will read, or a refusal that names the key', () => {
  it.each([
    // Exact duplicates, where dockerd acts on the last (or merges two HostConfig objects).
    ['create', `{"Image":"b",${ENV},"Env":[]}`, 'the request body sets Env twice'],
    [
      'create',
      `{"Image":"b",${ENV},"HostConfig":{"NetworkMode":"host"},"HostConfig":{}}`,
      'the request body sets HostConfig twice',
    ],
    [
      'create',
      `{${ENV},"HostConfig":{"NetworkMode":"none","NetworkMode":"host"}}`,
      'the request body sets HostConfig.NetworkMode twice',
    ],
    [
      'create',
      `{${ENV},"Labels":{"org.projectcalico.host":"a","org.projectcalico.host":"b"}}`,
      'sets Labels."org.projectcalico.host" twice',
    ],
    [
      'create',
      `{${ENV},"NetworkingConfig":{"EndpointsConfig":{"n":{},"n":{}}}}`,
      'sets NetworkingConfig.EndpointsConfig.n twice',
    ],
    // Case variants of one field: dockerd's Go decoder folds case.
    ['create', `{"Image":"b","Env":[],"env":["CALICO_IP=198.19.0.5"]}`, 'sets Env twice (as "Env" and "env")'],
    [
      'create',
      `{${ENV},"HostConfig":{},"hostconfig":{"NetworkMode":"host"}}`,
      'sets HostConfig twice (as "HostConfig" and "hostconfig")',
    ],
    ['create', `{${ENV},"hostConfig":{},"HOSTCONFIG":{}}`, 'sets HostConfig twice (as "hostConfig" and "HOSTCONFIG")'],
    [
      'create',
      `{${ENV},"NetworkingConfig":{},"networkingconfig":{"EndpointsConfig":{"n":{}}}}`,
      'sets NetworkingConfig twice',
    ],
    ['create', `{${ENV},"Labels":{},"Label\u017f":{"x":"y"}}`, 'sets Labels twice (as "Labels" and "Labelſ")'],
    [
      'create',
      `{${ENV},"HostConfig":{"NetworkMode":"none","Networ\u212aMode":"host"}}`,
      'sets HostConfig.NetworkMode twice',
    ],
    ['create', `{${ENV},"Entrypoint":["a"],"entrypoint":["b"]}`, 'sets Entrypoint twice'],
    ['create', `{${ENV},"Cmd":["a"],"CMD":["b"]}`, 'sets Cmd twice'],
    ['create', `{${ENV},"Image":"a","image":"b"}`, 'sets Image twice'],
    [
      'create',
      `{${ENV},"Privileged":false,"privileged":true}`,
      'sets Privileged twice (as "Privileged" and "privileged")',
    ],
    ['create', `{${ENV},"HostConfig":{"Binds":[],"binds":["/:/host"]}}`, 'sets HostConfig.Binds twice'],
    [
      'create',
      `{${ENV},"hostconfig":{"NetworkMode":"none","networkmode":"host"}}`,
      'sets HostConfig.NetworkMode twice',
    ],
    ['start', '{"HostConfig":{},"Hostconfig":{"NetworkMode":"host"}}', 'sets HostConfig twice'],
    ['start', '{"NetworkMode":"none","networkMode":"host"}', 'sets NetworkMode twice'],
    ['exec-create', '{"Cmd":["id"],"cmd":["sh"]}', 'sets Cmd twice'],
    ['exec-create', '{"Privileged":false,"Privileged":true}', 'sets Privileged twice'],
    ['network-connect', '{"Container":"a","container":"b"}', 'sets Container twice'],
    [
      'network-connect',
      '{"Container":"a","EndpointConfig":{"IPAddress":"1.2.3.4","ipaddress":"5.6.7.8"}}',
      'sets EndpointConfig.IPAddress twice',
    ],
    ['network-disconnect', '{"Container":"a","Container":"b"}', 'sets Container twice'],
    ['update', '{"RestartPolicy":{},"restartpolicy":{}}', 'sets RestartPolicy twice'],
  ] as const)('%s %s: %s', (route, text, message) => {
    const r = read(route, text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(message);
  });

  it.each([
    ['create', '', 'the create request has no body: send one JSON object'],
    ['create', '[{"Image":"b"}]', 'must be one JSON object, not a array'],
    ['create', '"x"', 'must be one JSON object, not a string'],
    ['create', 'null', 'must be one JSON object, not null'],
    ['create', '42', 'must be one JSON object, not a number'],
    ['create', `{"Image":"b",${ENV}}{"HostConfig":{"NetworkMode":"host"}}`, 'more data after the first JSON value'],
    ['create', `{"Image":"b",${ENV}} garbage`, 'more data after the first JSON value'],
    ['create', `{"Image":"b",${ENV}`, 'expected "," or "}"'],
    ['start', '[]', 'must be one JSON object, not a array'],
    ['exec-create', '{"Cmd":["id"]}x', 'more data after the first JSON value'],
    ['network-connect', 'true', 'must be one JSON object'],
  ] as const)('%s %j is refused: %s', (route, text, message) => {
    const r = read(route, text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(message);
  });

  it('reads the keys it acts on whatever their case, under dockerd spelling, so no variant slips past a check', () => {
    const r = read('create', `{"image":"b","env":["CALICO_IP=198.19.0.5"],"hostconfig":{"networkmode":"host"}}`);
    if (!r.ok) throw new Error(r.message);
    const doc = r.value!;
    expect(Object.keys(doc)).toEqual(['Image', 'Env', 'HostConfig']);
    // Control: read as JSON.parse reads it, the same body has no CALICO_IP and no network mode.
    const naive = JSON.parse(`{"image":"b","env":["CALICO_IP=198.19.0.5"],"hostconfig":{"networkmode":"host"}}`);
    expect(calicoIpFromEnv(naive.Env)).toMatchObject({ ok: true, value: { kind: 'none' } });
    expect(checkNetworkMode(naive)).toBeUndefined();
    expect(calicoIpFromEnv(doc.Env as never)).toMatchObject({ ok: true, value: { kind: 'addr', addr: '198.19.0.5' } });
    expect(checkNetworkMode(doc)).toMatch(/--net=host/);
  });

  it('folds "ſ" and the Kelvin sign as Go does', () => {
    const r = read('create', '{"Label\u017f":{"a":"b"},"HostConfig":{"Networ\u212aMode":"host"}}');
    if (!r.ok) throw new Error(r.message);
    expect(stringify(r.value)).toBe('{"Labels":{"a":"b"},"HostConfig":{"NetworkMode":"host"}}');
  });

  it('accepts what docker clients send: case variants of map keys, other levels untouched, empty start', () => {
    const text = `{"Image":"b",${ENV},"Labels":{"a":"1","A":"2"},"HostConfig":{"LogConfig":{"Type":"none","Config":{}},"Memory":9223372036854775807}}`;
    const r = read('create', text);
    if (!r.ok) throw new Error(r.message);
    expect(stringify(r.value)).toBe(text);
    expect(read('start', '')).toEqual({ ok: true, value: undefined });
    expect(read('exec-create', '{"Cmd":["id"],"Env":["A=1","A=2"]}').ok).toBe(true);
  });
});

describe('checkNetworkMode reads the host config dockerd uses', () => {
  it('takes the top-level (deprecated) fields when there is no HostConfig object', () => {
    expect(checkNetworkMode({ NetworkMode: 'host' })).toMatch(/--net=host/);
    expect(checkNetworkMode({ NetworkMode: 'host', HostConfig: null })).toMatch(/--net=host/);
    // With a HostConfig object, dockerd ignores the top-level NetworkMode.
    expect(checkNetworkMode({ NetworkMode: 'host', HostConfig: { NetworkMode: 'none' } })).toBeUndefined();
  });
});
