import { runTool } from '@calico/proc';

export interface RunResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs a command in the caller's network namespace and returns its output; a missing binary,
 * a non-zero exit or a timeout are results, not exceptions, so the source can say what happened.
 * On timeout the command's whole process group is killed and stderr ends with why.
 */
export async function run(argv: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  const r = await runTool(argv, { timeoutMs });
  if (r.error?.kind === 'not-started') {
    return { code: 127, stdout: Buffer.alloc(0), stderr: `${argv[0]}: ${(r.error.cause as Error).message}` };
  }
  const stderr = r.stderr + (r.timedOut ? `\n(killed after ${timeoutMs} ms)` : '');
  return { code: r.code ?? (r.signal ? 128 : 1), stdout: r.stdout, stderr };
}
