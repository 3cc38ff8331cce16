import { defineConfig } from 'vitest/config';
import { JsonReporter, type SerializedError, type TestModule, type TestRunEndReason } from 'vitest/node';

/**
 * In CI (scripts/test.sh exports CI=true) snapshots are only compared, never written: a missing,
 * changed or obsolete snapshot fails the run. Elsewhere vitest writes new ones as usual, and
 * `vitest run -u` rewrites them on purpose.
 */
const ci = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';

/**
 * vitest's JSON report plus what it leaves out: the errors that escaped every test (an unhandled
 * rejection, an error thrown after a test ended). vitest exits 1 for them, yet its report says
 * `success: true`; scripts/test-summary.mjs counts `unhandledErrors` as a failure.
 */
export class RunReporter extends JsonReporter {
  private unhandled: string[] = [];
  private reason: TestRunEndReason = 'passed';

  override async onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<SerializedError> = [],
    reason: TestRunEndReason = 'passed',
  ): Promise<void> {
    this.unhandled = unhandledErrors.map((e) => `${e.name ?? 'Error'}: ${e.message ?? String(e)}`);
    this.reason = reason;
    await super.onTestRunEnd(testModules);
  }

  override async writeReport(report: string): Promise<void> {
    const extra = { unhandledErrors: this.unhandled, runEnd: this.reason };
    await super.writeReport(JSON.stringify({ ...JSON.parse(report), ...extra }));
  }
}

/**
 * One test setup for every package: unit tests are pure and need no root; *.int.test.ts run
 * against real parts (etcd, dockerd, the kernel), one file at a time. Each run also writes a
 * JSON report that scripts/test-summary.mjs adds up into one closing line.
 */
export function packageTestConfig() {
  return defineConfig({
    test: {
      ...(ci ? { update: 'none' as const } : {}),
      reporters: ['default', new RunReporter({})],
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
