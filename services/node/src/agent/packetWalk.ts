/**
 * A packet's way through iptables chains and ipsets, for tests: it reads rules in the form
 * iptables-save prints them and follows jumps, gotos and returns the way the kernel does, so a
 * test can ask what a programmed kernel (a FakeKernel) does with one packet. It knows the
 * matches the agent writes and throws on any other, so nothing passes for lack of a reading.
 */
import { cidrContains } from '@calico/keyspace';

export interface WalkPacket {
  family: 4 | 6;
  src: string;
  dst: string;
  /** IP protocol number. */
  protocol: number;
  dport: number | null;
  sport: number | null;
  /** Interface the packet came in on, and the one routing sends it out of. */
  inIf: string;
  outIf: string;
  /** Source MAC of the frame it came in, lowercase. */
  srcMac: string | null;
  /** Whether the source is routed back out of inIf (the reverse-path check). */
  reversePathOk: boolean;
  /** The first packet of a connection is NEW; replies are ESTABLISHED. */
  ctState: 'NEW' | 'ESTABLISHED';
}

/** What a walk reads: rules of a chain (undefined: no such chain), policies, set members. */
export interface WalkTables {
  rules(family: 4 | 6, table: 'filter' | 'raw', chain: string): string[] | undefined;
  policy(family: 4 | 6, table: 'filter' | 'raw', chain: string): 'ACCEPT' | 'DROP';
  setHas(name: string, addr: string): boolean;
}

export interface WalkResult {
  accepted: boolean;
  /** "chain#index: rule" of every rule that matched, in order, then the verdict. */
  trace: string[];
}

const PROTOCOL_NUMBERS: Record<string, number> = {
  tcp: 6,
  udp: 17,
  icmp: 1,
  'ipv6-icmp': 58,
  icmpv6: 58,
  sctp: 132,
  udplite: 136,
  gre: 47,
};

/** The protocols whose ports a hash:ip,port set holds, by number. */
const PORT_PROTOCOL_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp', 132: 'sctp', 136: 'udplite' };

function words(spec: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(spec)) !== null) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

