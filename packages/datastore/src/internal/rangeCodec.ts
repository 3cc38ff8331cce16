// etcd's KV.Range messages, encoded and decoded by hand. A snapshot of a large keyspace is
// hundreds of thousands of keys; the generic protobuf path (etcd3 → proto-loader) builds a
// Buffer for every key and value and a decimal string for every 64-bit field, and that costs
// more than etcd's own work. Here each key and value becomes one string, straight from the
// message, and the fields nobody reads are skipped.
//
// Field numbers: etcdserverpb.RangeRequest / RangeResponse / ResponseHeader and mvccpb.KeyValue
// (etcd api/etcdserverpb/rpc.proto, api/mvccpb/kv.proto).

export interface RangeRequest {
  key: Buffer;
  /** Empty: the key alone. */
  rangeEnd: Buffer;
  /** 0: no limit. */
  limit: number;
  /** 0: the newest revision. */
  revision: number;
  /**
   * Served by the member asked, without a quorum round. Safe at a fixed revision: a member that
   * has not reached it answers with an error, never with older data.
   */
  serializable?: boolean;
}

export interface RangeKeyValue {
  key: string;
  value: string;
  modRevision: number;
}

/**
 * A page's keys, decoded one at a time as they are iterated: a consumer that handles each key
 * and lets it go leaves short-lived garbage only (a 50,000-key page decoded at once would live
 * long enough to be promoted to the old heap, and the heap would grow by pages).
 */
export class RangeKeyValues implements Iterable<RangeKeyValue> {
  constructor(
    private readonly buf: Buffer,
    /** Start and end of each KeyValue message in buf. */
    private readonly spans: Uint32Array,
  ) {}

  get length(): number {
    return this.spans.length / 2;
  }

  [Symbol.iterator](): Iterator<RangeKeyValue> {
    // A plain iterator rather than a generator: this loop runs once per key of a snapshot.
    const { buf, spans } = this;
    let i = 0;
    // One result object, refilled: for-of reads it before asking for the next.
    const result = { done: false, value: undefined as unknown as RangeKeyValue };
    return {
      next: (): IteratorResult<RangeKeyValue> => {
        if (i >= spans.length) return { done: true, value: undefined };
        result.value = decodeKeyValue(buf, spans[i] as number, spans[i + 1] as number);
        i += 2;
        return result;
      },
    };
  }
}

export interface RangeResult {
  /** The revision the range was read at (the header's). */
  revision: number;
  kvs: RangeKeyValues;
  /** More keys are in the range than the limit let through. */
  more: boolean;
  /** The last key's bytes as etcd holds them (the next page starts after them, whatever their encoding). */
  lastKey: Buffer | undefined;
}

export class RangeCodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RangeCodecError';
  }
}

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

function varintBytes(n: number, out: number[]): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeCodecError(`cannot encode ${n} as a varint`);
  // Division, not shifts: shifts would cut revisions above 2^31.
  while (n > 127) {
    out.push((n % 128) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

function bytesField(field: number, value: Buffer, out: number[]): void {
  varintBytes((field << 3) | LENGTH_DELIMITED, out);
  varintBytes(value.length, out);
  for (const b of value) out.push(b);
}

export function encodeRangeRequest(req: RangeRequest): Buffer {
  const out: number[] = [];
  bytesField(1, req.key, out);
  // Left out when empty, as proto3 encoders do: etcd reads a range_end that is present but
  // empty as "every key from here on", and would walk its whole index for a one-key read.
  if (req.rangeEnd.length > 0) bytesField(2, req.rangeEnd, out);
  if (req.limit > 0) {
    varintBytes((3 << 3) | VARINT, out);
    varintBytes(req.limit, out);
  }
  if (req.revision > 0) {
    varintBytes((4 << 3) | VARINT, out);
    varintBytes(req.revision, out);
  }
  if (req.serializable) {
    varintBytes((7 << 3) | VARINT, out);
    out.push(1);
  }
  return Buffer.from(out);
}

/** A cursor over one message; every read checks that it stays inside it. */
class Reader {
  pos: number;
  constructor(
    public buf: Buffer,
    start: number,
    public end: number,
  ) {
    this.pos = start;
  }

  /** Points the cursor at another message (one cursor serves every key of a page). */
  reset(buf: Buffer, start: number, end: number): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    return this;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new RangeCodecError('truncated varint');
      const b = this.buf[this.pos++] as number;
      result += (b & 127) * scale;
      if (b < 128) return result;
      scale *= 128;
    }
    throw new RangeCodecError('varint longer than 10 bytes');
  }

  /** Moves past a length-delimited field's bytes and returns where they start; they end at pos. */
  lengthDelimited(): number {
    const len = this.varint();
    const start = this.pos;
    const end = start + len;
    if (end > this.end) throw new RangeCodecError('length-delimited field runs past its message');
    this.pos = end;
    return start;
  }

  skip(wireType: number): void {
    if (wireType === VARINT) this.varint();
    else if (wireType === LENGTH_DELIMITED) this.lengthDelimited();
    else if (wireType === FIXED64) this.advance(8);
    else if (wireType === FIXED32) this.advance(4);
    else throw new RangeCodecError(`unsupported wire type ${wireType}`);
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) throw new RangeCodecError('fixed-size field runs past its message');
    this.pos += n;
  }
}

