#!/usr/bin/env bash
# Builds the service images from this workspace with production dependencies only:
#   calico/node (calico-node, bgp-config, BIRD), calico/master, calico/diags, calico/etcd.
# Uses the daemon in DOCKER_HOST. RUN steps install Debian packages, so builds use the
# daemon's host network. Run "pnpm build" (or scripts/test.sh / scripts/demo.sh) first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tag="${CALICO_IMAGE_TAG:-dev}"
bash "$here/base/make-base.sh"
rm -rf "$here/.build"
mkdir -p "$here/.build"
for p in node bgp-config master diags; do
  [ -f "$root/services/$p/dist/main.js" ] || { echo "[images] services/$p is not built: run pnpm build first" >&2; exit 1; }
  echo "[images] packaging @calico/$p (production dependencies only)"
  (cd "$root" && pnpm --filter "@calico/$p" deploy --prod --legacy "$here/.build/$p" >/dev/null)
done
for i in etcd master node diags; do
  echo "[images] building calico/$i:$tag"
  DOCKER_BUILDKIT=0 docker build -q --network host -t "calico/$i:$tag" -f "$here/images/$i/Dockerfile" "$here" >/dev/null
done
rm -rf "$here/.build"
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^calico/' || true
