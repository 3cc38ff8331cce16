/**
 * Which dockerd route a request reaches, read the way dockerd 20.10 reads it: Go's
 * `url.ParseRequestURI` percent-decodes the whole path (an encoded `/` becomes a separator),
 * gorilla/mux redirects (301) any path that `path.Clean` would change instead of routing it,
 * then matches case-sensitively on the decoded path against `/v{version:[0-9.]+}<route>` and
 * `<route>`, where `{name:.*}` is Go's `.*` (any bytes but a newline).
 */

/** The routes the proxy intercepts, by dockerd's own templates. */
export const ROUTES = {
  create: { method: 'POST', template: '/containers/create' },
  start: { method: 'POST', template: '/containers/{name:.*}/start' },
  restart: { method: 'POST', template: '/containers/{name:.*}/restart' },
  inspect: { method: 'GET', template: '/containers/{name:.*}/json' },
  'exec-create': { method: 'POST', template: '/containers/{name:.*}/exec' },
  update: { method: 'POST', template: '/containers/{name:.*}/update' },
  'network-connect': { method: 'POST', template: '/networks/{id:.*}/connect' },
  'network-disconnect': { method: 'POST', template: '/networks/{id:.*}/disconnect' },
  build: { method: 'POST', template: '/build' },
} as const;
export type RouteName = keyof typeof ROUTES;

/** A dockerd route: its method and its template as dockerd's router has it. */
export interface RouteTemplate {
  method: string;
  template: string;
}

export type RouteDecisionOf<N extends string> =
  /** dockerd would run this route: the proxy acts on it and forwards `path` (canonical). */
  | { kind: 'route'; name: N; version: string | undefined; params: string[]; path: string; query: string }
  /** dockerd routes it elsewhere, redirects it or answers 404. */
  | { kind: 'other' }
  /** The proxy cannot be sure what dockerd would do with it, or dockerd would refuse it too. */
  | { kind: 'refuse'; message: string };

export type RouteDecision = RouteDecisionOf<RouteName>;

type Matcher<N extends string> = (method: string, path: string) => { name: N; m: RegExpExecArray } | undefined;

/** A table of routes as anchored regexps over the decoded path (one char per byte). */
function matcher<N extends string>(table: Record<N, RouteTemplate>): Matcher<N> {
  const compiled = (Object.entries(table) as [N, RouteTemplate][]).map(([name, r]) => {
    const body = r.template
      .split(/(\{[a-z]+:\.\*\})/)
      .map((part) => (part.startsWith('{') ? '([^\\n]*)' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('');
    return { name, method: r.method, re: new RegExp(`^(?:/v([0-9.]+))?${body}$`) };
  });
  return (method, path) => {
    for (const r of compiled) {
      if (r.method !== method) continue;
      const m = r.re.exec(path);
      if (m) return { name: r.name, m };
    }
    return undefined;
  };
}

/** Decides, for a table of dockerd routes, which one a request target reaches as dockerd reads it. */
export function compileRoutes<N extends string>(
  table: Record<N, RouteTemplate>,
): (method: string, target: string) => RouteDecisionOf<N> {
  const match = matcher(table);
  return (method, target) => decide(match, method, target);
}

/**
 * Decides on a request target as dockerd would route it, among the intercepted routes. Where
 * the proxy and dockerd could disagree about one, the request is refused rather than passed on.
 */
export const routeRequest: (method: string, target: string) => RouteDecision = compileRoutes(ROUTES);

/** The path part of a request target as Go reads it; undefined when Go would not route it. */
function targetPath(target: string): { path: string; query: string } | undefined {
  let rest = target;
  // absolute-form ("http://docker/containers/create"): Go takes the path after the authority.
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:/.exec(rest);
  if (scheme && !rest.startsWith('/')) {
    rest = rest.slice(scheme[0].length);
    const q = rest.indexOf('?');
    const beforeQuery = q < 0 ? rest : rest.slice(0, q);
    if (beforeQuery.startsWith('//')) {
      const slash = beforeQuery.indexOf('/', 2);
      rest = slash < 0 ? rest.slice(beforeQuery.length) : rest.slice(slash);
    }
    if (!rest.startsWith('/')) return undefined;
  }
  if (!rest.startsWith('/')) return undefined;
  const q = rest.indexOf('?');
  return q < 0 ? { path: rest, query: '' } : { path: rest.slice(0, q), query: rest.slice(q) };
}

/** Go's percent-decoding of a path: every %XX, to one char per byte; undefined on a bad escape. */
export function decodePathBytes(raw: string): string | undefined {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
    out += String.fromCharCode(parseInt(hex, 16));
    i += 2;
  }
  return out;
}

/** A decoded path (one char per byte) written so that dockerd decodes it back to the same bytes. */
export function encodePathBytes(bytes: string): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes.charCodeAt(i);
    const ch = bytes[i]!;
    if (/[A-Za-z0-9\-._~/!$&'()*+,;=:@]/.test(ch) && c < 0x80) out += ch;
    else out += `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** gorilla/mux's cleanPath: Go's path.Clean, keeping a trailing slash. */
export function cleanPath(p: string): string {
  if (p === '') return '/';
  if (!p.startsWith('/')) p = `/${p}`;
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  let np = `/${out.join('/')}`;
  if (p.endsWith('/') && np !== '/') np += '/';
  return np;
}

function decide<N extends string>(match: Matcher<N>, method: string, target: string): RouteDecisionOf<N> {
  const t = targetPath(target);
  if (!t) return { kind: 'other' };
  const path = decodePathBytes(t.path);
  if (path === undefined)
    return { kind: 'refuse', message: `malformed percent-encoding in the request path "${t.path}"` };
  const clean = cleanPath(path);
  if (clean !== path) {
    // dockerd answers 301 to the clean path; a client that follows it comes back through us.
    // Refused when the clean path is intercepted, so no daemon that routes it anyway is reached.
    if (match(method, clean)) {
      return {
        kind: 'refuse',
        message: `the request path "${t.path}" is not in canonical form (dot segments or "//"); send "${encodePathBytes(clean)}"`,
      };
    }
    return { kind: 'other' };
  }
  const hit = match(method, path);
  if (!hit) return { kind: 'other' };
  // An encoded "/" is a separator to dockerd 20.10 but data to a server that routes on the
  // escaped path: two readings of one request, so it is not forwarded.
  if (/%2f/i.test(t.path))
    return {
      kind: 'refuse',
      message: `the request path "${t.path}" has an encoded "/" (%2F): its meaning is ambiguous`,
    };
  return {
    kind: 'route',
    name: hit.name,
    version: hit.m[1],
    params: hit.m.slice(2).map((p) => p ?? ''),
    path: encodePathBytes(path),
    query: t.query,
  };
}
