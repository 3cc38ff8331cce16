#!/bin/sh
# bgp-config (which keeps BIRD running) in the background, calico-node in the foreground; if
# either stops, the container stops, and its restart policy brings both back.
set -e
: "${CALICO_HOSTNAME:?set CALICO_HOSTNAME}" "${CALICO_NODE_IP:?set CALICO_NODE_IP}"
state=/var/lib/calico/$CALICO_HOSTNAME
mkdir -p "$state" /var/run/calico
node /opt/calico/bgp-config/dist/main.js --hostname="$CALICO_HOSTNAME" --state-dir="$state" --run-bird &
bgp=$!
node /opt/calico/node/dist/main.js --hostname="$CALICO_HOSTNAME" --ip="$CALICO_NODE_IP" \
  --docker="${CALICO_DOCKER_HOST:-unix:///var/run/docker.sock}" \
  --listen="${CALICO_PROXY_LISTEN:-127.0.0.1:2375}" --wait-binary="${CALICO_WAIT_BINARY:-/bin/busybox}" \
  --status-file=/var/run/calico/agent-status.json "$@" &
nodepid=$!
trap 'kill $bgp $nodepid 2>/dev/null; wait' TERM INT
# Whichever exits first ends the container.
while kill -0 $bgp 2>/dev/null && kill -0 $nodepid 2>/dev/null; do sleep 1; done
kill $bgp $nodepid 2>/dev/null || true
wait
exit 1
