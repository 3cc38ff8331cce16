import { UsageError, type Context } from '../context.js';

/** calicoctl check <SRC> <DST> [--protocol P] [--port N]: the verdict and the rule that decided it. */
export async function check(ctx: Context, args: string[], opts: { protocol?: string; port?: string }): Promise<number> {
  const [src, dst] = args;
  if (!src || !dst || args.length !== 2)
    throw new UsageError(
      'usage: calicoctl check <SRC> <DST> [--protocol=<P>] [--port=<N>]  (containers, endpoint ids or addresses)',
    );
  if (opts.port !== undefined && !/^\d+$/.test(opts.port))
    throw new UsageError(`--port=${opts.port}: a number 1-65535`);
  const v = await ctx.client.check(src, dst, {
    protocol: opts.protocol ?? null,
    port: opts.port === undefined ? null : Number(opts.port),
  });
  if (ctx.flags.json) ctx.json(v);
  else {
    ctx.print(v.allowed ? 'ALLOWED' : 'DENIED');
    ctx.print(v.reason);
    const side = (label: string, s: typeof v.outbound) => {
      if (!s) return;
      const rule = s.decidedBy
        ? `${s.decidedBy.direction} rule ${s.decidedBy.index} of group ${s.decidedBy.groupId}`
        : s.reason;
      ctx.print(`  ${label}: ${s.allowed ? 'allowed' : 'denied'} (${rule}; groups: ${s.groups.join(', ') || 'none'})`);
    };
    side(`outbound of ${v.src.endpointId ?? v.src.addr}`, v.outbound);
    side(`inbound of ${v.dst.endpointId ?? v.dst.addr}`, v.inbound);
  }
  // Scripts can branch on the verdict.
  return v.allowed ? 0 : 1;
}
