import { defineConfig } from 'vitest/config';
import { RunReporter } from '../vitest.shared.js';

// Serial, with long hooks: each file starts a whole cluster of real parts. The report counts
// errors outside tests too (see vitest.shared.ts). CI runs every file; CALICO_E2E_QUICK=1
// leaves out the long fault and load tests (*.long.e2e.test.ts) for a quick local run.
export default defineConfig({
  test: {
    include: ['src/**/*.e2e.test.ts'],
    exclude: process.env.CALICO_E2E_QUICK === '1' ? ['src/**/*.long.e2e.test.ts'] : [],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 300_000,
    ...(process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0' ? { update: 'none' as const } : {}),
    reporters: ['default', new RunReporter({})],
    outputFile: { json: `.test-results/${process.env.CALICO_TEST_KIND ?? 'e2e'}.json` },
  },
});
