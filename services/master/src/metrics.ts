import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ClusterView } from '@calico/client';

export interface MetricsSource {
  /** The master's live view of the cluster (from its syncer), or null before the first snapshot. */
  view: () => ClusterView | null;
  inSync: () => boolean;
  gcPending: () => number;
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
  fromView('calico_master_problems', 'Keys under /calico/ that do not decode, and rules that cannot be enforced (GET /v1/problems).', (v) => v.problems.length);
  new Gauge({
    name: 'calico_master_hosts',
    help: 'Hosts known under /calico/host/, by whether their liveness key (lease) is present.',
    labelNames: ['state'],
    registers,
    collect() {
      const hosts = src.view()?.hosts ?? [];
      this.set({ state: 'alive' }, hosts.filter((h) => h.alive).length);
      this.set({ state: 'dead' }, hosts.filter((h) => !h.alive).length);
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
    help: 'Absences the garbage collector is timing (memberships of missing endpoints, hosts without liveness).',
    registers,
    collect() {
      this.set(src.gcPending());
    },
  });
  const gcDeleted = new Counter({ name: 'calico_master_gc_deleted_total', help: 'Keys and directories deleted by the garbage collector.', labelNames: ['kind'] as const, registers });
  for (const kind of ['membership', 'endpoint', 'assignment']) gcDeleted.inc({ kind }, 0);
  const apiRequests = new Counter({ name: 'calico_master_api_requests_total', help: 'HTTP API requests by route template and status code.', labelNames: ['route', 'code'] as const, registers });
  return { registry, gcDeleted, apiRequests };
}
