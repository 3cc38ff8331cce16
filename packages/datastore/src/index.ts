export { Datastore } from './datastore.js';
export type { KeyValue, PrefixSnapshot, PrefixPage, CreateResult, DatastoreOptions } from './datastore.js';
export {
  resolveDatastoreConfig,
  parseEndpoints,
  DatastoreConfigError,
  DEFAULT_ETCD,
  ETCD_FLAG_OPTIONS,
  ETCD_FLAGS_USAGE,
  datastoreConfigFromFlags,
} from './config.js';
export type { DatastoreConfig, DatastoreInput } from './config.js';
export { Syncer } from './syncer.js';
export type { SyncUpdate, SyncBatch, SyncStatus, SyncHandler, SyncerOptions, SyncerStats } from './syncer.js';
export { LeaseKeeper, LeaseConflictError } from './lease.js';
export type { LeaseKeeperOptions } from './lease.js';
export { silentLogger } from './logger.js';
export type { Logger } from './logger.js';
export {
  DEFAULT_API_TOKEN_FILE,
  ApiTokenError,
  apiTokenFileFrom,
  readApiToken,
  ensureApiToken,
  bearerMatches,
} from './apiToken.js';
export {
  API_TLS_FLAG_OPTIONS,
  API_TLS_FLAGS_USAGE,
  API_CLIENT_TLS_FLAG_OPTIONS,
  ApiTlsError,
  apiServerTls,
  httpsServerOptions,
  authenticateRequest,
  apiClientTls,
  hasClientCertificate,
  apiCall,
} from './apiTls.js';
export type {
  ApiServerTls,
  ApiServerTlsFlags,
  ApiAuth,
  ApiClientTls,
  ApiClientTlsInput,
  ApiCallOptions,
  ApiAnswer,
} from './apiTls.js';
