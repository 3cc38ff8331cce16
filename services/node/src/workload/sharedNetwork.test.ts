import { describe, expect, it } from 'vitest';
import { LABELS } from './createRequest.js';
import { joinedContainer, joinRefusal, joinsCalicoWorkload, type Inspected } from './sharedNetwork.js';

interface FakeContainer {
  id: string;
  name: string;
  calico?: boolean;
  mode?: string;
}

/** dockerd's GetContainer over a list: full id, then name (leading "/" optional), then a unique id prefix. */
function fakeInspect(containers: FakeContainer[], failing: string[] = []) {
  const asked: string[] = [];
  const inspect = async (ref: string): Promise<Inspected> => {
    asked.push(ref);
    if (failing.includes(ref)) return { status: 500 };
    const name = ref.replace(/^\//, '');
    const byPrefix = containers.filter((c) => c.id.startsWith(ref));
    const c =
      containers.find((x) => x.id === ref) ??
      containers.find((x) => x.name === name) ??
      (byPrefix.length === 1 ? byPrefix[0] : undefined);
    if (!c) return { status: 404 };
    const Labels: Record<string, string> = c.calico ? { [LABELS.host]: 'h1', other: 'x' } : { other: 'x' };
    return { status: 200, doc: { Id: c.id, Config: { Labels }, HostConfig: { NetworkMode: c.mode ?? 'default' } } };
  };
  return { inspect, asked };
}

const hex = (ch: string) => ch.repeat(64);
const workload: FakeContainer = { id: hex('a'), name: 'web', calico: true, mode: 'none' };
const plain: FakeContainer = { id: hex('b'), name: 'plain' };

describe('joinedContainer reads a network mode as dockerd does', () => {
  it.each([
    ['container:web', 'web'],
    ['container:/web', '/web'],
    ['container:a:b', 'a:b'],
    ['container:', ''],
    ['Container:web', undefined],
    ['container', undefined],
    [':web', undefined],
    ['none', undefined],
    ['host', undefined],
    ['', undefined],
    [5, undefined],
    [undefined, undefined],
  ])('%j', (mode, want) => {
    expect(joinedContainer(mode)).toBe(want);
  });
});

describe('joining the network of a Calico workload', () => {
  const refs = [['web'], ['/web'], [hex('a')], ['aaaaaaaaaaaa'], ['a']];
  it.each(refs)('is found by name, full id or id prefix: %s', async (ref) => {
    const { inspect } = fakeInspect([workload, plain]);
    const v = await joinsCalicoWorkload(inspect, ref);
    expect(v).toEqual({ ok: false, kind: 'calico', chain: [ref], id: hex('a') });
    if (!v.ok && v.kind === 'calico') {
      expect(joinRefusal(v)).toBe(
        `calico: --net container:${ref} would share the network of Calico workload aaaaaaaaaaaa: ` +
          "the container would take the workload's address and groups without being one; " +
          'start it with its own CALICO_IP instead',
      );
    }
  });

  it('control: a container without our label, or one dockerd does not know, may be joined', async () => {
    const { inspect } = fakeInspect([workload, plain]);
    expect(await joinsCalicoWorkload(inspect, 'plain')).toEqual({ ok: true });
    expect(await joinsCalicoWorkload(inspect, 'b')).toEqual({ ok: true });
    expect(await joinsCalicoWorkload(inspect, 'nonesuch')).toEqual({ ok: true });
    expect(await joinsCalicoWorkload(inspect, '')).toEqual({ ok: true });
  });

  it("follows a container that itself shares a workload's network, and says through which", async () => {
    const side: FakeContainer = { id: hex('c'), name: 'side', mode: 'container:web' };
    const outer: FakeContainer = { id: hex('d'), name: 'outer', mode: `container:${hex('c').slice(0, 12)}` };
    const { inspect, asked } = fakeInspect([workload, plain, side, outer]);
    const v = await joinsCalicoWorkload(inspect, 'outer');
    expect(v).toEqual({ ok: false, kind: 'calico', chain: ['outer', hex('c').slice(0, 12), 'web'], id: hex('a') });
    expect(asked).toEqual(['outer', hex('c').slice(0, 12), 'web']);
    if (!v.ok && v.kind === 'calico') {
      const via = /Calico workload aaaaaaaaaaaa \(outer shares the network of cccccccccccc shares the network of web\)/;
      expect(joinRefusal(v)).toMatch(via);
    }
    // Control: the same chain ending at a container that is not a workload.
    const { inspect: toPlain } = fakeInspect([plain, { ...side, mode: 'container:plain' }, outer]);
    expect(await joinsCalicoWorkload(toPlain, 'outer')).toEqual({ ok: true });
  });

  it('a cycle ends; a chain deeper than any real one is refused', async () => {
    const x: FakeContainer = { id: hex('e'), name: 'x', mode: 'container:y' };
    const y: FakeContainer = { id: hex('f'), name: 'y', mode: 'container:x' };
    expect(await joinsCalicoWorkload(fakeInspect([x, y]).inspect, 'x')).toEqual({ ok: true });
    const deep: FakeContainer[] = Array.from({ length: 20 }, (_, i) => ({
      id: `${i}`.padStart(64, '0'),
      name: `n${i}`,
      mode: `container:n${i + 1}`,
    }));
    const v = await joinsCalicoWorkload(fakeInspect(deep).inspect, 'n0');
    expect(v).toMatchObject({ ok: false, kind: 'deep' });
    if (!v.ok && v.kind === 'deep') {
      expect(joinRefusal(v)).toMatch(/--net container:n0 joins containers nested more than 16 deep/);
    }
  });

  it('dockerd failing to answer is not taken as "no such container"', async () => {
    const side: FakeContainer = { id: hex('c'), name: 'side', mode: 'container:web' };
    const { inspect } = fakeInspect([workload, side], ['web']);
    const v = await joinsCalicoWorkload(inspect, 'side');
    expect(v).toEqual({ ok: false, kind: 'upstream', status: 500, ref: 'web' });
  });
});
