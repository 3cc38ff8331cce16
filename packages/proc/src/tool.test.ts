import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { processExists } from './liveness.js';
import { describeArgv, runTool, runToolOk, toolTimeoutMs } from './tool.js';

const leftovers = () => readdirSync(tmpdir()).filter((f) => f.startsWith(`calico-tool-${process.pid}-`));
const dir = mkdtempSync(join(tmpdir(), 'calico-tool-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`never: ${what}`);
}

/** A shell that starts a sleep, writes the sleep's pid and its own to a file, says so on stderr, and waits. */
const hangingScript = (pidFile: string) => `sleep 300 & echo "$$ $!" > ${pidFile}; echo 'about to hang' >&2; wait`;
const readPids = (pidFile: string) => readFileSync(pidFile, 'utf8').trim().split(' ').map(Number) as [number, number];

describe('runTool', () => {
  it('hands a small input over a pipe and returns what the tool printed', async () => {
    const r = await runTool(['sh', '-c', 'readlink /proc/$$/fd/0 >&2; cat'], { input: 'one line\n' });
    expect(r.error).toBeNull();
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toBe('one line\n');
    expect(r.stderr).toMatch(/^(pipe|socket):\[[0-9]+\]\n$/);
  });

  it('hands an input bigger than a pipe holds over as an unlinked file, whole, and leaves no name behind', async () => {
    const input = Array.from({ length: 50_000 }, (_, i) => `add cali4g-x 198.19.${i >> 8}.${i & 255}`).join('\n');
    expect(input.length).toBeGreaterThan(1_000_000);
    const r = await runTool(['sh', '-c', 'readlink /proc/$$/fd/0 >&2; cat'], { input });
    expect(r.stderr).toMatch(new RegExp(`^${tmpdir()}/calico-tool-${process.pid}-[0-9]+ \\(deleted\\)\\n$`));
    expect(r.stdout.toString()).toBe(input);
    expect(await runToolOk(['wc', '-l'], { input: `${input}\n` })).toBe('50000\n');
    expect(leftovers()).toEqual([]);
  });

  it('without an input the tool reads /dev/null', async () => {
    expect(await runToolOk(['sh', '-c', 'readlink /proc/$$/fd/0; cat'])).toBe('/dev/null\n');
  });

  it('a failure names the command, the exit code and the stderr, a big input included', async () => {
    const r = await runTool(['sh', '-c', 'cat >/dev/null; echo nope >&2; exit 3'], { input: 'x'.repeat(200_000) });
    expect(r.code).toBe(3);
    expect(r.error?.kind).toBe('exit');
    expect(r.error?.message).toBe(`sh -c 'cat >/dev/null; echo nope >&2; exit 3' exited 3: nope`);
    await expect(runToolOk(['sh', '-c', 'exit 4'])).rejects.toThrow(/exited 4$/);
    const missing = await runTool(['no-such-tool-here'], { input: 'x' });
    expect(missing.error?.kind).toBe('not-started');
    expect(missing.error?.message).toMatch(/^no-such-tool-here could not start: spawn no-such-tool-here ENOENT/);
    expect(leftovers()).toEqual([]);
  });

  it('a hung tool is killed at the timeout with what it started; the error says what, when, stderr', async () => {
    const pidFile = join(dir, 'hang.pids');
    const running = runTool(['sh', '-c', hangingScript(pidFile)], { timeoutMs: 1_000 });
    await until('the script wrote its pids', () => {
      try {
        return readPids(pidFile).length === 2;
      } catch {
        return false;
      }
    });
    const [shPid, sleepPid] = readPids(pidFile);
    // Both run while the tool hangs: what follows is the runner's doing.
    expect(processExists(shPid)).toBe(true);
    expect(processExists(sleepPid)).toBe(true);
    const r = await running;
    expect(r.timedOut).toBe(true);
    expect(r.code).toBeNull();
    expect(r.signal).toBe('SIGKILL');
    expect(r.error?.kind).toBe('timeout');
    const msg = r.error!.message;
    const quoted = `'sleep 300 & echo "$$ $!" > ${pidFile}; echo '\\''about to hang'\\'' >&2; wait'`;
    expect(msg).toContain(`sh -c ${quoted} timed out after 1000 ms`);
    expect(msg).toContain(`; still running then: itself (pid ${shPid}), ${sleepPid} sleep 300;`);
    expect(msg).toMatch(/stderr so far: about to hang$/);
    expect(processExists(shPid)).toBe(false);
    expect(processExists(sleepPid)).toBe(false);
  });

  it('control: killing only the shell, as a plain child.kill does, leaves its sleep running', async () => {
    const pidFile = join(dir, 'control.pids');
    const p = spawn('sh', ['-c', hangingScript(pidFile)], { stdio: 'ignore' });
    await until('the script wrote its pids', () => {
      try {
        return readPids(pidFile).length === 2;
      } catch {
        return false;
      }
    });
    const [shPid, sleepPid] = readPids(pidFile);
    p.kill('SIGKILL');
    await until('the shell is gone', () => !processExists(shPid));
    await new Promise((r) => setTimeout(r, 200));
    expect(processExists(sleepPid)).toBe(true);
    process.kill(sleepPid, 'SIGKILL');
    await until('the stray sleep is gone', () => !processExists(sleepPid));
  });

  it('tools still running when the service exits go with it; a detached child without the runner stays', async () => {
    // The service is a node process of its own; it runs the runner compiled from this source.
    const built = mkdtempSync(join(dir, 'built-'));
    writeFileSync(join(built, 'package.json'), '{"type":"module"}');
    for (const name of ['tool', 'liveness']) {
      const source = readFileSync(new URL(`./${name}.ts`, import.meta.url), 'utf8');
      const compilerOptions = { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 };
      const js = ts.transpileModule(source, { compilerOptions });
      writeFileSync(join(built, `${name}.js`), js.outputText);
    }
    const toolJs = join(built, 'tool.js');
    for (const viaRunner of [true, false]) {
      const pidFile = join(dir, `exit-${viaRunner}.pids`);
      const start = viaRunner
        ? `const { runTool } = await import(${JSON.stringify(toolJs)}); void runTool(['sh', '-c', script]);`
        : `(await import('node:child_process')).spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' });`;
      const program = [
        `const script = ${JSON.stringify(hangingScript(pidFile))};`,
        start,
        `const fs = await import('node:fs');`,
        `const wait = () => (fs.existsSync(${JSON.stringify(pidFile)}) ? process.exit(0) : setTimeout(wait, 20));`,
        'wait();',
      ].join('\n');
      const service = spawn(process.execPath, ['--input-type=module', '-e', program], { stdio: 'ignore' });
      await new Promise((r) => service.once('exit', r));
      await until('the script wrote its pids', () => {
        try {
          return readPids(pidFile).length === 2;
        } catch {
          return false;
        }
      });
      const [shPid, sleepPid] = readPids(pidFile);
      if (viaRunner) {
        await until('the tool gone', () => !processExists(shPid) && !processExists(sleepPid));
      } else {
        await new Promise((r) => setTimeout(r, 200));
        expect([processExists(shPid), processExists(sleepPid)]).toEqual([true, true]);
        process.kill(-shPid, 'SIGKILL');
        await until('the stray group gone', () => !processExists(shPid) && !processExists(sleepPid));
      }
    }
  });

  it('a stream is piped in; a stream that fails kills the tool and says so', async () => {
    expect(await runToolOk(['cat'], { input: Readable.from([Buffer.from('a'), Buffer.from('b')]) })).toBe('ab');
    const broken = new Readable({ read() {} });
    broken.push('part');
    setTimeout(() => broken.destroy(new Error('connection reset')), 100);
    const r = await runTool(['cat'], { input: broken, timeoutMs: 10_000 });
    expect(r.timedOut).toBe(false);
    expect(r.error?.kind).toBe('input');
    expect(r.error?.message).toBe('cat: its input failed (connection reset); killed');
    // A tool that stops reading early is judged by its own exit, not by the broken pipe.
    const endless = new Readable({
      read() {
        this.push(Buffer.alloc(65_536));
      },
    });
    const early = await runTool(['sh', '-c', 'head -c 10 >/dev/null; echo enough >&2; exit 2'], { input: endless });
    expect(early.error?.message).toMatch(/exited 2: enough$/);
    const unread = Readable.from(['x']);
    expect((await runTool(['no-such-tool-here'], { input: unread })).error?.kind).toBe('not-started');
    expect(unread.destroyed).toBe(true);
  });

  it('describes a command on one line, long scripts cut short', () => {
    expect(describeArgv(['ipset', '-exist', 'restore'])).toBe('ipset -exist restore');
    const d = describeArgv(['sh', '-c', `set -e\n${'ip link add x\n'.repeat(100)}`]);
    expect(d.startsWith(`sh -c 'set -e; ip link add x; ip link add x`)).toBe(true);
    expect(d).not.toContain('\n');
    expect(d.length).toBeLessThan(200);
  });

  it('takes CALICO_TOOL_TIMEOUT_MS over the default when set, and refuses what is not a number of ms', () => {
    expect(toolTimeoutMs(30_000, {})).toBe(30_000);
    expect(toolTimeoutMs(30_000, { CALICO_TOOL_TIMEOUT_MS: '1500' })).toBe(1_500);
    for (const bad of ['0', '-1', '1.5', 'soon']) {
      const parse = () => toolTimeoutMs(30_000, { CALICO_TOOL_TIMEOUT_MS: bad });
      expect(parse).toThrow(/CALICO_TOOL_TIMEOUT_MS=.* is not a positive number of milliseconds/);
    }
  });
});
