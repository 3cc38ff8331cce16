/** Failure kinds of cluster operations, each with the exit code calicoctl uses and the HTTP status the master answers. */
export const ClientErrorCode = {
  INVALID: { exit: 2, http: 400 },
  NOT_FOUND: { exit: 3, http: 404 },
  AMBIGUOUS: { exit: 4, http: 409 },
  CONFLICT: { exit: 5, http: 409 },
  UNAVAILABLE: { exit: 6, http: 503 },
} as const;
export type ClientErrorCode = keyof typeof ClientErrorCode;

export class ClientError extends Error {
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ClientError';
  }
}
