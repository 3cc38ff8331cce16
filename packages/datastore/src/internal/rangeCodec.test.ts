// The hand codec against the generic one: messages encoded from etcd's own .proto files (as
// shipped with etcd3) by protobufjs must decode the same here, and ours must decode there.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { loadSync } from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { RangeCodecError, decodeRangeResponse, encodeRangeRequest } from './rangeCodec.js';

const require = createRequire(import.meta.url);
const protoDir = join(dirname(require.resolve('etcd3')), '..', 'proto');
const pkg = loadSync(join(protoDir, 'rpc.proto'), {
  keepCase: true,
  longs: String,
  defaults: true,
  includeDirs: [protoDir],
});
const range = (
  pkg['etcdserverpb.KV'] as unknown as Record<
    string,
    { requestDeserialize(b: Buffer): any; requestSerialize(v: unknown): Buffer; responseSerialize(v: unknown): Buffer }
  >
).Range!;

const kv = (key: string, value: string, mod: string, extra: Record<string, unknown> = {}) => ({
  key: Buffer.from(key),
  value: Buffer.from(value),
  create_revision: '2',
  mod_revision: mod,
  version: '3',
  lease: '7587862',
  ...extra,
});

describe('range codec', () => {
  it('encodes a request the generic decoder reads back field for field', () => {
    const req = range.requestDeserialize(
      encodeRangeRequest({
        key: Buffer.from('/calico/'),
        rangeEnd: Buffer.from('/calico0'),
        limit: 50_000,
        revision: 2 ** 40 + 3,
      }),
    );
    expect(req.key.toString()).toBe('/calico/');
    expect(req.range_end.toString()).toBe('/calico0');
    expect(req.limit).toBe('50000');
    expect(req.revision).toBe(String(2 ** 40 + 3));
    expect(req.serializable).toBe(false);
    const bare = range.requestDeserialize(
      encodeRangeRequest({
        key: Buffer.from('/a'),
        rangeEnd: Buffer.from('/b'),
        limit: 0,
        revision: 0,
        serializable: true,
      }),
    );
    expect([bare.limit, bare.revision, bare.serializable]).toEqual(['0', '0', true]);
  });

  it('leaves an empty range end out, as etcd reads a present empty one as "every key from here"', () => {
    const oneKey = encodeRangeRequest({
      key: Buffer.from('/calico/'),
      rangeEnd: Buffer.alloc(0),
      limit: 1,
      revision: 0,
    });
    // Tag 0x12 is field 2 (range_end), length-delimited.
    expect(oneKey.includes(0x12)).toBe(false);
    expect(oneKey).toEqual(range.requestSerialize({ key: Buffer.from('/calico/'), limit: '1' }));
  });

  it('decodes a response encoded by the generic encoder, 64-bit revisions and UTF-8 included', () => {
    const big = String(2 ** 45 + 17);
    const msg = range.responseSerialize({
      header: { cluster_id: '14841639068965178418', member_id: '10276657743932975437', revision: big, raft_term: '9' },
      kvs: [
        kv('/calico/host/h1/bird_ip', '198.18.0.2', '5'),
        kv('/calico/network/group/grüße/name', 'Grüße ✓', big),
        kv('/calico/x', '', '6'),
      ],
      more: true,
      count: '1000',
    });
    const r = decodeRangeResponse(msg);
    expect(r.revision).toBe(2 ** 45 + 17);
    expect(r.more).toBe(true);
    expect([...r.kvs]).toEqual([
      { key: '/calico/host/h1/bird_ip', value: '198.18.0.2', modRevision: 5 },
      { key: '/calico/network/group/grüße/name', value: 'Grüße ✓', modRevision: 2 ** 45 + 17 },
      { key: '/calico/x', value: '', modRevision: 6 },
    ]);
    expect(r.lastKey).toEqual(Buffer.from('/calico/x'));
  });

  it('an empty range: no keys, no last key, not more', () => {
    const r = decodeRangeResponse(
      range.responseSerialize({ header: { revision: '12' }, kvs: [], more: false, count: '0' }),
    );
    expect({ ...r, kvs: [...r.kvs] }).toEqual({ revision: 12, kvs: [], more: false, lastKey: undefined });
  });

  it('the next page starts after the last key as etcd holds it, even when it is not valid UTF-8', () => {
    const raw = Buffer.from([0x2f, 0x6b, 0xff, 0xfe]);
    const r = decodeRangeResponse(
      range.responseSerialize({
        header: { revision: '3' },
        kvs: [{ key: raw, value: Buffer.from('v'), mod_revision: '3' }],
        more: true,
      }),
    );
    expect(r.lastKey).toEqual(raw);
  });

  it('refuses a truncated message instead of reading past it', () => {
    const msg = range.responseSerialize({
      header: { revision: '3' },
      kvs: [kv('/calico/a', 'value', '3')],
      more: false,
    });
    for (const cut of [1, 5, msg.length - 3])
      expect(() => decodeRangeResponse(msg.subarray(0, cut))).toThrow(RangeCodecError);
  });
});
