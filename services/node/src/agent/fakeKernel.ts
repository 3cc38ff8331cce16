/**
 * An in-memory kernel for unit tests of the dataplane and the agent: it reads the same
 * iptables-restore and ipset restore text the real tools read, refuses what the real kernel
 * refuses (a rule naming a missing ipset, a set destroyed while a rule uses it, a chain deleted
 * while something jumps to it, an address of the wrong family), and answers iptables-save and
 * ipset save in their real formats. Tests can count calls, read the texts, inject failures and
 * tamper with the state the way another program on the host would.
 */
import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { Family, KernelBackend, Table } from './kernel.js';

export type FakeCallKind = 'iptablesRestore' | 'ipsetRestore' | 'iptablesSave' | 'ipsetSave';

export interface FakeCalls {
  iptablesRestore: number;
  ipsetRestore: number;
  /** iptables-save and ipset save together. */
  saves: number;
}

export interface ReceivedText {
  kind: 'iptablesRestore' | 'ipsetRestore';
  /** The iptables family; null for ipset. */
  family: Family | null;
  text: string;
  /** False when the fake refused it (injected failure or invalid input). */
  ok: boolean;
}

interface FakeRule {
  /** The rule as iptables-save prints it after "-A <chain> ". */
  spec: string;
  /** Target chain of -j / -g, or a standard target. */
  target: string | null;
  sets: string[];
}

interface FakeChain {
  builtin: boolean;
  policy: string | null;
  rules: FakeRule[];
}

type FakeTable = Map<string, FakeChain>;

interface FakeSet {
  family: Family;
  type: FakeSetType;
  members: Set<string>;
  maxelem: number;
}

/** hash:ip holds addresses; hash:ip,port holds "addr,proto:port" and is matched with two flags (dst,dst). */
type FakeSetType = 'hash:ip' | 'hash:ip,port';
const SET_DIMENSIONS: Record<FakeSetType, number> = { 'hash:ip': 1, 'hash:ip,port': 2 };
const SET_PORT_PROTOCOLS = new Set(['tcp', 'udp', 'sctp', 'udplite']);

const BUILTINS: Record<Table, readonly string[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  raw: ['PREROUTING', 'OUTPUT'],
};

const STANDARD_TARGETS = new Set(['ACCEPT', 'DROP', 'RETURN', 'REJECT', 'LOG', 'MARK', 'CT', 'NOTRACK']);
const PROTOCOLS = new Set([
  'all',
  'tcp',
  'udp',
  'udplite',
  'sctp',
  'dccp',
  'icmp',
  'ipv6-icmp',
  'icmpv6',
  'gre',
  'esp',
  'ah',
]);
const PORT_MATCHES: Record<string, readonly string[]> = {
  tcp: ['tcp'],
  udp: ['udp'],
  sctp: ['sctp'],
  multiport: ['tcp', 'udp', 'udplite', 'sctp', 'dccp'],
};
/** Matches that exist only for one family (iptables answers "Couldn't load match"). */
const FAMILY_MATCHES: Record<string, Family> = { icmp: 4, icmp6: 6 };
/** iptables-save prints these first, in this order, whatever order they were given in. */
const LEADING = ['-s', '-d', '-i', '-o', '-p'] as const;

class FakeKernelError extends Error {
  override name = 'FakeKernelError';
}

