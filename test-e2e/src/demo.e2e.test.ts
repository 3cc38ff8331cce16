import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { exec, listNetns, pidAlive, requireRoot, snapshotSystem } from '@calico/testkit';

const require = createRequire(import.meta.url);
const demoJs = join(dirname(require.resolve('@calico/demo/package.json')), 'dist', 'main.js');

/** The main job: the demo brings the two-host scenario up with a matching matrix, and down removes all of it. */
describe('the demo', () => {
  it('up ends with every pair matching; a second up is safe; down leaves nothing behind', async () => {
    requireRoot();
    const parent = await mkdtemp(join(tmpdir(), 'calico-demo-test-'));
    const dir = join(parent, 'demo');
    const env = { ...process.env, CALICO_DEMO_DIR: dir };
    const before = await snapshotSystem();
    try {
      const up = await exec([process.execPath, demoJs, 'up'], { env, timeoutMs: 300_000 });
      expect(up.code, up.stdout + up.stderr).toBe(0);
      expect(up.stdout).toContain('All 20 pairs match calicoctl check.');
      expect(up.stdout).toContain('As the guide says: A reaches C and E');
      // etcd is TLS only: the etcdctl command the demo prints reaches it, and without its client
      // certificate the same command gets nothing.
      const line = up.stdout.split('\n').find((l) => l.includes('etcdctl --endpoints=https://'));
      expect(line, up.stdout).toBeDefined();
      const etcdctl = `${line!.slice(line!.indexOf('etcdctl '))} --keys-only --dial-timeout=2s --command-timeout=4s`;
      expect((await exec(['sh', '-c', etcdctl], { timeoutMs: 30_000 })).stdout).toContain('/calico/host/h1/');
      const noCert = await exec(['sh', '-c', etcdctl.replace(/ --cert=\S+ --key=\S+/, '')], { timeoutMs: 30_000 });
      expect(noCert.code).not.toBe(0);
      expect(noCert.stdout).not.toContain('/calico/');
      const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as {
        dockerdPid: number;
        etcdPids: number[];
        netns: string[];
      };
      const again = await exec([process.execPath, demoJs, 'up'], { env, timeoutMs: 300_000 });
      expect(again.code, again.stdout + again.stderr).toBe(0);
      expect(again.stdout).toContain('taking it down first');
      expect(again.stdout).toContain('All 20 pairs match');
      expect(pidAlive(state.dockerdPid)).toBe(false);
      const state2 = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as typeof state;
      const down = await exec([process.execPath, demoJs, 'down'], { env, timeoutMs: 300_000 });
      expect(down.code, down.stdout + down.stderr).toBe(0);
      for (const pid of [state2.dockerdPid, ...state2.etcdPids]) expect(pidAlive(pid)).toBe(false);
      expect((await listNetns()).filter((n) => n.startsWith('cdemo'))).toEqual([]);
      const after = await snapshotSystem();
      expect(after.rootLinks.filter((l) => l.startsWith('cdemo'))).toEqual([]);
      expect(before.rootLinks.filter((l) => l.startsWith('cdemo'))).toEqual([]);
      expect(existsSync(dir)).toBe(false);
      expect(
        (
          await exec(['sh', '-c', 'ps -eo args | grep -E "^(bird|etcd|dockerd|containerd)" | grep -v grep || true'])
        ).stdout
          .split('\n')
          .filter((l) => l.includes(dir)),
      ).toEqual([]);
    } finally {
      await exec([process.execPath, demoJs, 'down'], { env, timeoutMs: 300_000 });
      await rm(parent, { recursive: true, force: true });
    }
  });
});
