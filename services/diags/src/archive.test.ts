import { mkdtemp, readFile, rm, stat, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { archiveBaseName, timestamp, writeArchive } from './archive.js';

/** The regular files of a tar (ustar) as name → content; enough to check what archiver wrote. */
function untar(buf: Buffer): Map<string, string> {
  const files = new Map<string, string>();
  for (let off = 0; off + 512 <= buf.length; ) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, n: number) =>
      h
        .subarray(a, a + n)
        .toString('utf8')
        .replace(/\0.*$/s, '');
    const name = (str(345, 155) ? `${str(345, 155)}/` : '') + str(0, 100);
    const size = parseInt(str(124, 12).trim() || '0', 8);
    const type = str(156, 1);
    if (type === '0' || type === '') files.set(name, buf.subarray(off + 512, off + 512 + size).toString('utf8'));
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

const work = await mkdtemp(join(tmpdir(), 'diags-archive-test-'));
afterAll(() => rm(work, { recursive: true, force: true }));

describe('archive', () => {
  it('names archives by what and when', () => {
    const d = new Date('2026-11-29T10:15:00.123Z');
    expect(timestamp(d)).toBe('20261129T101500Z');
    expect(archiveBaseName('h1', d)).toBe('calico-diags-h1-20261129T101500Z');
    expect(archiveBaseName('a/b c', d)).toBe('calico-diags-a_b_c-20261129T101500Z');
  });

  it('writes every entry and folder under one top folder, readable by a plain tar reader', async () => {
    const dir = join(work, 'h2');
    await mkdir(join(dir, 'bird'), { recursive: true });
    await writeFile(join(dir, 'bird', 'routes.txt'), 'r\n');
    const file = join(work, 'x.tar.gz');
    const r = await writeArchive(file, 'top', {
      entries: [
        { name: 'summary.json', data: Buffer.from('{"kind":"cluster"}\n') },
        { name: 'h1/ip4-addr.txt', data: Buffer.from('1: lo\n') },
      ],
      dirs: [{ path: dir, as: 'h2' }],
    });
    expect(r).toEqual({ file, bytes: (await stat(file)).size });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const files = untar(gunzipSync(await readFile(file)));
    expect(Object.fromEntries(files)).toEqual({
      'top/summary.json': '{"kind":"cluster"}\n',
      'top/h1/ip4-addr.txt': '1: lo\n',
      'top/h2/bird/routes.txt': 'r\n',
    });
    await expect(stat(`${file}.part`)).rejects.toThrow();
  });

  it('leaves no file behind when it cannot write', async () => {
    const file = join(work, 'missing-dir', 'x.tar.gz');
    // It failed where it should: opening its file in the missing directory.
    const writing = writeArchive(file, 'top', { entries: [{ name: 'a', data: Buffer.from('a') }] });
    await expect(writing).rejects.toThrow(/ENOENT.*missing-dir/);
    await expect(stat(`${file}.part`)).rejects.toThrow(/ENOENT/);
  });
});
