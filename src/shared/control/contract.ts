/**
 * The agent's control API: the typed methods and events a UI (the menu-bar dashboard, the CLI,
 * a browser page) uses to watch and steer a running agent. Pure: the same schemas validate on
 * the agent's loopback HTTP server, in the CLI and in the renderer.
 *
 * Transport (headless agent, see docs/agent.md): every method is `POST /v1/<name>` with a JSON
 * body validated by its `input` schema and a JSON answer matching its `output` schema; errors are
 * `{ error: { code, message } }`. Events are server-sent events on `GET /v1/events`. Every
 * request carries `Authorization: Bearer <token>`.
 */
import { z } from 'zod';
import { ATTESTATION_REASONS } from '../crypto/attestation.js';
import {
  agentIdSchema,
  agentStateSchema,
  finishReasonSchema,
  memoryPressureSchema,
  modelIdSchema,
  platformSchema,
  postureSchema,
  signedReceiptSchema,
  thermalStateSchema,
  trustSchema,
} from '../protocol/schemas.js';

/** Version of the control API; it changes when a method or event changes incompatibly. */
export const CONTROL_API_VERSION = 1;

const timeMs = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const hex32 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 32 bytes of lower-case hex');
/** An integer count of micro-credits (1 credit = 1 000 000) as a decimal string. */
const microCredits = z.string().regex(/^(0|[1-9][0-9]{0,18})$/, 'expected an integer count of micro-credits');
const text = (max: number) => z.string().max(max);

// ---- policy --------------------------------------------------------------------------------

/** Thermal states, coolest first (the names macOS and the status frame use). */
export const THERMAL_STATES = thermalStateSchema.options;

/** Days of the week as schedules name them. */
export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
/** A day of the week. */
export type Weekday = (typeof WEEKDAYS)[number];

const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected HH:MM on a 24-hour clock');

/**
 * A window in which the agent may serve, in wall-clock time of the policy's time zone. `days`
 * are the days the window starts on. A window whose end is not after its start runs overnight
 * into the next day (22:00–07:00); equal start and end is a whole day.
 */
export const scheduleWindowSchema = z.strictObject({
  days: z.array(z.enum(WEEKDAYS)).min(1).max(7),
  start: hhmm,
  end: hhmm,
});
/** A serving window. */
export type ScheduleWindow = z.infer<typeof scheduleWindowSchema>;

/** True if `zone` is an IANA time zone this runtime knows. */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** When the agent may serve. Every field is required here; {@link DEFAULT_POLICY} fills a file's gaps. */
export const policySchema = z.strictObject({
  /** Seconds without keyboard or mouse input before the owner counts as away. */
  idleSeconds: z.int().min(0).max(86_400),
  /** A locked screen counts as away, however recent the last input. */
  lockedCountsAsIdle: z.boolean(),
  /** Serve only on AC power. */
  requireAc: z.boolean(),
  /** On battery (when allowed), serve only above this charge. */
  minBatteryPercent: z.int().min(0).max(100),
  /** Hottest thermal state in which the agent serves. */
  maxThermal: z.enum(['nominal', 'fair', 'serious']),
  /** Windows in which serving is allowed; empty means any time. */
  schedule: z.array(scheduleWindowSchema).max(28),
  /** IANA time zone of the schedule (e.g. Europe/Paris); null means the system's. */
  timeZone: z.string().max(64).refine(isTimeZone, 'expected an IANA time zone such as Europe/Paris').nullable(),
  /** When the owner comes back: how long running jobs may finish before they are aborted. */
  graceMs: z.int().min(0).max(600_000),
  /** When the agent stops serving: how long the model stays loaded before memory goes back. */
  unloadDelayMs: z.int().min(0).max(86_400_000),
});
/** When the agent may serve. */
export type Policy = z.infer<typeof policySchema>;

/** A change to some fields of the policy. */
export const policyPatchSchema = policySchema.partial();
/** A change to some policy fields. */
export type PolicyPatch = z.infer<typeof policyPatchSchema>;

