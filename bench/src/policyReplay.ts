// The policy agent's first sync of the bench keyspace (bench/policy.ts, full resync) replayed
// without etcd or a kernel: a real PolicyAgent and Syncer fed page by page, in the pages the
// agent asks etcd for, with every key and value made afresh from bytes as the range decoder
// makes them. CPU-bound and alone in its process, so two builds of the agent can be compared on
// a shared machine by the minimum of their runs. Prints CPU and wall time to in sync, and the
// render and apply after it (against a kernel that takes anything). Asserts nothing.
import { EventEmitter } from 'node:events';
import {
  Syncer,
  silentLogger,
  type Datastore,
  type PrefixPage,
  type SyncHandler,
  type SyncerOptions,
} from '@calico/datastore';
import { networkPrefix } from '@calico/keyspace';
import { createLogger } from '@calico/log';
import { PolicyAgent, type KernelBackend } from '@calico/node';
import { policyFixtures } from '@calico/policy';
import { median } from './stats.js';

const RUNS = Number(process.env.BENCH_REPLAY_RUNS ?? 9);
const V4_FIRST = 198 * 2 ** 24 + 18 * 2 ** 16 + 1 * 2 ** 8;
const v4 = (n: number) => {
  const a = V4_FIRST + n;
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
};
const eid = (host: number, i: number) =>
  `${(host * 100_000 + i).toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;

// The full resync's keyspace: 100 hosts x 1,000 endpoints in 1,000 groups, sorted as etcd holds it.
const kvs: { key: string; value: string }[] = [];
const members: string[][] = Array.from({ length: 1000 }, () => []);
for (let h = 0; h < 100; h++) {
  for (let i = 0; i < 1000; i++) {
    const id = eid(h, i);
    kvs.push(
      ...policyFixtures.endpoint({
        host: `host${h}`,
        endpointId: id,
        addrs: [v4(h * 1000 + i)],
        mac: '0e:00:00:00:00:01',
      }),
    );
    members[(h * 1000 + i) % 1000]!.push(id);
  }
}
for (let g = 0; g < 1000; g++) kvs.push(...policyFixtures.group(policyFixtures.addgroup(`group${g}`, members[g])));
kvs.sort((a, b) => (a.key < b.key ? -1 : 1));

// Pages as the agent reads them: hosts and groups side by side, 5,000 keys first, then 50,000;
// each page one buffer with the keys' and values' offsets, as etcd's answer is.
type Page = { bytes: Buffer; at: Uint32Array };
const pagesOf = (list: typeof kvs): Page[] => {
  const out: Page[] = [];
  for (let i = 0, size = 5_000; i < list.length; i += size, size = 50_000) {
    const items = list.slice(i, i + size);
    const parts = items.flatMap((kv) => [Buffer.from(kv.key), Buffer.from(kv.value)]);
    const at = new Uint32Array(parts.length + 1);
    parts.forEach((b, j) => {
      at[j + 1] = at[j]! + b.length;
    });
    out.push({ bytes: Buffer.concat(parts), at });
  }
  return out;
};
const keys = kvs.length;
const cut = kvs.findIndex((kv) => kv.key.startsWith(networkPrefix));
const [hosts, groups] = [pagesOf(kvs.slice(0, cut)), pagesOf(kvs.slice(cut))];
const order: Page[] = [];
for (let i = 0; i < Math.max(hosts.length, groups.length); i++)
  order.push(...[hosts[i], groups[i]].filter((p) => p !== undefined));
kvs.length = 0;
const REVISION = 406_001;

/** A page's keys made as they are iterated, the way the range decoder's iterable does. */
function decoded({
  bytes,
  at,
}: Page): Iterable<{ key: string; value: string; modRevision: number }> & { length: number } {
  return {
    length: (at.length - 1) / 2,
    *[Symbol.iterator]() {
      for (let j = 0; j + 2 < at.length; j += 2) {
        yield {
          key: bytes.toString('utf8', at[j], at[j + 1]),
          value: bytes.toString('utf8', at[j + 1], at[j + 2]),
          modRevision: REVISION - 1,
        };
      }
    },
  };
}

const store = {
  logger: silentLogger,
  async *pages(): AsyncGenerator<PrefixPage> {
    for (const page of order) {
      await new Promise((r) => setImmediate(r));
      // Fresh strings for every page, as the range decoder makes them while the agent iterates.
      yield { revision: REVISION, kvs: decoded(page) };
    }
  },
  client: {
    watch: () => ({
      prefix: () => ({
        startRevision: () => ({
          create: async () => Object.assign(new EventEmitter(), { cancel: async () => undefined }),
        }),
      }),
    }),
  },
  revision: async () => REVISION,
  syncer(prefix: string, handler: SyncHandler, opts: SyncerOptions): Syncer {
    return new Syncer(this as unknown as Datastore, prefix, handler, opts);
  },
};
const kernel: KernelBackend = {
  iptablesSave: async () => '',
  ipsetSave: async () => '',
  iptablesRestore: async () => undefined,
  ipsetRestore: async () => undefined,
  conntrackFlush: async () => undefined,
};

const runs: { cpu: number; sync: number; after: number }[] = [];
for (let i = 0; i < RUNS; i++) {
  const logger = createLogger({ name: 'replay', level: 'silent' });
  const agent = new PolicyAgent({
    host: 'host0',
    ds: store as unknown as Datastore,
    kernel,
    logger,
    dataplaneResyncMs: 0,
  });
  let inSync!: (t: number) => void;
  const synced = new Promise<number>((r) => (inSync = r));
  const handleStatus = agent.handleStatus.bind(agent);
  agent.handleStatus = (status, reason) => {
    if (status === 'in-sync') inSync(performance.now());
    handleStatus(status, reason);
  };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  agent.start();
  const t1 = await synced;
  const cpu = process.cpuUsage(cpu0);
  await agent.idle();
  runs.push({ cpu: (cpu.user + cpu.system) / 1000, sync: t1 - t0, after: performance.now() - t1 });
  await agent.stop();
}
const fig = (k: keyof (typeof runs)[number]) => {
  const xs = runs.map((r) => r[k]);
  return `min ${Math.min(...xs).toFixed(0)} median ${median(xs).toFixed(0)} ms`;
};
console.log(`replayed first sync, ${keys} keys, ${RUNS} runs (absolute; compare builds by their minimum)`);
console.log(
  `  CPU to in sync: ${fig('cpu')}; wall to in sync: ${fig('sync')}; render and apply after it: ${fig('after')}`,
);
