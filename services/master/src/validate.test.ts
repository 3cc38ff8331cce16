import { describe, expect, it } from 'vitest';
import { ApiError } from './errors.js';
import {
  parseCheckQuery,
  parseDirection,
  parseGroupBody,
  parseJsonObject,
  parseMemberBody,
  parsePoolBody,
  parsePoolParam,
  parseHostParam,
  parseRemoveHostQuery,
  parseRuleBody,
  parseRuleIndex,
} from './validate.js';

/** The message of the 400 that f throws, or its result. */
function outcome(f: () => unknown): unknown {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    expect(e.status).toBe(400);
    return `${e.code}: ${e.message}`;
  }
}

describe('request bodies', () => {
  it.each<[string, unknown]>([
    ['{"name":"web"}', { name: 'web' }],
    ['', 'INVALID: request body is empty: send a JSON object'],
    ['{"name":', expect.stringMatching(/^INVALID: request body is not JSON: /)],
    ['[1]', 'INVALID: request body must be a JSON object, got an array'],
    ['null', 'INVALID: request body must be a JSON object, got null'],
    ['"web"', 'INVALID: request body must be a JSON object, got string'],
  ])('parseJsonObject(%j)', (text, want) => {
    expect(outcome(() => parseJsonObject(text))).toEqual(want);
  });

  it.each<[Record<string, unknown>, unknown]>([
    [{ name: 'web' }, { name: 'web' }],
    [
      { name: 'web', id: 'a935e8e1' },
      { name: 'web', id: 'a935e8e1' },
    ],
    [{}, "INVALID: name must be a string (the group's human-readable name)"],
    [
      { name: 'web', id: 'a/b', colour: 'red' },
      'INVALID: unknown field "colour" (expected name, id); id "a/b" must not contain "/"',
    ],
    [
      { name: 3, id: '' },
      "INVALID: name must be a string (the group's human-readable name); id must be a non-empty string",
    ],
  ])('parseGroupBody(%j)', (body, want) => {
    expect(outcome(() => parseGroupBody(body))).toEqual(want);
  });

  it.each<[Record<string, unknown>, unknown]>([
    [
      { group: null, cidr: '0.0.0.0/0', protocol: 'tcp', port: '80' },
      { group: null, cidr: '0.0.0.0/0', protocol: 'tcp', port: 80 },
    ],
    [
      { group: null, cidr: '10.65.0.0/24', protocol: null, 'port:': null },
      { group: null, cidr: '10.65.0.0/24', protocol: null, port: null },
    ],
    [{ group: 'g2' }, { group: 'g2', cidr: null, protocol: null, port: null }],
    [
      { cidr: '0.0.0.0/0', protocol: 'icmp', port: 80, x: 1 },
      'INVALID: rule: unknown field "x"; rule: port must be null for protocol icmp',
    ],
  ])('parseRuleBody(%j)', (body, want) => {
    expect(outcome(() => parseRuleBody(body))).toEqual(want);
  });

  it.each<[Record<string, unknown>, unknown]>([
    [{ container: 'web' }, { container: 'web' }],
    [{ endpoint: 'ep-1' }, { endpoint: 'ep-1' }],
    [{}, 'INVALID: give exactly one of "container" (id, id prefix or name) and "endpoint" (endpoint id)'],
    [
      { container: 'a', endpoint: 'b' },
      'INVALID: give exactly one of "container" (id, id prefix or name) and "endpoint" (endpoint id)',
    ],
    [{ container: 7 }, 'INVALID: container must be a non-empty string'],
    [
      { endpointId: 'x' },
      'INVALID: unknown field "endpointId" (expected container, endpoint); give exactly one of "container" (id, id prefix or name) and "endpoint" (endpoint id)',
    ],
  ])('parseMemberBody(%j)', (body, want) => {
    expect(outcome(() => parseMemberBody(body))).toEqual(want);
  });

  it.each<[Record<string, unknown>, unknown]>([
    [{ cidr: '198.19.0.0/16' }, { cidr: '198.19.0.0/16' }],
    [{ cidr: 16 }, 'INVALID: cidr must be a string such as "198.19.0.0/16"'],
  ])('parsePoolBody(%j)', (body, want) => {
    expect(outcome(() => parsePoolBody(body))).toEqual(want);
  });
});

describe('path and query parameters', () => {
  it.each<[string, unknown]>([
    ['inbound', 'inbound'],
    ['outbound', 'outbound'],
    ['Inbound', 'INVALID: direction "Inbound" must be inbound or outbound'],
  ])('parseDirection(%s)', (s, want) => expect(outcome(() => parseDirection(s))).toEqual(want));

  it.each<[string, unknown]>([
    ['1', 1],
    ['12', 12],
    ['0', 'INVALID: rule number "0" must be a positive integer without leading zeros'],
    ['01', 'INVALID: rule number "01" must be a positive integer without leading zeros'],
    ['1.5', 'INVALID: rule number "1.5" must be a positive integer without leading zeros'],
    [
      '99999999999999999999',
      'INVALID: rule number "99999999999999999999" must be a positive integer without leading zeros',
    ],
  ])('parseRuleIndex(%s)', (s, want) => expect(outcome(() => parseRuleIndex(s))).toEqual(want));

  it.each<[string, string]>([
    ['198.19.0.0/16', '198.19.0.0/16'],
    ['198.19.0.0-16', '198.19.0.0/16'],
    ['fd00:198:19::-48', 'fd00:198:19::/48'],
    ['banana', 'banana'],
  ])('parsePoolParam(%s)', (s, want) => expect(parsePoolParam(s)).toBe(want));

  it.each<[string, unknown]>([
    ['src=web&dst=db', { src: 'web', dst: 'db', protocol: null, port: null }],
    ['src=198.19.0.1&dst=db&protocol=tcp&port=80', { src: '198.19.0.1', dst: 'db', protocol: 'tcp', port: 80 }],
    ['src=web&dst=db&protocol=&port=', { src: 'web', dst: 'db', protocol: null, port: null }],
    [
      'dst=db&port=0&colour=red',
      'INVALID: unknown parameter "colour" (expected src, dst, protocol, port); src is required: an address, endpoint id, container id, id prefix or name; port "0" must be an integer from 1 to 65535',
    ],
    ['src=a&dst=b&port=8o', 'INVALID: port "8o" must be an integer from 1 to 65535'],
  ])('parseCheckQuery(%s)', (q, want) => expect(outcome(() => parseCheckQuery(new URLSearchParams(q)))).toEqual(want));

  it.each<[string, unknown]>([
    ['h1', 'h1'],
    ['node-7.example', 'node-7.example'],
    ['H1', expect.stringMatching(/^INVALID: host name "H1" is not valid; use lowercase letters/)],
    ['h1/alive', expect.stringMatching(/^INVALID: host name "h1\/alive" is not valid/)],
  ])('parseHostParam(%s)', (s, want) => expect(outcome(() => parseHostParam(s))).toEqual(want));

  it.each<[string, unknown]>([
    ['', { removeEndpoints: false }],
    ['removeEndpoints=true', { removeEndpoints: true }],
    ['removeEndpoints=false', { removeEndpoints: false }],
    ['removeEndpoints=yes', 'INVALID: removeEndpoints "yes" must be true or false'],
    ['removeEndpoints=false&removeEndpoints=true', 'INVALID: removeEndpoints given more than once'],
    ['force=1', 'INVALID: unknown parameter "force" (expected removeEndpoints)'],
  ])('parseRemoveHostQuery(%s)', (q, want) =>
    expect(outcome(() => parseRemoveHostQuery(new URLSearchParams(q)))).toEqual(want),
  );
});
