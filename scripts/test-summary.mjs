// Adds up the JSON reports every vitest run wrote (<package>/.test-results/<kind>.json) into one
// closing line, "tests: N passed, N failed, N skipped". Exits non-zero when anything failed or was
// skipped, when no test ran at all, when a package's test script left no report (its runner
// crashed), or when a run had errors outside any test: a skipped test is a defect here, not a pass.
// The reports every package must write follow from its package.json scripts (scripts/testSummary.mjs).
import { summarize } from './testSummary.mjs';

const root = process.argv[2] ?? new URL('..', import.meta.url).pathname;
const s = summarize(root);
console.log(s.rows.join('\n'));
console.log(s.total);
if (!s.ok) process.exit(1);