/**
 * The policy a new agent starts with: serve after 5 minutes away (or at once on a locked screen),
 * on AC only, up to the 'fair' thermal state, at any time; running jobs get 10 s to finish; the
 * model is unloaded 2 minutes after serving stops.
 */
export const DEFAULT_POLICY: Policy = {
  idleSeconds: 300,
  lockedCountsAsIdle: true,
  requireAc: true,
  minBatteryPercent: 50,
  maxThermal: 'fair',
  schedule: [],
  timeZone: null,
  graceMs: 10_000,
  unloadDelayMs: 120_000,
};

/** The owner's override: `paused` and `serve-now` hold until `until` (ms), or until resumed if null. */
export const manualSchema = z.strictObject({
  mode: z.enum(['auto', 'paused', 'serve-now']),
  until: timeMs.nullable(),
});
/** The owner's override. */
export type Manual = z.infer<typeof manualSchema>;

/**
 * What the machine reports, as one reading. `null` means the source cannot tell: an unknown idle
 * time (a headless Linux box) counts as away, unknown power as AC, unknown thermal as nominal.
 */
export const environmentReadingSchema = z.strictObject({
  /** When the reading was taken, ms since the epoch. */
  at: timeMs,
  idleSeconds: z.number().min(0).max(1e9).nullable(),
  screenLocked: z.boolean().nullable(),
  onAc: z.boolean().nullable(),
  batteryPercent: z.number().min(0).max(100).nullable(),
  thermal: thermalStateSchema.nullable(),
  /** Reported to the gateway and shown to the owner; not a policy input. */
  memoryPressure: memoryPressureSchema.nullable(),
});
/** One reading of the machine. */
export type EnvironmentReading = z.infer<typeof environmentReadingSchema>;

/** Why the policy lets the agent serve. */
export const SERVE_REASONS = ['idle', 'screen-locked', 'idle-unknown', 'serve-now'] as const;
/** Why the policy keeps the agent connected but not serving. */
export const WAIT_REASONS = ['owner-active', 'on-battery', 'battery-low', 'too-hot', 'no-reading'] as const;
/** Why the policy disconnects the agent from the gateway. */
export const OFF_REASONS = ['paused', 'outside-schedule'] as const;

/** What the policy decides for one moment. */
export const decisionSchema = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('serve'), reason: z.enum(SERVE_REASONS) }),
  z.strictObject({ action: z.literal('wait'), reason: z.enum(WAIT_REASONS) }),
  z.strictObject({ action: z.literal('off'), reason: z.enum(OFF_REASONS) }),
]);
/** A decision of the policy. */
export type Decision = z.infer<typeof decisionSchema>;

// ---- status --------------------------------------------------------------------------------

/** States of the agent's gateway link. */
export const linkStateSchema = z.enum(['idle', 'connecting', 'connected', 'waiting', 'stopped']);
/** The state of the agent's link to its gateway. */
export type LinkState = z.infer<typeof linkStateSchema>;

/** Why the agent is in its state, for a person: a stable code, what happened, what to do. */
export const stateReasonSchema = z.strictObject({
  /** A decision reason (owner-active, outside-schedule…) or an NJ_ error code. */
  code: text(64),
  message: text(1024),
  /** What to do, where there is something to do. */
  hint: text(256).nullable(),
});
/** Why the agent is in its state. */
export type StateReason = z.infer<typeof stateReasonSchema>;

/**
 * What the agent knows of its standing with the gateway: set by the gateway's last `welcome`
 * (operator, trust) or `reject` (a refused enrollment token).
 */
export const gatewayStandingSchema = z.strictObject({
  /** An enrollment token is configured (the token itself never leaves the agent). */
  enrollToken: z.boolean(),
  /** The operator the gateway bound this agent to, from its last welcome; null if unbound or not connected yet. */
  operator: text(128).nullable(),
  /** The trust level the gateway granted at its last welcome; null before the first. */
  trust: trustSchema.nullable(),
  /** The gateway's last refusal, cleared by the next welcome. */
  rejected: z.strictObject({ code: text(64), message: text(1024) }).nullable(),
});
/** The agent's standing with the gateway. */
export type GatewayStanding = z.infer<typeof gatewayStandingSchema>;

