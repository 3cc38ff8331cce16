import { describe, expect, it } from 'vitest';
import { LABELS } from '../workload/createRequest.js';
import { objectMembers, rewriteInspect } from './inspectRewrite.js';

const labels = {
  [LABELS.host]: 'h1',
  [LABELS.endpoint]: 'e1',
  [LABELS.addrs]: '198.19.0.5,fd00:198:19::5',
  [LABELS.mac]: 'ee:00:00:00:00:05',
};

/** An inspect answer shaped as dockerd 20.10 writes it: Config, then NetworkSettings last. */
interface Over {
  labels?: Record<string, unknown> | null;
  networks?: Record<string, unknown>;
  env?: string[];
}
function inspect(over: Over = {}): string {
  const doc = {
    Id: 'c'.repeat(64),
    Name: '/w',
    HostConfig: { NetworkMode: 'none', Binds: ['/usr/bin/busybox:/.calico/busybox:ro'], Memory: 0 },
    Config: {
      Hostname: 'cccccccccccc',
      Env: over.env ?? ['CALICO_IP=198.19.0.5'],
      Labels: over.labels === undefined ? labels : over.labels,
    },
    NetworkSettings: {
      Bridge: '',
      IPAddress: '',
      IPPrefixLen: 0,
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      MacAddress: '',
      Networks: over.networks ?? { none: { IPAMConfig: null, IPAddress: '', MacAddress: '' } },
    },
  };
  return `${JSON.stringify(doc)}\n`;
}

/** What the answer must say: the same document with the workload's address in NetworkSettings. */
function expected(text: string): unknown {
  const doc = JSON.parse(text) as { NetworkSettings: Record<string, unknown> };
  Object.assign(doc.NetworkSettings, {
    IPAddress: '198.19.0.5',
    IPPrefixLen: 32,
    GlobalIPv6Address: 'fd00:198:19::5',
    GlobalIPv6PrefixLen: 128,
    MacAddress: 'ee:00:00:00:00:05',
  });
  return doc;
}

describe('objectMembers', () => {
  it('finds each member of one level, skipping strings and nested values whole', () => {
    const text = ' { "a" : "x\\"}{[" , "b":{"c":[1,{"d":"}"}]},"e\\u0041":-1.5e3,"f":[],"g":null,"a":true } ';
    const m = objectMembers(text)!;
    const at = (k: string) => text.slice(...m.get(k)!);
    expect([...m.keys()]).toEqual(['a', 'b', 'eA', 'f', 'g']);
    const want = ['true', '{"c":[1,{"d":"}"}]}', '-1.5e3', '[]', 'null'];
    expect([at('a'), at('b'), at('eA'), at('f'), at('g')]).toEqual(want);
    expect(objectMembers(text, text.indexOf('{"c"'))!.get('c')).toEqual([text.indexOf('[1,'), text.indexOf(']}') + 1]);
  });

  const bad = ['', '[]', '"x"', '{"a"}', '{"a":', '{"a":1', '{"a":"x}', '{a:1}', '{"a":1 "b":2}'];
  it.each(bad)('is undefined for %j', (text) => {
    expect(objectMembers(text)).toBeUndefined();
  });
});

describe('rewriteInspect', () => {
  it("fills the workload's address and MAC, and keeps every other byte as dockerd sent it", () => {
    const text = inspect();
    const out = rewriteInspect(text, 'h1')!;
    expect(JSON.parse(out)).toEqual(expected(text));
    const start = text.indexOf('"NetworkSettings":');
    expect(out.slice(0, start)).toBe(text.slice(0, start));
    expect(out.endsWith('}\n')).toBe(true);
  });

  it('keeps integers beyond 2^53 exactly, where they are and in the network settings', () => {
    const text = inspect()
      .replace('"Memory":0', '"Memory":9223372036854775807')
      .replace('"Bridge":""', '"Bridge":"","Big":12345678901234567890');
    const out = rewriteInspect(text, 'h1')!;
    expect(out).toContain('"Memory":9223372036854775807');
    expect(out).toContain('"Big":12345678901234567890');
    expect(JSON.stringify(JSON.parse(out))).toBe(JSON.stringify(expected(text)));
  });

  it("is undefined for containers that are not this host's workloads", () => {
    expect(rewriteInspect(inspect({ labels: { ...labels, [LABELS.host]: 'h2' } }), 'h1')).toBeUndefined();
    expect(rewriteInspect(inspect({ labels: null }), 'h1')).toBeUndefined();
    expect(rewriteInspect(inspect({ labels: { other: 'h1', x: LABELS.host } }), 'h1')).toBeUndefined();
    // Our labels written anywhere but Config.Labels are not the container's labels.
    const elsewhere = inspect({ labels: { mine: '1' }, env: [JSON.stringify({ Labels: labels })] });
    expect(rewriteInspect(elsewhere, 'h1')).toBeUndefined();
    expect(rewriteInspect('not json h1 org.projectcalico.host', 'h1')).toBeUndefined();
  });

  it('is not misled by keys that look like the ones it splices', () => {
    // A label, an Env string and a network named like the members it looks for.
    const text = inspect({
      labels: { ...labels, NetworkSettings: '{"IPAddress":"6.6.6.6"}', Config: '"Labels":{}' },
      env: ['"NetworkSettings":{"Bridge":""}', 'x\\"}'],
      networks: { NetworkSettings: { IPAMConfig: null, IPAddress: '', MacAddress: '' }, Config: { Labels: {} } },
    });
    const out = rewriteInspect(text, 'h1')!;
    expect(JSON.parse(out)).toEqual(expected(text));
  });

  it('reads an answer whose members are not where dockerd puts them, whole', () => {
    const doc = JSON.parse(inspect()) as Record<string, unknown>;
    const { NetworkSettings: _ns, ...rest } = doc;
    const text = JSON.stringify(rest);
    const out = rewriteInspect(text, 'h1')!;
    expect((JSON.parse(out) as { NetworkSettings: unknown }).NetworkSettings).toEqual({
      IPAddress: '198.19.0.5',
      IPPrefixLen: 32,
      GlobalIPv6Address: 'fd00:198:19::5',
      GlobalIPv6PrefixLen: 128,
      MacAddress: 'ee:00:00:00:00:05',
    });
  });
});
