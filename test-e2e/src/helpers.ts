import { explain, type PolicyModel, policyFixtures, type GroupFixture } from '@calico/policy';
import { calicoRoot, isIP } from '@calico/keyspace';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { DevCluster, type DevClusterOptions, type DevHost } from '@calico/devcluster';
import { LABELS } from '@calico/node';
import { requireRoot, waitFor } from '@calico/testkit';

export interface Workload {
  name: string;
  host: DevHost;
  /** docker exec straight to dockerd, so that it works while the node (and its proxy) is down. */
  exec(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  id: string;
  endpointId: string;
  addr: string;
}

/** Starts a long-running container through the host's proxy with CALICO_IP and a tiny TCP server on 80 and 8080. */
export async function startWorkload(cluster: DevCluster, host: DevHost, name: string, addr: string): Promise<Workload> {
  const image = cluster.image;
  const r = await host.docker([
    'run',
    '-d',
    '--name',
    `wl-${name}-${Date.now() % 100000}`,
    '-e',
    `CALICO_IP=${addr}`,
    image,
    'sh',
    '-c',
    'nc -ll -p 80 -e echo port80 & nc -ll -p 8080 -e echo port8080 & exec sleep 3600',
  ]);
  if (r.code !== 0) throw new Error(`starting ${name}: ${r.stderr}`);
  const id = r.stdout.trim();
  const endpointId = (
    await host.docker(['inspect', '-f', `{{index .Config.Labels "${LABELS.endpoint}"}}`, id])
  ).stdout.trim();
  return { name, host, id, endpointId, addr, exec: (args) => cluster.dockerd.docker(['exec', id, ...args]) };
}

/** One ICMP echo from a workload to an address; true when answered. */
export async function pings(from: Workload, to: string): Promise<boolean> {
  const r = await from.exec(['ping', '-c', '1', '-W', '1', to]);
  return r.code === 0;
}

/** A TCP connection from a workload to addr:port; true when the server's greeting came back. */
export async function connects(from: Workload, to: string, port: number): Promise<boolean> {
  const r = await from.exec(['sh', '-c', `nc -w 2 ${to} ${port} </dev/null`]);
  return r.stdout.includes(`port${port}`);
}

/** Writes a group's keys (as an orchestrator would) in one transaction. */
export async function writeGroup(cluster: DevCluster, g: GroupFixture): Promise<void> {
  await cluster.ds.batch(policyFixtures.group(g).map((kv) => ({ put: kv.key, value: kv.value })));
}

/** Who reaches whom by ping, as "A->C" strings, sorted. */
export async function pingMatrix(workloads: readonly Workload[]): Promise<string[]> {
  const pairs = workloads.flatMap((a) => workloads.filter((b) => b !== a).map((b) => [a, b] as const));
  const ok = await Promise.all(pairs.map(async ([a, b]) => ((await pings(a, b.addr)) ? `${a.name}->${b.name}` : null)));
  return ok.filter((x): x is string => x !== null).sort();
}

/** The policy model of everything under /calico/ now, read back from etcd. */
export async function modelFromEtcd(cluster: DevCluster): Promise<PolicyModel> {
  const { kvs } = await cluster.ds.getPrefix(calicoRoot);
  return policyFixtures.model(kvs);
}

/** Who may ping whom according to explain() over what etcd holds, as "A->C" strings, sorted. */
export async function explainedMatrix(cluster: DevCluster, workloads: readonly Workload[]): Promise<string[]> {
  const m = await modelFromEtcd(cluster);
  const pairs = workloads.flatMap((a) => workloads.filter((b) => b !== a).map((b) => [a, b] as const));
  return pairs
    .filter(
      ([a, b]) => explain(m, { src: a.addr, dst: b.addr, protocol: isIP(a.addr) === 6 ? 'icmpv6' : 'icmp' }).allowed,
    )
    .map(([a, b]) => `${a.name}->${b.name}`)
    .sort();
}

/**
 * Polls the ping matrix until it equals what explain() says of the keys in etcd now (policy
 * takes a moment to reach the kernel). `want`, when given, is what the test's scenario says:
 * explain() must say the same, so a wrong explain() cannot make a wrong kernel pass.
 */
export async function expectMatrix(
  cluster: DevCluster,
  workloads: readonly Workload[],
  want?: string[],
  timeoutMs = 15_000,
): Promise<void> {
  const explained = await explainedMatrix(cluster, workloads);
  if (want !== undefined && JSON.stringify(explained) !== JSON.stringify([...want].sort())) {
    throw new Error(
      `explain() says ${JSON.stringify(explained)} where the scenario says ${JSON.stringify([...want].sort())}`,
    );
  }
  await waitForMatrix(workloads, explained, timeoutMs);
}

/** Polls the ping matrix until it equals want. */
export async function waitForMatrix(workloads: readonly Workload[], want: string[], timeoutMs = 15_000): Promise<void> {
  let last: string[] = [];
  await waitFor(
    `reachability ${JSON.stringify(want)}`,
    async () => JSON.stringify((last = await pingMatrix(workloads))) === JSON.stringify([...want].sort()),
    timeoutMs,
    () => `last seen: ${JSON.stringify(last)}`,
  );
}

/** What the node's agent logs once the first full sync is in the kernel. */
const PROGRAMMED = 'dataplane programmed from the first full sync';

/** Starts (or restarts) a host's node and waits for its agent's own word that the kernel is programmed. */
export async function startNodeProgrammed(cluster: DevCluster, host: string): Promise<void> {
  const count = (log: string) => log.split(PROGRAMMED).length - 1;
  const before = count(cluster.host(host).node?.log() ?? '');
  const node = await cluster.startNode(host);
  await waitFor(
    `the agent on ${host} to program the first full sync`,
    () => count(node.log()) > before,
    30_000,
    () => node.log().slice(-3000),
  );
}

/** A host's node metrics (GET /metrics in its namespace): sample name with labels → value. */
export async function nodeMetrics(cluster: DevCluster, host: string): Promise<Map<string, number>> {
  const text = await cluster
    .host(host)
    .ns.execOk([
      process.execPath,
      '-e',
      "fetch('http://127.0.0.1:9091/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))",
    ]);
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/**
 * A DevCluster for the describe block this is called in: started before its tests (before the
 * block's own beforeAll, which gets it from the function returned), shown with cluster.dump()
 * when one of them failed, and stopped after them.
 */
export function clusterForSuite(opts: DevClusterOptions): () => DevCluster {
  let cluster: DevCluster | undefined;
  let failed = false;
  beforeAll(async () => {
    requireRoot();
    cluster = await DevCluster.start(opts);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) console.error(await cluster.dump());
    await cluster?.stop();
  });
  return () => {
    if (!cluster) throw new Error('the cluster did not start');
    return cluster;
  };
}
