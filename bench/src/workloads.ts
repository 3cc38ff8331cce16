import type { DevCluster } from '@calico/devcluster';
import { groupMemberKey, groupRuleKey } from '@calico/keyspace';
import { LABELS } from '@calico/node';
import { waitFor, execOk } from '@calico/testkit';

export interface BenchWorkload {
  id: string;
  addr: string;
  pid: number;
  endpointId: string;
}

/** A long-running workload through the host's proxy, in a group that lets everything in and out. */
export async function startServerWorkload(
  cluster: DevCluster,
  host: string,
  name: string,
  addr: string,
): Promise<BenchWorkload> {
  const h = cluster.host(host);
  const r = await h.docker([
    'run',
    '-d',
    '--name',
    `bench-${name}-${Date.now() % 100000}`,
    '-e',
    `CALICO_IP=${addr}`,
    cluster.image,
    'sleep',
    '3600',
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
  const id = r.stdout.trim();
  const pid = Number((await cluster.dockerd.dockerOk(['inspect', '-f', '{{.State.Pid}}', id])).trim());
  const endpointId = (
    await cluster.dockerd.dockerOk(['inspect', '-f', `{{index .Config.Labels "${LABELS.endpoint}"}}`, id])
  ).trim();
  await cluster.ds.put(groupMemberKey('bench-open', endpointId), '');
  await cluster.ds.put(
    groupRuleKey('bench-open', 'inbound', 1),
    JSON.stringify({ group: null, cidr: '0.0.0.0/0', protocol: null, port: null }),
  );
  await cluster.ds.put(
    groupRuleKey('bench-open', 'outbound', 1),
    JSON.stringify({ group: null, cidr: '0.0.0.0/0', protocol: null, port: null }),
  );
  return { id, addr, pid, endpointId };
}

export async function pingsOk(from: BenchWorkload, to: string): Promise<void> {
  await waitFor(
    `ping ${to}`,
    async () => {
      try {
        await execOk(['nsenter', `--net=/proc/${from.pid}/ns/net`, 'busybox', 'ping', '-c', '1', '-W', '1', to]);
        return true;
      } catch {
        return false;
      }
    },
    30_000,
  );
}
