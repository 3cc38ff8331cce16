export {
  checkProcess,
  cmdlineNamesFile,
  parseProcStat,
  processExists,
  provenRecord,
  readCmdline,
  readProcStat,
  recordProcess,
  signalIfOurs,
  stopProcess,
  waitNotAlive,
} from './liveness.js';
export type { CheckOptions, Liveness, ProcOptions, ProcStat, ProcessRecord } from './liveness.js';
