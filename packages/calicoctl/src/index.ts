export { run, USAGE } from './cli.js';
export { Context, UsageError, table } from './context.js';
export { parseBirdProtocols } from './commands/status.js';
export type { BgpSession } from './commands/status.js';
export { supervise, readSupervisor } from './supervisor.js';
export type { SupervisorSpec, SupervisorState } from './supervisor.js';
