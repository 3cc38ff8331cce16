#!/usr/bin/env node
import Docker from 'dockerode';
import { Datastore } from '@calico/datastore';
import { createLogger } from '@calico/log';
import { loadNodeConfig, NODE_USAGE } from './config.js';
import { startNode } from './node.js';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(NODE_USAGE);
  process.exit(0);
}
const cfg = loadNodeConfig(argv);
if (!cfg.ok) {
  for (const e of cfg.errors) console.error(`calico-node: ${e}`);
  console.error('calico-node: see --help');
  process.exit(2);
}
const c = cfg.value;
const logger = createLogger({ name: 'calico-node', level: c.logLevel, base: { host: c.hostname } });
const ds = new Datastore(c.datastore, { logger });
const docker = new Docker(
  c.upstream.kind === 'unix' ? { socketPath: c.upstream.path } : { host: c.upstream.host, port: c.upstream.port },
);

try {
  const node = await startNode(c, { ds, docker, logger });
  const shutdown = (sig: string) => {
    logger.info({ signal: sig }, 'stopping: proxy closed, liveness revoked; workloads keep their network');
    void node.stop().finally(() => {
      ds.close();
      process.exit(0);
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
} catch (e) {
  logger.fatal({ err: String(e) }, 'calico-node could not start');
  console.error(`calico-node: ${(e as Error).message}`);
  ds.close();
  process.exit(1);
}
