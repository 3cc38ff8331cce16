import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCluster } from '@calico/devcluster';
import { groupSetName, hostIfName, LABELS } from '@calico/node';
import { processExists } from '@calico/proc';
import { execOk, requireRoot, waitFor } from '@calico/testkit';
import { startWorkload, writeGroup, type Workload } from './helpers.js';

/** Every tool of the node gives up after this (CALICO_TOOL_TIMEOUT_MS; the defaults are 20 and 30 s). */
const TIMEOUT_MS = 8_000;

/**
 * A tool that hangs: stand-ins for `ipset` and `nsenter` sit first on the node's PATH. Each is
 * the real tool, except while its marker file exists: then it says so on stderr, starts a sleep,
 * writes its own pid and the sleep's, and waits. `ipset` hangs for as long as the marker is
 * there; `nsenter` hangs only for one container: the first that enters writes its pid into the
 * marker, and every later call for that pid hangs too (the start's docker event and the proxy's
 * own start both plumb it, in either order), while other containers go through.
 */
describe('a hung tool times out, is killed with what it started, and stalls nothing else', () => {
  let cluster: DevCluster;
  let A: Workload;
  let failed = false;
  const dir = mkdtempSync(join(tmpdir(), 'calico-standins-'));
  const statusFile = join(dir, 'status.json');
  const marker = (tool: string) => join(dir, `hang-${tool}`);
  /** [shell, sleep] of each stand-in that hung, in order. */
  const pidsOf = (tool: string): number[][] => {
    const file = join(dir, `${tool}.pids`);
    if (!existsSync(file)) return [];
    const lines = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean);
    return lines.map((l) => l.split(' ').map(Number));
  };

  async function standIn(tool: string, onePid: boolean): Promise<void> {
    const real = (await execOk(['sh', '-c', `command -v ${tool}`])).trim();
    const m = marker(tool);
    // Plumbing runs one nsenter per container at a time, so claiming the marker cannot race.
    const claim = [
      `p=$(echo "$1" | sed -n 's|^--net=/proc/\\([0-9]*\\)/ns/net$|\\1|p')`,
      `if [ -e ${m} ] && [ ! -s ${m} ]; then echo "$p" > ${m}; fi`,
    ];
    const hangs = onePid ? `[ -e ${m} ] && [ "$(cat ${m})" = "$p" ]` : `[ -e ${m} ]`;
    const script = [
      '#!/bin/sh',
      ...(onePid ? claim : []),
      `if ${hangs}; then`,
      `  echo "${tool} stand-in: hanging" >&2`,
      '  sleep 600 &',
      `  echo "$$ $!" >> ${join(dir, `${tool}.pids`)}`,
      '  wait',
      'fi',
      `exec ${real} "$@"`,
      '',
    ].join('\n');
    writeFileSync(join(dir, tool), script);
    chmodSync(join(dir, tool), 0o755);
  }

  const log = () => cluster.host('h1').node!.log();
  const setHas = async (group: string, addr: string) =>
    (await cluster.host('h1').ns.exec(['ipset', 'list', groupSetName(group, 4)])).stdout.split('\n').includes(addr);
  const lastError = (): string | null => {
    try {
      const status = JSON.parse(readFileSync(statusFile, 'utf8')) as { dataplane: { lastError: string | null } };
      return status.dataplane.lastError;
    } catch {
      return 'unreadable';
    }
  };

  beforeAll(async () => {
    requireRoot();
    await standIn('ipset', false);
    await standIn('nsenter', true);
    cluster = await DevCluster.start({
      hosts: ['h1'],
      nodeArgs: [`--status-file=${statusFile}`],
      nodeEnv: {
        PATH: `${dir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
        CALICO_TOOL_TIMEOUT_MS: String(TIMEOUT_MS),
      },
    });
    A = await startWorkload(cluster, cluster.host('h1'), 'A', '198.19.31.1');
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed && cluster) console.error((await cluster.dump()).slice(0, 200_000));
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the agent: a hung ipset times out, logged by name; the apply is retried, in once ipset answers', async () => {
    // Control: through the stand-in, the real ipset programs a group's set.
    await writeGroup(cluster, { groupId: 'tt-a', members: [A.endpointId], inbound: [{ group: 'tt-a' }] });
    await waitFor('A in the set of tt-a', () => setHas('tt-a', A.addr), 15_000);
    expect(pidsOf('ipset')).toEqual([]);

    writeFileSync(marker('ipset'), '');
    await writeGroup(cluster, { groupId: 'tt-b', members: [A.endpointId], inbound: [{ group: 'tt-b' }] });
    await waitFor('the first hung ipset', () => pidsOf('ipset').length >= 1, 15_000);
    const [[shPid, sleepPid]] = pidsOf('ipset') as [[number, number]];
    expect(processExists(shPid!)).toBe(true);
    expect(processExists(sleepPid!)).toBe(true);
    const timedOut = `ipset -exist restore timed out after ${TIMEOUT_MS} ms and was killed with its process group`;
    const retrying = 'dataplane update failed; retrying in';
    const logLine = () =>
      log()
        .split('\n')
        .find((l) => l.includes(timedOut) && l.includes(retrying));
    const tail = () => log().slice(-3000);
    await waitFor('the timeout in the log', () => logLine() !== undefined, TIMEOUT_MS + 10_000, tail);
    const line = logLine();
    expect(line).toBeDefined();
    expect(line).toContain(`still running then: itself (pid ${shPid}), ${sleepPid} sleep 600;`);
    expect(line).toContain('stderr so far: ipset stand-in: hanging');
    // Killed, the shell and the sleep it started.
    expect(processExists(shPid!)).toBe(false);
    expect(processExists(sleepPid!)).toBe(false);
    // Retried (a second stand-in hangs), and the status says why it is not in yet.
    await waitFor('a retry', () => pidsOf('ipset').length >= 2, 15_000);
    await waitFor('lastError in the status file', () => lastError()?.includes(timedOut) === true, 15_000);
    expect(await setHas('tt-b', A.addr)).toBe(false);

    rmSync(marker('ipset'));
    await waitFor(
      'A in the set of tt-b',
      () => setHas('tt-b', A.addr),
      TIMEOUT_MS + 15_000,
      () => log().slice(-3000),
    );
    await waitFor('lastError cleared', () => lastError() === null, 15_000);
    for (const [sh, sleep] of pidsOf('ipset')) {
      expect([processExists(sh!), processExists(sleep!)]).toEqual([false, false]);
    }
  });

  it('the plumber: a hung nsenter fails its start clearly, leaving nothing; another start goes through', async () => {
    const docker = (args: string[]) => cluster.host('h1').docker(args);
    const run = (name: string, addr: string) =>
      docker(['run', '-d', '--name', name, '-e', `CALICO_IP=${addr}`, cluster.image, 'sleep', '3600']);
    const inContainer = (id: string, argv: string[]) => cluster.dockerd.docker(['exec', id, ...argv]);
    const inspect = async (id: string, format: string) =>
      (await cluster.dockerd.docker(['inspect', '-f', format, id])).stdout.trim();
    writeFileSync(marker('nsenter'), '');
    let settled = false;
    const hung = run('tt-hung', '198.19.31.2').finally(() => (settled = true));
    await waitFor(
      'the hung nsenter',
      () => pidsOf('nsenter').length === 1,
      30_000,
      () => log().slice(-3000),
    );
    const [[, firstSleep]] = pidsOf('nsenter') as [[number, number]];

    // While that start hangs in its plumbing, another container starts and is networked.
    const other = await run('tt-other', '198.19.31.3');
    expect(other.code, other.stderr).toBe(0);
    expect(settled).toBe(false);
    expect(processExists(firstSleep)).toBe(true);
    const otherAddr = await inContainer(other.stdout.trim(), ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(otherAddr.stdout).toContain('inet 198.19.31.3/32');

    const r = await hung;
    // The stand-in that hung the proxy's own attempt is the last (the event's may have come first).
    const hungPids = pidsOf('nsenter');
    expect(hungPids.length === 1 || hungPids.length === 2, JSON.stringify(hungPids)).toBe(true);
    const [shPid] = hungPids[hungPids.length - 1] as [number, number];
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('was stopped because its network could not be set up');
    expect(r.stderr).toContain(`timed out after ${TIMEOUT_MS} ms and was killed with its process group`);
    expect(r.stderr).toContain(`${shPid} /bin/sh ${join(dir, 'nsenter')} --net=/proc/`);
    expect(r.stderr).toContain('stderr so far: nsenter stand-in: hanging');
    const line = log()
      .split('\n')
      .find((l) => l.includes('networking failed; stopping the container'));
    expect(line).toContain(`timed out after ${TIMEOUT_MS} ms and was killed with its process group`);
    for (const [sh, sleep] of hungPids) expect([processExists(sh!), processExists(sleep!)]).toEqual([false, false]);
    // Nothing behind: the container is stopped and its host veth gone.
    const id = await inspect('tt-hung', '{{.Id}}');
    const veth = hostIfName(await inspect(id, `{{index .Config.Labels "${LABELS.endpoint}"}}`));
    await waitFor('tt-hung stopped', async () => (await inspect(id, '{{.State.Running}}')) === 'false', 15_000);
    const vethGone = async () => (await cluster.host('h1').ns.exec(['ip', 'link', 'show', veth])).code !== 0;
    await waitFor('no veth of tt-hung', vethGone, 15_000);

    // The same start with the real nsenter (a new pid, not the one that hangs) networks it.
    const again = await docker(['start', 'tt-hung']);
    expect(again.code, again.stderr).toBe(0);
    const addr = await inContainer(id, ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(addr.stdout).toContain('inet 198.19.31.2/32');
    expect(pidsOf('nsenter')).toEqual(hungPids);
  });
});
