export { PolicyError, PolicyErrorCode } from './errors.js';

export { PolicyModel, emptyChange } from './model.js';
export type {
  Endpoint,
  EndpointAddrs,
  Group,
  ModelChange,
  ModelUpdate,
  PolicySnapshot,
  Problem,
  RuleRef,
} from './model.js';

export { endpointPolicy, endpointsOnHost, groupAddrs, groupsOfEndpoint, referencedGroups } from './endpointPolicy.js';
export type { EndpointPolicy } from './endpointPolicy.js';

export { explain } from './explain.js';
export {
  BGP_PORT,
  ControlPlaneKeys,
  ETCD_PEER_PORT,
  MASTER_DEFAULT_PORT,
  controlPlaneExemptions,
  controlPlaneTargets,
  describeTarget,
  targetSetMember,
} from './controlPlane.js';
export type { ControlPlaneHost, ControlPlaneInput, ControlPlaneService, ControlPlaneTarget } from './controlPlane.js';
export { ruleAppliesTo } from './internal/rules.js';
export type { ExplainOptions, ExplainQuery, SideVerdict, Verdict, VerdictEnd } from './explain.js';

export { policyFixtures } from './testing.js';
export type { EndpointFixture, GroupFixture, KeyValue } from './testing.js';

export { OUTSIDE, addrsOf, randomCluster, randomConnections } from './randomCluster.js';
export type {
  RandomCluster,
  RandomClusterOptions,
  RandomConnection,
  RandomConnectionOptions,
  RandomEndpoint,
  RandomGroup,
} from './randomCluster.js';
