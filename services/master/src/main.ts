#!/usr/bin/env node
import { Datastore } from '@calico/datastore';
import { createLogger } from '@calico/log';
import { loadMasterConfig, MASTER_USAGE } from './config.js';
import { startMaster } from './master.js';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(MASTER_USAGE);
  process.exit(0);
}
const cfg = loadMasterConfig(argv);
if (!cfg.ok) {
  for (const e of cfg.errors) console.error(`calico-master: ${e}`);
  console.error('calico-master: see --help');
  process.exit(2);
}
const c = cfg.value;
const logger = createLogger({ name: 'calico-master', level: c.logLevel });
const ds = new Datastore(c.datastore, { logger });

try {
  const master = await startMaster(c, { ds, logger });
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'stopping: API closed, GC and syncing end; containers and policy are unaffected');
    void master.stop().finally(() => {
      ds.close();
      process.exit(0);
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
} catch (e) {
  logger.fatal({ err: String(e) }, 'calico-master could not start');
  console.error(`calico-master: ${(e as Error).message}`);
  ds.close();
  process.exit(1);
}
