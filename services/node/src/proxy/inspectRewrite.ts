import { parse, stringify } from 'lossless-json';
import { workloadLabels, type WorkloadLabels } from '../workloads.js';
import type { JsonObject } from '../workload/createRequest.js';

/** Where each member's value of one JSON object sits in the text: [start, end). */
export type MemberRanges = Map<string, [number, number]>;

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** The end of the string that opens at `i` (just past its closing quote), or -1. */
function stringEnd(text: string, i: number): number {
  let j = i + 1;
  for (;;) {
    const q = text.indexOf('"', j);
    if (q < 0) return -1;
    let bs = 0;
    while (text.charCodeAt(q - 1 - bs) === 0x5c /* \ */) bs++;
    if (bs % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/** Text without brackets outside strings; strings whole (the unrolled form: linear, no backtracking). */
const SKIP = /(?:[^"{}[\]]+|"[^"\\]*(?:\\.[^"\\]*)*")*/y;

/** The end of the value that starts at `i`, or -1; it trusts the text to be JSON (it is checked later). */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 0x22 /* " */) return stringEnd(text, i);
  if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
    let depth = 0;
    let j = i;
    while (j < text.length) {
      const d = text.charCodeAt(j);
      if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d /* } */ || d === 0x5d /* ] */) {
        if (--depth === 0) return j + 1;
      } else {
        // Everything up to the next bracket outside a string, in one native step.
        SKIP.lastIndex = j;
        SKIP.exec(text);
        if (SKIP.lastIndex === j) return -1;
        j = SKIP.lastIndex;
        continue;
      }
      j++;
    }
    return -1;
  }
  let j = i;
  while (j < text.length) {
    const d = text.charCodeAt(j);
    if (d === 0x2c /* , */ || d === 0x7d || d === 0x5d || isWs(d)) break;
    j++;
  }
  return j > i ? j : -1;
}

/**
 * The members of the object that starts at `from` (after whitespace), by key, without building
 * the object: strings are skipped whole, nested values by depth. A key sent twice is the last
 * one, as JSON.parse and dockerd's clients take it. Undefined when the text is not such an object.
 */
export function objectMembers(text: string, from = 0): MemberRanges | undefined {
  let i = from;
  const ws = () => {
    while (i < text.length && isWs(text.charCodeAt(i))) i++;
  };
  ws();
  if (text.charCodeAt(i) !== 0x7b) return undefined;
  i++;
  const out: MemberRanges = new Map();
  ws();
  if (text.charCodeAt(i) === 0x7d) return out;
  for (;;) {
    ws();
    if (text.charCodeAt(i) !== 0x22) return undefined;
    const keyEnd = stringEnd(text, i);
    if (keyEnd < 0) return undefined;
    const raw = text.slice(i + 1, keyEnd - 1);
    let key: string;
    try {
      key = raw.includes('\\') ? (JSON.parse(text.slice(i, keyEnd)) as string) : raw;
    } catch {
      return undefined;
    }
    i = keyEnd;
    ws();
    if (text.charCodeAt(i) !== 0x3a /* : */) return undefined;
    i++;
    ws();
    const end = valueEnd(text, i);
    if (end < 0) return undefined;
    out.set(key, [i, end]);
    i = end;
    ws();
    const c = text.charCodeAt(i);
    i++;
    if (c === 0x7d) return out;
    if (c !== 0x2c) return undefined;
  }
}

/** Native JSON is much faster; the lossless parser only where an integer could lose precision. */
function parseExact(text: string): { value: unknown; lossless: boolean } {
  const lossless = /[0-9]{16}/.test(text);
  return { value: lossless ? parse(text) : JSON.parse(text), lossless };
}

const isObject = (v: unknown): v is JsonObject => !!v && typeof v === 'object' && !Array.isArray(v);

/** The network settings of a workload as orchestrators look for them (`--net none` leaves them empty). */
export function withWorkloadAddress(ns: JsonObject, w: WorkloadLabels): JsonObject {
  const out = { ...ns };
  const v4 = w.addrs.find((a) => !a.includes(':'));
  const v6 = w.addrs.find((a) => a.includes(':'));
  if (v4) Object.assign(out, { IPAddress: v4, IPPrefixLen: 32 });
  if (v6) Object.assign(out, { GlobalIPv6Address: v6, GlobalIPv6PrefixLen: 128 });
  out.MacAddress = w.mac;
  return out;
}

/**
 * dockerd's inspect of a container, with its network settings filled in when it is one of this
 * host's workloads (by its labels); undefined when it is not, or the answer is not JSON.
 * Only Config.Labels and NetworkSettings are parsed; the rest of dockerd's bytes go as they came.
 */
export function rewriteInspect(text: string, host: string): string | undefined {
  try {
    const top = objectMembers(text);
    const config = top?.get('Config');
    const nsRange = top?.get('NetworkSettings');
    if (!top || !config || !nsRange) return rewriteWhole(text, host);
    const labelsRange = objectMembers(text, config[0])?.get('Labels');
    if (!labelsRange) return undefined;
    const labels = JSON.parse(text.slice(...labelsRange)) as unknown;
    const w = workloadLabels(isObject(labels) ? (labels as Record<string, string>) : undefined, host);
    if (!w) return undefined;
    const ns = parseExact(text.slice(...nsRange));
    if (ns.value !== null && !isObject(ns.value)) return undefined;
    const filled = withWorkloadAddress((ns.value ?? {}) as JsonObject, w);
    const out = ns.lossless ? stringify(filled) : JSON.stringify(filled);
    return text.slice(0, nsRange[0]) + out + text.slice(nsRange[1]);
  } catch {
    return undefined;
  }
}

/** The same, read whole: for an answer without the members where dockerd always puts them. */
function rewriteWhole(text: string, host: string): string | undefined {
  const { value, lossless } = parseExact(text);
  if (!isObject(value)) return undefined;
  const labels = (isObject(value.Config) ? value.Config.Labels : undefined) as Record<string, string> | undefined;
  const w = workloadLabels(isObject(labels) ? labels : undefined, host);
  if (!w) return undefined;
  const ns = isObject(value.NetworkSettings) ? value.NetworkSettings : {};
  const doc = { ...value, NetworkSettings: withWorkloadAddress(ns, w) };
  return (lossless ? stringify(doc) : JSON.stringify(doc)) ?? undefined;
}
