import { readFile } from 'node:fs/promises';
import { exec } from './exec.js';

/** Mount points at or below dir, deepest first (the order they must be unmounted in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const base = dir.replace(/\/+$/, '');
  const points = text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\040/g, ' '))
    .filter((p) => p === base || p.startsWith(`${base}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Lazily unmounts everything at or below dir. */
export async function unmountUnder(dir: string): Promise<void> {
  for (const p of await mountsUnder(dir)) {
    await exec(['umount', '-l', p]);
  }
}
