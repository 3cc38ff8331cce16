import { mkdtemp, rm, mkdir, copyFile, symlink, chmod } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, execOk } from './exec.js';

export const BUSYBOX_IMAGE = 'busybox:calico';

/** Debian's busybox-static; /bin/busybox on a merged-/usr system is the same file. */
export function busyboxBinary(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) if (existsSync(p)) return p;
  throw new Error('busybox not found: install the Debian package busybox-static');
}

/**
 * Makes the busybox image with `docker import` (no registry here): a rootfs of the static
 * busybox binary and a link per applet. Returns the image name; does nothing if present.
 */
export async function ensureBusyboxImage(dockerHost: string, name = BUSYBOX_IMAGE): Promise<string> {
  const env = { ...process.env, DOCKER_HOST: dockerHost };
  if ((await exec(['docker', 'image', 'inspect', name], { env })).code === 0) return name;
  const bin = busyboxBinary();
  const file = await execOk(['file', '-L', bin]).catch(() => '');
  if (file && !/statically linked|static-pie/.test(file)) {
    throw new Error(`${bin} is not statically linked: install the Debian package busybox-static`);
  }
  const root = await mkdtemp(join(tmpdir(), 'calico-busybox-'));
  try {
    await mkdir(join(root, 'bin'));
    for (const d of ['etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'var']) await mkdir(join(root, d));
    await copyFile(bin, join(root, 'bin', 'busybox'));
    await chmod(join(root, 'bin', 'busybox'), 0o755);
    const applets = (await execOk([bin, '--list'])).split('\n').filter((a) => a && a !== 'busybox');
    for (const a of applets) await symlink('busybox', join(root, 'bin', a));
    await mkdir(join(root, 'usr'));
    await symlink('../bin', join(root, 'usr', 'bin'));
    await symlink('bin', join(root, 'sbin'));
    const r = await exec(['sh', '-c', `tar -C '${root}' -c . | docker import --change 'CMD ["sh"]' - '${name}'`], {
      env,
    });
    if (r.code !== 0) throw new Error(`docker import of ${name} failed: ${r.stderr.trim()}`);
    return name;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
