import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveStream } from './archive.js';
import type { ArchiveEntry } from './collect.js';
import { fetchCluster, UNPACKED_FACTOR, type ClusterHost } from './cluster.js';

const MiB = 1024 * 1024;
const summary = (host: string): ArchiveEntry => ({
  name: 'summary.json',
  data: Buffer.from(JSON.stringify({ kind: 'host', host, failed: [] })),
});
// What each fake host serves at GET /diags: a real host archive, one too big to send, one too big unpacked.
const ARCHIVES: Record<string, ArchiveEntry[]> = {
  small: [summary('small'), { name: 'network/ip4-addr.txt', data: Buffer.from('inet 198.18.0.11/24\n') }],
  big: [summary('big'), { name: 'logs/big.bin', data: randomBytes(3 * MiB) }],
  bomb: [summary('bomb'), { name: 'logs/zeros.bin', data: Buffer.alloc(16 * MiB) }],
};

const servers: Server[] = [];
let hosts: ClusterHost[];
let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'diags-cluster-'));
  hosts = [];
  for (const [host, entries] of Object.entries(ARCHIVES)) {
    const s = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/gzip' });
      void pipeline(archiveStream(`calico-diags-${host}-20261201T000000Z`, { entries }), res).catch(() => undefined);
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    servers.push(s);
    hosts.push({ host, url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/` });
  }
});
afterAll(async () => {
  for (const s of servers) await new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r())));
  await rm(work, { recursive: true, force: true });
});

describe('fetchCluster bounds what it takes from each host', () => {
  it('records a host over the bound as failed, leaves none of its files, and still collects the rest', async () => {
    const dir = await mkdtemp(join(work, 'bounded-'));
    const s = await fetchCluster(hosts, {
      workDir: dir,
      timeoutMs: 20_000,
      maxBytes: 1 * MiB,
      apiToken: 'x'.repeat(43),
    });
    const by = Object.fromEntries(s.hosts.map((h) => [h.host, h]));
    expect(by.small).toMatchObject({ status: 'ok', failedSources: [] });
    const left = '(--max-host-bytes); what arrived is left out';
    expect(by.big).toMatchObject({ status: 'error', error: `the archive is over ${MiB} bytes ${left}` });
    expect(by.big!.bytes).toBeGreaterThan(MiB);
    expect(by.big!.bytes).toBeLessThan(3 * MiB);
    // The bomb's archive is small; unpacked it is 16 MiB, over 8 times the bound.
    const limit = UNPACKED_FACTOR * MiB;
    expect(by.bomb).toMatchObject({ status: 'error', error: `the unpacked archive is over ${limit} bytes ${left}` });
    expect(by.bomb!.bytes).toBeLessThan(MiB);
    expect(s.failed).toEqual(['big', 'bomb']);
    expect(await readdir(dir)).toEqual(['small']);
    expect((await stat(join(dir, 'small', 'network', 'ip4-addr.txt'))).size).toBe(20);
  });

  it('the control: with room enough, the same hosts are collected whole', async () => {
    const dir = await mkdtemp(join(work, 'roomy-'));
    const s = await fetchCluster(hosts, {
      workDir: dir,
      timeoutMs: 20_000,
      maxBytes: 8 * MiB,
      apiToken: 'x'.repeat(43),
    });
    expect(s.hosts.map((h) => [h.host, h.status])).toEqual([
      ['small', 'ok'],
      ['big', 'ok'],
      ['bomb', 'ok'],
    ]);
    expect((await readdir(dir)).sort()).toEqual(['big', 'bomb', 'small']);
    expect((await stat(join(dir, 'big', 'logs', 'big.bin'))).size).toBe(3 * MiB);
    expect((await stat(join(dir, 'bomb', 'logs', 'zeros.bin'))).size).toBe(16 * MiB);
  });
});
