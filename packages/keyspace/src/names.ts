/**
 * The one rule for a host name, used wherever a name becomes part of a key or a removal target:
 * an RFC 1123 name in lowercase, so that a name a node can register is one a person can remove.
 */
const LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export const HOST_NAME_RULE =
  'lowercase letters, digits, "-" and ".": labels of 1 to 63 characters that start and end with a letter or digit, ' +
  '253 characters in all (RFC 1123)';

/** Why `name` is not a host name, or undefined when it is one. */
export function hostNameError(name: string): string | undefined {
  if (typeof name !== 'string' || name === '') return `host name must not be empty; use ${HOST_NAME_RULE}`;
  const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 77)}...` : name);
  if (name.length > 253) return `host name ${shown} is ${name.length} characters long; use ${HOST_NAME_RULE}`;
  for (const label of name.split('.')) {
    if (label.length > 63) return `host name ${shown} has a label of ${label.length} characters; use ${HOST_NAME_RULE}`;
    if (!LABEL.test(label)) return `host name ${shown} is not valid; use ${HOST_NAME_RULE}`;
  }
  return undefined;
}

/**
 * A service's host name: --hostname, else CALICO_HOSTNAME, else the machine's (passed in: this
 * package does no I/O), with what is wrong with it, said with where it came from.
 */
export function serviceHostName(
  flag: string | undefined,
  env: string | undefined,
  machine: string,
): { name: string; error: string | undefined } {
  const name = flag ?? env ?? machine;
  const bad = hostNameError(name);
  return { name, error: bad && `${bad} (--hostname, else CALICO_HOSTNAME, else the machine's name)` };
}

export function isHostName(name: string): boolean {
  return hostNameError(name) === undefined;
}
