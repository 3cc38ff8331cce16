import { describe, expect, it } from 'vitest';
import { cleanPath, decodePathBytes, encodePathBytes, routeRequest, type RouteDecision } from './route.js';

const name = (d: RouteDecision) => (d.kind === 'route' ? d.name : d.kind);

describe('routeRequest: the route dockerd would run', () => {
  it.each([
    ['POST', '/containers/create', 'create'],
    ['POST', '/v1.41/containers/create', 'create'],
    ['POST', '/containers/create?name=web', 'create'],
    ['POST', '/containers/%63reate', 'create'],
    ['POST', '/containers/%63%72%65%61%74%65', 'create'],
    ['POST', '/%63ontainers/create', 'create'],
    ['POST', '/%76%31.41/containers/create', 'create'],
    ['POST', '/v1.41%2e0/containers/create', 'create'],
    // dockerd's version matcher is [0-9.]+: odd forms are routed (and judged by its version check).
    ['POST', '/v1/containers/create', 'create'],
    ['POST', '/v1.041/containers/create', 'create'],
    ['POST', '/v01.41/containers/create', 'create'],
    ['POST', '/v1.41./containers/create', 'create'],
    ['POST', '/v./containers/create', 'create'],
    ['POST', '/v1.2/containers/create', 'create'],
    ['POST', '/v999/containers/create', 'create'],
    // absolute-form: Go routes on the path after the authority.
    ['POST', 'http://docker/containers/create', 'create'],
    ['POST', 'HTTP://docker:2375/v1.41/containers/%63reate?x=1', 'create'],
    ['POST', 'x:/containers/create', 'create'],
    ['POST', '/containers/abc/start', 'start'],
    ['POST', '/containers/abc/st%61rt', 'start'],
    ['POST', '/v1.23/containers/abc/start', 'start'],
    ['POST', '/containers/a/b/start', 'start'],
    ['POST', '/containers/create/start', 'start'],
    ['POST', '/containers/abc/restart', 'restart'],
    ['GET', '/containers/abc/json', 'inspect'],
    ['GET', '/v1.41/containers/abc/j%73on', 'inspect'],
    ['POST', '/containers/abc/exec', 'exec-create'],
    ['POST', '/containers/abc/%65xec', 'exec-create'],
    ['POST', '/containers/abc/update', 'update'],
    ['POST', '/networks/n1/connect', 'network-connect'],
    ['POST', '/v1.41/networks/n1/%63onnect', 'network-connect'],
    ['POST', '/networks/n1/disconnect', 'network-disconnect'],
    ['POST', '/build?networkmode=container:w', 'build'],
    ['POST', '/v1.41/b%75ild', 'build'],
    // A carriage return is data to Go's ".*" (only a newline is not).
    ['POST', '/containers/a%0Db/start', 'start'],
  ])('%s %s is %s', (method, target, want) => {
    expect(name(routeRequest(method, target))).toBe(want);
  });

  it.each([
    // gorilla/mux is case-sensitive, and so is its version matcher.
    ['POST', '/CONTAINERS/create'],
    ['POST', '/containers/CREATE'],
    ['POST', '/Containers/create'],
    ['POST', '/V1.41/containers/create'],
    ['POST', '/v1.41a/containers/create'],
    ['POST', '/v/containers/create'],
    ['POST', '/vv1.41/containers/create'],
    // dockerd routes neither of these to create: 404 or another route.
    ['POST', '/containers/create/'],
    ['POST', '/containers/create%2F'],
    ['POST', '/containers/create#x'],
    ['POST', '/containers/create;x'],
    ['POST', '/containers/create%00'],
    ['POST', '/containers/json'],
    ['POST', '/containers/abc/kill'],
    ['POST', '/containers/abc/start/'],
    ['POST', '/exec/abc/start'],
    // Go's ".*" stops at a newline: no route.
    ['POST', '/containers/a%0Ab/start'],
    ['GET', '/containers/create'],
    ['PUT', '/containers/create'],
    ['HEAD', '/containers/abc/json'],
    ['GET', '/containers/json'],
    ['GET', '/v1.41/containers/json?all=1'],
    ['GET', '/images/localhost%2Fbusybox/json'],
    ['POST', '*'],
    ['POST', 'containers/create'],
    ['POST', 'x:containers/create'],
    // not clean, and not an intercepted route once cleaned: dockerd redirects, we pass it on.
    ['GET', '/images/../images/json'],
    ['GET', '//_ping'],
  ])('%s %s passes through', (method, target) => {
    expect(routeRequest(method, target)).toEqual({ kind: 'other' });
  });

  it.each([
    ['POST', '/containers/../containers/create', /not in canonical form.*send "\/containers\/create"/],
    ['POST', '/v1.41/containers/./create', /not in canonical form.*send "\/v1.41\/containers\/create"/],
    ['POST', '/containers/%2E%2E/containers/create', /not in canonical form/],
    ['POST', '/containers/.%2e/containers/create', /not in canonical form/],
    ['POST', '//containers/create', /not in canonical form/],
    ['POST', '/containers//create', /not in canonical form/],
    ['POST', '/containers/%2F/create', /not in canonical form/],
    ['POST', '/v1.41//containers/create', /not in canonical form/],
    ['POST', '/x/../v1.41/containers/create', /not in canonical form/],
    ['POST', '/containers//abc/start', /not in canonical form/],
    ['POST', '/containers/abc/../def/start', /not in canonical form/],
    ['POST', 'http://docker//containers/create', /not in canonical form/],
    ['GET', '/containers/abc/./json', /not in canonical form/],
    ['POST', '/networks/n1/../n2/connect', /not in canonical form/],
    ['POST', '/containers%2Fcreate', /encoded "\/"/],
    ['POST', '/containers%2fcreate', /encoded "\/"/],
    ['POST', '/v1.41%2Fcontainers%2Fcreate', /encoded "\/"/],
    ['POST', '/containers/abc%2Fstart', /encoded "\/"/],
    ['POST', '/containers/a%2Fb/start', /encoded "\/"/],
    ['POST', '/networks/n1%2Fconnect', /encoded "\/"/],
    ['POST', '/containers/%zzcreate', /malformed percent-encoding/],
    ['POST', '/containers/create%', /malformed percent-encoding/],
    ['POST', '/containers/create%4', /malformed percent-encoding/],
    ['GET', '/images/%g0/json', /malformed percent-encoding/],
  ])('%s %s is refused', (method, target, why) => {
    const d = routeRequest(method, target);
    expect(d.kind).toBe('refuse');
    if (d.kind === 'refuse') expect(d.message).toMatch(why);
  });

  it('gives the version, the params as bytes, the canonical path to forward and the query', () => {
    expect(routeRequest('POST', '/v1.41/containers/%63reate?name=a%20b')).toEqual({
      kind: 'route',
      name: 'create',
      version: '1.41',
      params: [],
      path: '/v1.41/containers/create',
      query: '?name=a%20b',
    });
    expect(routeRequest('POST', '/containers/a%20b%C3%A9/start')).toMatchObject({
      name: 'start',
      version: undefined,
      params: ['a b\u00c3\u00a9'],
      path: '/containers/a%20b%C3%A9/start',
    });
    expect(routeRequest('POST', 'http://docker/containers/web/start?x')).toMatchObject({
      path: '/containers/web/start',
      query: '?x',
    });
  });
});

describe('path helpers', () => {
  it('decodes as Go does and encodes back to the same bytes', () => {
    expect(decodePathBytes('/a%2fb%41+%C3%A9')).toBe('/a/bA+\u00c3\u00a9');
    expect(decodePathBytes('/a%2')).toBeUndefined();
    for (let c = 0; c < 256; c++) {
      const bytes = `/x${String.fromCharCode(c)}y`;
      expect(decodePathBytes(encodePathBytes(bytes))).toBe(bytes);
    }
  });

  it.each([
    ['', '/'],
    ['/', '/'],
    ['//', '/'],
    ['/a/./b', '/a/b'],
    ['/a/../b', '/b'],
    ['/../a', '/a'],
    ['/a/b/', '/a/b/'],
    ['/a//b//', '/a/b/'],
    ['/a/..', '/'],
    ['/a/../', '/'],
    ['a/b', '/a/b'],
    ['/...', '/...'],
  ])('cleanPath(%j) is %j, as gorilla/mux has it', (p, want) => {
    expect(cleanPath(p)).toBe(want);
  });
});
