import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { apiTokenFileFrom, bearerMatches, DEFAULT_API_TOKEN_FILE, ensureApiToken, readApiToken } from './apiToken.js';

describe('the API token file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'calico-token-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is made once, 0600 in a new 0700 folder, and read back as made', () => {
    const file = join(dir, 'new', 'api-token');
    const first = ensureApiToken(file);
    expect(first.created).toBe(true);
    expect(first.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'new')).mode & 0o777).toBe(0o700);
    expect(ensureApiToken(file)).toEqual({ token: first.token, created: false });
    expect(readApiToken(file)).toBe(first.token);
    expect(readFileSync(file, 'utf8')).toBe(`${first.token}\n`);
  });

  it('refuses a file others may read, at start and when read; the same file at 0600 is taken', () => {
    const file = join(dir, 'loose');
    writeFileSync(file, 'x'.repeat(40), { mode: 0o644 });
    chmodSync(file, 0o644);
    const msg = `API token file ${file} has mode 0644: others may read it; run "chmod 600 ${file}" (and consider making a new token)`;
    expect(() => ensureApiToken(file)).toThrow(msg);
    expect(() => readApiToken(file)).toThrow(msg);
    chmodSync(file, 0o600);
    expect(readApiToken(file)).toBe('x'.repeat(40));
  });

  it('says what to do when the file is missing or holds no token', () => {
    expect(() => readApiToken(join(dir, 'absent'))).toThrow(
      /^no API token file at .*absent: calico-master makes it at first start; on another host copy it/,
    );
    const file = join(dir, 'short');
    writeFileSync(file, 'abc\n', { mode: 0o600 });
    expect(() => readApiToken(file)).toThrow(`API token file ${file} does not hold a token`);
  });

  it('takes the flag, then CALICO_API_TOKEN_FILE, then /etc/calico/api-token', () => {
    expect(apiTokenFileFrom('/a', { CALICO_API_TOKEN_FILE: '/b' })).toBe('/a');
    expect(apiTokenFileFrom(undefined, { CALICO_API_TOKEN_FILE: '/b' })).toBe('/b');
    expect(apiTokenFileFrom(undefined, {})).toBe(DEFAULT_API_TOKEN_FILE);
  });

  it.each<[string | undefined, boolean]>([
    ['Bearer tok-en_0123456789', true],
    ['bearer tok-en_0123456789', true],
    ['Bearer tok-en_012345678', false],
    ['Bearer tok-en_0123456789x', false],
    ['Basic tok-en_0123456789', false],
    ['tok-en_0123456789', false],
    ['Bearer ', false],
    [undefined, false],
  ])('Authorization %j matches: %s', (header, matches) => {
    expect(bearerMatches(header, 'tok-en_0123456789')).toBe(matches);
  });
});
