import { createRequire } from 'node:module';
import type { Context } from '../context.js';
import { runQuiet } from './services.js';

const require = createRequire(import.meta.url);

export async function version(ctx: Context): Promise<number> {
  const v = (pkg: string) => (require(`${pkg}/package.json`) as { version: string }).version;
  const bird = (await runQuiet(['bird', '--version'])).trim().replace(/^BIRD version /, '') || 'not installed';
  const info = {
    calicoctl: v('@calico/calicoctl'),
    node: v('@calico/node'),
    'bgp-config': v('@calico/bgp-config'),
    bird,
    nodejs: process.version,
  };
  if (ctx.flags.json) ctx.json(info);
  else for (const [k, val] of Object.entries(info)) ctx.print(`${k.padEnd(12)} ${val}`);
  return 0;
}
