export { createLogger, redactPaths } from './logger.js';
export type { Logger, LoggerOptions } from './logger.js';