function ifMatches(pattern: string, name: string): boolean {
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function portIn(list: string, port: number | null): boolean {
  if (port === null) return false;
  return list.split(',').some((p) => {
    const [lo, hi] = p.split(':').map(Number) as [number, number | undefined];
    return hi === undefined ? port === lo : port >= lo && port <= hi;
  });
}

interface Parsed {
  matches: ((p: WalkPacket) => boolean)[];
  target: { kind: 'jump' | 'goto'; name: string } | null;
}

/** One rule's matches and target; throws on a word it does not know. */
function parse(spec: string, tables: WalkTables): Parsed {
  const w = words(spec);
  const matches: Parsed['matches'] = [];
  let target: Parsed['target'] = null;
  let module = '';
  for (let i = 0; i < w.length; i++) {
    const neg = w[i] === '!';
    if (neg) i++;
    const opt = w[i];
    const val = w[i + 1];
    const add = (m: (p: WalkPacket) => boolean) => matches.push(neg ? (p) => !m(p) : m);
    const need = (): string => {
      if (val === undefined) throw new Error(`packetWalk: ${opt} needs a value in "${spec}"`);
      i++;
      return val;
    };
    switch (opt) {
      case '-s': {
        const v = need();
        add((p) => cidrContains(v.includes('/') ? v : `${v}/${p.family === 4 ? 32 : 128}`, p.src));
        break;
      }
      case '-d': {
        const v = need();
        add((p) => cidrContains(v.includes('/') ? v : `${v}/${p.family === 4 ? 32 : 128}`, p.dst));
        break;
      }
      case '-i': {
        const v = need();
        add((p) => ifMatches(v, p.inIf));
        break;
      }
      case '-o': {
        const v = need();
        add((p) => ifMatches(v, p.outIf));
        break;
      }
      case '-p': {
        const v = need();
        const n = /^[0-9]+$/.test(v) ? Number(v) : PROTOCOL_NUMBERS[v];
        if (n === undefined) throw new Error(`packetWalk: unknown protocol ${v}`);
        add((p) => n === 0 || p.protocol === n);
        break;
      }
      case '-m':
        module = need();
        if (
          !['tcp', 'udp', 'sctp', 'multiport', 'set', 'mac', 'conntrack', 'comment', 'icmp6', 'rpfilter'].includes(
            module,
          )
        ) {
          throw new Error(`packetWalk: unknown match ${module} in "${spec}"`);
        }
        break;
      case '--dport':
      case '--dports': {
        const v = need();
        add((p) => portIn(v, p.dport));
        break;
      }
      case '--sport':
      case '--sports': {
        const v = need();
        add((p) => portIn(v, p.sport));
        break;
      }
      case '--match-set': {
        const name = need();
        const flags = (w[++i] ?? '').split(',');
        const [ipDir, portDir] = flags;
        if (flags.length > 2 || !flags.every((f) => f === 'src' || f === 'dst')) {
          throw new Error(`packetWalk: --match-set ${name} ${flags.join(',')}`);
        }
        // One flag: a hash:ip set. Two: hash:ip,port, whose members ipset spells "addr,tcp:port".
        add((p) => {
          const addr = ipDir === 'src' ? p.src : p.dst;
          if (portDir === undefined) return tables.setHas(name, addr);
          const proto = PORT_PROTOCOL_NAMES[p.protocol];
          const port = portDir === 'src' ? p.sport : p.dport;
          return proto !== undefined && port !== null && tables.setHas(name, `${addr},${proto}:${port}`);
        });
        break;
      }
      case '--mac-source': {
        const v = need().toLowerCase();
        add((p) => p.srcMac === v);
        break;
      }
      case '--ctstate': {
        const states = need().split(',');
        add((p) => states.includes(p.ctState));
        break;
      }
      case '--comment':
        need();
        break;
      case '--icmpv6-type': {
        // The walks here are of echo requests (type 128).
        const v = need();
        add(() => Number(v) === 128);
        break;
      }
      case '--invert':
        if (module !== 'rpfilter') throw new Error(`packetWalk: --invert outside rpfilter in "${spec}"`);
        matches.push((p) => !p.reversePathOk);
        break;
      case '-j':
      case '-g':
        target = { kind: opt === '-g' ? 'goto' : 'jump', name: need() };
        break;
      default:
        throw new Error(`packetWalk: unknown word ${String(opt)} in "${spec}"`);
    }
  }
  if (module === 'rpfilter' && !w.includes('--invert')) matches.push((p) => p.reversePathOk);
  return { matches, target };
}

/** Runs a packet through one built-in chain of one table; true when it comes out accepted. */
export function walkChain(
  tables: WalkTables,
  table: 'filter' | 'raw',
  builtin: string,
  packet: WalkPacket,
  trace: string[] = [],
): boolean {
  // Frames of [chain, next rule index]; a goto replaces the top frame, so RETURN skips it.
  const stack: [string, number][] = [[builtin, 0]];
  for (let steps = 0; steps < 10_000; steps++) {
    const frame = stack[stack.length - 1];
    if (frame === undefined) break;
    const [chain, at] = frame;
    const rules = tables.rules(packet.family, table, chain);
    if (rules === undefined)
      throw new Error(`packetWalk: chain ${chain} does not exist (IPv${packet.family} ${table})`);
    if (at >= rules.length) {
      if (stack.length === 1) {
        const policy = tables.policy(packet.family, table, chain);
        trace.push(`${table} ${chain}: policy ${policy}`);
        return policy === 'ACCEPT';
      }
      stack.pop();
      continue;
    }
    frame[1] = at + 1;
    const spec = rules[at]!;
    const rule = parse(spec, tables);
    if (!rule.matches.every((m) => m(packet))) continue;
    trace.push(`${table} ${chain}#${at + 1}: ${spec}`);
    const t = rule.target;
    if (t === null) continue;
    if (t.name === 'ACCEPT') return true;
    if (t.name === 'DROP' || t.name === 'REJECT') return false;
    if (t.name === 'RETURN') {
      if (stack.length === 1) return tables.policy(packet.family, table, chain) === 'ACCEPT';
      stack.pop();
      continue;
    }
    if (t.kind === 'goto') stack[stack.length - 1] = [t.name, 0];
    else stack.push([t.name, 0]);
  }
  throw new Error('packetWalk: no verdict after 10,000 steps (a loop?)');
}

/** A forwarded packet's way through one host: raw PREROUTING, then filter FORWARD. */
export function walkForward(tables: WalkTables, packet: WalkPacket): WalkResult {
  const trace: string[] = [];
  const accepted =
    walkChain(tables, 'raw', 'PREROUTING', packet, trace) && walkChain(tables, 'filter', 'FORWARD', packet, trace);
  trace.push(accepted ? 'accepted' : 'dropped');
  return { accepted, trace };
}
