import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ClusterView } from '@calico/client';

export interface MetricsSource {
  /** The master's live view of the cluster (from its syncer), or null before the first snapshot. */
  view: () => ClusterView | null;
  inSync: () => boolean;
  gcPending: () => number;
  /** Down hosts → since when (ms) as the master saw it, null when it does not know. */
  hostsDown?: () => ReadonlyMap<string, number | null>;
}

export interface MasterMetrics {
  registry: Registry;
  gcDeleted: Counter<'kind'>;
  apiRequests: Counter<'route' | 'code'>;
}

/**
 * One registry per master (not prom-client's global one), so several masters can run in one
 * process (tests). Gauges are computed at scrape time from the syncer's view: no polling of etcd.
 */
export function createMetrics(src: MetricsSource): MasterMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const fromView = (name: string, help: string, count: (v: ClusterView) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const v = src.view();
        this.set(v ? count(v) : 0);
      },
    });
  fromView('calico_master_groups', 'Security groups under /calico/network/group/.', (v) => v.model.groups().length);
  fromView('calico_master_endpoints', 'Workload endpoints on all hosts.', (v) => v.model.endpoints().length);
  fromView(
    'calico_master_problems',
    'Keys under /calico/ that do not decode, and rules that cannot be enforced (GET /v1/problems).',
    (v) => v.problems.length,
  );
  fromView(
    'calico_master_members_without_endpoint',
    'Memberships whose endpoint exists on no host; kept, never collected (GET /v1/problems lists them).',
    (v) => v.notices.filter((n) => n.kind === 'member-without-endpoint').length,
  );
  new Gauge({
    name: 'calico_master_hosts',
    help: 'Hosts (keys under /calico/host/<h>/ or reservations naming them): up while their liveness key is there.',
    labelNames: ['state'],
    registers,
    collect() {
      const hosts = src.view()?.hosts ?? [];
      this.set({ state: 'up' }, hosts.filter((h) => h.state === 'up').length);
      this.set({ state: 'down' }, hosts.filter((h) => h.state === 'down').length);
    },
  });
  new Gauge({
    name: 'calico_master_host_up',
    help: 'Per host: 1 while its liveness key is there, 0 while it is down (its data is kept).',
    labelNames: ['host'],
    registers,
    collect() {
      this.reset();
      for (const h of src.view()?.hosts ?? []) this.set({ host: h.name }, h.state === 'up' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'calico_master_host_down_since_seconds',
    help: 'Per down host: when the master saw its liveness key go (Unix time); absent if it was down before the master.',
    labelNames: ['host'],
    registers,
    collect() {
      this.reset();
      for (const [host, since] of src.hostsDown?.() ?? []) if (since !== null) this.set({ host }, since / 1000);
    },
  });
  new Gauge({
    name: 'calico_master_in_sync',
    help: '1 while the master is in sync with etcd (GC acts only then), else 0.',
    registers,
    collect() {
      this.set(src.inSync() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'calico_master_gc_pending',
    help: 'Down hosts whose removal is being timed (--gc-dead-hosts-after; always 0 without it).',
    registers,
    collect() {
      this.set(src.gcPending());
    },
  });
  const gcDeleted = new Counter({
    name: 'calico_master_gc_deleted_total',
    help: 'What --gc-dead-hosts-after removed: hosts, workloads (endpoint), memberships and reservations (assignment).',
    labelNames: ['kind'] as const,
    registers,
  });
  for (const kind of ['host', 'endpoint', 'membership', 'assignment']) gcDeleted.inc({ kind }, 0);
  const apiRequests = new Counter({
    name: 'calico_master_api_requests_total',
    help: 'HTTP API requests by route template and status code.',
    labelNames: ['route', 'code'] as const,
    registers,
  });
  return { registry, gcDeleted, apiRequests };
}
