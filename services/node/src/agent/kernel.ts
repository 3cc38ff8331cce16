import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Family = 4 | 6;
export type Table = 'filter' | 'raw';

/** The kernel as the dataplane sees it: save and restore text, nothing else. */
export interface KernelBackend {
  iptablesSave(family: Family, table: Table): Promise<string>;
  /** iptables-restore --noflush of one table. */
  iptablesRestore(family: Family, text: string): Promise<void>;
  ipsetSave(): Promise<string>;
  ipsetRestore(text: string): Promise<void>;
  /**
   * Forgets the conntrack entries of flows from or to these addresses, so that their next
   * packets meet the rules as they are now.
   */
  conntrackFlush(addrs: readonly string[]): Promise<void>;
}

/** Inputs bigger than a pipe holds go through a file (see run). */
const PIPE_BYTES = 64 * 1024;
let inputFiles = 0;

/** Runs a tool with input on its stdin; resolves with its stdout, rejects with its stderr. */
export function runTool(argv: string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    // A big input is handed over as a file: through a pipe, the tool would wait for this process
    // to write the rest, which it does only between its own tasks (it builds the next text meanwhile).
    let stdin: number | 'pipe' = 'pipe';
    if (input.length > PIPE_BYTES) {
      const path = join(tmpdir(), `calico-node-${process.pid}-${++inputFiles}`);
      try {
        writeFileSync(path, input, { flag: 'wx', mode: 0o600 });
        stdin = openSync(path, 'r');
      } finally {
        // The open descriptor keeps the content for the child; no name is left behind.
        rmSync(path, { force: true });
      }
    }
    let p: ChildProcess;
    try {
      p = spawn(argv[0]!, argv.slice(1), { stdio: [stdin, 'pipe', 'pipe'] });
    } finally {
      if (typeof stdin === 'number') closeSync(stdin);
    }
    const out: Buffer[] = [];
    let err = '';
    p.stdout!.on('data', (c: Buffer) => out.push(c));
    p.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', (e) => reject(new Error(`${argv[0]}: ${e.message}`)));
    p.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out).toString('utf8')) : reject(new Error(`${argv.join(' ')} exited ${code}: ${err.trim()}`)),
    );
    if (p.stdin) {
      p.stdin.on('error', () => undefined);
      p.stdin.end(input);
    }
  });
}

/** The real kernel, through Debian's iptables (nft backend), ipset and conntrack. */
export class RealKernel implements KernelBackend {
  iptablesSave(family: Family, table: Table): Promise<string> {
    return runTool([family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', table]);
  }
  async iptablesRestore(family: Family, text: string): Promise<void> {
    await runTool([family === 4 ? 'iptables-restore' : 'ip6tables-restore', '--noflush', '-w', '5'], text);
  }
  ipsetSave(): Promise<string> {
    return runTool(['ipset', 'save']);
  }
  async ipsetRestore(text: string): Promise<void> {
    await runTool(['ipset', '-exist', 'restore'], text);
  }
  async conntrackFlush(addrs: readonly string[]): Promise<void> {
    if (addrs.length === 0) return;
    // One shell for all of them. Addresses are checked here, as they are written into a script;
    // "0 flow entries" is an exit 1 for conntrack: nothing to forget is fine.
    const lines = addrs.flatMap((a) => {
      if (!/^[0-9a-f.:]+$/i.test(a)) throw new Error(`conntrack: not an address: ${a}`);
      const fam = a.includes(':') ? 'ipv6' : 'ipv4';
      return [`conntrack -D -f ${fam} -s ${a} 2>/dev/null`, `conntrack -D -f ${fam} -d ${a} 2>/dev/null`];
    });
    await runTool(['sh', '-c', `${lines.join('\n')}\nexit 0`]);
  }
}
