#!/usr/bin/env node
import { run } from './cli.js';
import { supervise, type SupervisorSpec } from './supervisor.js';

const argv = process.argv.slice(2);
if (argv[0] === '_supervise') {
  // The hidden half of "calicoctl node/master": the detached supervisor process.
  await supervise(JSON.parse(argv[1] ?? '{}') as SupervisorSpec);
  process.exit(0);
}
process.exit(await run(argv));
