export { CalicoClient } from './client.js';
export type { GroupInfo } from './client.js';
export { buildView } from './view.js';
export type { ClusterView, HostInfo, WorkloadInfo } from './view.js';
export { ClientError, ClientErrorCode } from './errors.js';
