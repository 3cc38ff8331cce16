export { DevCluster } from './cluster.js';
export type { DevClusterOptions, DevHost } from './cluster.js';
