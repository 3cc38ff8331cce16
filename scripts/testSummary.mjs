// The logic of scripts/test-summary.mjs, apart so that a unit test can drive it on a made-up
// workspace (packages/testkit/src/testSummary.test.ts). No dependencies: it runs after a failed
// build too.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** The package scripts scripts/test.sh runs, and the report (CALICO_TEST_KIND) each must write. */
export const TEST_SCRIPTS = { test: 'unit', 'test:int': 'int', 'test:e2e': 'e2e' };

/** The workspace's package folders, relative to root, from pnpm-workspace.yaml's `packages:` list. */
export function workspacePackages(root) {
  const yaml = readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8').split('\n');
  const patterns = [];
  let inList = false;
  for (const line of yaml) {
    if (/^packages:\s*$/.test(line)) inList = true;
    else if (/^\S/.test(line)) inList = false;
    else if (inList) {
      const m = /^\s+-\s+['"]?([^'"#\s]+)['"]?/.exec(line);
      if (m) patterns.push(m[1]);
    }
  }
  const dirs = [];
  for (const p of patterns) {
    if (p.endsWith('/*')) {
      const base = p.slice(0, -2);
      if (!existsSync(join(root, base))) continue;
      const names = readdirSync(join(root, base)).sort();
      for (const name of names) if (existsSync(join(root, base, name, 'package.json'))) dirs.push(`${base}/${name}`);
    } else if (existsSync(join(root, p, 'package.json'))) dirs.push(p);
  }
  return dirs;
}

/**
 * Every report the run must have produced: one per test script of each package, named by the
 * CALICO_TEST_KIND its script sets. A script that sets none, or another, is a problem of its own:
 * its report could not be told apart.
 */
export function requiredReports(root) {
  const out = [];
  for (const dir of workspacePackages(root)) {
    const scripts = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')).scripts ?? {};
    for (const [script, kind] of Object.entries(TEST_SCRIPTS)) {
      const command = scripts[script];
      if (command === undefined) continue;
      const set = /\bCALICO_TEST_KIND=(\S+)/.exec(command)?.[1];
      const wrong = `script "${script}" must set CALICO_TEST_KIND=${kind} (it sets ${set ?? 'none'})`;
      out.push({ dir, script, kind, problem: set === kind ? null : wrong });
    }
  }
  return out;
}

/** One vitest JSON report read into counts, and what makes it a failure although no test failed. */
export function readReport(text) {
  let r;
  try {
    r = JSON.parse(text);
  } catch (e) {
    const notes = [`unreadable report (${e.message}); did its run crash while writing it?`];
    return { passed: 0, failed: 1, skipped: 0, notes };
  }
  const passed = r.numPassedTests ?? 0;
  // A file that failed to load fails a suite, not a test.
  const failedTests = (r.numFailedTests ?? 0) || (r.numFailedTestSuites ?? 0);
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  const notes = [];
  let failed = failedTests;
  // A test task that found nothing to run is a failure, not a pass.
  if ((r.numTotalTests ?? 0) === 0) {
    notes.push('no tests ran');
    failed += 1;
  }
  const unhandled = r.unhandledErrors ?? [];
  if (unhandled.length > 0) {
    notes.push(`${unhandled.length} error(s) outside any test: ${unhandled[0]}`);
    failed += 1;
  }
  if (r.success === false && failed === 0) {
    notes.push('vitest reports the run as failed (success: false)');
    failed += 1;
  }
  return { passed, failed, skipped, notes };
}

/**
 * Adds up the reports under <package>/.test-results/ into rows and totals. A required report
 * that is missing counts as a failure: its runner crashed, or never ran.
 */
export function summarize(root) {
  const rows = [];
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const required = requiredReports(root);
  const row = (dir, kind, text) => rows.push(`  ${dir.padEnd(28)} ${kind.padEnd(5)} ${text}`);
  for (const dir of workspacePackages(root)) {
    const resDir = join(root, dir, '.test-results');
    const files = existsSync(resDir) ? readdirSync(resDir) : [];
    const present = files.filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
    const mine = required.filter((q) => q.dir === dir);
    for (const q of mine.filter((x) => x.problem)) {
      failed += 1;
      row(dir, q.kind, q.problem);
    }
    const kinds = [...new Set([...mine.filter((q) => !q.problem).map((q) => q.kind), ...present])].sort();
    for (const kind of kinds) {
      if (!present.includes(kind)) {
        const q = mine.find((x) => x.kind === kind);
        failed += 1;
        const why = `no report: "pnpm ${q.script}" wrote no .test-results/${kind}.json`;
        row(dir, kind, `${why} (its runner crashed or never ran)`);
        continue;
      }
      const r = readReport(readFileSync(join(resDir, `${kind}.json`), 'utf8'));
      passed += r.passed;
      failed += r.failed;
      skipped += r.skipped;
      const counts = `${r.passed} passed, ${r.failed} failed${r.skipped ? `, ${r.skipped} skipped` : ''}`;
      row(dir, kind, [counts, ...r.notes].join('; '));
    }
  }
  const total = `tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`;
  return { rows, passed, failed, skipped, total, ok: failed === 0 && skipped === 0 && passed > 0 };
}
