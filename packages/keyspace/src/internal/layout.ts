// Shared by keys.ts (seed keys) and extraKeys.ts (the project's additions) so neither imports the other.
import { KeyspaceError, KeyspaceErrorCode } from '../errors.js';

export const ROOT = '/calico/';
export const HOSTS = `${ROOT}host/`;

/**
 * A key part must be one etcd path segment: empty parts would collide with the parent prefix and
 * a "/" would let one part masquerade as several, so both are refused before any key is built.
 */
export function segment(name: string, value: string): string {
  if (typeof value !== 'string') {
    throw new KeyspaceError(KeyspaceErrorCode.INVALID_SEGMENT, `${name} must be a string, got ${typeof value}`);
  }
  if (value === '') throw new KeyspaceError(KeyspaceErrorCode.INVALID_SEGMENT, `${name} must not be empty`);
  if (value.includes('/')) {
    throw new KeyspaceError(KeyspaceErrorCode.INVALID_SEGMENT, `${name} "${value}" must not contain "/"`);
  }
  return value;
}

export function hostDirPrefix(host: string): string {
  return `${HOSTS}${segment('host', host)}/`;
}

/** Splits a key below /calico/ into segments, or null when it is outside the root or has an empty segment. */
export function splitKey(key: string): string[] | null {
  if (!key.startsWith(ROOT)) return null;
  const parts = key.slice(ROOT.length).split('/');
  return parts.every((p) => p !== '') ? parts : null;
}

/** What the catalogue says about one key; the README and tests are checked against it. */
export interface KeySpec<K extends string = string> {
  kind: K;
  /** The key with its variable parts in angle brackets, as written in the README. */
  pattern: string;
  /** A concrete key of this kind. */
  example: string;
  /** The value's format, in a few words. */
  value: string;
  /** Which part of the system writes it. */
  writer: string;
}
