import { readFileSync } from 'node:fs';
import { chmod, chown, lstat, readFile, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { execFile } from 'node:child_process';
import { createSecureContext } from 'node:tls';
import { isIP } from '@calico/keyspace';

/** Where the proxy listens, as dockerd's `-H`: a TCP address or a unix socket. */
export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** TLS on the TCP listeners, as dockerd has it: --tlsverify asks every client for a certificate of the CA. */
export interface ListenTls {
  /** A client must present a certificate signed by `ca` (--tlsverify); false: server certificate only (--tls). */
  verify: boolean;
  ca: Buffer | undefined;
  cert: Buffer;
  key: Buffer;
  /** The files they came from, for logs and status. */
  files: { ca: string | undefined; cert: string; key: string };
}

export interface ListenConfig {
  addresses: ListenAddress[];
  tls: ListenTls | undefined;
  /** TCP addresses off loopback that serve without client verification (--insecure-listen). */
  insecure: ListenAddress[];
}

/** The flags that decide where and how the proxy listens, as given. */
export interface ListenFlags {
  listen: string[];
  tlsverify?: boolean;
  tls?: boolean;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  insecureListen?: boolean;
}

const TCP_RE = /^(?:tcp:\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** Reads `tcp://HOST:PORT`, `HOST:PORT` or `unix:///path`. */
export function parseListenAddress(raw: string): { ok: true; value: ListenAddress } | { ok: false; error: string } {
  if (raw.startsWith('unix://')) {
    const path = raw.slice('unix://'.length);
    if (!path.startsWith('/'))
      return { ok: false, error: `--listen=${raw}: a unix socket path must be absolute (unix:///path)` };
    return { ok: true, value: { kind: 'unix', path } };
  }
  const m = TCP_RE.exec(raw);
  const port = Number(m?.[2]);
  if (!m || port > 65535)
    return { ok: false, error: `--listen=${raw}: expected tcp://host:port, host:port or unix:///path` };
  return { ok: true, value: { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port } };
}

export function describeListen(a: ListenAddress): string {
  if (a.kind === 'unix') return `unix://${a.path}`;
  return `tcp://${isIP(a.host) === 6 ? `[${a.host}]` : a.host}:${a.port}`;
}

/** Only the machine itself can reach it: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * Checks the listen flags and reads the TLS files, so that a bad one stops the node before it
 * starts anything. A TCP address off loopback without --tlsverify lets anyone who reaches it
 * run containers as root: refused unless --insecure-listen says so.
 */
export function listenConfig(
  f: ListenFlags,
  read: (file: string) => Buffer = readFileSync,
): { ok: true; value: ListenConfig } | { ok: false; errors: string[] } {
  const errors: string[] = [];
  const addresses: ListenAddress[] = [];
  for (const raw of f.listen) {
    const r = parseListenAddress(raw);
    if (r.ok) addresses.push(r.value);
    else errors.push(r.error);
  }
  const tlsOn = f.tlsverify === true || f.tls === true;
  let tls: ListenTls | undefined;
  if (!tlsOn) {
    for (const k of ['tlscacert', 'tlscert', 'tlskey'] as const) {
      if (f[k] !== undefined) errors.push(`--${k} is given but TLS is off: add --tlsverify (or --tls)`);
    }
  } else {
    const file = (flag: 'tlscacert' | 'tlscert' | 'tlskey', required: boolean): Buffer | undefined => {
      const path = f[flag];
      if (path === undefined) {
        if (required) errors.push(`--${flag}=<file> is required with ${f.tlsverify ? '--tlsverify' : '--tls'}`);
        return undefined;
      }
      try {
        return read(path);
      } catch (e) {
        errors.push(`--${flag}=${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        return undefined;
      }
    };
    const ca = file('tlscacert', f.tlsverify === true);
    const cert = file('tlscert', true);
    const key = file('tlskey', true);
    if (cert && key && (ca || !f.tlsverify)) {
      try {
        // The same parse node:tls does at listen time: a bad PEM or a key of another certificate fails here.
        createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
        tls = {
          verify: f.tlsverify === true,
          ca,
          cert,
          key,
          files: { ca: f.tlscacert, cert: f.tlscert!, key: f.tlskey! },
        };
      } catch (e) {
        errors.push(
          `--tlscacert/--tlscert/--tlskey (${[f.tlscacert, f.tlscert, f.tlskey].filter(Boolean).join(', ')}): ${(e as Error).message}`,
        );
      }
    }
  }
  const insecure = addresses.filter((a) => a.kind === 'tcp' && !isLoopbackHost(a.host) && f.tlsverify !== true);
  if (insecure.length && f.insecureListen !== true) {
    for (const a of insecure) {
      errors.push(
        `--listen=${describeListen(a)}: not loopback and no --tlsverify, so anyone who reaches it is root on this host; ` +
          'add --tlsverify --tlscacert --tlscert --tlskey, listen on 127.0.0.1 or a unix socket, or say --insecure-listen',
      );
    }
  }
  if (errors.length) return { ok: false, errors };
  return { ok: true, value: { addresses, tls, insecure } };
}

/** The gid of a group in /etc/group text, or undefined. */
export function groupIdIn(groupFile: string, name: string): number | undefined {
  for (const line of groupFile.split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

/** The gid of a group from /etc/group, else `getent group` (groups from NSS); undefined when there is none. */
export async function lookupGroupId(name: string): Promise<number | undefined> {
  const local = await readFile('/etc/group', 'utf8').then(
    (t) => groupIdIn(t, name),
    () => undefined,
  );
  if (local !== undefined) return local;
  const fromGetent = await new Promise<string | undefined>((resolve) => {
    execFile('getent', ['group', name], { timeout: 5_000 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
  return fromGetent === undefined ? undefined : groupIdIn(fromGetent, name);
}

/**
 * Makes room for a socket at path: nothing there is fine; a socket nobody answers on (left by a
 * crash) is removed; anything else — a file, a directory, a live socket — is kept and refused.
 */
export async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; not replacing it`);
  const answered = await new Promise<boolean>((resolve) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (answered)
    throw new Error(
      `${path}: something is listening on it already (another calico-node or dockerd?); not replacing it`,
    );
  await unlink(path);
}

/**
 * Mode 0660, and group `docker` when the machine has one: who may use dockerd's socket may use
 * ours. A process that may not give it that group (not root) keeps its own, and says so.
 */
export async function secureSocket(
  path: string,
  group = 'docker',
): Promise<{ mode: number; gid: number | undefined; groupError?: string }> {
  await chmod(path, 0o660);
  const gid = await lookupGroupId(group);
  if (gid === undefined) return { mode: 0o660, gid };
  try {
    await chown(path, -1, gid);
  } catch (e) {
    return {
      mode: 0o660,
      gid: undefined,
      groupError: `cannot give it group ${group} (${(e as NodeJS.ErrnoException).code})`,
    };
  }
  return { mode: 0o660, gid };
}
