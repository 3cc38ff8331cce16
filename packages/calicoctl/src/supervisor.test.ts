import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cleanStale,
  isSupervisorCmdline,
  parsePidFile,
  pidFile,
  readSupervisor,
  stateFile,
  type SupervisorState,
} from './supervisor.js';

const statLine = (pid: number, state: string, startTicks: number) =>
  `${pid} (node) ${state} 1 ${pid} ${pid} 0 -1 4194560 100 0 0 0 3 1 0 0 20 0 1 0 ${startTicks} 5251072 939 0 0 0 0\n`;

describe('the supervisor pid and state files, read with the liveness check', () => {
  let tmp: string;
  let procRoot: string;
  let runDir: string;
  const supArgv = () => [
    '/usr/bin/node',
    '/opt/calicoctl/dist/main.js',
    '_supervise',
    JSON.stringify({ role: 'node', runDir }),
  ];
  const proc = (pid: number, state: string, startTicks: number, argv: string[]) => {
    mkdirSync(join(procRoot, String(pid)), { recursive: true });
    writeFileSync(join(procRoot, String(pid), 'stat'), statLine(pid, state, startTicks));
    writeFileSync(join(procRoot, String(pid), 'cmdline'), argv.length ? `${argv.join('\0')}\0` : '');
  };
  const writeState = (services: SupervisorState['services']) =>
    writeFileSync(
      stateFile(runDir, 'node'),
      JSON.stringify({ role: 'node', pid: 200, startedAt: '', services } satisfies SupervisorState),
    );

  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), 'calico-sup-'));
    procRoot = join(tmp, 'proc');
    runDir = join(tmp, 'run');
    mkdirSync(runDir);
  });
  afterEach(() => rmSync(tmp, { recursive: true, force: true }));

  it('no pid file: nothing recorded', () => {
    expect(readSupervisor(runDir, 'node', { procRoot })).toBeNull();
  });

  it('alive and ours; its services each checked the same way', () => {
    proc(200, 'S', 7000, supArgv());
    proc(201, 'S', 7001, ['/usr/bin/node', '/svc/node/dist/main.js']);
    proc(202, 'Z', 7002, []);
    writeFileSync(pidFile(runDir, 'node'), JSON.stringify({ pid: 200, startTicks: 7000, cmdline: supArgv() }));
    writeState({
      'calico-node': {
        pid: 201,
        startTicks: 7001,
        cmdline: ['/usr/bin/node', '/svc/node/dist/main.js'],
        restarts: 0,
        startedAt: null,
        lastExit: null,
      },
      'calico-bgp-config': {
        pid: 202,
        startTicks: 7002,
        cmdline: ['/usr/bin/node', '/svc/bgp/dist/main.js'],
        restarts: 0,
        startedAt: null,
        lastExit: null,
      },
      'calico-diags': { pid: null, restarts: 2, startedAt: null, lastExit: 'code=1' },
    });
    const s = readSupervisor(runDir, 'node', { procRoot })!;
    expect(s.alive).toBe(true);
    expect(s.services.map((x) => [x.name, x.liveness.alive ? 'alive' : x.liveness.detail])).toEqual([
      ['calico-node', 'alive'],
      ['calico-bgp-config', 'pid 202 has exited (a zombie, not yet reaped)'],
    ]);
  });

  it('a zombie supervisor is not running, though its pid is there', () => {
    proc(200, 'Z', 7000, []);
    writeFileSync(pidFile(runDir, 'node'), JSON.stringify({ pid: 200, startTicks: 7000, cmdline: supArgv() }));
    const s = readSupervisor(runDir, 'node', { procRoot })!;
    expect(s.alive).toBe(false);
    expect(s.liveness).toMatchObject({ reason: 'zombie', detail: 'pid 200 has exited (a zombie, not yet reaped)' });
  });

  it('a reused supervisor pid is not running; the same pid with our start time is (the control)', () => {
    proc(200, 'S', 9999, ['/usr/sbin/sshd', '-D']);
    writeFileSync(pidFile(runDir, 'node'), JSON.stringify({ pid: 200, startTicks: 7000, cmdline: supArgv() }));
    expect(readSupervisor(runDir, 'node', { procRoot })!.liveness).toMatchObject({
      alive: false,
      detail: 'pid 200 is not the process we started (pid reused: another start time)',
    });
    proc(200, 'S', 7000, supArgv());
    expect(readSupervisor(runDir, 'node', { procRoot })!.alive).toBe(true);
  });

  it('an older pid file (the bare pid) is alive only if its command line is our supervisor of this role', () => {
    writeFileSync(pidFile(runDir, 'node'), '200\n');
    proc(200, 'S', 7000, supArgv());
    const s = readSupervisor(runDir, 'node', { procRoot })!;
    expect(s.alive).toBe(true);
    // Proven once, its record is completed, so that a stop needs no weaker proof.
    expect(s.record).toEqual({ pid: 200, startTicks: 7000, cmdline: supArgv() });
    proc(200, 'S', 7000, [
      '/usr/bin/node',
      '/opt/calicoctl/dist/main.js',
      '_supervise',
      JSON.stringify({ role: 'master', runDir }),
    ]);
    expect(readSupervisor(runDir, 'node', { procRoot })!.alive).toBe(false);
    proc(200, 'S', 7000, ['sleep', '100']);
    expect(readSupervisor(runDir, 'node', { procRoot })!.liveness).toMatchObject({ alive: false, reason: 'reused' });
  });

  it("older service entries (a pid only) are ours only by the caller's test of their command line", () => {
    proc(200, 'Z', 7000, []);
    proc(201, 'S', 7001, ['/usr/bin/node', '/svc/node/dist/main.js', '--hostname=h1']);
    writeFileSync(pidFile(runDir, 'node'), '200\n');
    writeState({ 'calico-node': { pid: 201, restarts: 0, startedAt: null, lastExit: null } });
    const without = readSupervisor(runDir, 'node', { procRoot })!;
    expect(without.services[0]!.liveness.alive).toBe(false);
    const matches = (name: string, argv: string[]) =>
      name === 'calico-node' && argv[1] === '/svc/node/dist/main.js' && argv.includes('--hostname=h1');
    const withTest = readSupervisor(runDir, 'node', { procRoot, serviceMatches: matches })!;
    expect(withTest.services[0]).toMatchObject({ liveness: { alive: true }, record: { pid: 201, startTicks: 7001 } });
  });

  it('a pid file that is not one counts as a dead supervisor', () => {
    writeFileSync(pidFile(runDir, 'node'), '{"pid": ');
    expect(readSupervisor(runDir, 'node', { procRoot })!.liveness).toMatchObject({ alive: false, reason: 'gone' });
    expect(parsePidFile('{"pid": -3}')).toBeNull();
    expect(parsePidFile('{"pid": 5, "startTicks": 9, "cmdline": ["a"]}')).toEqual({
      pid: 5,
      startTicks: 9,
      cmdline: ['a'],
    });
  });

  it('cleaning after a dead supervisor removes its files and signals nothing that is not ours', async () => {
    proc(200, 'Z', 7000, []);
    // Pid 201 now belongs to another program: it must not be stopped.
    proc(201, 'S', 9001, ['/usr/sbin/sshd', '-D']);
    writeFileSync(pidFile(runDir, 'node'), JSON.stringify({ pid: 200, startTicks: 7000, cmdline: supArgv() }));
    writeState({
      'calico-node': {
        pid: 201,
        startTicks: 7001,
        cmdline: ['node', 'x'],
        restarts: 0,
        startedAt: null,
        lastExit: null,
      },
    });
    const s = readSupervisor(runDir, 'node', { procRoot })!;
    expect(await cleanStale(s, runDir, 'node', { procRoot, daemons: true })).toEqual({ stopped: [] });
    expect(existsSync(pidFile(runDir, 'node'))).toBe(false);
    expect(existsSync(stateFile(runDir, 'node'))).toBe(false);
  });

  it('refuses to clean after a supervisor that is alive', async () => {
    proc(200, 'S', 7000, supArgv());
    writeFileSync(pidFile(runDir, 'node'), JSON.stringify({ pid: 200, startTicks: 7000, cmdline: supArgv() }));
    await expect(
      cleanStale(readSupervisor(runDir, 'node', { procRoot })!, runDir, 'node', { procRoot }),
    ).rejects.toThrow(/is alive/);
    expect(existsSync(pidFile(runDir, 'node'))).toBe(true);
  });

  it('knows its own command line', () => {
    expect(isSupervisorCmdline(supArgv(), 'node', runDir)).toBe(true);
    expect(isSupervisorCmdline(supArgv(), 'node', '/elsewhere')).toBe(false);
    expect(isSupervisorCmdline(['node', 'main.js', '_supervise', 'not json'], 'node', runDir)).toBe(false);
  });
});
