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
export {
  DEFAULT_TOOL_TIMEOUT_MS,
  TOOL_TIMEOUT_ENV,
  ToolError,
  describeArgv,
  groupMembers,
  runTool,
  runToolOk,
  toolTimeoutMs,
} from './tool.js';
export type { ToolFailure, ToolOptions, ToolResult } from './tool.js';
