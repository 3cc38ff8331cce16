import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

/** The compiled entry point of a workspace service, wherever pnpm put it. */
export function serviceMain(pkg: '@calico/node' | '@calico/bgp-config' | '@calico/master' | '@calico/diags'): string {
  return join(dirname(require.resolve(`${pkg}/package.json`)), 'dist', 'main.js');
}

export function calicoctlMain(): string {
  return join(dirname(require.resolve('@calico/calicoctl/package.json')), 'dist', 'main.js');
}

/** Where a host's services keep their files; each can be overridden by a flag. */
export interface HostDirs {
  run: string;
  log: string;
  state: string;
}

export function hostDirs(
  hostname: string,
  o: { runDir?: string | undefined; logDir?: string | undefined; stateDir?: string | undefined } = {},
): HostDirs {
  return {
    run: o.runDir ?? `/var/run/calico/${hostname}`,
    log: o.logDir ?? `/var/log/calico/${hostname}`,
    state: o.stateDir ?? `/var/lib/calico/${hostname}`,
  };
}
