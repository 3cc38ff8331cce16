import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkProcess,
  cmdlineNamesFile,
  parseProcStat,
  processExists,
  provenRecord,
  readCmdline,
  recordProcess,
  stopProcess,
} from './liveness.js';

/** A /proc/<pid>/stat line as the kernel writes it, with the given comm, state and start time. */
const statLine = (pid: number, comm: string, state: string, startTicks: number) =>
  `${pid} (${comm}) ${state} 1 ${pid} ${pid} 0 -1 4194560 100 0 0 0 3 1 0 0 20 0 1 0 ${startTicks} 5251072 939 ` +
  '18446744073709551615 1 1 0 0 0 0 65536 4 0 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n';

const SUPERVISOR = ['/usr/bin/node', '/opt/calicoctl/dist/main.js', '_supervise', '{"role":"node"}'];

describe('the liveness check over a crafted /proc', () => {
  let procRoot: string;
  const put = (pid: number, comm: string, state: string, startTicks: number, argv: string[]) => {
    mkdirSync(join(procRoot, String(pid)), { recursive: true });
    writeFileSync(join(procRoot, String(pid), 'stat'), statLine(pid, comm, state, startTicks));
    writeFileSync(join(procRoot, String(pid), 'cmdline'), argv.length ? `${argv.join('\0')}\0` : '');
  };

  beforeAll(() => {
    procRoot = mkdtempSync(join(tmpdir(), 'calico-proc-'));
    put(100, 'node', 'S', 5000, SUPERVISOR);
    // A killed supervisor nobody reaped: same pid and start time, state Z, empty cmdline.
    put(101, 'node', 'Z', 5001, []);
    // Pid 102 was ours (start 4000), exited, and now belongs to another program.
    put(102, 'sshd', 'S', 9000, ['/usr/sbin/sshd', '-D']);
    put(103, 'node', 'X', 5003, []);
    // Same pid and start time, yet another program (exec'd since): the command line tells.
    put(104, 'sleep', 'S', 5004, ['sleep', '100']);
    // comm may hold spaces and parentheses.
    put(105, 'a) (b', 'R', 5005, ['x']);
  });
  afterAll(() => rmSync(procRoot, { recursive: true, force: true }));

  it('alive and ours: exists, not a zombie, same start time and command line', () => {
    expect(checkProcess({ pid: 100, startTicks: 5000, cmdline: SUPERVISOR }, { procRoot })).toEqual({
      alive: true,
      pid: 100,
    });
    // recordProcess takes exactly what checkProcess compares.
    expect(recordProcess(100, { procRoot })).toEqual({ pid: 100, startTicks: 5000, cmdline: SUPERVISOR });
  });

  it('a zombie is dead, though it still has its pid (and kill(pid, 0) would succeed)', () => {
    expect(checkProcess({ pid: 101, startTicks: 5001, cmdline: SUPERVISOR }, { procRoot })).toEqual({
      alive: false,
      pid: 101,
      reason: 'zombie',
      detail: 'pid 101 has exited (a zombie, not yet reaped)',
    });
    expect(checkProcess({ pid: 103, startTicks: 5003 }, { procRoot })).toMatchObject({
      alive: false,
      reason: 'zombie',
    });
    expect(processExists(101, { procRoot })).toBe(false);
    expect(processExists(100, { procRoot })).toBe(true);
    expect(recordProcess(101, { procRoot })).toBeNull();
  });

  it('a reused pid is not ours: another start time, or the same start time and another command line', () => {
    expect(checkProcess({ pid: 102, startTicks: 4000, cmdline: SUPERVISOR }, { procRoot })).toEqual({
      alive: false,
      pid: 102,
      reason: 'reused',
      detail: 'pid 102 is not the process we started (pid reused: another start time)',
    });
    expect(checkProcess({ pid: 104, startTicks: 5004, cmdline: SUPERVISOR }, { procRoot })).toEqual({
      alive: false,
      pid: 104,
      reason: 'reused',
      detail: 'pid 104 is not the process we started (pid reused: another command line)',
    });
    // The control: the same pid with its true start time and command line is alive.
    expect(checkProcess({ pid: 104, startTicks: 5004, cmdline: ['sleep', '100'] }, { procRoot }).alive).toBe(true);
  });

  it('a missing pid is gone', () => {
    expect(checkProcess({ pid: 999, startTicks: 1, cmdline: SUPERVISOR }, { procRoot })).toEqual({
      alive: false,
      pid: 999,
      reason: 'gone',
      detail: 'pid 999 is not running',
    });
    for (const pid of [0, -1, Number.NaN, 1.5])
      expect(checkProcess({ pid }, { procRoot })).toMatchObject({ alive: false, reason: 'gone' });
    expect(recordProcess(999, { procRoot })).toBeNull();
  });

  it('an older record (pid only) is alive only if the command line matches', () => {
    const isSupervisor = (argv: string[]) => argv[2] === '_supervise';
    expect(checkProcess({ pid: 100 }, { procRoot, cmdlineMatches: isSupervisor })).toEqual({ alive: true, pid: 100 });
    expect(checkProcess({ pid: 102 }, { procRoot, cmdlineMatches: isSupervisor })).toEqual({
      alive: false,
      pid: 102,
      reason: 'reused',
      detail: 'pid 102 is not the process we started (no start time recorded, and its command line is not ours)',
    });
    // With nothing to prove it by, a bare pid is never ours.
    expect(checkProcess({ pid: 100 }, { procRoot })).toMatchObject({ alive: false, reason: 'reused' });
    // A zombie stays dead whatever its command line.
    expect(checkProcess({ pid: 101 }, { procRoot, cmdlineMatches: () => true })).toMatchObject({
      alive: false,
      reason: 'zombie',
    });
  });

  it('a record with a command line but no start time is checked by the command line', () => {
    expect(checkProcess({ pid: 100, cmdline: SUPERVISOR }, { procRoot }).alive).toBe(true);
    expect(checkProcess({ pid: 102, cmdline: SUPERVISOR }, { procRoot })).toMatchObject({
      alive: false,
      reason: 'reused',
    });
  });

  it('an older record once proven gets its full record, so later signals need no weaker proof', () => {
    const isSupervisor = (argv: string[]) => argv[2] === '_supervise';
    expect(provenRecord({ pid: 100 }, { procRoot, cmdlineMatches: isSupervisor })).toEqual({
      pid: 100,
      startTicks: 5000,
      cmdline: SUPERVISOR,
    });
    expect(provenRecord({ pid: 102 }, { procRoot, cmdlineMatches: isSupervisor })).toBeNull();
    expect(provenRecord({ pid: 101, startTicks: 5001 }, { procRoot })).toBeNull();
  });

  it('stops nothing that is not ours', async () => {
    // Pid 102 is a crafted entry; were the check skipped, SIGTERM would go to whatever has pid 102 here.
    expect(await stopProcess({ pid: 102, startTicks: 4000 }, { procRoot })).toBe('not-running');
    expect(await stopProcess({ pid: 101, startTicks: 5001 }, { procRoot })).toBe('not-running');
  });

  it('a daemon is proven by its command line naming its own pid file', () => {
    const bird = cmdlineNamesFile('/var/lib/calico/h1/bird.pid');
    expect(bird(['bird', '-c', '/var/lib/calico/h1/bird.conf', '-P', '/var/lib/calico/h1/bird.pid'])).toBe(true);
    expect(bird(['daemon', '--pid-file=/var/lib/calico/h1/bird.pid'])).toBe(true);
    expect(bird(['bird', '-P', '/var/lib/calico/h2/bird.pid'])).toBe(false);
    // argv[0] is the program, never the proof.
    expect(bird(['/var/lib/calico/h1/bird.pid'])).toBe(false);
  });

  it('parses stat lines whose comm holds spaces and parentheses; refuses what is not one', () => {
    expect(parseProcStat(statLine(105, 'a) (b', 'R', 5005))).toEqual({
      pid: 105,
      comm: 'a) (b',
      state: 'R',
      ppid: 1,
      pgrp: 105,
      startTicks: 5005,
    });
    expect(checkProcess({ pid: 105, startTicks: 5005 }, { procRoot }).alive).toBe(true);
    expect(parseProcStat('')).toBeNull();
    expect(parseProcStat('12 (x) S 1 2 3')).toBeNull();
    expect(parseProcStat('x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20')).toBeNull();
    expect(readCmdline(101, { procRoot })).toEqual([]);
    expect(readCmdline(999, { procRoot })).toBeNull();
  });
});

describe('the liveness check over the real /proc', () => {
  it('this test process is alive and ours by its own record, and not by a record one tick off', () => {
    const me = recordProcess(process.pid);
    expect(me?.cmdline).toEqual(readCmdline(process.pid));
    expect(checkProcess(me!)).toEqual({ alive: true, pid: process.pid });
    expect(checkProcess({ ...me!, startTicks: me!.startTicks! + 1 })).toMatchObject({ alive: false, reason: 'reused' });
  });
});
