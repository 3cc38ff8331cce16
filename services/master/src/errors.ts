import { ClientError, ClientErrorCode } from '@calico/client';
import { KeyspaceError } from '@calico/keyspace';
import { PolicyError } from '@calico/policy';

/**
 * Every code the API answers with, and its HTTP status. The domain codes are CalicoClient's own
 * (same status), so calicoctl and the API fail alike; the rest belong to HTTP itself.
 */
export const ApiErrorCode = {
  INVALID: ClientErrorCode.INVALID.http,
  NOT_FOUND: ClientErrorCode.NOT_FOUND.http,
  AMBIGUOUS: ClientErrorCode.AMBIGUOUS.http,
  CONFLICT: ClientErrorCode.CONFLICT.http,
  UNAVAILABLE: ClientErrorCode.UNAVAILABLE.http,
  UNAUTHORIZED: 401,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INTERNAL: 500,
} as const;
export type ApiErrorCode = keyof typeof ApiErrorCode;

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ApiError';
  }

  get status(): number {
    return ApiErrorCode[this.code];
  }

  toJSON(): { error: { code: ApiErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/**
 * Anything thrown → an ApiError. Domain errors keep their code; etcd's gRPC failures mean etcd
 * is away (503, try again); everything else is INTERNAL and keeps the original as its cause.
 */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof ClientError) return new ApiError(e.code, e.message, { cause: e });
  if (e instanceof KeyspaceError || e instanceof PolicyError) return new ApiError('INVALID', e.message, { cause: e });
  if (e instanceof Error && /^GRPC\w*Error$/.test(e.name)) {
    return new ApiError(
      'UNAVAILABLE',
      `etcd did not answer (${e.message}); a write may or may not have been applied: read it back, then retry`,
      { cause: e },
    );
  }
  return new ApiError('INTERNAL', e instanceof Error ? e.message : String(e), { cause: e });
}
