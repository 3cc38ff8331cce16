/** Every failure this package throws carries one of these codes, so callers can branch without parsing messages. */
export const KeyspaceErrorCode = {
  /** A key part (host, container id, group id, …) is empty or contains "/". */
  INVALID_SEGMENT: 'INVALID_SEGMENT',
  /** A rule index is not a positive integer. */
  INVALID_INDEX: 'INVALID_INDEX',
  /** An IP address given to a builder or helper does not parse. */
  INVALID_ADDRESS: 'INVALID_ADDRESS',
  /** A CIDR given to a builder or helper does not parse. */
  INVALID_CIDR: 'INVALID_CIDR',
  /** A range was asked for a prefix that does not end in "/". */
  INVALID_PREFIX: 'INVALID_PREFIX',
  /** An encoder was handed a value it would refuse to decode. */
  INVALID_VALUE: 'INVALID_VALUE',
} as const;

export type KeyspaceErrorCode = (typeof KeyspaceErrorCode)[keyof typeof KeyspaceErrorCode];

export class KeyspaceError extends Error {
  override readonly name = 'KeyspaceError';
  readonly code: KeyspaceErrorCode;

  constructor(code: KeyspaceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
