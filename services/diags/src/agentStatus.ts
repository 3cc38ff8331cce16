/**
 * The format proposed for `<run-dir>/agent-status.json`: calico-node's own view of what it should
 * program and what it did, written (atomically: temp file + rename) after each apply and on each
 * datastore status change. The diags collector copies it when present (JSON-redacted) and records
 * "absent" when calico-node does not write it yet. Field names avoid "key", which redaction masks.
 */
export interface AgentStatus {
  version: 1;
  host: string;
  writtenAt: string;
  datastore: {
    /** The syncer's status: waiting for the first snapshot, in sync, or resyncing after a loss. */
    status: 'wait-for-ready' | 'resync' | 'in-sync';
    revision: number;
    lastSnapshotAt: string | null;
    /** etcd paths whose value did not decode (treated as deleted). */
    problems: { path: string; errors: string[] }[];
  };
  dataplane: {
    applies: number;
    lastApplyAt: string | null;
    lastApplyMs: number | null;
    lastError: string | null;
    resyncs: number;
    /** What the model says should be in the kernel… */
    desired: { endpoints: number; ipsets: number; chains: number; rules: number };
    /** …and what the last read of the kernel found (equal when converged). */
    applied: { ipsets: number; chains: number; rules: number };
    /** Local endpoints whose dataplane differs from the desired one, and why. */
    pending: { endpoint: string; interface: string; reason: string }[];
  };
  endpoints: {
    endpoint: string;
    container: string;
    interface: string;
    addrs: string[];
    state: 'active' | 'inactive';
    programmed: boolean;
  }[];
}
