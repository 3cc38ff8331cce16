#!/usr/bin/env node
import { Datastore, readApiToken } from '@calico/datastore';
import { createLogger } from '@calico/log';
import { loadConfig, USAGE } from './config.js';
import { collect } from './collect.js';
import { DiagsUsageError, runDiags } from './command.js';
import { DiagsServer, registerDiagsUrl } from './server.js';

const argv = process.argv.slice(2);
if (argv.includes('--help')) {
  console.log(USAGE);
  process.exit(0);
}
const cfg = loadConfig(argv);
if (!cfg.ok) {
  for (const e of cfg.errors) console.error(`calico-diags: ${e}`);
  console.error('see: calico-diags --help');
  process.exit(2);
}
const c = cfg.value;
let ds: Datastore | undefined;
// Opened on first use: a collection that never needs etcd never waits for it.
const datastore = () => {
  if (!c.datastore) throw new Error(c.datastoreError ?? 'no etcd configured');
  return (ds ??= new Datastore(c.datastore, { callTimeoutMs: 5_000 }));
};

if (c.mode === 'collect') {
  let code: number;
  try {
    code = await runDiags(
      {
        host: c.hostname,
        dirs: c.dirs,
        docker: c.docker,
        datastore,
        output: c.output,
        uploadUrl: c.uploadUrl,
        uploadMethod: c.uploadMethod,
        noUpload: c.noUpload,
        uploadFile: c.uploadFile,
        insecure: c.insecure,
        cluster: c.cluster,
        hostTimeout: c.hostTimeout,
        maxHostBytes: c.maxHostBytes,
        apiTokenFile: c.apiTokenFile,
        apiCa: c.apiCa,
        apiCert: c.apiCert,
        apiKey: c.apiKey,
        json: c.json,
      },
      {
        print: (l) => process.stdout.write(`${l}\n`),
        json: (v) => process.stdout.write(`${JSON.stringify(v, null, 2)}\n`),
        error: (l) => process.stderr.write(`calico-diags: ${l}\n`),
        progress: (l) => {
          if (process.stderr.isTTY) process.stderr.write(`${l}\n`);
        },
      },
    );
  } catch (e) {
    process.stderr.write(`calico-diags: ${(e as Error).message}\n`);
    code = e instanceof DiagsUsageError ? 2 : 1;
  }
  ds?.close();
  process.exit(code);
}

if (c.mode === 'serve') {
  const logger = createLogger({ name: 'calico-diags', level: c.logLevel, base: { host: c.hostname } });
  const server = new DiagsServer({
    host: c.listen.host,
    port: c.listen.port,
    logger,
    apiToken: () => readApiToken(c.apiTokenFile),
    tls: c.tls,
    collect: () => collect({ host: c.hostname, dirs: c.dirs, docker: c.docker, datastore }),
  });
  const bound = await server.start();
  const url = c.advertiseUrl ?? bound;
  let keeper: Awaited<ReturnType<typeof registerDiagsUrl>>;
  try {
    keeper = await registerDiagsUrl(datastore(), c.hostname, url, c.leaseTtl);
  } catch (e) {
    logger.error({ err: String(e), url }, 'could not register the diags URL in etcd; stopping');
    await server.stop();
    ds?.close();
    process.exit(1);
  }
  logger.info({ listen: bound, url, dirs: c.dirs }, 'calico-diags serving GET /diags; registered in etcd');
  const shutdown = (sig: string) => {
    logger.info({ signal: sig }, 'stopping; the registration goes with its lease');
    void Promise.allSettled([server.stop(), keeper.stop()]).finally(() => {
      ds?.close();
      process.exit(0);
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
