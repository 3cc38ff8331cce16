import { defineConfig } from 'vitest/config';

// Serial, with long hooks: each file starts a whole cluster of real parts.
export default defineConfig({
  test: {
    include: ['src/**/*.e2e.test.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 300_000,
    reporters: ['default', 'json'],
    outputFile: { json: `.test-results/${process.env.CALICO_TEST_KIND ?? 'e2e'}.json` },
  },
});
