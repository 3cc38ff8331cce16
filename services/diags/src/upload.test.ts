import { describe, expect, it } from 'vitest';
import { answeredUrl, backoffDelay, isRetryable } from './upload.js';
import { retryCommand, shellQuote } from './command.js';

const U = 'http://127.0.0.1:9000/upload';

describe('answeredUrl', () => {
  it.each([
    [{ location: 'http://files.example/d/1' }, '', 'http://files.example/d/1'],
    [{ location: '/d/2' }, '', 'http://127.0.0.1:9000/d/2'],
    [{}, '{"url":"https://files.example/d/3","size":10}', 'https://files.example/d/3'],
    [{}, '{"link":"https://files.example/d/4"}', 'https://files.example/d/4'],
    [{}, 'Stored. Download from https://files.example/d/5 within 7 days.', 'https://files.example/d/5'],
    [{}, '', U],
    [{}, 'OK', U],
    [{ location: '' }, '{"url":"not a url"}', U],
  ])('%j %j', (headers, body, want) => expect(answeredUrl(U, headers, body)).toBe(want));
});

describe('retries', () => {
  it('backs off exponentially', () => expect([1, 2, 3].map((n) => backoffDelay(n, 500))).toEqual([500, 1000, 2000]));
  it.each([
    [undefined, true],
    [500, true],
    [503, true],
    [429, true],
    [408, true],
    [400, false],
    [401, false],
    [404, false],
    [413, false],
  ])('status %s retryable: %s', (status, want) => expect(isRetryable(status)).toBe(want));
});

describe('retry command', () => {
  it.each([
    [
      '/tmp/calico-diags-h1-20261129T101500Z.tar.gz',
      'http://127.0.0.1:9000/up',
      'put',
      'calicoctl diags --upload-file=/tmp/calico-diags-h1-20261129T101500Z.tar.gz --upload-url=http://127.0.0.1:9000/up',
    ],
    [
      '/tmp/a b.tar.gz',
      'http://x/up?a=1&b=2',
      'post',
      "calicoctl diags --upload-file='/tmp/a b.tar.gz' --upload-url='http://x/up?a=1&b=2' --upload-method=post",
    ],
  ] as const)('%s %s %s', (file, url, method, want) =>
    expect(retryCommand('calicoctl diags', file, url, method)).toBe(want),
  );
  it("quotes a ' safely", () => expect(shellQuote("it's")).toBe(`'it'\\''s'`));
});
