#!/usr/bin/env bash
# Makes the base image locally, since no registry is reachable here: a minimal Debian 12 rootfs
# (debootstrap, from the mirror apt is already configured with) plus this machine's Node 20,
# imported as "node:20-bookworm-slim". The Dockerfiles keep that ordinary name in FROM, so the
# same files build against a registry elsewhere. The rootfs is cached between runs.
set -euo pipefail
IMAGE="${BASE_IMAGE:-node:20-bookworm-slim}"
CACHE="${CALICO_DEPLOY_CACHE:-/var/cache/calico-deploy}"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "[base] $IMAGE present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "[base] debootstrap missing: run scripts/install-deps.sh" >&2; exit 1; }
mkdir -p "$CACHE"
tarball="$CACHE/bookworm-minbase.tar"
if [ ! -s "$tarball" ]; then
  mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [ -n "$mirror" ] || mirror="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)"
  root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  echo "[base] debootstrap bookworm (minbase) into $root — a few minutes the first time"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$CACHE/debootstrap.log" 2>&1 || {
    tail -20 "$CACHE/debootstrap.log" >&2
    exit 1
  }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  # Now, not at exit: the trap below replaces this one.
  rm -rf "$root"
  trap - EXIT
fi
# Node 20 is this machine's own binary; its libraries (libc, libstdc++) are in minbase.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/usr/local/bin"
cp "$(command -v node)" "$work/usr/local/bin/node"
cp "$tarball" "$work/base.tar"
tar -C "$work" -rf "$work/base.tar" ./usr/local/bin/node
docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["node"]' "$work/base.tar" "$IMAGE" >/dev/null
echo "[base] imported $IMAGE ($(docker run --rm --net none "$IMAGE" node --version))"
