import { UsageError, type Context } from '../context.js';

const USAGE = 'usage: calicoctl pool add <CIDR> | calicoctl pool remove <CIDR> | calicoctl pool show';

export async function pool(ctx: Context, args: string[]): Promise<number> {
  const [verb, cidr] = args;
  if (verb === 'show' && args.length === 1) {
    const v = await ctx.client.view();
    if (ctx.flags.json) ctx.json(v.pools);
    else {
      for (const p of [...v.pools.v4, ...v.pools.v6]) ctx.print(p);
      if (!v.pools.v4.length && !v.pools.v6.length)
        ctx.print('No pools. CALICO_IP=auto needs one: calicoctl pool add <CIDR>');
    }
    return 0;
  }
  if ((verb === 'add' || verb === 'remove') && cidr && args.length === 2) {
    const r = verb === 'add' ? await ctx.client.addPool(cidr) : await ctx.client.removePool(cidr);
    if (ctx.flags.json) ctx.json(r);
    else ctx.print(`${verb === 'add' ? 'Added' : 'Removed'} pool ${r.cidr}`);
    return 0;
  }
  throw new UsageError(USAGE);
}
