/**
 * etcd v3 has no directories: the seed's "recursively delete the directory" is a range delete
 * over every key that starts with a prefix. The prefix must end in "/", or deleting group "ab"
 * would also take "abc".
 */
import { KeyspaceError, KeyspaceErrorCode } from './errors.js';
import { bgpHostPrefix } from './extraKeys.js';
import { endpointPrefix, groupPrefix, hostPrefix, workloadPrefix } from './keys.js';
import { ROOT } from './internal/layout.js';

/** A half-open key range [start, end) in etcd's range_end convention. */
export interface KeyRange {
  start: string;
  end: string;
}

export function dirRange(prefix: string): KeyRange {
  if (typeof prefix !== 'string' || !prefix.endsWith('/')) {
    throw new KeyspaceError(KeyspaceErrorCode.INVALID_PREFIX, `prefix "${String(prefix)}" must end in "/"`);
  }
  // range_end is the prefix with its last byte plus one; the last byte is "/" (0x2f), so "0" (0x30).
  return { start: prefix, end: `${prefix.slice(0, -1)}0` };
}

/**
 * Whether etcd would include `key` in the range. "/" and "0" are adjacent ASCII, so comparing JS
 * strings agrees with etcd's byte order here: inside exactly when the key starts with the prefix.
 */
export function rangeContains(range: KeyRange, key: string): boolean {
  return key >= range.start && key < range.end;
}

/** Everything under /calico/ (what `calicoctl reset` removes). */
export function calicoDir(): KeyRange {
  return dirRange(ROOT);
}

/** A group: its name, members and rules. */
export function groupDir(groupId: string): KeyRange {
  return dirRange(groupPrefix(groupId));
}

/** A host's entries under /calico/host/ only; its BGP settings are under bgpHostDir. */
export function hostDir(host: string): KeyRange {
  return dirRange(hostPrefix(host));
}

export function bgpHostDir(host: string): KeyRange {
  return dirRange(bgpHostPrefix(host));
}

export function workloadDir(host: string, containerId: string): KeyRange {
  return dirRange(workloadPrefix(host, containerId));
}

export function endpointDir(host: string, containerId: string, endpointId: string): KeyRange {
  return dirRange(endpointPrefix(host, containerId, endpointId));
}
