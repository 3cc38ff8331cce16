#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine with Node 20, as root:
# the real parts (Debian packages), pnpm (pinned by package.json) and node modules.
# Skips whatever is already present, so running it again is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[install] %s\n' "$*"; }

# Debian package -> a file it ships that tells us it is installed.
declare -A probe=(
  [etcd-server]=/usr/bin/etcd
  [etcd-client]=/usr/bin/etcdctl
  [docker.io]=/usr/sbin/dockerd
  [bird2]=/usr/sbin/bird
  [iptables]=/usr/sbin/iptables
  [ipset]=/usr/sbin/ipset
  [iproute2]=/usr/sbin/ip
  [busybox-static]=-
  [iperf3]=/usr/bin/iperf3
  [conntrack]=/usr/sbin/conntrack
  [procps]=/usr/bin/pgrep
  [debootstrap]=/usr/sbin/debootstrap
  [docker-compose]=/usr/bin/docker-compose
  [file]=/usr/bin/file
)
missing=()
for pkg in "${!probe[@]}"; do
  # "-": only the package itself will do (busybox-static: a dynamic busybox cannot be imported).
  if [ "${probe[$pkg]}" != - ] && [ -e "${probe[$pkg]}" ]; then continue; fi
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "[install] need root to install Debian packages: ${missing[*]}" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps docker.io from pulling in extras; policy-rc.d stops
  # Debian's postinst from starting a system dockerd/etcd/bird we did not ask for.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.calico && chmod +x /usr/sbin/policy-rc.d.calico
  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ "$had_policy" = 0 ] && cp /usr/sbin/policy-rc.d.calico /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$had_policy" = 0 ] && rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.calico
else
  say "Debian packages present"
fi

# pnpm, at the version package.json pins.
want_pnpm="$(node -p "require('./package.json').packageManager.split('@')[1]")"
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$want_pnpm" ]; then
  say "installing pnpm@$want_pnpm"
  npm install -g --silent "pnpm@$want_pnpm" >/dev/null
else
  say "pnpm $want_pnpm present"
fi

say "installing node modules"
pnpm install --frozen-lockfile --reporter=append-only > /tmp/calico-pnpm-install.log 2>&1 || {
  cat /tmp/calico-pnpm-install.log >&2
  echo "[install] pnpm install failed (log above)" >&2
  exit 1
}
tail -n 3 /tmp/calico-pnpm-install.log
say "done"
