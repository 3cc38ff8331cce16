import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = PinoLogger;

export interface LoggerOptions {
  /** The service or component, e.g. "node.proxy". */
  name: string;
  /** LOG_LEVEL by default, then "info". */
  level?: string;
  /** stdout by default; a file path or stream otherwise. */
  destination?: string | DestinationStream;
  /** Fields on every line (host name, …). */
  base?: Record<string, unknown>;
}

/** Secrets never reach a log line: these fields are masked wherever they appear in a context. */
export const redactPaths = [
  'password',
  '*.password',
  'token',
  '*.token',
  // "key" alone is an etcd key in most of our logs; only TLS keys are secret.
  'privateKey',
  '*.privateKey',
  'tls.key',
  '*.tls.key',
  'headers.authorization',
  '*.headers.authorization',
  'headers["x-registry-auth"]',
  '*.headers["x-registry-auth"]',
];

export function createLogger(opts: LoggerOptions): Logger {
  const level = opts.level ?? process.env.LOG_LEVEL ?? 'info';
  const dest =
    typeof opts.destination === 'string'
      ? pino.destination({ dest: opts.destination, mkdir: true, sync: false })
      : (opts.destination ?? pino.destination({ dest: 1, sync: false }));
  return pino(
    {
      name: opts.name,
      level,
      base: { pid: process.pid, ...opts.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: redactPaths, censor: '[redacted]' },
    },
    dest,
  );
}
