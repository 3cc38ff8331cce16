import { describe, expect, it } from 'vitest';
import { HOST_NAME_RULE, hostNameError, isHostName, serviceHostName } from './names.js';

describe('host names (RFC 1123, lowercase)', () => {
  it.each([
    'h1',
    'host-1',
    'a',
    '0',
    'node.example.com',
    'x'.repeat(63),
    `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`,
  ])('%s is a host name', (name) => {
    expect(hostNameError(name)).toBeUndefined();
    expect(isHostName(name)).toBe(true);
  });

  it.each<[string, string]>([
    ['', `host name must not be empty; use ${HOST_NAME_RULE}`],
    ['Host1', `host name "Host1" is not valid; use ${HOST_NAME_RULE}`],
    ['host_1', `host name "host_1" is not valid; use ${HOST_NAME_RULE}`],
    ['-h1', `host name "-h1" is not valid; use ${HOST_NAME_RULE}`],
    ['h1-', `host name "h1-" is not valid; use ${HOST_NAME_RULE}`],
    ['h1..h2', `host name "h1..h2" is not valid; use ${HOST_NAME_RULE}`],
    ['h1.', `host name "h1." is not valid; use ${HOST_NAME_RULE}`],
    ['../h1', `host name "../h1" is not valid; use ${HOST_NAME_RULE}`],
    ['h1/alive', `host name "h1/alive" is not valid; use ${HOST_NAME_RULE}`],
    ['h1\nprotocol', `host name "h1\\nprotocol" is not valid; use ${HOST_NAME_RULE}`],
    ['x'.repeat(64), `host name "${'x'.repeat(64)}" has a label of 64 characters; use ${HOST_NAME_RULE}`],
    [
      `${'a.'.repeat(126)}ab`,
      `host name "${`${'a.'.repeat(126)}ab`.slice(0, 77)}..." is 254 characters long; use ${HOST_NAME_RULE}`,
    ],
  ])('%j is refused with the reason', (name, message) => {
    expect(hostNameError(name)).toBe(message);
    expect(isHostName(name)).toBe(false);
  });
});

describe("a service's host name", () => {
  it('takes --hostname, else CALICO_HOSTNAME, else the machine name, and says where to fix a bad one', () => {
    expect(serviceHostName('h1', 'h2', 'm')).toEqual({ name: 'h1', error: undefined });
    expect(serviceHostName(undefined, 'h2', 'm')).toEqual({ name: 'h2', error: undefined });
    expect(serviceHostName(undefined, undefined, 'm')).toEqual({ name: 'm', error: undefined });
    expect(serviceHostName(undefined, undefined, 'Bad_Name').error).toBe(
      `${hostNameError('Bad_Name')} (--hostname, else CALICO_HOSTNAME, else the machine's name)`,
    );
  });
});
