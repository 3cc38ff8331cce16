export { DevCluster, nodeMainJs, bgpConfigMainJs, masterMainJs } from './cluster.js';
export type { DevClusterOptions, DevHost } from './cluster.js';
