import { defineConfig } from 'vitest/config';

/**
 * In CI (scripts/test.sh exports CI=true) snapshots are only compared, never written: a missing,
 * changed or obsolete snapshot fails the run. Elsewhere vitest writes new ones as usual, and
 * `vitest run -u` rewrites them on purpose.
 */
const ci = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';

/**
 * One test setup for every package: unit tests are pure and need no root; *.int.test.ts run
 * against real parts (etcd, dockerd, the kernel), one file at a time. Each run also writes a
 * JSON report that scripts/test-summary.mjs adds up into one closing line.
 */
export function packageTestConfig() {
  return defineConfig({
    test: {
      ...(ci ? { update: 'none' as const } : {}),
      reporters: ['default', 'json'],
      outputFile: { json: `.test-results/${process.env.CALICO_TEST_KIND ?? 'run'}.json` },
      projects: [
        { test: { name: 'unit', include: ['src/**/*.test.ts'], exclude: ['src/**/*.int.test.ts'] } },
        {
          test: {
            name: 'int',
            include: ['src/**/*.int.test.ts'],
            fileParallelism: false,
            testTimeout: 120_000,
            hookTimeout: 180_000,
          },
        },
      ],
    },
  });
}
