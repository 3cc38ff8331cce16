import { spawn } from 'node:child_process';

export type Family = 4 | 6;
export type Table = 'filter' | 'raw';

/** The kernel as the dataplane sees it: save and restore text, nothing else. */
export interface KernelBackend {
  iptablesSave(family: Family, table: Table): Promise<string>;
  /** iptables-restore --noflush of one table. */
  iptablesRestore(family: Family, text: string): Promise<void>;
  ipsetSave(): Promise<string>;
  ipsetRestore(text: string): Promise<void>;
  /** Forgets conntrack entries of an address that left this host's workloads. */
  conntrackFlush(addr: string): Promise<void>;
}

function run(argv: string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', (e) => reject(new Error(`${argv[0]}: ${e.message}`)));
    p.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out).toString('utf8')) : reject(new Error(`${argv.join(' ')} exited ${code}: ${err.trim()}`)),
    );
    p.stdin.on('error', () => undefined);
    p.stdin.end(input);
  });
}

/** The real kernel, through Debian's iptables (nft backend), ipset and conntrack. */
export class RealKernel implements KernelBackend {
  iptablesSave(family: Family, table: Table): Promise<string> {
    return run([family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', table]);
  }
  async iptablesRestore(family: Family, text: string): Promise<void> {
    await run([family === 4 ? 'iptables-restore' : 'ip6tables-restore', '--noflush', '-w', '5'], text);
  }
  ipsetSave(): Promise<string> {
    return run(['ipset', 'save']);
  }
  async ipsetRestore(text: string): Promise<void> {
    await run(['ipset', '-exist', 'restore'], text);
  }
  async conntrackFlush(addr: string): Promise<void> {
    const fam = addr.includes(':') ? 'ipv6' : 'ipv4';
    // "0 flow entries" is an exit 1 for conntrack: nothing to forget is fine.
    await run(['conntrack', '-D', '-f', fam, '-s', addr]).catch(() => undefined);
    await run(['conntrack', '-D', '-f', fam, '-d', addr]).catch(() => undefined);
  }
}
