import { existsSync } from 'node:fs';
import { processExists } from '@calico/proc';
import { exec } from './exec.js';
import { listNetns } from './netns.js';
import { mountsUnder } from './mounts.js';

export interface SystemSnapshot {
  rootLinks: string[];
  netns: string[];
}

/** What the root namespace looks like now, to compare after a teardown. */
export async function snapshotSystem(): Promise<SystemSnapshot> {
  const r = await exec(['ip', '-o', 'link', 'show']);
  const rootLinks = r.stdout
    .split('\n')
    .map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '')
    .filter(Boolean)
    .sort();
  return { rootLinks, netns: (await listNetns()).sort() };
}

/**
 * The process exists and has not exited. A killed process nobody has reaped yet (a zombie) has
 * exited: kill(pid, 0) would still succeed on it (see @calico/proc).
 */
export function pidAlive(pid: number): boolean {
  return processExists(pid);
}

export interface LeftoverQuery {
  before: SystemSnapshot;
  pids: number[];
  dirs: string[];
}

/** Everything a teardown failed to remove, one line each; empty when clean. */
export async function findLeftovers(q: LeftoverQuery): Promise<string[]> {
  const out: string[] = [];
  for (const pid of q.pids) if (pidAlive(pid)) out.push(`process ${pid} still running`);
  const now = await snapshotSystem();
  for (const ns of now.netns) if (!q.before.netns.includes(ns)) out.push(`netns ${ns} left behind`);
  for (const l of now.rootLinks)
    if (!q.before.rootLinks.includes(l)) out.push(`interface ${l} left in the root namespace`);
  for (const d of q.dirs) {
    for (const m of await mountsUnder(d)) out.push(`mount ${m} left behind`);
    if (existsSync(d)) out.push(`folder ${d} left behind`);
  }
  return out;
}
