import { Agent, type AgentOptions } from 'node:http';
import { connect, type Socket } from 'node:net';

/** Where dockerd listens: a unix socket or host:port. */
export type Upstream = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** Reads a DOCKER_HOST-style value: unix:///path, /path, tcp://host:port, host:port. */
export function parseDockerHost(raw: string): Upstream {
  const v = raw.trim();
  if (v.startsWith('unix://')) {
    const path = v.slice('unix://'.length);
    if (!path.startsWith('/')) throw new Error(`docker host "${raw}": a unix socket path must be absolute`);
    return { kind: 'unix', path };
  }
  if (v.startsWith('/')) return { kind: 'unix', path: v };
  const m = /^(?:tcp:\/\/|http:\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(v);
  if (m && Number(m[2]) >= 1 && Number(m[2]) <= 65535) {
    return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  }
  throw new Error(`docker host "${raw}": expected unix:///path/to/docker.sock or tcp://host:port`);
}

export function describeUpstream(u: Upstream): string {
  return u.kind === 'unix' ? `unix://${u.path}` : `tcp://${u.host}:${u.port}`;
}

/** Request options that reach the upstream, for node:http. */
export function upstreamTarget(u: Upstream): { socketPath: string } | { host: string; port: number } {
  return u.kind === 'unix' ? { socketPath: u.path } : { host: u.host, port: u.port };
}

/** A raw connection to the upstream, for hijacked (upgraded) streams. */
export function connectUpstream(u: Upstream): Socket {
  return u.kind === 'unix'
    ? connect({ path: u.path, allowHalfOpen: true })
    : connect({ host: u.host, port: u.port, allowHalfOpen: true });
}

/**
 * Keep-alive to dockerd, and no cap on sockets: a long `events` or `logs -f` stream must
 * never make another client wait for a free connection.
 */
export function upstreamAgent(opts: AgentOptions = {}): Agent {
  return new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 64, ...opts });
}
