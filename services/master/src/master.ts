import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { CalicoClient, buildView, type ClusterView } from '@calico/client';
import { SyncedReads } from './reads.js';
import { Datastore, ensureApiToken, httpsServerOptions, type Syncer } from '@calico/datastore';
import { calicoRoot, encodeMasterIp, encodeUrl, isIP, masterApiUrlKey, masterIpKey } from '@calico/keyspace';
import { createLogger, type Logger } from '@calico/log';
import { createApiHandler } from './api.js';
import { GarbageCollector } from './collector.js';
import { formatDuration, type MasterConfig } from './config.js';
import { createMetrics, type MasterMetrics } from './metrics.js';
import { ProblemReporter } from './problems.js';

export interface MasterDeps {
  /** An open datastore to use (and leave open); by default one is made from config and closed on stop. */
  ds?: Datastore;
  logger?: Logger;
  /** How often the syncer re-reads all of /calico/ as a safety net against missed watch events (5 min). */
  safetyResyncMs?: number;
  /**
   * A second listener, plain http, whose requests skip the token and certificate check; the API
   * on config.listen stays as configured. Only bench/master sets it, to measure what the check
   * costs within one process; no flag or variable reaches it, and the master logs a warning.
   */
  unauthenticatedApi?: { use: 'bench-only'; host: string; port: number };
}

/** The reason the master gives its own safety-net resyncs, so they are not taken for etcd trouble. */
const SAFETY_RESYNC = 'periodic safety-net resync';

export interface RunningMaster {
  /** The API's base URL, as published in /calico/master/api_url. */
  url: string;
  port: number;
  /** The port of MasterDeps.unauthenticatedApi's listener, when there is one. */
  unauthenticatedPort?: number;
  /** Resolves once /calico/master/ip and api_url are written (retried until etcd answers). */
  published: Promise<void>;
  syncer: Syncer;
  /** Where the API's group reads are answered: the synced copy or etcd. */
  reads: SyncedReads;
  gc: GarbageCollector;
  metrics: MasterMetrics;
  stop(): Promise<void>;
}

/** The address clients should use: an unspecified listen address (0.0.0.0, ::) means "this master's --ip". */
export function apiUrl(
  config: Pick<MasterConfig, 'ip' | 'listen'> & Partial<Pick<MasterConfig, 'tls'>>,
  port: number,
): string {
  const host = ['0.0.0.0', '::', ''].includes(config.listen.host) ? config.ip : config.listen.host;
  return `${config.tls ? 'https' : 'http'}://${isIP(host) === 6 ? `[${host}]` : host}:${port}/`;
}

/**
 * Starts the master: the HTTP API first (it answers even while etcd is away), then its syncer
 * over /calico/, the garbage collector, and, in the background, publication of its address.
 * Nothing here is on the data path: nodes read etcd, never the master.
 */
