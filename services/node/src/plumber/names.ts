/** Host-side interfaces the node owns all start with this; nothing else is touched. */
export const HOST_IF_PREFIX = 'cali';

/** Host side of a workload's veth: the prefix and 11 hex digits of the endpoint id (15 chars, the kernel's limit). */
export function hostIfName(endpointId: string): string {
  const hex = endpointId.replace(/[^0-9a-fA-F]/g, '').toLowerCase();
  if (hex.length < 11) throw new Error(`endpoint id "${endpointId}" has too few hex digits to name an interface`);
  return `${HOST_IF_PREFIX}${hex.slice(0, 11)}`;
}

/**
 * Kernel protocol number of the routes the plumber programs to workloads (`ip route … proto 80`;
 * unnamed in iproute2's rt_protos). BIRD exports only routes with it, so a route someone else put
 * on a cali interface stays local. The node publishes it in etcd (route_proto) for bgp-config.
 */
export const WORKLOAD_ROUTE_PROTO = 80;

/** Fixed MAC of every host-side veth, so the container's IPv6 gateway has one known address. */
export const HOST_IF_MAC = 'ee:ee:ee:ee:ee:ee';
/** The link-local address the kernel derives from HOST_IF_MAC (EUI-64). */
export const HOST_IF_LINK_LOCAL = 'fe80::ecee:eeff:feee:eeee';

/** A locally administered, unicast MAC for a container. */
export function randomMac(random: (n: number) => Buffer): string {
  const b = random(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
