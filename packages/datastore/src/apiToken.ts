/**
 * The cluster's API token: one secret in a file readable by its owner alone, made by the master
 * at first start, sent by calicoctl and cluster diags as `Authorization: Bearer <token>` to the
 * master API and every host's diags service.
 */
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, fstatSync, closeSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export const DEFAULT_API_TOKEN_FILE = '/etc/calico/api-token';

/** RFC 6750's token68, long enough to be a secret (a made one is 43 characters). */
const TOKEN_RE = /^[A-Za-z0-9\-._~+/]{32,512}=*$/;

export class ApiTokenError extends Error {
  override name = 'ApiTokenError';
}

/** --api-token-file, else CALICO_API_TOKEN_FILE, else /etc/calico/api-token. */
export function apiTokenFileFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? (env.CALICO_API_TOKEN_FILE || DEFAULT_API_TOKEN_FILE);
}

function checkedRead(file: string, fd: number): string {
  const st = fstatSync(fd);
  if (!st.isFile()) throw new ApiTokenError(`API token file ${file} is not a regular file`);
  if (st.mode & 0o077) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new ApiTokenError(
      `API token file ${file} has mode ${mode}: others may read it; run "chmod 600 ${file}" (and consider making a new token)`,
    );
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new ApiTokenError(
      `API token file ${file} belongs to uid ${st.uid}, not to this process (uid ${uid}); run "chown ${uid} ${file}"`,
    );
  }
  const token = readFileSync(fd, 'utf8').trim();
  if (!TOKEN_RE.test(token)) {
    throw new ApiTokenError(
      `API token file ${file} does not hold a token (32 to 512 characters of A-Z a-z 0-9 - . _ ~ + /)`,
    );
  }
  return token;
}

/** Reads the token; a missing, unreadable, too-open or malformed file is an ApiTokenError that says what to do. */
export function readApiToken(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ApiTokenError(
        `no API token file at ${file}: calico-master makes it at first start; on another host copy it there (mode 0600), ` +
          'or say where it is with --api-token-file / CALICO_API_TOKEN_FILE',
      );
    }
    if (code === 'EACCES') {
      throw new ApiTokenError(
        `cannot read the API token file ${file}: permission denied (it is readable by root only; run as root)`,
      );
    }
    throw new ApiTokenError(`cannot read the API token file ${file}: ${(e as Error).message}`);
  }
  try {
    return checkedRead(file, fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The master's start: reads the token, or makes one (32 random bytes, base64url) in a new file
 * of mode 0600, its missing parent folders 0700. Two masters starting at once end with one token.
 */
export function ensureApiToken(file: string): { token: string; created: boolean } {
  let fd: number;
  const token = randomBytes(32).toString('base64url');
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    fd = openSync(file, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return { token: readApiToken(file), created: false };
    throw new ApiTokenError(`cannot create the API token file ${file}: ${(e as Error).message}`);
  }
  try {
    writeSync(fd, `${token}\n`);
  } finally {
    closeSync(fd);
  }
  return { token, created: true };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Whether an Authorization header carries this token as a Bearer credential; compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer +([^\s]+) *$/i.exec(header ?? '');
  // Hashes have one length, so timingSafeEqual never throws and the time says nothing of the token.
  return timingSafeEqual(digest(m?.[1] ?? ''), digest(token)) && m !== null;
}
