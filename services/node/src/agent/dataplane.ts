import type { Logger } from '@calico/log';
import type { Family, KernelBackend, Table } from './kernel.js';
import { HOOKS, OWNED_PREFIX, chainSpan, ruleHash } from './names.js';

const HOOK_COMMENT = 'cali:hook';

interface ChainState {
  lines: string[];
  hashes: string[];
}

/** What the kernel holds of ours, as read back from iptables-save / ipset save. */
export interface KernelView {
  chains: Map<string, string[]>; // key family|table|chain → rule hashes
  hooks: Map<string, number>; // key family|table|builtin|chain → jump count
  /** type: as ipset save names it; one we never want under the name gets the set replaced. */
  ipsets: Map<string, { family: Family; type: string; members: Set<string>; maxelem: number }>;
}

/** Group sets hold addresses; the control-plane set holds address,tcp:port pairs. */
export type IpsetType = 'hash:ip' | 'hash:ip,port';

/** ipset's own default size of a hash:ip set. */
const DEFAULT_MAXELEM = 65_536;

/** The size a set is made with for n members: room to double before it must be replaced. */
export function maxelemFor(n: number): number {
  let size = DEFAULT_MAXELEM;
  while (size < 2 * n) size *= 2;
  return size;
}

/** The set a full one is rebuilt in, then swapped with it (same length, still ours). */
export function tempSetName(name: string): string {
  return /^cali[46]g-/.test(name) ? `${name.slice(0, 5)}t${name.slice(6)}` : `${name.slice(0, 29)}-t`;
}

export interface ApplyStats {
  /** Processes run against the kernel (iptables-restore, ipset restore). */
  kernelCalls: number;
  chainsWritten: number;
  chainsDeleted: number;
  ipsetEntries: number;
  ipsetsCreated: number;
  ipsetsDestroyed: number;
}

const key = (family: Family, table: Table, chain: string) => `${family}|${table}|${chain}`;

/** Below this many ipset lines one restore does it all (a membership change is one line). */
const SPLIT_IPSET_LINES = 5_000;
/** Above it, one more restore for each this many lines, up to IPSET_PARTS. */
const IPSET_PART_LINES = 15_000;
const IPSET_PARTS = 4;

/** From this many rules on, a table's workload chains are written by restores side by side: one more for each this many, up to IPTABLES_PARTS. */
const SPLIT_IPTABLES_RULES = 4_000;
const IPTABLES_PARTS = 4;

interface TablePlan {
  table: Table;
  /** Restores in order; those of one step run side by side. */
  steps: string[][];
  written: [string, string[]][];
  remove: string[];
  /** What the hook counts are once the text is written. */
  hooks: [string, number][];
}

/** Reads our chains (by their hash comments) and hooks from iptables-save text. */
export function parseIptablesSave(text: string, family: Family, table: Table, view: KernelView): void {
  for (const line of text.split('\n')) {
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0]!;
      if (name.startsWith(OWNED_PREFIX)) view.chains.set(key(family, table, name), []);
    } else if (line.startsWith('-A ')) {
      const chain = line.slice(3).split(' ')[0]!;
      if (chain.startsWith(OWNED_PREFIX)) {
        const m = /--comment "?cali:([A-Za-z0-9]+)"?/.exec(line);
        const list = view.chains.get(key(family, table, chain)) ?? [];
        // A rule without our hash was not written by us: it can never match a desired hash.
        list.push(m ? m[1]! : '?');
        view.chains.set(key(family, table, chain), list);
      } else {
        const target = /-j (cali-[A-Za-z0-9-]+)/.exec(line);
        if (target && line.includes(HOOK_COMMENT)) {
          const k = `${key(family, table, chain)}|${target[1]}`;
          view.hooks.set(k, (view.hooks.get(k) ?? 0) + 1);
        }
      }
    }
  }
}

/** Reads our ipsets from `ipset save` text. */
export function parseIpsetSave(text: string, view: KernelView): void {
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts[0] === 'create' && parts[1]?.startsWith(OWNED_PREFIX)) {
      const family: Family = parts.includes('inet6') ? 6 : 4;
      const at = parts.indexOf('maxelem');
      const maxelem = at > 0 ? Number(parts[at + 1]) || DEFAULT_MAXELEM : DEFAULT_MAXELEM;
      view.ipsets.set(parts[1], { family, type: parts[2] ?? '', members: new Set(), maxelem });
    } else if (parts[0] === 'add' && parts[1]?.startsWith(OWNED_PREFIX) && parts[2]) {
      view.ipsets.get(parts[1])?.members.add(parts[2]);
    }
  }
}

