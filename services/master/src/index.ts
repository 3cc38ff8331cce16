export { startMaster, apiUrl } from './master.js';
export type { MasterDeps, RunningMaster } from './master.js';
export {
  loadMasterConfig,
  parseListen,
  parseDuration,
  formatDuration,
  MASTER_USAGE,
  DEFAULT_PORT,
  DURATION_RULE,
  MIN_DEAD_HOSTS_AFTER_MS,
} from './config.js';
export type { MasterConfig } from './config.js';
export { decideGc, emptyTracker } from './gc.js';
export type { GcAction, GcDecision, GcInput, GcTracker, HostSeen } from './gc.js';
export { GarbageCollector } from './collector.js';
export type { CollectorOptions } from './collector.js';
export { apiRoutes, createApiHandler } from './api.js';
export type { ApiDeps, Handler, Reply, RequestContext } from './api.js';
export { matchRoute, pathSegments } from './router.js';
export type { Method, Route, RouteMatch } from './router.js';
export { ApiError, ApiErrorCode, toApiError } from './errors.js';
export { createMetrics } from './metrics.js';
export type { MasterMetrics, MetricsSource } from './metrics.js';
export {
  parseCheckQuery,
  parseDirection,
  parseGroupBody,
  parseHostParam,
  parseJsonObject,
  parseMemberBody,
  parsePoolBody,
  parsePoolParam,
  parseRuleBody,
  parseRemoveHostQuery,
  parseRuleIndex,
} from './validate.js';
export type { CheckQuery, MemberTarget } from './validate.js';
