import { rename, writeFile, readFile, unlink, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { runTool, toolTimeoutMs } from '@calico/proc';

export interface BirdPaths {
  config: string;
  socket: string;
  pid: string;
  log: string;
}

/** Every BIRD path derives from the host name and a state folder; each can be overridden. */
export function birdPaths(stateDir: string, overrides: Partial<BirdPaths> = {}): BirdPaths {
  return {
    config: overrides.config ?? `${stateDir}/bird.conf`,
    socket: overrides.socket ?? `${stateDir}/bird.ctl`,
    pid: overrides.pid ?? `${stateDir}/bird.pid`,
    log: overrides.log ?? `${stateDir}/bird.log`,
  };
}

/**
 * How long bird, birdc and ip may take: `bird -p -c` checks 1,000 peers in ~4 ms and birdc
 * answers at once; past this BIRD is hung, the call fails and the next change tries again.
 * CALICO_TOOL_TIMEOUT_MS overrides it (tests); a bad value stops the service at start.
 */
export const BIRD_TOOL_TIMEOUT_MS = toolTimeoutMs(10_000);

export interface BirdRun {
  code: number;
  out: string;
  /** Killed at its timeout: BIRD is there but hung, which is not the same as not running. */
  timedOut: boolean;
}

export function runBird(argv: string[], timeoutMs = BIRD_TOOL_TIMEOUT_MS): Promise<BirdRun> {
  return run(argv, timeoutMs);
}

/** stdout then stderr as one text; a tool that did not start or was killed is a non-zero code and says why. */
async function run(argv: string[], timeoutMs = BIRD_TOOL_TIMEOUT_MS): Promise<BirdRun> {
  const r = await runTool(argv, { timeoutMs });
  if (r.error?.kind === 'not-started') return { code: 127, out: (r.error.cause as Error).message, timedOut: false };
  const out = r.stdout.toString('utf8') + r.stderr;
  if (r.timedOut || r.code === null) {
    return { code: 1, out: [out.trimEnd(), r.error!.message].filter(Boolean).join('\n'), timedOut: r.timedOut };
  }
  return { code: r.code, out, timedOut: false };
}

export class BirdConfigRejected extends Error {
  constructor(readonly birdSays: string) {
    super(`BIRD rejected the rendered configuration: ${birdSays.trim()}`);
    this.name = 'BirdConfigRejected';
  }
}

/** `bird -p -c`: BIRD's own parser decides whether a config is valid. */
export async function checkConfig(path: string): Promise<void> {
  const r = await run(['bird', '-p', '-c', path]);
  if (r.code !== 0) throw new BirdConfigRejected(r.out);
}

/**
 * Replaces the live config only with a checked one: write a temporary file beside it, check
 * it with `bird -p -c`, then rename (atomic on one filesystem). Returns false when the content
 * was already there, so callers reload only on change.
 */
export async function installConfig(path: string, text: string): Promise<boolean> {
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current === text) return false;
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.new`;
  await writeFile(tmp, text);
  try {
    await checkConfig(tmp);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await rename(tmp, path);
  return true;
}

/** Asks the running BIRD to load its config file. false when BIRD is not answering. */
export async function reloadBird(socket: string): Promise<{ ok: boolean; out: string }> {
  const r = await run(['birdc', '-s', socket, 'configure']);
  return {
    ok: r.code === 0 && /Reconfigured|Reconfiguration in progress|Reconfiguration already in progress/.test(r.out),
    out: r.out.trim(),
  };
}

/**
 * How many routes an earlier BIRD installed (proto bird) are in this host's kernel, both
 * families: a BIRD that starts while there are any must recover them (-R), not prune them.
 */
export async function kernelRoutesOfBird(): Promise<number> {
  let n = 0;
  for (const family of ['-4', '-6']) {
    const r = await run(['ip', family, 'route', 'show', 'proto', 'bird']);
    if (r.code !== 0) throw new Error(`ip ${family} route show proto bird: ${r.out.trim()}`);
    n += r.out.split('\n').filter((l) => l.trim() !== '').length;
  }
  return n;
}

export async function birdc(socket: string, command: string): Promise<BirdRun> {
  return run(['birdc', '-s', socket, ...command.split(' ')]);
}
