import type { Direction } from '@calico/keyspace';
import { UsageError, type Context } from '../context.js';
import { describeRule } from './groups.js';

const USAGE = `usage:
  calicoctl rule add <GROUP> inbound|outbound (--group=<GROUP> | --cidr=<CIDR>) [--protocol=<P>] [--port=<N>]
  calicoctl rule remove <GROUP> inbound|outbound <N>
  calicoctl rule show <GROUP>`;

function direction(d: string | undefined): Direction {
  if (d !== 'inbound' && d !== 'outbound') throw new UsageError(`direction must be inbound or outbound\n${USAGE}`);
  return d;
}

export async function rule(
  ctx: Context,
  args: string[],
  opts: { group?: string; cidr?: string; protocol?: string; port?: string },
): Promise<number> {
  const [verb, group, dir, n] = args;
  if (!verb || !group) throw new UsageError(USAGE);
  if (verb === 'show') {
    const g = await ctx.client.findGroup(group);
    if (ctx.flags.json) ctx.json({ inbound: g.inbound, outbound: g.outbound });
    else
      for (const d of ['inbound', 'outbound'] as const) {
        ctx.print(`${d} (default deny):`);
        for (const r of g[d]) ctx.print(`  ${r.index}  ${describeRule(r.rule)}`);
        if (!g[d].length) ctx.print('  (no rules)');
      }
    return 0;
  }
  if (verb === 'add') {
    const d = direction(dir);
    if (args.length !== 3) throw new UsageError(USAGE);
    if (!opts.group === !opts.cidr) throw new UsageError(`give exactly one of --group and --cidr\n${USAGE}`);
    let peerGroup: string | null = null;
    if (opts.group) peerGroup = (await ctx.client.findGroup(opts.group)).id;
    let port: number | null = null;
    if (opts.port !== undefined) {
      if (!/^\d+$/.test(opts.port)) throw new UsageError(`--port=${opts.port}: a number 1-65535`);
      port = Number(opts.port);
    }
    const r = await ctx.client.addRule(group, d, {
      group: peerGroup,
      cidr: opts.cidr ?? null,
      protocol: opts.protocol ?? null,
      port,
    });
    if (ctx.flags.json) ctx.json(r);
    else ctx.print(`Added ${d} rule ${r.index} to group ${group}`);
    return 0;
  }
  if (verb === 'remove') {
    const d = direction(dir);
    if (!n || !/^\d+$/.test(n) || args.length !== 4) throw new UsageError(USAGE);
    await ctx.client.removeRule(group, d, Number(n));
    if (!ctx.flags.json) ctx.print(`Removed ${d} rule ${n} from group ${group}`);
    else ctx.json({ removed: Number(n) });
    return 0;
  }
  throw new UsageError(USAGE);
}
