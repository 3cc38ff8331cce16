import { describe, expect, it } from 'vitest';
import { matchRoute, pathSegments, type Route } from './router.js';
import { ApiError } from './errors.js';

const routes: Route<string>[] = [
  { method: 'GET', path: '/v1/groups', handler: 'list' },
  { method: 'POST', path: '/v1/groups', handler: 'add' },
  { method: 'GET', path: '/v1/groups/{group}', handler: 'get' },
  { method: 'DELETE', path: '/v1/groups/{group}', handler: 'remove' },
  { method: 'DELETE', path: '/v1/groups/{group}/rules/{direction}/{index}', handler: 'removeRule' },
  { method: 'DELETE', path: '/v1/pools/{cidr}', handler: 'removePool' },
];

describe('matchRoute', () => {
  it.each<[string, string, unknown]>([
    ['GET', '/v1/groups', { kind: 'found', handler: 'list', params: {} }],
    ['GET', '/v1/groups/', { kind: 'found', handler: 'list', params: {} }],
    ['POST', '/v1/groups', { kind: 'found', handler: 'add', params: {} }],
    ['GET', '/v1/groups/web%20tier', { kind: 'found', handler: 'get', params: { group: 'web tier' } }],
    [
      'DELETE',
      '/v1/groups/g1/rules/inbound/2',
      { kind: 'found', handler: 'removeRule', params: { group: 'g1', direction: 'inbound', index: '2' } },
    ],
    [
      'DELETE',
      '/v1/pools/198.19.0.0%2F16',
      { kind: 'found', handler: 'removePool', params: { cidr: '198.19.0.0/16' } },
    ],
    ['PUT', '/v1/groups', { kind: 'method-not-allowed', allow: ['GET', 'POST'], path: '/v1/groups' }],
    ['POST', '/v1/groups/g1', { kind: 'method-not-allowed', allow: ['GET', 'DELETE'], path: '/v1/groups/{group}' }],
    ['GET', '/v1/nothing', { kind: 'not-found' }],
    ['GET', '/v1/groups/g1/rules/inbound', { kind: 'not-found' }],
    ['GET', '/v1/pools/198.19.0.0/16', { kind: 'not-found' }],
    ['GET', '/v1//', { kind: 'not-found' }],
  ])('%s %s', (method, path, want) => {
    const m = matchRoute(routes, method, path);
    expect(m.kind === 'found' ? { kind: m.kind, handler: m.route.handler, params: m.params } : m).toEqual(want);
  });

  it('refuses broken percent-encoding with a 400 that names the segment', () => {
    expect(() => pathSegments('/v1/groups/%E0%A4%A')).toThrow(
      new ApiError('INVALID', 'path segment "%E0%A4%A" is not valid percent-encoding'),
    );
    try {
      pathSegments('/v1/groups/%zz');
    } catch (e) {
      expect((e as ApiError).status).toBe(400);
    }
  });
});