/** Where the identity key is kept. */
export const KEY_STORES = ['keychain', 'plaintext-file'] as const;

/** What the agent can say about its own protection: the bundle's platform and posture, and the key store. */
export const securitySchema = z.strictObject({
  keyStore: z.enum(KEY_STORES),
  platform: platformSchema,
  posture: postureSchema,
  /**
   * Why the agent can or cannot be attested, by its own check (['valid'] when it claims
   * attestation; see ATTESTATION_REASON_TEXT for what each means and what to do). The gateway
   * also checks the app hash against its released list. Absent from agents older than attestation.
   */
  attestation: z.array(z.enum(ATTESTATION_REASONS)).min(1).max(ATTESTATION_REASONS.length).optional(),
});
/** The agent's security posture as the dashboard shows it. */
export type SecuritySnapshot = z.infer<typeof securitySchema>;

/** Everything a dashboard shows about the agent. */
export const statusSchema = z.strictObject({
  v: z.literal(CONTROL_API_VERSION),
  agentId: agentIdSchema,
  state: agentStateSchema,
  /** When the agent entered this state. */
  since: timeMs,
  reason: stateReasonSchema.nullable(),
  decision: decisionSchema.nullable(),
  manual: manualSchema,
  link: linkStateSchema,
  /** The gateway's agent WebSocket URL; null until this machine is linked to a gateway. */
  gatewayUrl: text(2048).nullable(),
  gateway: gatewayStandingSchema,
  model: z.strictObject({ id: modelIdSchema, sha256: hex32, synthetic: z.boolean(), loaded: z.boolean() }).nullable(),
  totalSlots: count,
  freeSlots: count,
  activeJobs: count,
  /** Jobs finished (with a receipt) since the agent started. */
  jobsServed: count,
  tokensPerSecond: z.number().min(0),
  ttftMs: z.number().min(0),
  environment: environmentReadingSchema.nullable(),
  security: securitySchema,
});
/** The agent's status, as the status method answers it. */
export type AgentStatusSnapshot = z.infer<typeof statusSchema>;

// ---- models --------------------------------------------------------------------------------

/** One downloadable model. */
export const catalogEntrySchema = z.strictObject({
  id: modelIdSchema,
  name: text(128),
  /** Where the GGUF file is downloaded from (https, or http for local mirrors). */
  url: z.url({ protocol: /^https?$/ }).max(2048),
  /** sha256 of the file, lower-case hex; null when not known in advance (the pull must supply it). */
  sha256: hex32.nullable(),
  /** File size in bytes; null when not known in advance. */
  bytes: count.nullable(),
  /** Quantization, e.g. Q4_K_M. */
  quantization: text(32),
  /** Context length the model was trained for, in tokens. */
  contextLength: z
    .int()
    .min(1)
    .max(2 ** 24),
  /** Least total memory a machine should have to serve it, in bytes. */
  minMemoryBytes: count,
  /** SPDX id or license name. */
  license: text(128),
  /** True only if url, bytes and sha256 were checked against the real file by whoever wrote the entry. */
  verified: z.boolean(),
});
/** One downloadable model. */
export type CatalogEntry = z.infer<typeof catalogEntrySchema>;

/** A catalog file: a version and its entries. */
export const catalogSchema = z.strictObject({
  v: z.literal(1),
  models: z.array(catalogEntrySchema).max(1000),
});
/** A catalog file. */
export type Catalog = z.infer<typeof catalogSchema>;

/** A model file on this machine whose sha256 was checked when it arrived. */
export const installedModelSchema = z.strictObject({
  id: modelIdSchema,
  /** File name inside the models directory. */
  file: text(255),
  sha256: hex32,
  bytes: count,
  /** Where it came from: a URL, or null for a file written here (synthetic) or imported. */
  source: text(2048).nullable(),
  synthetic: z.boolean(),
  installedAt: timeMs,
  contextLength: z
    .int()
    .min(1)
    .max(2 ** 24)
    .nullable(),
  minMemoryBytes: count.nullable(),
  license: text(128).nullable(),
});
/** A model installed on this machine. */
export type InstalledModel = z.infer<typeof installedModelSchema>;

