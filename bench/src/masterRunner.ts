// Runs calico-master for bench/master as its main.ts does (the same config, logger, datastore and
// startMaster), with one difference when the first argument is `noauth`: the API checks no token
// and no certificate (MasterDeps.unauthenticatedApi, which no flag of calico-master reaches).
// `auth` runs it exactly as calico-master. The rest of the arguments are calico-master's flags.
import { Datastore } from '@calico/datastore';
import { createLogger } from '@calico/log';
import { loadMasterConfig, startMaster } from '@calico/master';

const [mode, ...argv] = process.argv.slice(2);
if (mode !== 'auth' && mode !== 'noauth') {
  console.error('usage: masterRunner.js auth|noauth <calico-master flags>');
  process.exit(2);
}
const cfg = loadMasterConfig(argv);
if (!cfg.ok) {
  for (const e of cfg.errors) console.error(`masterRunner: ${e}`);
  process.exit(2);
}
const logger = createLogger({ name: `calico-master-${mode}`, level: cfg.value.logLevel });
const ds = new Datastore(cfg.value.datastore, { logger });
const noAuth = mode === 'noauth' ? { unauthenticatedApi: 'bench-only' as const } : {};
const master = await startMaster(cfg.value, { ds, logger, ...noAuth });
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => void master.stop().finally(() => {
    ds.close();
    process.exit(0);
  }));
}
