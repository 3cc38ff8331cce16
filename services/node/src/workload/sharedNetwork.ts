import { LABELS } from './createRequest.js';

/**
 * The container whose network namespace a network mode joins: `container:<name or id>` as
 * dockerd's NetworkMode.IsContainer/ConnectedContainer read it (split at the first ":", the
 * word "container" exactly), else undefined.
 */
export function joinedContainer(mode: unknown): string | undefined {
  if (typeof mode !== 'string') return undefined;
  const i = mode.indexOf(':');
  return i > 0 && mode.slice(0, i) === 'container' ? mode.slice(i + 1) : undefined;
}

/** dockerd's answer to GET /containers/<ref>/json. */
export interface Inspected {
  status: number;
  doc?: { Id?: unknown; Config?: { Labels?: Record<string, string> | null }; HostConfig?: { NetworkMode?: unknown } };
}

export type JoinVerdict =
  /** No Calico workload's namespace is reached (or dockerd knows no such container yet). */
  | { ok: true }
  /** `chain` is each container passed on the way, by the name or id it was reached with. */
  | { ok: false; kind: 'calico'; chain: string[]; id: string }
  /** Joins nested deeper than any real setup: refused rather than followed further. */
  | { ok: false; kind: 'deep'; chain: string[] }
  /** dockerd failed to answer (not a 404): nothing can be said, the request is not sent on. */
  | { ok: false; kind: 'upstream'; status: number; ref: string };

/** Joins followed before giving up. */
const MAX_HOPS = 16;

/**
 * Whether joining the network of container `ref` puts a container into a Calico workload's
 * namespace. dockerd resolves `ref` when the joining container starts (full id, then name,
 * then id prefix: GetContainer, the same lookup as its inspect) and joins the namespace of
 * that container's process, which may itself have joined another's: the chain is followed.
 * A Calico workload is any container with our host label, whoever put it there.
 */
export async function joinsCalicoWorkload(
  inspect: (ref: string) => Promise<Inspected>,
  ref: string,
): Promise<JoinVerdict> {
  const chain: string[] = [];
  const seen = new Set<string>();
  let next: string | undefined = ref;
  while (next !== undefined) {
    // An empty reference is dockerd's own 400 ("invalid container format"); nothing to look up.
    if (next === '') return { ok: true };
    chain.push(next);
    const r = await inspect(next);
    if (r.status === 404) return { ok: true };
    if (r.status !== 200 || typeof r.doc?.Id !== 'string') {
      return { ok: false, kind: 'upstream', status: r.status, ref: next };
    }
    const id = r.doc.Id;
    if (r.doc.Config?.Labels?.[LABELS.host] !== undefined) return { ok: false, kind: 'calico', chain, id };
    // A cycle cannot run (dockerd refuses to join a container that is not running).
    if (seen.has(id)) return { ok: true };
    seen.add(id);
    if (chain.length >= MAX_HOPS) return { ok: false, kind: 'deep', chain };
    next = joinedContainer(r.doc.HostConfig?.NetworkMode);
  }
  return { ok: true };
}

/** The refusal's message: which workload, and why sharing its network is not allowed. */
export function joinRefusal(v: Extract<JoinVerdict, { kind: 'calico' | 'deep' }>): string {
  const first = v.chain[0]!;
  if (v.kind === 'deep') {
    return `calico: --net container:${first} joins containers nested more than ${MAX_HOPS} deep; not followed further`;
  }
  const via = v.chain.length > 1 ? ` (${v.chain.join(' shares the network of ')})` : '';
  return (
    `calico: --net container:${first} would share the network of Calico workload ${v.id.slice(0, 12)}${via}: ` +
    "the container would take the workload's address and groups without being one; " +
    'start it with its own CALICO_IP instead'
  );
}
