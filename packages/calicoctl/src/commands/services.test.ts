import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dockerCli } from './services.js';

/** The docker runtime's CLI calls, against a stand-in `docker` on PATH (no dockerd needed). */
describe('dockerCli', () => {
  let dir = '';
  const saved = { PATH: process.env.PATH, timeout: process.env.CALICO_TOOL_TIMEOUT_MS };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'calicoctl-docker-'));
    // Answers like the CLI, or hangs, as its first argument says.
    const script =
      '#!/bin/sh\ncase "$1" in hang) sleep 30;; fail) echo "no such container" >&2; exit 1;; *) echo "$DOCKER_HOST";; esac\n';
    await writeFile(join(dir, 'docker'), script);
    await chmod(join(dir, 'docker'), 0o755);
    process.env.PATH = `${dir}:${saved.PATH ?? ''}`;
  });
  afterAll(async () => {
    process.env.PATH = saved.PATH;
    if (saved.timeout === undefined) delete process.env.CALICO_TOOL_TIMEOUT_MS;
    else process.env.CALICO_TOOL_TIMEOUT_MS = saved.timeout;
    await rm(dir, { recursive: true, force: true });
  });

  it('passes the upstream as DOCKER_HOST and returns the exit code with the output', async () => {
    expect(await dockerCli('unix:///run/x.sock', ['ps'])).toEqual({ code: 0, out: 'unix:///run/x.sock\n' });
    expect(await dockerCli(undefined, ['fail'])).toEqual({ code: 1, out: 'no such container\n' });
  });

  it('ends a call that does not answer at the timeout, and says so', async () => {
    process.env.CALICO_TOOL_TIMEOUT_MS = '300';
    const r = await dockerCli(undefined, ['hang']);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('timed out after 300 ms');
  });
});
