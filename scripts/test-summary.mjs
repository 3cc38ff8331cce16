// Adds up the JSON reports every vitest run wrote (<package>/.test-results/*.json) into one
// closing line, "tests: N passed, N failed, N skipped". Exits non-zero when anything failed,
// was skipped, or when no test ran at all: a skipped test is a defect here, not a pass.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
let passed = 0;
let failed = 0;
let skipped = 0;
const rows = [];
for (const group of ['packages', 'services', '.']) {
  const base = join(root, group);
  if (!existsSync(base)) continue;
  const dirs = group === '.' ? ['test-e2e', 'bench'] : readdirSync(base);
  for (const d of dirs) {
    const resDir = join(base, d, '.test-results');
    if (!existsSync(resDir)) continue;
    for (const f of readdirSync(resDir).filter((x) => x.endsWith('.json')).sort()) {
      const r = JSON.parse(readFileSync(join(resDir, f), 'utf8'));
      const p = r.numPassedTests ?? 0;
      const fl = (r.numFailedTests ?? 0) + (r.numFailedTestSuites && !r.numFailedTests ? r.numFailedTestSuites : 0);
      const s = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
      // A test task that found nothing to run is a failure, not a pass.
      if ((r.numTotalTests ?? 0) === 0) {
        failed += 1;
        rows.push(`  ${`${group === '.' ? '' : `${group}/`}${d}`.padEnd(28)} ${f.replace('.json', '').padEnd(5)} no tests ran`);
        continue;
      }
      passed += p;
      failed += fl;
      skipped += s;
      rows.push(`  ${`${group === '.' ? '' : `${group}/`}${d}`.padEnd(28)} ${f.replace('.json', '').padEnd(5)} ${p} passed, ${fl} failed${s ? `, ${s} skipped` : ''}`);
    }
  }
}
console.log(rows.join('\n'));
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
if (failed > 0 || skipped > 0 || passed === 0) process.exit(1);
