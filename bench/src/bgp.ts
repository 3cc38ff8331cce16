// Benchmark of bgp-config and the data path BGP builds: render time of bird.conf for 10 and
// 1,000 hosts; how many BIRD reloads a burst of 100 host changes costs; and TCP throughput
// between containers on two hosts (iperf3, Debian) next to a plain veth pair between the same
// two namespaces, measured in the same run. Prints figures; asserts nothing.
import { DevCluster } from '@calico/devcluster';
import { bgpInputFrom, birdView, renderBirdConf } from '@calico/bgp-config';
import { birdIpKey } from '@calico/keyspace';
import { exec, execOk, waitFor } from '@calico/testkit';
import { median } from './stats.js';
import { pingsOk, startServerWorkload } from './workloads.js';

const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);

function renderMs(hosts: number, rounds: number): number {
  const kvs = new Map(
    Array.from({ length: hosts }, (_, i): [string, string] => [
      birdIpKey(`h${i}`),
      `10.${Math.floor(i / 250)}.${i % 250}.1`,
    ]),
  );
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    renderBirdConf(birdView(bgpInputFrom(kvs), 'h0'));
    samples.push(performance.now() - t);
  }
  return median(samples);
}

async function iperf(clientNetns: string, server: string): Promise<number> {
  const r = await execOk(['nsenter', `--net=${clientNetns}`, 'iperf3', '-c', server, '-t', '5', '-J'], {
    timeoutMs: 30_000,
  });
  const j = JSON.parse(r) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = {};
  say('render time');
  renderMs(10, 5); // warm the template
  results.render_ms = { hosts_10: renderMs(10, 50), hosts_1000: renderMs(1000, 20) };

  say('two hosts with calico-node, bgp-config and BIRD');
  const cluster = await DevCluster.start({ hosts: ['h1', 'h2'], bgp: true, logLevel: 'info' });
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => void cluster.stop().finally(() => process.exit(130)));
  try {
    // A burst of 100 host changes, as when a hundred nodes join at once.
    say('burst of 100 host changes');
    const h1 = cluster.host('h1');
    const installsBefore = (h1.bgpConfig!.log().match(/bird\.conf written/g) ?? []).length;
    await Promise.all(
      Array.from({ length: 100 }, (_, i) => cluster.ds.put(birdIpKey(`burst${i}`), `198.18.0.${100 + i}`)),
    );
    await waitFor(
      'the burst rendered',
      async () => (await exec(['grep', '-c', 'protocol bgp', h1.bird.config])).stdout.trim() === '101',
      20_000,
    );
    await new Promise((r) => setTimeout(r, 1500));
    const installs = (h1.bgpConfig!.log().match(/bird\.conf written/g) ?? []).length - installsBefore;
    await Promise.all(Array.from({ length: 100 }, (_, i) => cluster.ds.delete(birdIpKey(`burst${i}`))));
    results.burst = { host_changes: 100, reloads: installs };

    say('iperf3: container to container across the two hosts');
    const X = await startServerWorkload(cluster, 'h1', 'X', '198.19.1.1');
    const Y = await startServerWorkload(cluster, 'h2', 'Y', '198.19.2.1');
    await pingsOk(X, Y.addr);
    const yNet = `/proc/${Y.pid}/ns/net`;
    const xNet = `/proc/${X.pid}/ns/net`;
    await execOk(['nsenter', `--net=${yNet}`, 'iperf3', '-s', '-D', '-1', '-p', '5201']);
    await new Promise((r) => setTimeout(r, 300));
    const calico = await iperf(xNet, Y.addr);

    say('iperf3: a plain veth pair between the same two namespaces');
    await execOk([
      'ip',
      'link',
      'add',
      'bench-va',
      'netns',
      String(X.pid),
      'type',
      'veth',
      'peer',
      'name',
      'bench-vb',
      'netns',
      String(Y.pid),
    ]);
    await execOk([
      'nsenter',
      `--net=${xNet}`,
      'sh',
      '-c',
      'ip addr add 198.18.0.251/32 dev bench-va && ip link set bench-va up && ip route add 198.18.0.252/32 dev bench-va',
    ]);
    await execOk([
      'nsenter',
      `--net=${yNet}`,
      'sh',
      '-c',
      'ip addr add 198.18.0.252/32 dev bench-vb && ip link set bench-vb up && ip route add 198.18.0.251/32 dev bench-vb',
    ]);
    await execOk(['nsenter', `--net=${yNet}`, 'iperf3', '-s', '-D', '-1', '-p', '5201']);
    await new Promise((r) => setTimeout(r, 300));
    const plain = await iperf(xNet, '198.18.0.252');
    results.iperf_gbps = { calico, plain_veth: plain, ratio: calico / plain };

    console.log(
      `render: 10 hosts ${(results.render_ms as { hosts_10: number }).hosts_10.toFixed(2)} ms, 1000 hosts ${(results.render_ms as { hosts_1000: number }).hosts_1000.toFixed(2)} ms`,
    );
    console.log(`burst of 100 host changes -> ${installs} reload(s)`);
    console.log(
      `TCP across two hosts: ${calico.toFixed(2)} Gbit/s vs plain veth ${plain.toFixed(2)} Gbit/s = ${(calico / plain).toFixed(3)}x`,
    );
    console.log(JSON.stringify({ bench: 'bgp', when: new Date().toISOString(), results }));
  } finally {
    await cluster.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
