import { rename, writeFile } from 'node:fs/promises';
import type Docker from 'dockerode';
import type { Datastore, LeaseKeeper } from '@calico/datastore';
import type { Logger } from '@calico/log';
import { encodeRouteProto, routeProtoKey } from '@calico/keyspace';
import type { NodeConfig } from './config.js';
import { RegistrationError, registerHost, type RegistrationOptions } from './registration.js';
import { Plumber } from './plumber/plumber.js';
import { WORKLOAD_ROUTE_PROTO } from './plumber/names.js';
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
import { clearStaleSocket, describeListen } from './proxy/listen.js';

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
 * the kernel → follow docker events → reconcile what changed while we were down (every running
 * workload plumbed again) → publish the workload routes' protocol → only then accept clients on
 * the proxy. No workload is plumbed and no create served before policy is.
 */
/** registerHost, retried while etcd cannot be reached; a refusal (duplicate name or address) is final. */
async function registerWhenReachable(ds: Datastore, opts: RegistrationOptions, logger: Logger): Promise<LeaseKeeper> {
  for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
    try {
      return await registerHost(ds, opts, logger);
    } catch (e) {
      if (e instanceof RegistrationError) throw e;
      logger.warn(
        { err: String(e), retryInMs: delay },
        `etcd unreachable while registering the host; retrying in ${delay} ms (workloads stay unplumbed meanwhile)`,
      );
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** What the node's status says of its listeners; an insecure one is the user's choice, shown wherever status is. */
export function listenStatus(c: NodeConfig): { listen: string[]; tls: string; insecureListen: string[] } {
  const tls = c.listen.tls;
  return {
    listen: c.listen.addresses.map(describeListen),
    tls: !tls ? 'none' : tls.verify ? 'tlsverify (client certificates of the CA)' : 'tls (no client verification)',
    insecureListen: c.listen.insecure.map(describeListen),
  };
}

export async function startNode(
  c: NodeConfig,
  deps: { ds: Datastore; docker: Docker; logger: Logger },
): Promise<RunningNode> {
  const { ds, docker, logger } = deps;
  // A socket path someone else holds stops the node before it registers or touches the kernel.
  for (const a of c.listen.addresses) if (a.kind === 'unix') await clearStaleSocket(a.path);
  const listening = listenStatus(c);
  if (listening.insecureListen.length) {
    logger.warn(
      { insecureListen: listening.insecureListen, tls: listening.tls },
      'INSECURE: the Docker API proxy listens off loopback without --tlsverify (--insecure-listen): ' +
        'anyone who reaches it can run containers as root on this host',
    );
  }
  const agent = new PolicyAgent({
    host: c.hostname,
    ds,
    kernel: new RealKernel(),
    logger: logger.child({ part: 'agent' }),
    endpointToHost: c.endpointToHost,
    dataplaneResyncMs: c.dataplaneResyncMs,
    onApply: (ms, ok) => metrics.applied(ms, ok),
  });
  const metrics = createNodeMetrics({
    agent: () => ({ ...agent.status(), appliedEntries: agent.dataplane.summary().applied?.entries ?? 0 }),
  });
  // Served from the start, so that a node waiting on etcd says so.
  const served = c.metricsListen ? await serveMetrics(metrics, c.metricsListen) : null;
  if (served) logger.info({ url: served.url }, 'metrics served');
  await agent.installHooks();
  const keeper = await registerWhenReachable(
    ds,
    { host: c.hostname, ip: c.ip, ip6: c.ip6, ttlSeconds: c.leaseTtlSeconds },
    logger,
  );
  const plumber = new Plumber(logger.child({ part: 'plumber' }), c.procSys, (ms, ok) => metrics.plumbed(ms, ok));
  const addresses = new AddressRegistry(ds);
  const reserved = new ClusterAddresses(ds, addresses, [c.ip, ...(c.ip6 ? [c.ip6] : [])], agent);
  const reservedReady = reserved.start();
  const workloads = new Workloads(
    c.hostname,
    docker,
    plumber,
    new EndpointStore(ds, c.hostname),
    addresses,
    logger.child({ part: 'workloads' }),
  );
  agent.start();
  let statusTimer: NodeJS.Timeout | undefined;
  if (c.statusFile) {
    const file = c.statusFile;
    const write = () =>
      writeFile(
        `${file}.tmp`,
        JSON.stringify({ ...agent.report(c.hostname), metricsUrl: served?.url ?? null, proxy: listening }, null, 2),
      )
        .then(() => rename(`${file}.tmp`, file))
        .catch((e: unknown) =>
          logger.warn({ file, err: String(e) }, 'could not write the agent status file; trying again shortly'),
        );
    statusTimer = setInterval(() => void write(), 5_000);
    statusTimer.unref();
    void write();
    // Once more the moment the policy is in the kernel, for whoever waits on it (calicoctl status).
    void agent.whenProgrammed().then(write);
  }
  logger.info(
    'waiting for the agent to program the first full sync; workloads are plumbed and the proxy served after it',
  );
  await agent.whenProgrammed();
  const events = new EventsWatcher(docker, workloads, logger.child({ part: 'events' }));
  await events.start();
  const summary = await workloads.reconcile();
  await reservedReady;
  logger.info(summary, 'reconciled workloads with dockerd and etcd');
  // Every running workload is plumbed by this node now, so its routes carry the protocol: from
  // here on BIRD may export only those. (A node from before route_proto left routes with
  // "boot"; until this key is there, bgp-config does not ask for the protocol.)
  await ds.put(routeProtoKey(c.hostname), encodeRouteProto(WORKLOAD_ROUTE_PROTO));
  const proxy = new DockerProxy({
    upstream: c.upstream,
    logger: logger.child({ part: 'proxy' }),
    onRequest: (route, status) => metrics.proxied(route, status),
    limits: c.proxyLimits,
    ...(c.listen.tls ? { tls: c.listen.tls } : {}),
    interceptors: nodeInterceptors({
      host: c.hostname,
      waitBinary: c.waitBinary,
      addresses,
      workloads,
      reservedAddresses: () => reserved.current(),
      logger: logger.child({ part: 'proxy' }),
    }),
  });
  await proxy.listen(c.listen.addresses);
  logger.info({ listen: listening.listen, tls: listening.tls }, 'calico-node ready');
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
