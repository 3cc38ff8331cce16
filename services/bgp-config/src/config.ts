import { parseArgs } from 'node:util';
import { hostname as osHostname } from 'node:os';
import { datastoreConfigFromFlags, ETCD_FLAG_OPTIONS, type DatastoreConfig } from '@calico/datastore';
import { serviceHostName } from '@calico/keyspace';
import { birdPaths, type BirdPaths } from './bird.js';

export interface BgpConfigConfig {
  hostname: string;
  datastore: DatastoreConfig;
  paths: BirdPaths;
  runBird: boolean;
  debounceMs: number;
  logLevel: string;
}

export const USAGE = `calico-bgp-config: keeps BIRD's configuration equal to etcd for one host

  --hostname=<name>        CALICO_HOSTNAME, else the machine's host name
  --etcd=<host:port,...>   ETCD_ENDPOINTS, ETCD_AUTHORITY, else 127.0.0.1:2379
  --etcd-ca/--etcd-cert/--etcd-key=<file>
  --state-dir=<dir>        where BIRD's files go (/var/lib/calico/<hostname>)
  --bird-config=<file>     <state-dir>/bird.conf
  --bird-socket=<file>     <state-dir>/bird.ctl
  --bird-pid=<file>        <state-dir>/bird.pid
  --bird-log=<file>        <state-dir>/bird.log
  --run-bird               start BIRD and restart it whenever it exits
  --debounce-ms=<ms>       quiet time that ends a burst of changes (100)
  --log-level=<level>      LOG_LEVEL, else info`;

export function loadConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { ok: true; value: BgpConfigConfig } | { ok: false; errors: string[] } {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        hostname: { type: 'string' },
        ...ETCD_FLAG_OPTIONS,
        'state-dir': { type: 'string' },
        'bird-config': { type: 'string' },
        'bird-socket': { type: 'string' },
        'bird-pid': { type: 'string' },
        'bird-log': { type: 'string' },
        'run-bird': { type: 'boolean' },
        'debounce-ms': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (e) {
    return { ok: false, errors: [(e as Error).message] };
  }
  const errors: string[] = [];
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const { name: hostname, error: badName } = serviceHostName(str('hostname'), env.CALICO_HOSTNAME, osHostname());
  if (badName) errors.push(badName);
  let datastore: DatastoreConfig | undefined;
  try {
    datastore = datastoreConfigFromFlags(values, env);
  } catch (e) {
    errors.push((e as Error).message);
  }
  const stateDir = str('state-dir') ?? `/var/lib/calico/${hostname}`;
  const paths = birdPaths(stateDir, {
    ...(str('bird-config') ? { config: str('bird-config')! } : {}),
    ...(str('bird-socket') ? { socket: str('bird-socket')! } : {}),
    ...(str('bird-pid') ? { pid: str('bird-pid')! } : {}),
    ...(str('bird-log') ? { log: str('bird-log')! } : {}),
  });
  const debounceMs = Number(str('debounce-ms') ?? '100');
  if (!Number.isFinite(debounceMs) || debounceMs < 0)
    errors.push(`--debounce-ms=${str('debounce-ms')}: a number of milliseconds`);
  const logLevel = str('log-level') ?? env.LOG_LEVEL ?? 'info';
  if (errors.length || !datastore) return { ok: false, errors };
  return {
    ok: true,
    value: { hostname, datastore, paths, runBird: values['run-bird'] === true, debounceMs, logLevel },
  };
}
