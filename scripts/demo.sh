#!/usr/bin/env bash
# The main job: a two-host cluster of real parts on this machine (dockerd, etcd, BIRD, two
# network-namespace hosts each running calico-node), the getting-started scenario through the
# docker CLI and calicoctl, and its connectivity matrix. The cluster is left running.
#   bash scripts/demo.sh         bring it up (a second run takes the old one down first)
#   bash scripts/demo.sh down    remove all of it
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/demo.sh: run as root (it makes network namespaces, iptables rules and runs dockerd)" >&2
  exit 1
fi
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
if [ "${1:-up}" != down ]; then
  bash scripts/install-deps.sh
  echo "[demo] building"
  node_modules/.bin/turbo run build --output-logs=errors-only >/dev/null
  bash scripts/link-calicoctl.sh
fi
exec node packages/demo/dist/main.js "${1:-up}"
