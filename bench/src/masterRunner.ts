// Runs calico-master for bench/master as its main.ts does (the same config, logger, datastore and
// startMaster), plus one thing no flag of calico-master reaches: a second, plain-http listener on
// 127.0.0.1:<port> that serves the same API with no token or certificate check
// (MasterDeps.unauthenticatedApi), so the bench compares the check against none within one process.
//   masterRunner.js <port> <calico-master flags>
import { Datastore } from '@calico/datastore';
import { createLogger } from '@calico/log';
import { loadMasterConfig, startMaster } from '@calico/master';

const [portArg, ...argv] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: masterRunner.js <port of the unauthenticated listener> <calico-master flags>');
  process.exit(2);
}
const cfg = loadMasterConfig(argv);
if (!cfg.ok) {
  for (const e of cfg.errors) console.error(`masterRunner: ${e}`);
  process.exit(2);
}
const logger = createLogger({ name: 'calico-master', level: cfg.value.logLevel });
const ds = new Datastore(cfg.value.datastore, { logger });
const master = await startMaster(cfg.value, {
  ds,
  logger,
  unauthenticatedApi: { use: 'bench-only', host: '127.0.0.1', port },
});
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(
    sig,
    () =>
      void master.stop().finally(() => {
        ds.close();
        process.exit(0);
      }),
  );
}