export async function startMaster(config: MasterConfig, deps: MasterDeps = {}): Promise<RunningMaster> {
  const logger = deps.logger ?? createLogger({ name: 'calico-master', level: config.logLevel });
  // First, so that a token file others may read stops the master before anything is served.
  const { token: apiToken, created } = ensureApiToken(config.apiTokenFile);
  const made = 'made the cluster API token (mode 0600); copy it to hosts that run calicoctl or diags';
  logger.info({ file: config.apiTokenFile }, created ? made : 'read the cluster API token');
  const ds = deps.ds ?? new Datastore(config.datastore, { logger });
  let stopped = false;
  // GC may trust the synced copy while in sync, and during the master's own safety-net resyncs
  // (started in sync; the copy stays valid meanwhile). The syncer's own periodic resync is off and
  // run here under a reason of ours, or every periodic resync would restart GC's timers and a
  // grace period longer than its period could never run out. Every other departure from in-sync,
  // and every watch error (some leave the status unchanged), moves the epoch: GC's timers restart.
  let safetyResyncing = false;
  let statusEpoch = 0;
  const trusted = () => syncer.inSync || safetyResyncing;
  const epoch = () => statusEpoch + syncer.stats.watchErrors;
  // Each bad key is logged once, as the syncer delivers it (resyncs deliver only differences).
  const problems = new ProblemReporter(logger);
  // The API reads groups from the synced copy while it is trusted and up to date, else from etcd.
  const reads = new SyncedReads(ds, {
    get inSync() {
      return syncer.inSync;
    },
    get revision() {
      return syncer.revision;
    },
    drain: () => syncer.drain(),
  });
  const syncer: Syncer = ds.syncer(
    calicoRoot,
    {
      onUpdates: (batch) => {
        problems.apply(batch);
        reads.apply(batch);
      },
      onStatus: (status, reason) => {
        if (reason === SAFETY_RESYNC && status !== 'stopped') return; // resyncing, then in-sync again: no blip
        if (status === 'in-sync') {
          logger.info({ revision: syncer.revision, reason }, 'in sync with etcd; GC times absences from now on');
          // A round at once: which hosts are up is known from the first snapshot on, so a host
          // that goes down before the first interval is seen to go (and since when).
          void gc.runOnce().catch(() => undefined);
        } else if (status !== 'stopped')
          logger.warn(
            { status, reason },
            'not in sync with etcd; GC paused and its pending timers will start over; the API keeps answering from etcd directly',
          );
        if (status !== 'in-sync') statusEpoch++;
      },
    },
    { resyncIntervalMs: 0 },
  );
  let cached: { revision: number; view: ClusterView } | undefined;
  const liveView = (): ClusterView | null => {
    if (syncer.revision === 0) return null;
    if (cached?.revision !== syncer.revision) {
      cached = {
        revision: syncer.revision,
        view: buildView(
          [...syncer.state].map(([key, value]) => ({ key, value })),
          syncer.revision,
        ),
      };
    }
    return cached.view;
  };
  const client = new CalicoClient(ds, { reads });
  const gc = new GarbageCollector({
    client,
    logger,
    deadHostsAfterMs: config.gcDeadHostsAfterMs,
    intervalMs: config.gcIntervalMs,
    source: () => ({ kvs: syncer.state, inSync: trusted(), epoch: epoch() }),
    onRemoved: ({ removed }) => {
      metrics.gcDeleted.inc({ kind: 'host' });
      metrics.gcDeleted.inc({ kind: 'endpoint' }, removed.workloads);
      metrics.gcDeleted.inc({ kind: 'membership' }, removed.memberships);
      metrics.gcDeleted.inc({ kind: 'assignment' }, removed.reservations);
    },
  });
  const hostsDown = () => gc.hostsDown;
  const metrics = createMetrics({ view: liveView, inSync: trusted, gcPending: () => gc.pending, hostsDown });

  const health = () => ({ ok: trusted(), etcd: syncer.status });
  const apiDeps = {
    client,
    health,
    metrics,
    logger,
    hostsDown,
    apiToken,
    clientCertificates: config.tls?.ca !== undefined,
  };
  const handler = createApiHandler(apiDeps);
  let server: Server;
  if (config.tls) {
    const https = createHttpsServer(httpsServerOptions(config.tls), handler);
    // Plain http to the https port, or a client that refuses our certificate: no request is read.
    let lastTlsLog = 0;
    https.on('tlsClientError', (err, socket) => {
      if (Date.now() - lastTlsLog < 10_000) return;
      lastTlsLog = Date.now();
      const context = { peer: socket.remoteAddress, err: err.message };
      logger.warn(context, 'TLS handshake refused (at most one line per 10 s)');
    });
    server = https;
  } else server = createServer(handler);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.listen.port, config.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    if (!deps.ds) ds.close();
    throw new Error(`cannot listen on ${config.listen.host}:${config.listen.port}: ${(e as Error).message}`);
  }
  const port = (server.address() as AddressInfo).port;
  const url = apiUrl(config, port);
  const bare = deps.unauthenticatedApi?.use === 'bench-only' ? deps.unauthenticatedApi : undefined;
  let unauthenticatedServer: Server | undefined;
  if (bare) {
    unauthenticatedServer = createServer(createApiHandler({ ...apiDeps, authenticate: () => ({ ok: true as const }) }));
    await new Promise<void>((resolve, reject) => {
      unauthenticatedServer!.once('error', reject);
      unauthenticatedServer!.listen(bare.port, bare.host, () => resolve());
    });
    const at = `${bare.host}:${(unauthenticatedServer.address() as AddressInfo).port}`;
    logger.warn(
      `INSECURE: http://${at}/ serves the API with no token and no certificate check (unauthenticatedApi: bench-only); never run so in a cluster`,
    );
  }
  syncer.start();
  const safetyResync = setInterval(
    () => {
      if (!syncer.inSync || safetyResyncing) return; // a syncer out of sync is retrying on its own
      safetyResyncing = true;
      // drain(): the syncer marks itself in sync through its delivery queue, after resync() resolves.
      void syncer
        .resync(SAFETY_RESYNC)
        .then(() => syncer.drain())
        .catch(() => undefined) // the syncer logs and retries on its own
        .finally(() => (safetyResyncing = false));
    },
    deps.safetyResyncMs ?? 5 * 60_000,
  );
  safetyResync.unref();
  gc.start();
  const deadHosts = config.gcDeadHostsAfterMs === null ? 'off' : formatDuration(config.gcDeadHostsAfterMs);
  logger.info(
    {
      url,
      ip: config.ip,
      gcDeadHostsAfter: deadHosts,
      gcIntervalS: config.gcIntervalMs / 1000,
      tls: config.tls ? { cert: config.tls.files.cert, clientCa: config.tls.files.ca ?? null } : null,
    },
    'calico-master API listening; syncing with etcd, then publishing its address',
  );

  let retry: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  const published = (async () => {
    for (let delay = 250; !stopped; delay = Math.min(delay * 2, 5_000)) {
      try {
        await ds.batch([
          { put: masterIpKey(), value: encodeMasterIp(config.ip) },
          { put: masterApiUrlKey(), value: encodeUrl(url) },
        ]);
        logger.info({ ip: config.ip, url }, 'published /calico/master/ip and /calico/master/api_url');
        return;
      } catch (e) {
        logger.warn(
          { err: (e as Error).message, retryInMs: delay },
          `cannot publish the master's address (etcd unreachable?); the API is serving anyway; retrying in ${delay} ms`,
        );
        await new Promise<void>((r) => {
          wake = r;
          retry = setTimeout(r, delay);
        });
      }
    }
  })();

  return {
    url,
    port,
    ...(unauthenticatedServer ? { unauthenticatedPort: (unauthenticatedServer.address() as AddressInfo).port } : {}),
    published,
    syncer,
    reads,
    gc,
    metrics,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearTimeout(retry);
      clearInterval(safetyResync);
      wake?.();
      await gc.stop();
      for (const srv of unauthenticatedServer ? [server, unauthenticatedServer] : [server]) {
        await new Promise<void>((resolve) => {
          srv.close(() => resolve());
          srv.closeAllConnections();
        });
      }
      await syncer.stop();
      if (!deps.ds) ds.close();
      logger.info({ url }, 'calico-master stopped; nodes and policy carry on from etcd alone');
    },
  };
}
