import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notRemovable } from './reset.js';

describe('the directories reset removes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'calico-reset-'));
    await mkdir(join(dir, 'calico', 'h1'), { recursive: true });
    await symlink(dir, join(dir, 'calico', 'h2'));
    await symlink(join(dir, 'calico', 'h1'), join(dir, 'via'));
    await symlink(join(dir, 'calico'), join(dir, 'via-calico'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("a host's own directory, and one that is not there, may go", async () => {
    expect(await notRemovable(join(dir, 'calico', 'h1'))).toBeUndefined();
    // A link above the last step is the system's own (on Debian /var/run leads to /run).
    expect(await notRemovable(join(dir, 'via-calico', 'h1'))).toBeUndefined();
    expect(await notRemovable(join(dir, 'calico', 'h3'))).toBeUndefined();
  });

  it('a link to somewhere else is refused, naming where it leads', async () => {
    expect(await notRemovable(join(dir, 'calico', 'h2'))).toBe(
      `${join(dir, 'calico', 'h2')} resolves to ${dir}; reset removes only a host's own directory, not what a link leads to`,
    );
    expect(await notRemovable(join(dir, 'via'))).toMatch(/resolves to .*\/calico\/h1;/);
  });

  it.each(['/', '/var', '/var/lib', '/var/lib/calico/..', '/tmp/../var'])('%s is too near the root', async (d) => {
    expect(await notRemovable(d)).toBe(`${d} is too near the root to be a host's own directory`);
  });
});