/** Splits a rule into words; double quotes group words and are removed. */
function words(text: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

function quote(word: string, after: string | undefined): string {
  return after === '--comment' || /\s/.test(word) || word === '' ? `"${word.replace(/(["\\])/g, '\\$1')}"` : word;
}

function hostPrefix(addr: string, family: Family): string {
  return addr.includes('/') ? addr : `${addr}/${family === 4 ? 32 : 128}`;
}

function addrFamily(addr: string): Family | null {
  const a = addr.split('/')[0] ?? '';
  return isIPv4(a) ? 4 : isIPv6(a) ? 6 : null;
}

function cloneTables(t: Record<Family, Record<Table, FakeTable>>): Record<Family, Record<Table, FakeTable>> {
  const copy = (table: FakeTable): FakeTable =>
    new Map(
      [...table].map(([n, c]) => [
        n,
        { builtin: c.builtin, policy: c.policy, rules: c.rules.map((r) => ({ ...r, sets: [...r.sets] })) },
      ]),
    );
  return {
    4: { filter: copy(t[4].filter), raw: copy(t[4].raw) },
    6: { filter: copy(t[6].filter), raw: copy(t[6].raw) },
  };
}

function emptyTable(table: Table): FakeTable {
  return new Map(BUILTINS[table].map((n) => [n, { builtin: true, policy: 'ACCEPT', rules: [] }]));
}

export class FakeKernel implements KernelBackend {
  private tables: Record<Family, Record<Table, FakeTable>> = {
    4: { filter: emptyTable('filter'), raw: emptyTable('raw') },
    6: { filter: emptyTable('filter'), raw: emptyTable('raw') },
  };
  private readonly sets = new Map<string, FakeSet>();
  private readonly failures: Record<FakeCallKind, { skip: number; n: number; afterLines: number }> = {
    iptablesRestore: { skip: 0, n: 0, afterLines: 0 },
    ipsetRestore: { skip: 0, n: 0, afterLines: 0 },
    iptablesSave: { skip: 0, n: 0, afterLines: 0 },
    ipsetSave: { skip: 0, n: 0, afterLines: 0 },
  };
  private readonly holds = new Map<FakeCallKind, Promise<void>>();
  private readonly holdWaiters = new Map<FakeCallKind, (() => void)[]>();
  private readonly waitingNow = new Set<FakeCallKind>();

  readonly calls: FakeCalls = { iptablesRestore: 0, ipsetRestore: 0, saves: 0 };
  /** Each injected failure that fired, in order: a test can show its fault was hit. */
  readonly injected: FakeCallKind[] = [];
  /** Each call that waited on a hold, in order. */
  readonly held: FakeCallKind[] = [];
  /** Every restore text, in the order received. */
  readonly received: ReceivedText[] = [];
  /** Addresses passed to conntrackFlush, in order. */
  readonly conntrackFlushed: string[] = [];

  // ------------------------------------------------------------------ test controls

  /**
   * The next n calls of a kind fail, after `skip` calls that succeed. For ipsetRestore,
   * afterLines lines are applied first, as the real `ipset restore` applies lines until the
   * first one it refuses.
   */
  failNext(kind: FakeCallKind, n = 1, opts: { skip?: number; afterLines?: number } = {}): void {
    this.failures[kind] = { skip: opts.skip ?? 0, n, afterLines: opts.afterLines ?? 0 };
  }

  /** Calls of a kind wait until the returned function is called (to interleave operations). */
  hold(kind: FakeCallKind): () => void {
    let release!: () => void;
    this.holds.set(kind, new Promise<void>((r) => (release = r)));
    return () => {
      this.holds.delete(kind);
      release();
    };
  }

  /** Resolves once a call of this kind waits on its hold (at once if one already does). */
  waiting(kind: FakeCallKind): Promise<void> {
    if (!this.holds.has(kind)) return Promise.reject(new FakeKernelError(`${kind} is not held`));
    if (this.waitingNow.has(kind)) return Promise.resolve();
    return new Promise((r) => this.holdWaiters.set(kind, [...(this.holdWaiters.get(kind) ?? []), r]));
  }

  resetCalls(): void {
    this.calls.iptablesRestore = 0;
    this.calls.ipsetRestore = 0;
    this.calls.saves = 0;
    this.received.length = 0;
    this.conntrackFlushed.length = 0;
    this.injected.length = 0;
    this.held.length = 0;
  }

  /** Restore texts of one kind (and family), oldest first. */
  texts(kind: ReceivedText['kind'], family?: Family): string[] {
    return this.received
      .filter((r) => r.kind === kind && (family === undefined || r.family === family))
      .map((r) => r.text);
  }

  /** Deletes a rule by its 0-based position, bypassing every check (another program did it). */
  deleteRule(family: Family, table: Table, chain: string, index: number): void {
    const c = this.chainOf(this.tables, family, table, chain);
    if (index < 0 || index >= c.rules.length) throw new FakeKernelError(`${chain} has no rule at index ${index}`);
    c.rules.splice(index, 1);
  }

  /** Adds a rule written by someone else: appended, or inserted at a 1-based position. */
  addForeignRule(family: Family, table: Table, chain: string, spec: string, position?: number): void {
    const c = this.chainOf(this.tables, family, table, chain);
    const rule = this.parseRule(this.tables, family, table, words(spec));
    if (position === undefined) c.rules.push(rule);
    else c.rules.splice(position - 1, 0, rule);
  }

  /** Creates a chain of someone else's (or a leftover of ours), empty. */
  addForeignChain(family: Family, table: Table, chain: string): void {
    this.tables[family][table].set(chain, { builtin: false, policy: null, rules: [] });
  }

  /** Removes a set whatever refers to it (only a test can do that). */
  deleteSet(name: string): void {
    this.sets.delete(name);
  }

  deleteSetMember(name: string, member: string): void {
    this.sets.get(name)?.members.delete(member);
  }

  addSetMember(name: string, member: string): void {
    this.sets.get(name)?.members.add(member);
  }

  // ------------------------------------------------------------------ inspection

  /** Rules of a chain as iptables-save prints them after "-A <chain> "; undefined if no such chain. */
  rules(family: Family, table: Table, chain: string): string[] | undefined {
    return this.tables[family][table].get(chain)?.rules.map((r) => r.spec);
  }

  /** The policy of a built-in chain. */
  chainPolicy(family: Family, table: Table, chain: string): 'ACCEPT' | 'DROP' {
    const c = this.chainOf(this.tables, family, table, chain);
    if (!c.builtin) throw new FakeKernelError(`${chain} is not a built-in chain: it has no policy`);
    return c.policy === 'DROP' ? 'DROP' : 'ACCEPT';
  }

  chainNames(family: Family, table: Table): string[] {
    return [...this.tables[family][table].keys()];
  }

  setMembers(name: string): string[] | undefined {
    const s = this.sets.get(name);
    return s && [...s.members].sort();
  }

  setNames(): string[] {
    return [...this.sets.keys()].sort();
  }

  /** Every table of both families and every set, as one text: equal kernels give equal text. */
  dump(): string {
    const parts: string[] = [];
    for (const family of [4, 6] as const)
      for (const table of ['filter', 'raw'] as const) parts.push(`# IPv${family}\n${this.saveTable(family, table)}`);
    parts.push(this.saveSets());
    return parts.join('');
  }

  // ------------------------------------------------------------------ KernelBackend

  async iptablesSave(family: Family, table: Table): Promise<string> {
    await this.enter('iptablesSave');
    this.calls.saves++;
    this.maybeFail('iptablesSave');
    return this.saveTable(family, table);
  }

  async ipsetSave(): Promise<string> {
    await this.enter('ipsetSave');
    this.calls.saves++;
    this.maybeFail('ipsetSave');
    return this.saveSets();
  }

  async iptablesRestore(family: Family, text: string): Promise<void> {
    await this.enter('iptablesRestore');
    this.calls.iptablesRestore++;
    const record: ReceivedText = { kind: 'iptablesRestore', family, text, ok: false };
    this.received.push(record);
    this.maybeFail('iptablesRestore');
    // iptables-restore is all or nothing: work on a copy, keep it only if every line went in.
    const work = cloneTables(this.tables);
    let table: Table | null = null;
    const lines = text.split('\n');
    lines.forEach((raw, i) => {
      const line = raw.trim();
      const where = `line ${i + 1}`;
      if (line === '' || line.startsWith('#')) return;
      if (line.startsWith('*')) {
        if (table !== null)
          throw new FakeKernelError(`iptables-restore: ${where}: table ${line} opened before COMMIT of ${table}`);
        const t = line.slice(1);
        if (t !== 'filter' && t !== 'raw') throw new FakeKernelError(`iptables-restore: ${where}: unknown table ${t}`);
        table = t;
        return;
      }
      if (table === null) throw new FakeKernelError(`iptables-restore: ${where}: "${line}" outside a table`);
      if (line === 'COMMIT') {
        table = null;
        return;
      }
      this.restoreLine(work, family, table, line, where);
    });
    if (table !== null)
      throw new FakeKernelError(`iptables-restore: COMMIT expected at the end of table ${String(table)}`);
    this.tables = work;
    record.ok = true;
  }

  async ipsetRestore(text: string): Promise<void> {
    await this.enter('ipsetRestore');
    this.calls.ipsetRestore++;
    const record: ReceivedText = { kind: 'ipsetRestore', family: null, text, ok: false };
    this.received.push(record);
    const failAfter = this.failing('ipsetRestore') ? this.failures.ipsetRestore.afterLines : Infinity;
    // Like the real tool (run with -exist): line by line, stopping at the first refused line.
    let applied = 0;
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '') return;
      if (applied >= failAfter) throw new FakeKernelError(`ipset restore: injected failure at line ${i + 1}`);
      this.ipsetLine(line, `line ${i + 1}`);
      applied++;
    });
    if (failAfter !== Infinity) throw new FakeKernelError('ipset restore: injected failure at the end');
    record.ok = true;
  }

  async conntrackFlush(addrs: readonly string[]): Promise<void> {
    this.conntrackFlushed.push(...addrs);
  }

  // ------------------------------------------------------------------ internals

  private async enter(kind: FakeCallKind): Promise<void> {
    const hold = this.holds.get(kind);
    if (!hold) return;
    this.held.push(kind);
    this.waitingNow.add(kind);
    for (const w of this.holdWaiters.get(kind) ?? []) w();
    this.holdWaiters.delete(kind);
    await hold;
    this.waitingNow.delete(kind);
  }

  /** Whether this call is one of the injected failures (and counts it). */
  private failing(kind: FakeCallKind): boolean {
    const f = this.failures[kind];
    if (f.n === 0) return false;
    if (f.skip > 0) {
      f.skip--;
      return false;
    }
    f.n--;
    this.injected.push(kind);
    return true;
  }

  private maybeFail(kind: FakeCallKind): void {
    if (this.failing(kind)) throw new FakeKernelError(`${kind}: injected failure`);
  }

  private chainOf(
    tables: Record<Family, Record<Table, FakeTable>>,
    family: Family,
    table: Table,
    chain: string,
  ): FakeChain {
    const c = tables[family][table].get(chain);
    if (!c) throw new FakeKernelError(`chain ${chain} does not exist in ${table} (IPv${family})`);
    return c;
  }

  private restoreLine(
    work: Record<Family, Record<Table, FakeTable>>,
    family: Family,
    table: Table,
    line: string,
    where: string,
  ): void {
    const t = work[family][table];
    const fail = (msg: string): never => {
      throw new FakeKernelError(`iptables-restore: ${where}: ${msg}: ${line}`);
    };
    if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (!name) return fail('chain name missing');
      if (name.length > 28) return fail(`chain name ${name} longer than 28 characters`);
      const existing = t.get(name);
      if (existing?.builtin) {
        if (policy !== 'ACCEPT' && policy !== 'DROP') fail(`bad policy ${String(policy)}`);
        existing.policy = policy ?? 'ACCEPT';
      } else if (existing) {
        // --noflush: declaring a chain that exists empties it.
        existing.rules = [];
      } else {
        if (policy !== '-') fail('a user chain takes "-" as its policy');
        t.set(name, { builtin: false, policy: null, rules: [] });
      }
      return;
    }
    const w = words(line);
    const [cmd, chain] = w;
    if (!chain) return fail('chain missing');
    const c = t.get(chain) ?? fail(`chain ${chain} does not exist`);
    switch (cmd) {
      case '-A':
        c.rules.push(this.parseRule(work, family, table, w.slice(2), fail));
        return;
      case '-I': {
        const pos = /^[0-9]+$/.test(w[2] ?? '') ? Number(w[2]) : null;
        const rest = pos === null ? w.slice(2) : w.slice(3);
        const at = pos ?? 1;
        if (at < 1 || at > c.rules.length + 1) fail(`index ${at} out of range`);
        c.rules.splice(at - 1, 0, this.parseRule(work, family, table, rest, fail));
        return;
      }
      case '-D': {
        if (w.length === 3 && /^[0-9]+$/.test(w[2]!)) {
          const at = Number(w[2]);
          if (at < 1 || at > c.rules.length) fail(`index ${at} out of range`);
          c.rules.splice(at - 1, 1);
          return;
        }
        const spec = this.parseRule(work, family, table, w.slice(2), fail).spec;
        const i = c.rules.findIndex((r) => r.spec === spec);
        if (i < 0) fail('Bad rule (does a matching rule exist in that chain?)');
        c.rules.splice(i, 1);
        return;
      }
      case '-F':
        c.rules = [];
        return;
      case '-X': {
        if (c.builtin) fail(`cannot delete built-in chain ${chain}`);
        if (c.rules.length > 0) fail(`chain ${chain} is not empty`);
        for (const [other, oc] of t) {
          if (oc.rules.some((r) => r.target === chain)) fail(`chain ${chain} is still referenced from ${other}`);
        }
        t.delete(chain);
        return;
      }
      default:
        fail(`unknown command ${String(cmd)}`);
    }
  }

  /** Checks a rule the way iptables and the kernel would, and spells it the way iptables-save does. */
  private parseRule(
    work: Record<Family, Record<Table, FakeTable>>,
    family: Family,
    table: Table,
    w: readonly string[],
    fail: (msg: string) => never = (msg) => {
      throw new FakeKernelError(msg);
    },
  ): FakeRule {
    const leading = new Map<string, { neg: boolean; value: string }>();
    const rest: string[] = [];
    for (let i = 0; i < w.length; i++) {
      const neg = w[i] === '!' && (LEADING as readonly string[]).includes(w[i + 1] ?? '');
      const opt = neg ? w[i + 1]! : w[i]!;
      if ((LEADING as readonly string[]).includes(opt)) {
        const value = w[i + (neg ? 2 : 1)];
        if (value === undefined) fail(`${opt} needs a value`);
        if (leading.has(opt)) fail(`${opt} given twice`);
        leading.set(opt, { neg, value: value! });
        i += neg ? 2 : 1;
      } else rest.push(w[i]!);
    }
    for (const opt of ['-s', '-d'] as const) {
      const v = leading.get(opt);
      if (!v) continue;
      const fam = addrFamily(v.value);
      if (fam !== family) fail(`host/network ${v.value} is not an IPv${family} address`);
      v.value = hostPrefix(v.value, family);
    }
    for (const opt of ['-i', '-o'] as const) {
      const v = leading.get(opt);
      if (v && v.value.length > 15) fail(`interface name ${v.value} longer than 15 characters`);
    }
    const proto = leading.get('-p')?.value;
    if (proto !== undefined && !PROTOCOLS.has(proto) && !/^[0-9]{1,3}$/.test(proto)) fail(`unknown protocol ${proto}`);

    let target: string | null = null;
    const sets: string[] = [];
    for (let i = 0; i < rest.length; i++) {
      const word = rest[i]!;
      const next = rest[i + 1];
      if (word === '-m') {
        if (next === undefined) fail('-m needs a match name');
        const only = FAMILY_MATCHES[next!];
        if (only !== undefined && only !== family) fail(`Couldn't load match \`${next!}' in IPv${family}`);
        const protos = PORT_MATCHES[next!];
        if (protos && (proto === undefined || !protos.includes(proto)))
          fail(`match ${next!} needs -p ${protos.join('|')}`);
        if (next === 'icmp6' && proto !== 'ipv6-icmp' && proto !== 'icmpv6') fail('match icmp6 needs -p ipv6-icmp');
      } else if (word === '--match-set') {
        if (next === undefined) fail('--match-set needs a set name');
        const set = this.sets.get(next!);
        if (!set) fail(`Set ${next!} doesn't exist`);
        if (set!.family !== family) fail(`the protocol family of set ${next!} is incompatible with IPv${family}`);
        const flags = (rest[i + 2] ?? '').split(',');
        if (!flags.every((f) => f === 'src' || f === 'dst')) fail(`--match-set ${next!} needs src/dst flags`);
        // The kernel takes fewer flags than the set has dimensions; the fake wants them all, as the agent writes them.
        const dims = SET_DIMENSIONS[set!.type];
        if (flags.length !== dims) fail(`set ${next!} is ${set!.type}: ${dims} flag(s), not ${flags.length}`);
        sets.push(next!);
      } else if (word === '--comment') {
        if ((next ?? '').length > 256) fail('comment longer than 256 characters');
      } else if (word === '-j' || word === '-g') {
        if (next === undefined) fail(`${word} needs a target`);
        const chain = work[family][table].get(next!);
        if (word === '-g' && (!chain || chain.builtin)) fail(`goto needs a user chain, not ${next!}`);
        if (!STANDARD_TARGETS.has(next!) && (!chain || chain.builtin)) fail(`Couldn't load target \`${next!}'`);
        target = next!;
      }
    }
    const head: string[] = [];
    for (const opt of LEADING) {
      const v = leading.get(opt);
      if (v) head.push(...(v.neg ? ['!'] : []), opt, v.value);
    }
    const all = [...head, ...rest];
    const spec = all.map((word, i) => quote(word, all[i - 1])).join(' ');
    return { spec, target, sets };
  }

  private ipsetLine(line: string, where: string): void {
    const w = line.split(/\s+/);
    const [cmd, name] = w;
    const fail = (msg: string): never => {
      throw new FakeKernelError(`ipset restore: ${where}: ${msg}: ${line}`);
    };
    if (!name) return fail('set name missing');
    const set = this.sets.get(name);
    switch (cmd) {
      case 'create': {
        if (name.length > 31) fail(`set name ${name} longer than 31 characters`);
        if (w[2] !== 'hash:ip' && w[2] !== 'hash:ip,port')
          fail(`only hash:ip(,port) sets are faked, not ${String(w[2])}`);
        const type = w[2] as FakeSetType;
        const fi = w.indexOf('family');
        const fam = fi < 0 ? 'inet' : w[fi + 1];
        if (fam !== 'inet' && fam !== 'inet6') fail(`unknown family ${String(fam)}`);
        const family: Family = fam === 'inet6' ? 6 : 4;
        const mi = w.indexOf('maxelem');
        const maxelem = mi < 0 ? 65_536 : Number(w[mi + 1]);
        if (!Number.isInteger(maxelem) || maxelem < 1) fail(`bad maxelem ${String(w[mi + 1])}`);
        if (set) {
          // -exist: creating the very same set again is fine; a different one is not.
          const same = set.family === family && set.type === type && set.maxelem === maxelem;
          if (!same) fail(`set ${name} already exists with a different family, type or size`);
          return;
        }
        this.sets.set(name, { family, type, members: new Set(), maxelem });
        return;
      }
      case 'swap': {
        const other = w[2] ? this.sets.get(w[2]) : undefined;
        if (!set || !other) return fail('both sets of a swap must exist');
        if (set.family !== other.family || set.type !== other.type) fail('swap of sets of different families or types');
        this.sets.set(name, other);
        this.sets.set(w[2]!, set);
        return;
      }
      case 'add':
      case 'del': {
        if (!set) return fail(`the set ${name} does not exist`);
        const member = w[2];
        let addr = member;
        if (set.type === 'hash:ip,port') {
          const m = /^([^,]+),([a-z]+):([0-9]{1,5})$/.exec(member ?? '');
          const ok = m !== null && SET_PORT_PROTOCOLS.has(m[2]!) && Number(m[3]) <= 65535;
          if (!ok) return fail(`${String(member)} is not addr,proto:port`);
          addr = m[1];
        }
        if (addr === undefined || addrFamily(addr) !== set.family || addr.includes('/'))
          return fail(`${String(addr)} is not an IPv${set.family} address`);
        // -exist: adding a present member or deleting an absent one is fine.
        if (cmd === 'add' && !set.members.has(member!) && set.members.size >= set.maxelem)
          fail('Hash is full, cannot add more elements');
        if (cmd === 'add') set.members.add(member!);
        else set.members.delete(member!);
        return;
      }
      case 'flush':
        if (!set) return fail(`the set ${name} does not exist`);
        set.members.clear();
        return;
      case 'destroy': {
        if (!set) return fail(`the set ${name} does not exist`);
        for (const family of [4, 6] as const) {
          for (const table of ['filter', 'raw'] as const) {
            for (const [chain, c] of this.tables[family][table]) {
              if (c.rules.some((r) => r.sets.includes(name)))
                fail(`Set cannot be destroyed: it is in use by a kernel component (IPv${family} ${table} ${chain})`);
            }
          }
        }
        this.sets.delete(name);
        return;
      }
      default:
        fail(`unknown command ${String(cmd)}`);
    }
  }

  private saveTable(family: Family, table: Table): string {
    const t = this.tables[family][table];
    const tool = family === 4 ? 'iptables-save' : 'ip6tables-save';
    const builtins = BUILTINS[table].filter((n) => t.has(n));
    const users = [...t.keys()].filter((n) => !t.get(n)!.builtin).sort();
    const lines = [`# Generated by ${tool} v1.8.9 (nf_tables)`, `*${table}`];
    for (const n of builtins) lines.push(`:${n} ${t.get(n)!.policy ?? 'ACCEPT'} [0:0]`);
    for (const n of users) lines.push(`:${n} - [0:0]`);
    for (const n of [...builtins, ...users]) for (const r of t.get(n)!.rules) lines.push(`-A ${n} ${r.spec}`);
    lines.push('COMMIT', `# Completed by ${tool}`, '');
    return lines.join('\n');
  }

  private saveSets(): string {
    const lines: string[] = [];
    // Sorted by name (the real tool lists them in creation order), so equal kernels save equally.
    for (const name of [...this.sets.keys()].sort()) {
      const s = this.sets.get(name)!;
      const initval = createHash('sha256').update(name).digest('hex').slice(0, 8);
      lines.push(
        `create ${name} ${s.type} family ${s.family === 4 ? 'inet' : 'inet6'} hashsize 1024 maxelem ${s.maxelem} bucketsize 12 initval 0x${initval}`,
      );
      for (const m of [...s.members].sort()) lines.push(`add ${name} ${m}`);
    }
    return lines.length ? `${lines.join('\n')}\n` : '';
  }
}
