// scripts/test-summary.mjs decides whether the whole suite passed; here on made-up workspaces.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readReport, requiredReports, summarize } from '../../../scripts/testSummary.mjs';

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

/** A workspace: package folder → its package.json scripts. */
function workspace(packages: Record<string, Record<string, string>>): string {
  const root = mkdtempSync(join(tmpdir(), 'calico-summary-'));
  roots.push(root);
  const yaml = ['packages:', '  - packages/*', '  - test-e2e', '  - bench', 'onlyBuiltDependencies:', '  - x', ''];
  writeFileSync(join(root, 'pnpm-workspace.yaml'), yaml.join('\n'));
  for (const [dir, scripts] of Object.entries(packages)) {
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, dir, 'package.json'), JSON.stringify({ name: dir, scripts }));
  }
  return root;
}

const clean = {
  numTotalTests: 3,
  numPassedTests: 3,
  numFailedTests: 0,
  numFailedTestSuites: 0,
  numPendingTests: 0,
  success: true,
};

/** A report as vitest's JSON reporter writes it, with what RunReporter adds. */
function report(root: string, dir: string, kind: string, r: Record<string, unknown> = {}): void {
  mkdirSync(join(root, dir, '.test-results'), { recursive: true });
  const json = JSON.stringify({ ...clean, unhandledErrors: [], ...r });
  writeFileSync(join(root, dir, '.test-results', `${kind}.json`), json);
}

const unit = 'CALICO_TEST_KIND=unit vitest run --project unit';
const int = 'CALICO_TEST_KIND=int vitest run --project int';
const e2e = 'CALICO_TEST_KIND=e2e vitest run';
const layout = {
  'packages/a': { build: 'tsc', test: unit, 'test:int': int },
  'packages/b': { build: 'tsc', test: unit },
  'packages/demo': { build: 'tsc' },
  'test-e2e': { 'test:e2e': e2e },
  bench: { build: 'tsc', 'bench:proxy': 'node dist/proxy.js' },
};
const allReports = (root: string) => {
  report(root, 'packages/a', 'unit');
  report(root, 'packages/a', 'int');
  report(root, 'packages/b', 'unit');
  report(root, 'test-e2e', 'e2e');
};

describe('test summary', () => {
  it('requires one report per test script, and none of a package without test scripts', () => {
    const root = workspace(layout);
    const kinds = requiredReports(root).map((q) => `${q.dir} ${q.kind}`);
    expect(kinds).toEqual(['packages/a unit', 'packages/a int', 'packages/b unit', 'test-e2e e2e']);
  });

  it('passes when every report is there and clean', () => {
    const root = workspace(layout);
    allReports(root);
    expect(summarize(root)).toMatchObject({ passed: 12, failed: 0, ok: true, total: 'tests: 12 passed, 0 failed' });
  });

  it('a package whose runner wrote no report fails the run, by name', () => {
    const root = workspace(layout);
    allReports(root);
    rmSync(join(root, 'packages/a/.test-results/int.json'));
    const s = summarize(root);
    expect(s).toMatchObject({ passed: 9, failed: 1, ok: false });
    expect(s.rows.filter((r) => r.includes('no report'))).toEqual([
      '  packages/a                   int   no report: "pnpm test:int" wrote no .test-results/int.json ' +
        '(its runner crashed or never ran)',
    ]);
  });

  it("vitest's success flag and errors outside any test fail the run though every test passed", () => {
    const root = workspace(layout);
    allReports(root);
    report(root, 'packages/b', 'unit', { success: false });
    report(root, 'test-e2e', 'e2e', { unhandledErrors: ['Error: left behind'] });
    const s = summarize(root);
    expect(s).toMatchObject({ passed: 12, failed: 2, ok: false });
    const rowOf = (dir: string) => s.rows.find((r) => r.includes(dir));
    expect(rowOf('packages/b')).toMatch(/3 passed, 1 failed; vitest reports the run as failed \(success: false\)$/);
    expect(rowOf('test-e2e')).toMatch(/3 passed, 1 failed; 1 error\(s\) outside any test: Error: left behind$/);
  });

  it('a script that does not name its report is a failure of its own', () => {
    const root = workspace({ ...layout, 'packages/b': { test: 'vitest run --project unit' } });
    allReports(root);
    const s = summarize(root);
    expect(s.ok).toBe(false);
    const problem = 'script "test" must set CALICO_TEST_KIND=unit (it sets none)';
    expect(s.rows).toContain(`  packages/b                   unit  ${problem}`);
  });

  it.each([
    ['no tests ran', { numTotalTests: 0, numPassedTests: 0 }, { passed: 0, failed: 1, notes: ['no tests ran'] }],
    ['a failed test', { numPassedTests: 2, numFailedTests: 1, success: false }, { passed: 2, failed: 1, notes: [] }],
    ['a file that did not load', { numPassedTests: 2, numFailedTestSuites: 1, success: false }, { failed: 1 }],
    ['a skipped test', { numPassedTests: 2, numPendingTests: 1 }, { passed: 2, failed: 0, skipped: 1, notes: [] }],
  ])('reads %s', (_name, r, want) => {
    expect(readReport(JSON.stringify({ ...clean, ...r }))).toMatchObject(want);
  });

  it('a report cut short is a failure', () => {
    const r = readReport('{"numTotalTests": 3, "numPass');
    expect(r).toMatchObject({ failed: 1, notes: [expect.stringMatching(/^unreadable report/)] });
  });
});
