import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AgentStatus } from './agent/agent.js';

/** What the metrics read at scrape time. */
export interface NodeMetricsSource {
  agent: () => AgentStatus & { appliedEntries: number };
}

/** Where the node's parts report what they did, as it happens. */
export interface NodeMetricsSink {
  /** One kernel apply of the agent: how long, and whether it went in. */
  applied(ms: number, ok: boolean): void;
  /** One workload plumbed (or not). */
  plumbed(ms: number, ok: boolean): void;
  /** One proxy request answered: its route (interceptor name, "passthrough", "upgrade", "refused", "limit"), status. */
  proxied(route: string, status: number): void;
}

export interface NodeMetrics extends NodeMetricsSink {
  registry: Registry;
}

const SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A sink that records nothing (tests, and parts started without metrics). */
export const noMetrics: NodeMetricsSink = {
  applied: () => undefined,
  plumbed: () => undefined,
  proxied: () => undefined,
};

/**
 * The node's Prometheus metrics, as felix has them: whether the agent is in sync and since
 * when, kernel applies and their failures, what is programmed, proxy requests by route and
 * outcome, plumbing times. One registry per node (several run in one test process).
 */
export function createNodeMetrics(src: NodeMetricsSource): NodeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'calico_node_process_' });
  const registers = [registry];
  const gauge = (name: string, help: string, read: (s: ReturnType<NodeMetricsSource['agent']>) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read(src.agent()));
      },
    });
  gauge(
    'calico_node_datastore_in_sync',
    '1 while the agent is in sync with etcd (its status is in-sync), else 0.',
    (s) => (s.syncStatus === 'in-sync' ? 1 : 0),
  );
  gauge('calico_node_dataplane_programmed', '1 once the first full sync is in the kernel, else 0.', (s) =>
    s.programmed ? 1 : 0,
  );
  gauge(
    'calico_node_seconds_since_full_sync',
    'Seconds since the agent last came in sync with a full snapshot of etcd; -1 before the first.',
    (s) => (s.lastFullSyncAt === null ? -1 : (Date.now() - s.lastFullSyncAt) / 1000),
  );
  gauge(
    'calico_node_local_endpoints',
    "Endpoints of this host's workloads the agent has chains for.",
    (s) => s.localEndpoints,
  );
  gauge('calico_node_ipsets', 'Group ipsets the agent keeps in the kernel.', (s) => s.ipsets);
  gauge(
    'calico_node_ipset_members',
    'Entries of those ipsets, as last written to the kernel.',
    (s) => s.appliedEntries,
  );
  new Gauge({
    name: 'calico_node_datastore_status',
    help: "The agent's datastore status: 1 for the current one (wait-for-datastore, resyncing, in-sync, retrying).",
    labelNames: ['status'] as const,
    registers,
    collect() {
      const now = src.agent().syncStatus;
      for (const s of ['wait-for-datastore', 'resyncing', 'in-sync', 'retrying'])
        this.set({ status: s }, s === now ? 1 : 0);
    },
  });
  const apply = new Histogram({
    name: 'calico_node_dataplane_apply_seconds',
    help: 'Kernel applies of the agent (ipset and iptables restores), by outcome.',
    labelNames: ['outcome'] as const,
    buckets: SECONDS,
    registers,
  });
  const applyFailures = new Counter({
    name: 'calico_node_dataplane_apply_failures_total',
    help: 'Kernel applies that failed (each is retried).',
    registers,
  });
  const plumb = new Histogram({
    name: 'calico_node_plumb_seconds',
    help: 'Workload plumbing (veth, addresses, routes), by outcome.',
    labelNames: ['outcome'] as const,
    buckets: SECONDS,
    registers,
  });
  const requests = new Counter({
    name: 'calico_node_proxy_requests_total',
    help: 'Docker API requests through the proxy, by route and outcome (status class).',
    labelNames: ['route', 'outcome'] as const,
    registers,
  });
  applyFailures.inc(0);
  return {
    registry,
    applied(ms, ok) {
      apply.observe({ outcome: ok ? 'ok' : 'failed' }, ms / 1000);
      if (!ok) applyFailures.inc();
    },
    plumbed(ms, ok) {
      plumb.observe({ outcome: ok ? 'ok' : 'failed' }, ms / 1000);
    },
    proxied(route, status) {
      requests.inc({ route, outcome: `${Math.floor(status / 100)}xx` });
    },
  };
}

/** Serves GET /metrics on host:port (port 0: any); resolves with the URL it answers on. */
export async function serveMetrics(
  metrics: NodeMetrics,
  listen: { host: string; port: number },
): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(e)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return { url: `http://${host}:${a.port}/metrics`, server };
}
