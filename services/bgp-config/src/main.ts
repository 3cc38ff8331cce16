#!/usr/bin/env node
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Datastore } from '@calico/datastore';
import { createLogger } from '@calico/log';
import { loadConfig, USAGE } from './config.js';
import { BgpConfigService } from './service.js';

const argv = process.argv.slice(2);
if (argv.includes('--help')) {
  console.log(USAGE);
  process.exit(0);
}
const cfg = loadConfig(argv);
if (!cfg.ok) {
  for (const e of cfg.errors) console.error(`calico-bgp-config: ${e}`);
  process.exit(2);
}
const c = cfg.value;
const logger = createLogger({ name: 'calico-bgp-config', level: c.logLevel, base: { host: c.hostname } });
for (const p of Object.values(c.paths)) mkdirSync(dirname(p), { recursive: true });
const ds = new Datastore(c.datastore, { logger });
const svc = new BgpConfigService({
  ds,
  host: c.hostname,
  paths: c.paths,
  logger,
  debounceMs: c.debounceMs,
  runBird: c.runBird,
}).start();
logger.info(
  { paths: c.paths, runBird: c.runBird },
  'calico-bgp-config started; rendering bird.conf once etcd is in sync',
);
const shutdown = (sig: string) => {
  logger.info({ signal: sig }, 'stopping; BIRD keeps its routes (persist) until it is stopped too');
  void svc.stop().finally(() => {
    ds.close();
    process.exit(0);
  });
};
process.once('SIGTERM', () => shutdown('SIGTERM'));
process.once('SIGINT', () => shutdown('SIGINT'));
