import type { RuleInput } from '@calico/keyspace';
import { table, UsageError, type Context } from '../context.js';

export function describeRule(r: RuleInput): string {
  const peer = r.group ? `group ${r.group}` : `cidr ${r.cidr}`;
  const proto = r.protocol ? ` ${r.protocol}` : ' any protocol';
  const port = r.port !== null && r.port !== undefined ? ` port ${r.port}` : '';
  return `${peer}${proto}${port}`;
}

export async function addgroup(ctx: Context, args: string[]): Promise<number> {
  const [name] = args;
  if (!name || args.length !== 1) throw new UsageError('usage: calicoctl addgroup <NAME>');
  const g = await ctx.client.addGroup(name);
  if (ctx.flags.json) ctx.json(g);
  else ctx.print(`Created group ${g.name} with id ${g.id}`);
  return 0;
}

export async function removegroup(ctx: Context, args: string[]): Promise<number> {
  const [name] = args;
  if (!name || args.length !== 1) throw new UsageError('usage: calicoctl removegroup <NAME|ID>');
  const r = await ctx.client.removeGroup(name);
  if (ctx.flags.json) ctx.json(r);
  else ctx.print(`Removed group ${r.name ?? r.id} (${r.id}, ${r.deleted} keys)`);
  return 0;
}

export async function showgroups(ctx: Context, args: string[], detailed: boolean): Promise<number> {
  if (args.length) throw new UsageError('usage: calicoctl showgroups [--detailed]');
  const view = await ctx.client.view();
  const groups = await ctx.client.listGroups(view);
  if (ctx.flags.json) {
    ctx.json(groups);
    return 0;
  }
  if (!groups.length) {
    ctx.print('No groups. Create one with: calicoctl addgroup <NAME>');
    return 0;
  }
  const nameOf = (id: string) => view.model.group(id)?.name ?? id;
  const containerOf = (eid: string) => {
    const w = view.workloads.find((x) => x.endpoints.some((e) => e.endpointId === eid));
    return w ? `${w.name ?? w.containerId.slice(0, 12)} on ${w.host}` : '(no endpoint yet)';
  };
  if (!detailed) {
    ctx.print(
      table(
        ['ID', 'NAME', 'MEMBERS'],
        groups.map((g) => [g.id, g.name ?? '-', String(g.members.length)]),
      ),
    );
    return 0;
  }
  for (const g of groups) {
    ctx.print(`${g.name ?? '(no name)'}  ${g.id}`);
    ctx.print(`  members:`);
    for (const m of g.members) ctx.print(`    ${m}  ${containerOf(m)}`);
    if (!g.members.length) ctx.print('    (none)');
    for (const dir of ['inbound', 'outbound'] as const) {
      ctx.print(`  ${dir} (default deny):`);
      for (const r of g[dir])
        ctx.print(`    ${r.index}  ${describeRule({ ...r.rule, group: r.rule.group ? nameOf(r.rule.group) : null })}`);
      if (!g[dir].length) ctx.print('    (no rules)');
    }
  }
  return 0;
}

export async function addtogroup(ctx: Context, args: string[]): Promise<number> {
  const [container, group] = args;
  if (!container || !group || args.length !== 2)
    throw new UsageError('usage: calicoctl addtogroup <CONTAINER> <GROUP>');
  const r = await ctx.client.addToGroup(container, group);
  if (ctx.flags.json) ctx.json(r);
  else ctx.print(`Added ${container} (endpoint ${r.endpointId}) to group ${group}`);
  return 0;
}

export async function removefromgroup(ctx: Context, args: string[]): Promise<number> {
  const [container, group] = args;
  if (!container || !group || args.length !== 2)
    throw new UsageError('usage: calicoctl removefromgroup <CONTAINER> <GROUP>');
  const r = await ctx.client.removeFromGroup(container, group);
  if (ctx.flags.json) ctx.json(r);
  else ctx.print(`Removed ${container} (endpoint ${r.endpointId}) from group ${group}`);
  return 0;
}
