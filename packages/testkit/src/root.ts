/** Integration tests drive the kernel, etcd and dockerd for real: they need root, and say so. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('integration tests need root (network namespaces, iptables, dockerd): run them as root');
  }
}
