import { createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { TarArchive } from 'archiver';
import type { ArchiveEntry } from './collect.js';

/** What goes into an archive: files from memory, and whole folders from disk (the cluster's host folders). */
export interface ArchiveContent {
  entries?: ArchiveEntry[];
  dirs?: { path: string; as: string }[];
}

/** 2026-11-29T10:15:00.123Z → 20261129T101500Z: sortable, and safe in a file name. */
export function timestamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/** calico-diags-<what>-<stamp>: the archive's file name without .tar.gz, and its top folder. */
export function archiveBaseName(what: string, d: Date): string {
  return `calico-diags-${what.replace(/[^A-Za-z0-9._-]/g, '_')}-${timestamp(d)}`;
}

/** A .tar.gz stream with everything under one top folder, so extracting never litters the current directory. */
export function archiveStream(topDir: string, content: ArchiveContent, date = new Date()): TarArchive {
  const a = new TarArchive({ gzip: true, gzipOptions: { level: 6 } });
  for (const e of content.entries ?? []) a.append(e.data, { name: `${topDir}/${e.name}`, date, mode: 0o644 });
  for (const d of content.dirs ?? []) a.directory(d.path, `${topDir}/${d.as}`);
  // finalize() resolves when the last byte is queued; errors surface on the stream itself.
  void a.finalize().catch(() => undefined);
  return a;
}

/**
 * Writes the archive to file. It goes to file.part first and is renamed when complete, so a file
 * with the final name is never half written.
 */
export async function writeArchive(
  file: string,
  topDir: string,
  content: ArchiveContent,
  date = new Date(),
): Promise<{ file: string; bytes: number }> {
  const part = `${file}.part`;
  try {
    await pipeline(archiveStream(topDir, content, date), createWriteStream(part, { mode: 0o600 }));
    await rename(part, file);
  } catch (e) {
    await rm(part, { force: true });
    throw e;
  }
  return { file, bytes: (await stat(file)).size };
}
