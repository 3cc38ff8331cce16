export { CalicoClient } from './client.js';
export type { ClusterReads, ContainerInfo, GroupInfo, HostRemoval } from './client.js';
export { buildView, keyProblems } from './view.js';
export type { ClusterView, HostInfo, HostState, Notice, WorkloadInfo } from './view.js';
export { indexHosts, knownHosts, membersWithoutEndpoint, planHostRemoval } from './hosts.js';
export type { HostIndex, HostRemovalPlan, IndexedKey } from './hosts.js';
export { ClientError, ClientErrorCode } from './errors.js';