/** Progress of one download. */
export const downloadProgressSchema = z.strictObject({
  modelId: modelIdSchema,
  phase: z.enum(['starting', 'hashing-partial', 'downloading', 'verifying', 'done', 'failed']),
  receivedBytes: count,
  totalBytes: count.nullable(),
  /** Bytes already on disk when this attempt started (a resume). */
  resumedFromBytes: count,
  bytesPerSecond: z.number().min(0),
  error: z.strictObject({ code: text(64), message: text(1024) }).nullable(),
});
/** Progress of one download. */
export type DownloadProgress = z.infer<typeof downloadProgressSchema>;

/** The models on this machine, the catalog and the downloads under way. */
export const modelsSchema = z.strictObject({
  v: z.literal(CONTROL_API_VERSION),
  selected: modelIdSchema.nullable(),
  installed: z.array(installedModelSchema),
  catalog: z.array(catalogEntrySchema),
  downloads: z.array(downloadProgressSchema),
  /** This machine's memory now, to tell which models fit; null when it cannot be read. */
  memory: z.strictObject({ totalBytes: count, availableBytes: count }).nullable(),
});
/** What the listModels method answers. */
export type ModelsSnapshot = z.infer<typeof modelsSchema>;

// ---- records -------------------------------------------------------------------------------

/** One row of the earnings summary: one day (in the summary's time zone) and one model. */
export const earningsRowSchema = z.strictObject({
  date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  model: modelIdSchema,
  jobs: count,
  promptTokens: count,
  completionTokens: count,
  /** Operator's share in micro-credits (decimal string) at the configured prices; null when the model has no price. */
  microCredits: microCredits.nullable(),
});
/** One day and model of earnings. */
export type EarningsRow = z.infer<typeof earningsRowSchema>;

/** Tokens served per day and model, from the agent's own receipt log. */
export const earningsSchema = z.strictObject({
  v: z.literal(CONTROL_API_VERSION),
  timeZone: text(64),
  /** Where prices came from: the agent's config, or none configured. */
  priceSource: z.enum(['config', 'none']),
  rows: z.array(earningsRowSchema),
  totals: z.strictObject({ jobs: count, promptTokens: count, completionTokens: count, microCredits: microCredits.nullable() }),
  /** Log lines that are not a receipt this agent signed (torn, altered or foreign): not counted. */
  rejectedLines: count,
});
/** What the earnings method answers. */
export type EarningsSummary = z.infer<typeof earningsSchema>;

/** A page of the agent's receipts. */
export const receiptsSchema = z.strictObject({
  v: z.literal(CONTROL_API_VERSION),
  /** Newest first. */
  receipts: z.array(signedReceiptSchema),
  /** Receipts in the log. */
  total: count,
});
/** What the receipts method answers. */
export type ReceiptsPage = z.infer<typeof receiptsSchema>;

// ---- methods -------------------------------------------------------------------------------

const empty = z.strictObject({});
const until = z.strictObject({ until: timeMs.nullable().optional() });
const modelRef = z.strictObject({ id: modelIdSchema });

/** What the link method takes: a gateway address and, to bind this agent to an operator, an enrollment token. */
export const linkInputSchema = z.strictObject({
  /** The gateway, http(s):// or ws(s)://; a bare origin means its agent endpoint (/v1/agent). */
  gatewayUrl: z.string().min(1).max(2048),
  /** One-time token from the operator (`nightjar gateway enroll`); null or absent keeps none. */
  enrollToken: z
    .string()
    .min(1)
    .max(256)
    .regex(/^[\x21-\x7e]+$/, 'expected a token without spaces')
    .nullable()
    .optional(),
});
/** What the link method takes. */
export type LinkInput = z.infer<typeof linkInputSchema>;

/**
 * The methods, each `POST /v1/<name>`. The agent validates `input` and answers with `output`;
 * the typed client checks the answer too.
 */
