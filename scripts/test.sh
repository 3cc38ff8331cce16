#!/usr/bin/env bash
# Runs every test on real parts: installs what is missing (Debian packages, pnpm, node
# modules), checks lint and format (Biome), builds, then unit tests (pure), integration tests
# (real etcd, dockerd, kernel) and end-to-end scenarios, and closes with one summary line.
# Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: run as root (tests make network namespaces, iptables rules and run dockerd)" >&2
  exit 1
fi

bash scripts/install-deps.sh
export PATH="$PWD/node_modules/.bin:$PATH"
# CI mode for vitest: a missing or changed snapshot fails instead of being written.
export CI=true
# Turborepo would otherwise phone home; this machine and CI have no network for that.
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
# No stale reports from an earlier run may count.
find packages services test-e2e bench -maxdepth 3 -type d -name .test-results -prune -exec rm -rf {} + 2>/dev/null || true

status=0
# Lint and format first (seconds): a failure fails the run, the tests still run, and the
# verdict is repeated in the summary.
echo "[test] lint and format (biome ci)"
lint=passed
biome ci --error-on-warnings . || lint=failed
if [ "$lint" = failed ]; then
  echo "[test] lint failed: 'pnpm lint:fix' formats and applies the safe fixes; fix the rest by hand (docs/testing.md)" >&2
  status=1
fi
echo "[test] build and typecheck"
built=yes
turbo run build typecheck --output-logs=errors-only || { status=1; built=no; }
if [ "$built" = yes ]; then
  bash scripts/link-calicoctl.sh
  echo "[test] unit tests"
  turbo run test --output-logs=full --continue || status=$?
  echo "[test] integration and e2e tests (real etcd, dockerd, BIRD, kernel)"
  # Every test fabric links the root namespace as 198.18.0.1/24: one run at a time on a machine.
  flock /tmp/calico-e2e.lock turbo run test:int test:e2e --concurrency=1 --output-logs=full --continue || status=$?
fi
echo "[test] summary"
echo "lint: $lint"
node scripts/test-summary.mjs || status=1
exit "$status"
