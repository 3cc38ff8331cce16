// Types of testSummary.mjs, for the unit test that imports it.
export declare const TEST_SCRIPTS: Readonly<Record<'test' | 'test:int' | 'test:e2e', 'unit' | 'int' | 'e2e'>>;
export declare function workspacePackages(root: string): string[];
export interface RequiredReport {
  dir: string;
  script: string;
  kind: string;
  /** Why the report cannot be found (its script sets no or another CALICO_TEST_KIND), else null. */
  problem: string | null;
}
export declare function requiredReports(root: string): RequiredReport[];
export declare function readReport(text: string): { passed: number; failed: number; skipped: number; notes: string[] };
export declare function summarize(root: string): {
  rows: string[];
  passed: number;
  failed: number;
  skipped: number;
  total: string;
  ok: boolean;
};
