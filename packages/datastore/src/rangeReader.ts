import { Client, credentials, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import type { DatastoreConfig } from './config.js';
import { decodeRangeResponse, encodeRangeRequest, type RangeRequest, type RangeResult } from './internal/rangeCodec.js';

const RANGE = '/etcdserverpb.KV/Range';
const identity = (b: Buffer): Buffer => b;

/**
 * Large reads of etcd on their own gRPC channel, decoded by rangeCodec. Everything else goes
 * through etcd3; this exists because snapshots of a big keyspace were spending more time in
 * generic protobuf decoding than etcd spent serving them.
 */
export class RangeReader {
  private readonly clients: (Client | undefined)[];
  private readonly creds: ChannelCredentials;
  /** The endpoint that answered last; tried first. */
  private current = 0;

  constructor(
    private readonly config: DatastoreConfig,
    private readonly timeoutMs: number,
  ) {
    this.clients = config.endpoints.map(() => undefined);
    const tls = config.tls;
    this.creds = tls
      ? credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null)
      : credentials.createInsecure();
  }

  /**
   * One Range call, tried on each endpoint in turn while they are unreachable. A page too big
   * for one message is read as two halves, so a few huge values cannot make a snapshot impossible.
   */
  async range(req: RangeRequest): Promise<RangeResult> {
    try {
      return await this.onAnyEndpoint(req);
    } catch (e) {
      if ((e as ServiceError).code !== status.RESOURCE_EXHAUSTED || req.limit === 1) throw e;
      const limit = req.limit > 1 ? Math.ceil(req.limit / 2) : 10_000;
      return this.range({ ...req, limit });
    }
  }

  close(): void {
    for (const c of this.clients) c?.close();
    this.clients.fill(undefined);
  }

  private async onAnyEndpoint(req: RangeRequest): Promise<RangeResult> {
    const n = this.clients.length;
    let lastErr: unknown;
    for (let i = 0; i < n; i++) {
      const at = (this.current + i) % n;
      try {
        const r = await this.call(at, req);
        this.current = at;
        return r;
      } catch (e) {
        const code = (e as ServiceError).code;
        if (code !== status.UNAVAILABLE && code !== status.DEADLINE_EXCEEDED) throw e;
        // A channel that failed waits out gRPC's reconnect backoff (up to minutes); the callers
        // retry on their own schedule, so the next try dials afresh.
        this.clients[at]?.close();
        this.clients[at] = undefined;
        lastErr = e;
      }
    }
    throw lastErr;
  }

  private call(at: number, req: RangeRequest): Promise<RangeResult> {
    const client = (this.clients[at] ??= new Client(target(this.config.endpoints[at] as string), this.creds, {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      // Its own connection: gRPC would otherwise share one with etcd3's channels (same target and
      // options), and this channel's failures would hold theirs back too.
      'grpc.use_local_subchannel_pool': 1,
      'grpc-node.flow_control_window': 16 * 1024 * 1024,
    }));
    return new Promise((resolve, reject) => {
      // gRPC's own deadline, and one of ours a moment later: a call caught in a channel that was
      // closed under it (another call failed on the same endpoint) was seen never to answer.
      const guard = setTimeout(() => {
        call.cancel();
        reject(
          Object.assign(
            new Error(`etcd at ${this.config.endpoints[at]} did not answer a range within ${this.timeoutMs} ms`),
            { code: status.DEADLINE_EXCEEDED },
          ),
        );
      }, this.timeoutMs + 1_000);
      const call = client.makeUnaryRequest(
        RANGE,
        identity,
        identity,
        encodeRangeRequest(req),
        { deadline: Date.now() + this.timeoutMs },
        (err, res) => {
          clearTimeout(guard);
          if (err || !res) reject(err ?? new Error('etcd answered a range with nothing'));
          else {
            try {
              resolve(decodeRangeResponse(res));
            } catch (e) {
              reject(e);
            }
          }
        },
      );
    });
  }
}

/** gRPC wants host:port, not a URL. */
function target(endpoint: string): string {
  return endpoint.replace(/^https?:\/\//, '');
}