export const CONTROL_METHODS = {
  status: { input: empty, output: statusSchema },
  /** Stop serving: drain running jobs, say goodbye, disconnect. Holds until `until` or resume. */
  pause: { input: until, output: statusSchema },
  /** Back to the policy. */
  resume: { input: empty, output: statusSchema },
  /** Serve now, whatever the idle time and schedule say (not when too hot or on a low battery). */
  serveNow: { input: until, output: statusSchema },
  getPolicy: { input: empty, output: policySchema },
  /** Changes some policy fields; saved to the config file. Answers with the whole policy. */
  setPolicy: { input: policyPatchSchema, output: policySchema },
  listModels: { input: empty, output: modelsSchema },
  /** Starts downloading a catalog model (progress arrives as `download` events). */
  downloadModel: { input: z.strictObject({ id: modelIdSchema, sha256: hex32.optional() }), output: modelsSchema },
  /** Serves this installed model from now on (the running one is drained and unloaded first). */
  selectModel: { input: modelRef, output: modelsSchema },
  /** Deletes an installed model file (not the selected one while it is loaded). */
  removeModel: { input: modelRef, output: modelsSchema },
  earnings: { input: z.strictObject({ days: z.int().min(1).max(3660).optional() }), output: earningsSchema },
  receipts: {
    input: z.strictObject({ limit: z.int().min(1).max(1000).optional(), before: timeMs.optional() }),
    output: receiptsSchema,
  },
  /**
   * Links this machine to a gateway (saved to the config file): checks that the address answers
   * as a Nightjar gateway, then reconnects there, presenting the enrollment token if given.
   */
  link: { input: linkInputSchema, output: statusSchema },
} as const satisfies Record<string, { input: z.ZodType; output: z.ZodType }>;

/** A control method's name. */
export type ControlMethod = keyof typeof CONTROL_METHODS;
/** What a method takes. */
export type ControlInput<M extends ControlMethod> = z.input<(typeof CONTROL_METHODS)[M]['input']>;
/** What a method answers. */
export type ControlOutput<M extends ControlMethod> = z.output<(typeof CONTROL_METHODS)[M]['output']>;

/** The path of a method. */
export function controlPath(method: ControlMethod): string {
  return `/v1/${method}`;
}

/** Path of the event stream. */
export const CONTROL_EVENTS_PATH = '/v1/events';

// ---- events --------------------------------------------------------------------------------

/** Timings of one preemption: owner back (or pause, or schedule end) → jobs settled → model unloaded. */
export const preemptionSchema = z.strictObject({
  /** The decision that stopped serving. */
  reason: text(64),
  /** When the agent stopped taking jobs: the moment the decision was applied. */
  detectedAt: timeMs,
  /** Jobs running at that moment. */
  jobsAtDetection: count,
  /** Of those, how many were aborted at the end of the grace period. */
  jobsAborted: count,
  /** From detection until every job had ended (finished, or aborted and stopped in the engine). */
  settledMs: z.number().min(0),
  /** From detection until the model was unloaded; null until it is (or if serving resumed first). */
  unloadedMs: z.number().min(0).nullable(),
});
/** Timings of one preemption. */
export type Preemption = z.infer<typeof preemptionSchema>;

/** Everything the event stream carries. */
export const controlEventSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('state'),
    state: agentStateSchema,
    since: timeMs,
    reason: stateReasonSchema.nullable(),
    decision: decisionSchema.nullable(),
  }),
  z.strictObject({ type: z.literal('link'), link: linkStateSchema }),
  z.strictObject({
    type: z.literal('jobs'),
    activeJobs: count,
    jobsServed: count,
    freeSlots: count,
    totalSlots: count,
    tokensPerSecond: z.number().min(0),
    ttftMs: z.number().min(0),
  }),
  z.strictObject({
    type: z.literal('receipt'),
    jobId: z.string().max(32),
    model: modelIdSchema,
    promptTokens: count,
    completionTokens: count,
    finishReason: finishReasonSchema,
    endedAt: timeMs,
  }),
  z.strictObject({ type: z.literal('download'), progress: downloadProgressSchema }),
  z.strictObject({ type: z.literal('preempted'), preemption: preemptionSchema }),
  z.strictObject({ type: z.literal('environment'), reading: environmentReadingSchema }),
]);
/** One event of the control stream. */
export type ControlEvent = z.infer<typeof controlEventSchema>;
