/** The slice of a pino-style logger this package writes to. */
export interface Logger {
  debug(ctx: object, msg: string): void;
  info(ctx: object, msg: string): void;
  warn(ctx: object, msg: string): void;
  error(ctx: object, msg: string): void;
}

export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