function decodeHeaderRevision(r: Reader): number {
  const start = r.lengthDelimited();
  const h = new Reader(r.buf, start, r.pos);
  let revision = 0;
  while (!h.done) {
    const tag = h.varint();
    if (tag === ((3 << 3) | VARINT)) revision = h.varint();
    else h.skip(tag & 7);
  }
  return revision;
}

const kvCursor = new Reader(Buffer.alloc(0), 0, 0);

function decodeKeyValue(buf: Buffer, start: number, end: number): RangeKeyValue {
  const m = kvCursor.reset(buf, start, end);
  let key = '';
  let value = '';
  let modRevision = 0;
  while (!m.done) {
    const tag = m.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) {
      const a = m.lengthDelimited();
      key = buf.toString('utf8', a, m.pos);
    } else if (tag === ((5 << 3) | LENGTH_DELIMITED)) {
      const a = m.lengthDelimited();
      value = buf.toString('utf8', a, m.pos);
    } else if (tag === ((3 << 3) | VARINT)) {
      modRevision = m.varint();
    } else m.skip(tag & 7);
  }
  return { key, value, modRevision };
}

/** The raw bytes of a KeyValue message's key. */
function keyBytes(buf: Buffer, start: number, end: number): Buffer {
  const m = new Reader(buf, start, end);
  while (!m.done) {
    const tag = m.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) {
      const a = m.lengthDelimited();
      return Buffer.from(buf.subarray(a, m.pos));
    }
    m.skip(tag & 7);
  }
  return Buffer.alloc(0);
}

/**
 * Reads the header, the `more` flag and where each key is; the keys themselves are decoded as
 * they are iterated. Every message is checked for framing here, so iteration cannot fail on
 * truncation (a malformed key message still throws when reached).
 */
export function decodeRangeResponse(buf: Buffer): RangeResult {
  // Two passes: count the keys, then note where each is, in an array of the right size (a
  // growing one would leave its outgrown copies behind for every page).
  let count = 0;
  for (const r = new Reader(buf, 0, buf.length); !r.done; ) {
    const tag = r.varint();
    if (tag === ((2 << 3) | LENGTH_DELIMITED)) count++;
    r.skip(tag & 7);
  }
  const spans = new Uint32Array(count * 2);
  let revision = 0;
  let more = false;
  let n = 0;
  for (const r = new Reader(buf, 0, buf.length); !r.done; ) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) revision = decodeHeaderRevision(r);
    else if (tag === ((2 << 3) | LENGTH_DELIMITED)) {
      spans[n++] = r.lengthDelimited();
      spans[n++] = r.pos;
    } else if (tag === ((3 << 3) | VARINT)) more = r.varint() !== 0;
    else r.skip(tag & 7);
  }
  const lastKey = n > 0 ? keyBytes(buf, spans[n - 2] as number, spans[n - 1] as number) : undefined;
  return { revision, kvs: new RangeKeyValues(buf, spans), more, lastKey };
}
