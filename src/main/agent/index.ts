/**
 * src/main/agent: the headless core of the provider. Never imports 'electron', the gateway or
 * the client.
 *
 * - {@link AgentService}: the whole agent (config, models, records, runtime, control methods).
 * - {@link AgentRuntime}: the executor of the pure planner's steps (runtime/planner.ts), with timers.
 * - {@link Agent}: the gateway side (identity, box keys and bundle, link, jobs).
 * - Parts handed in: environment sources, power-save blockers, secret stores, memory probes, the native addon.
 */
export {
  Agent,
  AGENT_VERSION,
  type AgentOptions,
  type AgentMachineOptions,
  selfAttestation,
  type DrainOutcome,
  type JobFigures,
  type Rejection,
  type Welcome,
} from './agent.js';
export { AgentStateStore, type AgentStateChange, type AgentStateSource, type AgentStateStoreOptions } from './state.js';
export {
  GatewayLink,
  LINK_BACKOFF,
  gatewaySocketUrl,
  retryAfterFloor,
  type CancelFrame,
  type GatewayLinkOptions,
  type JobFrame,
  type LinkState,
  type ReceiptAckFrame,
  type RejectFrame,
  type StatusFields,
  type WelcomeFrame,
} from './gateway-link.js';
export { JobRunner, type JobRunnerOptions, type JobStats, type ServedModel } from './job-runner.js';
export { detectPlatform, nativeEnclaveSigner, nativePosture, unattestedPosture, type NativePostureOptions } from './platform.js';
export {
  AGENT_ENCLAVE_TAG,
  ENCLAVE_MESSAGE_MAX_BYTES,
  ENCLAVE_TAG_MAX_BYTES,
  NATIVE_ADDON_RELATIVE_PATH,
  NATIVE_ADDON_VERSION,
  NATIVE_CALLS,
  childProcessTestLoad,
  defaultNativeAddon,
  findNativeAddon,
  judgeTestLoad,
  loadNativeAddon,
  unsupportedNativeAddon,
  type ChildProcessTestLoadOptions,
  type ChipName,
  type CodeSigningStatus,
  type CoreCounts,
  type DebuggerDenial,
  type EnclaveDeletion,
  type EnclaveKey,
  type EnclaveSignature,
  type HidIdle,
  type NativeAddon,
  type NativeAddonInfo,
  type NativeAddonOptions,
  type NativeAnswer,
  type NativeFailure,
  type NativeLoadState,
  type NativeUnsupported,
  type SipStatus,
  type TestLoad,
  type TestLoadResult,
  type ThermalReading,
} from './native/native.js';
export { AgentService, type AgentServiceOptions } from './service.js';
export { AgentRuntime, type AgentRuntimeOptions, type ModelChoice, type WhenStateOptions } from './runtime/runtime.js';
export { plan, reasonOf, stopsAccepting, type PlanInput, type StandDownGoodbye, type Step } from './runtime/planner.js';
export { decide, describeDecision, effectiveManual, type DecisionInput } from './policy/policy.js';
export { inSchedule, inWindow, minutesOf, systemTimeZone, wallClock, type WallClock } from './policy/schedule.js';
export {
  LinuxEnvironmentSource,
  MacEnvironmentSource,
  ManualEnvironmentSource,
  UNKNOWN_SAMPLE,
  defaultEnvironmentSource,
  parseHidIdleTime,
  parsePmsetBatt,
  parsePmsetTherm,
  parseScreenLocked,
  thermalFromCelsius,
  type EnvironmentSample,
  type EnvironmentSource,
  type LinuxEnvironmentSourceOptions,
  type MacEnvironmentSourceOptions,
} from './environment/environment.js';
export { execCommand, type CommandRunner } from './environment/command.js';
export {
  parseVmPressureLevel,
  pressureFromMeminfo,
  pressureFromPsi,
  readMemoryPressure,
  type MemoryPressureOptions,
} from './environment/memory-pressure.js';
export {
  CaffeinateBlocker,
  NoopPowerSaveBlocker,
  defaultPowerSaveBlocker,
  type CaffeinateBlockerOptions,
  type PowerSaveBlocker,
} from './environment/power-save.js';
export { platformPaths, pathsIn, type AgentPaths, type PlatformPathsOptions } from './config/paths.js';
export {
  DEFAULT_CONFIG,
  agentConfigSchema,
  loadConfig,
  loadStateFile,
  parseConfig,
  saveConfig,
  saveStateFile,
  updateConfig,
  type AgentConfig,
  type AgentStateFile,
} from './config/config.js';
export {
  KeychainSecretStore,
  PlaintextFileSecretStore,
  importKeytar,
  loadIdentity,
  loadOrCreateIdentity,
  type KeychainSecretStoreOptions,
  type KeytarApi,
  type SecretStore,
  type StoredIdentity,
} from './secrets/secret-store.js';
export { BUILT_IN_CATALOG, loadCatalogFile, mergeCatalogs, parseCatalog } from './models/catalog.js';
export { ModelStore, isSyntheticFile, trainContextLength, type ModelStoreOptions, type PullOptions } from './models/store.js';
export { downloadFile, partialPaths, type DownloadOptions, type DownloadResult } from './models/download.js';
export { modelChoice, plannedContextLength, type ModelChoiceOptions } from './models/choice.js';
export {
  checkMemoryFit,
  defaultMemoryProbe,
  parseMeminfo,
  parseVmStat,
  type MemoryFit,
  type MemoryFitInput,
  type MemoryInfo,
  type MemoryProbe,
  type MemoryProbeOptions,
} from './models/memory.js';
export {
  SignedReceiptLog,
  localDate,
  operatorMicroCredits,
  readSignedReceiptLog,
  summarizeEarnings,
  undeliveredReceipts,
  DELIVERY_STATES,
  type DeliveryMark,
  type DeliveryState,
  type EarningsOptions,
  type ModelPrice,
  type SignedReceiptLogContents,
  type SignedReceiptLogOptions,
} from './records/receipt-log.js';
export { ReceiptOutbox, MemoryDeliveryLog, type ReceiptDeliveryLog, type ReceiptOutboxOptions } from './receipt-outbox.js';
export {
  ControlServer,
  startControlServer,
  DASHBOARD_SESSION_PATH,
  DASHBOARD_TICKET_PATH,
  type ControlFile,
  type ControlHandlers,
  type ControlServerOptions,
} from './control/control-server.js';
/** The engine contract, its node-llama-cpp implementation and its memory estimate. */
export type {
  EmbedRequest,
  EmbedResult,
  Embedder,
  EngineModelInfo,
  GenerateRequest,
  GenerateResult,
  InferenceEngine,
  InspectRequest,
  ReplyConstraints,
  ReplyInspector,
} from './engine/types.js';
/** The reply checker of audits and disputes (docs/honesty.md "Audits: the check"). */
export { createReplyChecker, type ReplyCheckerHandle, type ReplyCheckerOptions } from './engine/reply-checker.js';
export {
  loadEngine,
  checkLlamaBinding,
  defaultGpu,
  defaultThreads,
  DEFAULT_SAMPLING,
  type EngineGpu,
  type EngineOptions,
} from './engine/engine.js';
export { probeGateway, type GatewayProbe, type GatewayProbeOptions } from './gateway-probe.js';
export { estimateEngineMemory, type EngineMemoryEstimate, type EngineMemoryEstimateOptions } from './engine/estimate.js';
export { sha256File, type Sha256FileOptions } from './models/hash.js';
export {
  writeSyntheticModel,
  syntheticModelId,
  syntheticParameterCount,
  isSyntheticShapeName,
  SYNTHETIC_SHAPES,
  SYNTHETIC_CHAT_TEMPLATE,
  SYNTHETIC_TOKENS,
  SYNTHETIC_GENERATOR_VERSION,
  type SyntheticModelFile,
  type SyntheticModelOptions,
  type SyntheticShape,
  type SyntheticShapeName,
  type SyntheticWeightType,
} from './models/synthetic.js';
