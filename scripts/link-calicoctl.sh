#!/usr/bin/env bash
# Puts calicoctl on PATH (/usr/local/bin), pointing at this checkout's build.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$PWD/packages/calicoctl/dist/main.js"
chmod +x "$target"
ln -sf "$target" /usr/local/bin/calicoctl
echo "[install] calicoctl -> $target"
