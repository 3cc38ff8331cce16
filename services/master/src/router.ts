import { ApiError } from './errors.js';

export type Method = 'GET' | 'POST' | 'DELETE';

/** One route: a path template such as "/v1/groups/{g}/rules/{direction}"; the template is also its metrics label. */
export interface Route<H> {
  method: Method;
  path: string;
  handler: H;
}

export type RouteMatch<H> =
  | { kind: 'found'; route: Route<H>; params: Record<string, string> }
  | { kind: 'method-not-allowed'; allow: Method[]; path: string }
  | { kind: 'not-found' };

/**
 * Splits a request path into decoded segments. Each segment is decoded on its own, so an
 * encoded "/" (a pool's CIDR, %2F) stays inside its segment. One trailing "/" is ignored.
 */
export function pathSegments(pathname: string): string[] {
  const trimmed = pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
  return trimmed
    .split('/')
    .slice(1)
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw new ApiError('INVALID', `path segment "${s}" is not valid percent-encoding`);
      }
    });
}

function matchTemplate(template: string, segments: readonly string[]): Record<string, string> | undefined {
  const parts = template.split('/').slice(1);
  if (parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const seg = segments[i]!;
    if (part.startsWith('{') && part.endsWith('}')) {
      if (seg === '') return undefined;
      params[part.slice(1, -1)] = seg;
    } else if (part !== seg) return undefined;
  }
  return params;
}

/** Finds the route for a request; a path that exists under another method is a 405, not a 404. */
export function matchRoute<H>(routes: readonly Route<H>[], method: string, pathname: string): RouteMatch<H> {
  const segments = pathSegments(pathname);
  const allow: Method[] = [];
  let path = '';
  for (const route of routes) {
    const params = matchTemplate(route.path, segments);
    if (!params) continue;
    if (route.method === method) return { kind: 'found', route, params };
    allow.push(route.method);
    path = route.path;
  }
  return allow.length ? { kind: 'method-not-allowed', allow, path } : { kind: 'not-found' };
}