/**
 * Restore texts for the sets' lines: one for ordinary changes, up to four side by side for big
 * writes (a first sync's tens of thousands of entries). ipset restore's time grows faster than
 * its input with the number of sets it has seen (65,000 lines over 2,000 sets take three times
 * as long in one restore as in two halves side by side), so each part gets fewer sets, the sets
 * with most lines first and those with none to add last. A set stays in one part.
 */
function ipsetParts(perSet: string[][], lineCount: number): string[] {
  if (perSet.length === 0) return [];
  const n = lineCount < SPLIT_IPSET_LINES ? 1 : Math.min(IPSET_PARTS, 1 + Math.ceil(lineCount / IPSET_PART_LINES));
  const parts = Array.from({ length: n }, () => ({ lines: [] as string[] }));
  for (const setLines of n > 1 ? [...perSet].sort((a, b) => b.length - a.length) : perSet) {
    let to = parts[0] as (typeof parts)[0];
    for (const p of parts) if (p.lines.length < to.lines.length) to = p;
    for (const l of setLines) to.lines.push(l);
  }
  return parts.filter((p) => p.lines.length > 0).map((p) => `${p.lines.join('\n')}\n`);
}

/**
 * The edge that makes the kernel match the desired chains and ipsets. Callers set what they
 * want; apply() writes only what differs, in one ipset restore (creates and adds), one
 * iptables-restore --noflush per family (its tables together), and one more ipset restore for deletions,
 * in that order so that no rule ever names a missing set. Chains are compared by the hash
 * comments on their rules, never by parsing rule text. resync() rereads the kernel, so that
 * whatever another program changed is repaired by the next apply.
 */
export class Dataplane {
  private readonly desiredChains = new Map<string, ChainState>();
  private readonly desiredSets = new Map<string, { family: Family; type: IpsetType; members: Set<string> }>();
  private view: KernelView | undefined;
  private readonly dirtyChains = new Set<string>();
  private readonly dirtySets = new Set<string>();
  /** resync() and apply() run one at a time: a reread in the middle of an apply would be undone by its end. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly kernel: KernelBackend,
    private readonly logger: Logger,
  ) {}

  /** Desired against what the kernel was last known to hold: equal counts and nothing dirty means converged. */
  summary(): {
    desired: { chains: number; rules: number; ipsets: number; entries: number };
    applied: { chains: number; rules: number; ipsets: number; entries: number } | null;
    dirty: { chains: string[]; ipsets: string[] };
  } {
    const count = <T>(m: Map<string, T>, n: (v: T) => number) => [...m.values()].reduce((a, v) => a + n(v), 0);
    return {
      desired: {
        chains: this.desiredChains.size,
        rules: count(this.desiredChains, (c) => c.lines.length),
        ipsets: this.desiredSets.size,
        entries: count(this.desiredSets, (s) => s.members.size),
      },
      applied: this.view
        ? {
            chains: this.view.chains.size,
            rules: count(this.view.chains, (h) => h.length),
            ipsets: this.view.ipsets.size,
            entries: count(this.view.ipsets, (s) => s.members.size),
          }
        : null,
      dirty: { chains: [...this.dirtyChains].slice(0, 50), ipsets: [...this.dirtySets].slice(0, 50) },
    };
  }

  /** Sets a chain's rules (null removes the chain); true when that changed what was wanted. */
  setChain(family: Family, table: Table, chain: string, lines: readonly string[] | null): boolean {
    const k = key(family, table, chain);
    const cur = this.desiredChains.get(k);
    if (lines === null) {
      if (!cur) return false;
      this.desiredChains.delete(k);
      this.dirtyChains.add(k);
      return true;
    }
    if (cur && cur.lines.length === lines.length && cur.lines.every((l, i) => l === lines[i])) return false;
    this.desiredChains.set(k, { lines: [...lines], hashes: lines.map((l, i) => ruleHash(chain, i, l)) });
    this.dirtyChains.add(k);
    return true;
  }

  /** The rules a chain is wanted with, or undefined when it is not wanted. */
  chainLines(family: Family, table: Table, chain: string): readonly string[] | undefined {
    return this.desiredChains.get(key(family, table, chain))?.lines;
  }

