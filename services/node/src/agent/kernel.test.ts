import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { runTool } from './kernel.js';

const leftovers = () => readdirSync(tmpdir()).filter((f) => f.startsWith(`calico-node-${process.pid}-`));

describe('runTool', () => {
  it('hands a small input over a pipe and returns what the tool printed', async () => {
    expect(await runTool(['cat'], 'one line\n')).toBe('one line\n');
  });

  it('hands an input bigger than a pipe holds over whole, and leaves no file behind', async () => {
    const input = Array.from({ length: 50_000 }, (_, i) => `add cali4g-x 198.19.${i >> 8}.${i & 255}`).join('\n');
    expect(input.length).toBeGreaterThan(1_000_000);
    expect(await runTool(['cat'], input)).toBe(input);
    expect(await runTool(['wc', '-l'], `${input}\n`)).toBe('50000\n');
    expect(leftovers()).toEqual([]);
  });

  it('rejects with the tool and its message when it fails, a big input included', async () => {
    await expect(runTool(['sh', '-c', 'cat >/dev/null; echo nope >&2; exit 3'], 'x'.repeat(200_000))).rejects.toThrow(/exited 3: nope/);
    await expect(runTool(['no-such-tool-here'], 'x')).rejects.toThrow(/no-such-tool-here/);
    expect(leftovers()).toEqual([]);
  });
});
