export { collect, TOOL, REDACTION_NOTE } from './collect.js';
export type { CollectOptions, Collection, HostSummary, SourceResult, ArchiveEntry } from './collect.js';
export { SOURCES, SourceAbsent, SourceFailed, defaultHostDirs } from './sources.js';
export type { Source, SourceContext, SourceOutput, OutputFile, HostDirs } from './sources.js';
export { writeArchive, archiveStream, archiveBaseName, timestamp } from './archive.js';
export type { ArchiveContent } from './archive.js';
export { upload, UploadError, answeredUrl, backoffDelay, isRetryable } from './upload.js';
export type { UploadOptions, UploadResult, UploadMethod } from './upload.js';
export { DiagsServer, registerDiagsUrl } from './server.js';
export type { DiagsServerOptions } from './server.js';
export { discoverDiagsHosts, fetchCluster, hostFolders, hostFolder } from './cluster.js';
export type { ClusterHost, ClusterSummary, HostFetchResult, FetchOptions } from './cluster.js';
export { runDiags, DiagsUsageError, DIAGS_EXIT, retryCommand, shellQuote, fmtBytes } from './command.js';
export type { DiagsCommandOptions, DiagsIO } from './command.js';
export {
  redactText,
  redactJson,
  redactJsonText,
  redactKeyspaceValue,
  redactDockerInspect,
  scrubSecrets,
  isSecretName,
  isKeyFile,
  REDACTED,
  maskUrl,
  urlSecrets,
  isSecretQueryParam,
} from './redact.js';
export type { SecretSink } from './redact.js';
export { DIAGS_COLLECT_FLAG_OPTIONS, loadConfig, USAGE } from './config.js';
export type { DiagsCli } from './config.js';