  chains(family: Family, table: Table): string[] {
    const prefix = `${family}|${table}|`;
    return [...this.desiredChains.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }

  /** Sets an ipset's members (null removes the set); returns the members it no longer wants. */
  setIpset(name: string, family: Family, members: Iterable<string> | null, type: IpsetType = 'hash:ip'): string[] {
    const cur = this.desiredSets.get(name);
    if (members === null) {
      if (this.desiredSets.delete(name)) this.dirtySets.add(name);
      return [];
    }
    const next = new Set(members);
    const same = cur && cur.family === family && cur.type === type && cur.members.size === next.size;
    if (same && [...next].every((m) => cur.members.has(m))) return [];
    this.desiredSets.set(name, { family, type, members: next });
    this.dirtySets.add(name);
    const gone: string[] = [];
    if (cur) for (const m of cur.members) if (!next.has(m)) gone.push(m);
    return gone;
  }

  /** Adds or removes one member: the O(1) path of a membership change. */
  setIpsetMember(name: string, member: string, present: boolean): void {
    const cur = this.desiredSets.get(name);
    if (!cur) return;
    if (present === cur.members.has(member)) return;
    if (present) cur.members.add(member);
    else cur.members.delete(member);
    this.dirtySets.add(name);
  }

  /** Whether the kernel, as last read, has any of our hooks (undefined: not read yet). */
  hooked(): boolean | undefined {
    if (!this.view) return undefined;
    for (const n of this.view.hooks.values()) if (n > 0) return true;
    return false;
  }

  ipsetNames(): string[] {
    return [...this.desiredSets.keys()];
  }

  get pending(): boolean {
    return this.view === undefined || this.dirtyChains.size > 0 || this.dirtySets.size > 0;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Rereads the kernel; the next apply() compares everything against it. */
  resync(): Promise<void> {
    return this.serial(() => this.readKernel());
  }

  private async readKernel(): Promise<void> {
    const view: KernelView = { chains: new Map(), hooks: new Map(), ipsets: new Map() };
    const tables = ([4, 6] as const).flatMap((family) =>
      (['filter', 'raw'] as const).map((table) => ({ family, table })),
    );
    // The reads are independent: all at once.
    const [ipsets, ...saved] = await Promise.all([
      this.kernel.ipsetSave(),
      ...tables.map((t) => this.kernel.iptablesSave(t.family, t.table)),
    ]);
    tables.forEach((t, i) => {
      parseIptablesSave(saved[i] as string, t.family, t.table, view);
    });
    parseIpsetSave(ipsets, view);
    this.view = view;
    for (const k of new Set([...this.desiredChains.keys(), ...view.chains.keys()])) this.dirtyChains.add(k);
    for (const n of new Set([...this.desiredSets.keys(), ...view.ipsets.keys()])) this.dirtySets.add(n);
  }

  /** Writes what differs. On failure the kernel is reread before the next attempt. */
  apply(): Promise<ApplyStats> {
    return this.serial(() => this.applyNow());
  }

  /** The iptables-restore text that brings one table from the view to the desired chains, or null. */
  private planTable(view: KernelView, family: Family, table: Table): TablePlan | null {
    const prefix = `${family}|${table}|`;
    const declare: string[] = [];
    const rules: string[] = [];
    const remove: string[] = [];
    const written: [string, string[]][] = [];
    // Chains below the shared ones (a workload's, a dispatch branch's), with what they span.
    const spanned: { span: string; declare: string[]; rules: string[] }[] = [];
    let ruleCount = 0;
    for (const k of this.dirtyChains) {
      if (!k.startsWith(prefix)) continue;
      const chain = k.slice(prefix.length);
      const want = this.desiredChains.get(k);
      const have = view.chains.get(k);
      if (want) {
        if (have && have.length === want.hashes.length && have.every((h, i) => h === want.hashes[i])) continue;
        const span = chainSpan(chain);
        let to: { declare: string[]; rules: string[] } = { declare, rules };
        if (span !== null) {
          const w = { span, declare: [] as string[], rules: [] as string[] };
          spanned.push(w);
          to = w;
        }
        to.declare.push(`:${chain} - [0:0]`);
        want.lines.forEach((l, i) => {
          to.rules.push(`-A ${chain} -m comment --comment "cali:${want.hashes[i]}" ${l}`);
        });
        ruleCount += want.lines.length;
        written.push([k, want.hashes]);
      } else if (have) {
        declare.push(`:${chain} - [0:0]`);
        remove.push(chain);
      }
    }
    // Hooks from the kernel's chains into ours: exactly one each, first in the chain.
    const hookLines: string[] = [];
    const hooks: [string, number][] = [];
    for (const h of HOOKS) {
      if (h.table !== table) continue;
      const hk = `${key(family, table, h.builtin)}|${h.chain}`;
      const count = view.hooks.get(hk) ?? 0;
      const wanted =
        (h.families as readonly number[]).includes(family) && this.desiredChains.has(key(family, table, h.chain));
      if (wanted && count === 0)
        hookLines.push(`-I ${h.builtin} 1 -m comment --comment "${HOOK_COMMENT}" -j ${h.chain}`);
      for (let i = wanted ? 1 : 0; i < count; i++)
        hookLines.push(`-D ${h.builtin} -m comment --comment "${HOOK_COMMENT}" -j ${h.chain}`);
      hooks.push([hk, wanted ? 1 : 0]);
    }
    if (!declare.length && !hookLines.length && spanned.length === 0) return null;
    const text = (d: string[], r: string[], tail: string[] = []) =>
      [`*${table}`, ...d, ...r, ...tail, 'COMMIT', ''].join('\n');
    const tail = [...hookLines, ...remove.map((c) => `-X ${c}`)];
    if (ruleCount < SPLIT_IPTABLES_RULES || spanned.length < 2) {
      // One transaction, as always for ordinary changes.
      for (const w of spanned) {
        declare.push(...w.declare);
        rules.push(...w.rules);
      }
      return { table, steps: [[text(declare, rules, tail)]], written, remove, hooks };
    }
    // A first sync of many workloads: iptables-restore spends its time translating rules, so a
    // few processes write side by side the chains between cuts through the interface suffixes (a
    // chain only jumps to chains inside its span), then one writes the chains whose span holds a
    // cut, the shared chains, the hooks and the removals.
    spanned.sort((a, b) => (a.span < b.span ? -1 : a.span > b.span ? 1 : 0));
    const parts = Math.min(IPTABLES_PARTS, Math.ceil(ruleCount / SPLIT_IPTABLES_RULES) + 1);
    const spannedRules = ruleCount - rules.length;
    const cuts: string[] = [];
    let sum = 0;
    for (const w of spanned) {
      sum += w.rules.length;
      if (cuts.length < parts - 1 && sum * parts >= spannedRules * (cuts.length + 1)) cuts.push(w.span);
    }
    const sides = Array.from({ length: cuts.length + 1 }, () => ({ declare: [] as string[], rules: [] as string[] }));
    for (const w of spanned) {
      const to = cuts.some((c) => c.startsWith(w.span))
        ? { declare, rules }
        : (sides[cuts.filter((c) => w.span > c).length] as (typeof sides)[0]);
      to.declare.push(...w.declare);
      to.rules.push(...w.rules);
    }
    const steps = [sides.filter((h) => h.declare.length > 0).map((h) => text(h.declare, h.rules))];
    if (declare.length || tail.length) steps.push([text(declare, rules, tail)]);
    return { table, steps, written, remove, hooks };
  }

  private async applyNow(): Promise<ApplyStats> {
    if (!this.view) await this.readKernel();
    const view = this.view!;
    const stats: ApplyStats = {
      kernelCalls: 0,
      chainsWritten: 0,
      chainsDeleted: 0,
      ipsetEntries: 0,
      ipsetsCreated: 0,
      ipsetsDestroyed: 0,
    };
    try {
      // 1. ipsets: creations and additions (and removals of members), before any rule uses them.
      const perSet: string[][] = [];
      const replaced = new Set<string>();
      let lineCount = 0;
      let entryLines = 0;
      const destroy: string[] = [];
      for (const name of this.dirtySets) {
        const want = this.desiredSets.get(name);
        const have = view.ipsets.get(name);
        if (!want) {
          if (have) destroy.push(name);
          continue;
        }
        if (have && (have.family !== want.family || have.type !== want.type)) {
          destroy.push(name);
          continue;
        }
        const setLines: string[] = [];
        const inet = want.family === 4 ? 'inet' : 'inet6';
        if (have && want.members.size > have.maxelem) {
          // Full: rebuilt whole in a bigger set that is swapped in (atomic), so every rule
          // naming it matches the old members until the instant it matches the new ones.
          const tmp = tempSetName(name);
          if (view.ipsets.has(tmp)) setLines.push(`destroy ${tmp}`);
          setLines.push(`create ${tmp} ${want.type} family ${inet} maxelem ${maxelemFor(want.members.size)}`);
          for (const m of want.members) setLines.push(`add ${tmp} ${m}`);
          setLines.push(`swap ${tmp} ${name}`, `destroy ${tmp}`);
          view.ipsets.delete(tmp);
          entryLines += want.members.size;
          replaced.add(name);
        } else {
          if (!have) {
            setLines.push(`create ${name} ${want.type} family ${inet} maxelem ${maxelemFor(want.members.size)}`);
            stats.ipsetsCreated++;
          }
          for (const m of want.members) if (!have?.members.has(m)) setLines.push(`add ${name} ${m}`);
          if (have) for (const m of have.members) if (!want.members.has(m)) setLines.push(`del ${name} ${m}`);
          entryLines += setLines.length - (have ? 0 : 1);
        }
        lineCount += setLines.length;
        if (setLines.length > 0) perSet.push(setLines);
      }
      const texts = ipsetParts(perSet, lineCount);
      // The iptables text is built while ipset works; it is written only once the sets exist.
      const setsWritten = texts.length ? Promise.allSettled(texts.map((t) => this.kernel.ipsetRestore(t))) : undefined;
      const plans = ([4, 6] as const).map((family) =>
        (['filter', 'raw'] as const).flatMap((table) => this.planTable(view, family, table) ?? []),
      );
      if (setsWritten) {
        const results = await setsWritten;
        stats.kernelCalls += texts.length;
        for (const r of results) if (r.status === 'rejected') throw r.reason;
        stats.ipsetEntries += entryLines;
      }
      for (const name of this.dirtySets) {
        const want = this.desiredSets.get(name);
        const have = view.ipsets.get(name);
        if (want && !(have && (have.family !== want.family || have.type !== want.type))) {
          const maxelem = !have || replaced.has(name) ? maxelemFor(want.members.size) : have.maxelem;
          view.ipsets.set(name, { family: want.family, type: want.type, members: new Set(want.members), maxelem });
        }
      }

      // 2. iptables: one restore per family that has changes (a transaction per table in it); the
      // two families side by side, as they are separate tables.
      const writeFamily = async (family: Family): Promise<void> => {
        const familyPlans = plans[family === 4 ? 0 : 1] as TablePlan[];
        // A table written in one transaction joins the previous table's last restore (one
        // iptables-restore takes several tables): a process less, each costing the agent a fork.
        const steps: string[][] = [];
        for (const plan of familyPlans) {
          const last = steps[steps.length - 1];
          const only = plan.steps.length === 1 && plan.steps[0]?.length === 1 ? plan.steps[0][0] : undefined;
          if (only !== undefined && last?.length === 1) last[0] += only;
          else steps.push(...plan.steps.map((step) => [...step]));
        }
        for (const step of steps) {
          const results = await Promise.allSettled(step.map((t) => this.kernel.iptablesRestore(family, t)));
          stats.kernelCalls += step.length;
          for (const r of results) if (r.status === 'rejected') throw r.reason;
        }
        for (const plan of familyPlans) {
          stats.chainsWritten += plan.written.length;
          stats.chainsDeleted += plan.remove.length;
          for (const [k, hashes] of plan.written) view.chains.set(k, [...hashes]);
          for (const c of plan.remove) view.chains.delete(key(family, plan.table, c));
          for (const [hk, n] of plan.hooks) view.hooks.set(hk, n);
        }
      };
      const results = await Promise.allSettled([writeFamily(4), writeFamily(6)]);
      for (const r of results) if (r.status === 'rejected') throw r.reason;

      // 3. ipsets no rule refers to any more.
      if (destroy.length) {
        await this.kernel.ipsetRestore(`${destroy.map((n) => `destroy ${n}`).join('\n')}\n`);
        stats.kernelCalls++;
        stats.ipsetsDestroyed += destroy.length;
        for (const n of destroy) view.ipsets.delete(n);
        // A set destroyed for a family change is created on the next pass.
        for (const n of destroy) if (this.desiredSets.has(n)) this.dirtySets.add(n);
      }
      for (const n of [...this.dirtySets])
        if (!destroy.includes(n) || !this.desiredSets.has(n)) this.dirtySets.delete(n);
      this.dirtyChains.clear();
      return stats;
    } catch (e) {
      // What the kernel holds is now uncertain: read it again before the next attempt.
      this.view = undefined;
      this.logger.warn({ err: String(e) }, 'dataplane apply failed; rereading the kernel and retrying');
      throw e;
    }
  }
}
