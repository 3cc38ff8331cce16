import { rename, writeFile } from 'node:fs/promises';
import type Docker from 'dockerode';
import type { Datastore, LeaseKeeper } from '@calico/datastore';
import type { Logger } from '@calico/log';
import type { NodeConfig } from './config.js';
import { RegistrationError, registerHost, type RegistrationOptions } from './registration.js';
import { Plumber } from './plumber/plumber.js';
import { EndpointStore } from './etcd/endpoints.js';
import { AddressRegistry } from './etcd/addresses.js';
import { ClusterAddresses } from './etcd/clusterAddresses.js';
import { Workloads } from './workloads.js';
import { DockerProxy } from './proxy/server.js';
import { nodeInterceptors } from './proxy/intercepts.js';
import { EventsWatcher } from './events.js';
import { PolicyAgent } from './agent/agent.js';
import { RealKernel } from './agent/kernel.js';
import { createNodeMetrics, serveMetrics } from './metrics.js';

export interface RunningNode {
  proxy: DockerProxy;
  workloads: Workloads;
  agent: PolicyAgent;
  /** Where GET /metrics answers, or null when turned off. */
  metricsUrl: string | null;
  stop(): Promise<void>;
}

/**
 * Start-up order matters, and fails closed: the agent's hooks first (on an empty kernel they
 * drop all workload traffic) → register (refuse duplicates) → the agent's first full sync in
 * the kernel → follow docker events → reconcile what changed while we were down → only then
 * accept clients on the proxy. No workload is plumbed and no create served before policy is.
 */
/** registerHost, retried while etcd cannot be reached; a refusal (duplicate name or address) is final. */
async function registerWhenReachable(ds: Datastore, opts: RegistrationOptions, logger: Logger): Promise<LeaseKeeper> {
  for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
    try {
      return await registerHost(ds, opts, logger);
    } catch (e) {
      if (e instanceof RegistrationError) throw e;
      logger.warn({ err: String(e), retryInMs: delay }, `etcd unreachable while registering the host; retrying in ${delay} ms (workloads stay unplumbed meanwhile)`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export async function startNode(c: NodeConfig, deps: { ds: Datastore; docker: Docker; logger: Logger }): Promise<RunningNode> {
  const { ds, docker, logger } = deps;
  const agent = new PolicyAgent({
    host: c.hostname,
    ds,
    kernel: new RealKernel(),
    logger: logger.child({ part: 'agent' }),
    endpointToHost: c.endpointToHost,
    dataplaneResyncMs: c.dataplaneResyncMs,
    onApply: (ms, ok) => metrics.applied(ms, ok),
  });
  const metrics = createNodeMetrics({ agent: () => ({ ...agent.status(), appliedEntries: agent.dataplane.summary().applied?.entries ?? 0 }) });
  // Served from the start, so that a node waiting on etcd says so.
  const served = c.metricsListen ? await serveMetrics(metrics, c.metricsListen) : null;
  if (served) logger.info({ url: served.url }, 'metrics served');
  await agent.installHooks();
  const keeper = await registerWhenReachable(ds, { host: c.hostname, ip: c.ip, ip6: c.ip6, ttlSeconds: c.leaseTtlSeconds }, logger);
  const plumber = new Plumber(logger.child({ part: 'plumber' }), c.procSys, (ms, ok) => metrics.plumbed(ms, ok));
  const addresses = new AddressRegistry(ds);
  const reserved = new ClusterAddresses(ds, addresses, [c.ip, ...(c.ip6 ? [c.ip6] : [])], agent);
  const reservedReady = reserved.start();
  const workloads = new Workloads(c.hostname, docker, plumber, new EndpointStore(ds, c.hostname), addresses, logger.child({ part: 'workloads' }));
  agent.start();
  let statusTimer: NodeJS.Timeout | undefined;
  if (c.statusFile) {
    const file = c.statusFile;
    const write = () =>
      writeFile(`${file}.tmp`, JSON.stringify({ ...agent.report(c.hostname), metricsUrl: served?.url ?? null }, null, 2))
        .then(() => rename(`${file}.tmp`, file))
        .catch((e: unknown) => logger.warn({ file, err: String(e) }, 'could not write the agent status file; trying again shortly'));
    statusTimer = setInterval(() => void write(), 5_000);
    statusTimer.unref();
    void write();
    // Once more the moment the policy is in the kernel, for whoever waits on it (calicoctl status).
    void agent.whenProgrammed().then(write);
  }
  logger.info('waiting for the agent to program the first full sync; workloads are plumbed and the proxy served after it');
  await agent.whenProgrammed();
  const events = new EventsWatcher(docker, workloads, logger.child({ part: 'events' }));
  await events.start();
  const summary = await workloads.reconcile();
  await reservedReady;
  logger.info(summary, 'reconciled workloads with dockerd and etcd');
  const proxy = new DockerProxy({
    upstream: c.upstream,
    logger: logger.child({ part: 'proxy' }),
    onRequest: (route, status) => metrics.proxied(route, status),
    limits: c.proxyLimits,
    interceptors: nodeInterceptors({
      host: c.hostname,
      waitBinary: c.waitBinary,
      addresses,
      workloads,
      reservedAddresses: () => reserved.current(),
      logger: logger.child({ part: 'proxy' }),
    }),
  });
  await proxy.listen(c.listen);
  logger.info({ listen: c.listen }, 'calico-node ready');
  return {
    proxy,
    workloads,
    agent,
    metricsUrl: served?.url ?? null,
    async stop() {
      if (statusTimer) clearInterval(statusTimer);
      await new Promise((r) => (served ? served.server.close(r) : r(undefined)));
      events.stop();
      await proxy.close();
      await agent.stop();
      await keeper.stop();
    },
  };
}
