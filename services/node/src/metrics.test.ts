import { describe, expect, it } from 'vitest';
import type { AgentStatus } from './agent/agent.js';
import { createNodeMetrics } from './metrics.js';

const status = (over: Partial<AgentStatus> = {}): AgentStatus & { appliedEntries: number } => ({
  syncStatus: 'in-sync',
  everInSync: true,
  programmed: true,
  lastFullSyncAt: Date.now() - 5_000,
  localEndpoints: 3,
  ipsets: 2,
  applies: 1,
  lastApply: null,
  lastError: null,
  problems: [],
  appliedEntries: 7,
  ...over,
});

/** One sample's value from Prometheus text. */
function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no sample ${name} in:\n${text}`);
  return Number(line.slice(name.length + 1));
}

describe('node metrics', () => {
  it('read the agent at scrape time: in sync, programmed, what is programmed, time since the full sync', async () => {
    let s = status();
    const m = createNodeMetrics({ agent: () => s });
    let text = await m.registry.metrics();
    expect(sample(text, 'calico_node_datastore_in_sync')).toBe(1);
    expect(sample(text, 'calico_node_dataplane_programmed')).toBe(1);
    expect(sample(text, 'calico_node_local_endpoints')).toBe(3);
    expect(sample(text, 'calico_node_ipset_members')).toBe(7);
    expect(sample(text, 'calico_node_seconds_since_full_sync')).toBeGreaterThanOrEqual(5);
    expect(sample(text, 'calico_node_datastore_status{status="in-sync"}')).toBe(1);
    // A handler that keeps failing: the syncer says retrying, and so do the metrics.
    s = status({ syncStatus: 'retrying' });
    text = await m.registry.metrics();
    expect(sample(text, 'calico_node_datastore_in_sync')).toBe(0);
    expect(sample(text, 'calico_node_datastore_status{status="retrying"}')).toBe(1);
    expect(sample(text, 'calico_node_datastore_status{status="in-sync"}')).toBe(0);
    s = status({ lastFullSyncAt: null, programmed: false, syncStatus: 'resyncing' });
    text = await m.registry.metrics();
    expect(sample(text, 'calico_node_seconds_since_full_sync')).toBe(-1);
    expect(sample(text, 'calico_node_dataplane_programmed')).toBe(0);
  });

  it('count applies and their failures, plumbing, and proxy requests by route and outcome', async () => {
    const m = createNodeMetrics({ agent: () => status() });
    m.applied(12, true);
    m.applied(30, false);
    m.plumbed(15, true);
    m.proxied('create', 201);
    m.proxied('create', 409);
    m.proxied('passthrough', 200);
    m.proxied('passthrough', 200);
    const text = await m.registry.metrics();
    expect(sample(text, 'calico_node_dataplane_apply_failures_total')).toBe(1);
    expect(sample(text, 'calico_node_dataplane_apply_seconds_count{outcome="ok"}')).toBe(1);
    expect(sample(text, 'calico_node_dataplane_apply_seconds_count{outcome="failed"}')).toBe(1);
    expect(sample(text, 'calico_node_dataplane_apply_seconds_sum{outcome="failed"}')).toBeCloseTo(0.03);
    expect(sample(text, 'calico_node_plumb_seconds_count{outcome="ok"}')).toBe(1);
    expect(sample(text, 'calico_node_proxy_requests_total{route="create",outcome="2xx"}')).toBe(1);
    expect(sample(text, 'calico_node_proxy_requests_total{route="create",outcome="4xx"}')).toBe(1);
    expect(sample(text, 'calico_node_proxy_requests_total{route="passthrough",outcome="2xx"}')).toBe(2);
  });
});
