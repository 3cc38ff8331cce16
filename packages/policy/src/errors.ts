/** Codes of every PolicyError, so callers (the master's HTTP API, calicoctl check) branch without parsing messages. */
export const PolicyErrorCode = {
  /** An endpoint id that the model does not know. */
  UNKNOWN_ENDPOINT: 'UNKNOWN_ENDPOINT',
  /** An endpoint has no address of the family the question needs. */
  NO_ADDRESS: 'NO_ADDRESS',
  /** Source and destination are of different IP families. */
  FAMILY_MISMATCH: 'FAMILY_MISMATCH',
  /** A question that cannot be asked: bad protocol, port or family. */
  INVALID_QUERY: 'INVALID_QUERY',
} as const;

export type PolicyErrorCode = (typeof PolicyErrorCode)[keyof typeof PolicyErrorCode];

export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  readonly code: PolicyErrorCode;

  constructor(code: PolicyErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
