/**
 * Run-time schemas for everything that crosses a boundary: signed structures (bundle, receipt),
 * the envelope, the agent ↔ gateway frames and the client ↔ gateway events. Every schema is
 * strict (unknown fields are errors) and every string and array has a bound.
 */
import { z } from 'zod';
import { jsonDepth } from './json-depth.js';
import { LIMITS, PROTOCOL_VERSION } from './limits.js';
import { ERROR_CODES, type ErrorCode } from '../errors.js';

/**
 * Unpadded base64url of exactly `bytes` bytes, in its one canonical spelling: the unused low bits
 * of a final partial group must be zero (as fromBase64Url requires), so an id such as a jobId
 * cannot be written two ways.
 */
export function b64(bytes: number): z.ZodString {
  const chars = Math.ceil((bytes * 4) / 3);
  const last = bytes % 3 === 1 ? '[AQgw]' : bytes % 3 === 2 ? '[AEIMQUYcgkosw048]' : '[A-Za-z0-9_-]';
  const pattern = chars === 0 ? '^$' : `^[A-Za-z0-9_-]{${chars - 1}}${last}$`;
  return z.string().regex(new RegExp(pattern), `expected ${bytes} bytes of base64url`);
}

/** Unpadded base64url of at most `maxBytes` bytes. Decoding (fromBase64Url) checks it is canonical. */
export function b64Max(maxBytes: number): z.ZodString {
  const chars = Math.ceil((maxBytes * 4) / 3);
  return z
    .string()
    .max(chars)
    .regex(/^[A-Za-z0-9_-]*$/, 'expected base64url');
}

const version = z.literal(PROTOCOL_VERSION);
const hex32 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 32 bytes of lower-case hex');
const label = z.string().max(LIMITS.maxLabelLength);
const timeMs = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const count = z
  .int()
  .min(0)
  .max(2 ** 32);

/** A model id: lower-case letters, digits and `._:/-`, starting with a letter or digit. */
export const modelIdSchema = z
  .string()
  .max(LIMITS.maxModelIdLength)
  .regex(/^[a-z0-9][a-z0-9._:/-]*$/, 'model ids use a-z, 0-9 and ._:/-');

/** 16 random bytes that name a job, chosen by the client. */
export const jobIdSchema = b64(16);
/** An agent id: hex of the first 16 bytes of a domain-separated hash of its identity key. */
export const agentIdSchema = z.string().regex(/^[0-9a-f]{32}$/, 'expected an agent id');
/** A box key id: hex of the first 8 bytes of a hash of the box public key. */
export const boxKeyIdSchema = z.string().regex(/^[0-9a-f]{16}$/, 'expected a box key id');
/** Failover attempt number, 0 for the first agent tried. */
export const attemptSchema = z
  .int()
  .min(0)
  .max(LIMITS.maxAttempts - 1);

/** Trust levels, weakest first. */
export const TRUST_LEVELS = ['signed', 'attested'] as const;
export const trustSchema = z.enum(TRUST_LEVELS);
/** How much the gateway trusts an agent. */
export type Trust = z.infer<typeof trustSchema>;

/** One model an agent serves, named with the sha256 of its GGUF file. */
export const bundleModelSchema = z.strictObject({
  id: modelIdSchema,
  sha256: hex32,
  /** True for files written by the synthetic generator: never offered as real models. */
  synthetic: z.boolean(),
  contextLength: z
    .int()
    .min(1)
    .max(2 ** 24),
});
export type BundleModel = z.infer<typeof bundleModelSchema>;

export const platformSchema = z.strictObject({
  os: label,
  osVersion: label,
  arch: label,
  chip: label,
  memoryBytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
});
export type Platform = z.infer<typeof platformSchema>;

/** What the agent can say about its own hardening; `null` where it cannot tell. */
export const postureSchema = z.strictObject({
  sip: z.boolean().nullable(),
  hardenedRuntime: z.boolean().nullable(),
  debuggerDenied: z.boolean().nullable(),
  secureEnclave: z.boolean(),
  appVersion: label,
  appHash: hex32.nullable(),
});
export type Posture = z.infer<typeof postureSchema>;

/** Secure Enclave co-signature (attested Macs only). */
export const attestationSchema = z.strictObject({
  /** Uncompressed P-256 public key, 65 bytes. */
  enclaveKey: b64(65),
  /** DER ECDSA signature over the bundle's signing bytes without this field. */
  signature: b64Max(80),
});

/** The key bundle an agent publishes: what a client checks before it encrypts. */
export const keyBundleSchema = z.strictObject({
  v: version,
  agentId: agentIdSchema,
  identityKey: b64(32),
  boxKey: b64(32),
  boxKeyId: boxKeyIdSchema,
  notBefore: timeMs,
  notAfter: timeMs,
  models: z.array(bundleModelSchema).min(1).max(LIMITS.maxModelsPerBundle),
  capacity: z.strictObject({ slots: z.int().min(1).max(256) }),
  platform: platformSchema,
  posture: postureSchema,
  attestation: attestationSchema.optional(),
});
export type KeyBundle = z.infer<typeof keyBundleSchema>;

export const signedBundleSchema = z.strictObject({
  bundle: keyBundleSchema,
  signature: b64(64),
});
export type SignedBundle = z.infer<typeof signedBundleSchema>;

/** Why generation ended. */
export const finishReasonSchema = z.enum(['stop', 'length', 'cancelled', 'tool_calls']);
export type FinishReason = z.infer<typeof finishReasonSchema>;

/** The agent's signed statement of what it did for one job. */
export const receiptSchema = z.strictObject({
  v: version,
  jobId: jobIdSchema,
  attempt: attemptSchema,
  agentId: agentIdSchema,
  model: modelIdSchema,
  modelSha256: hex32,
  promptTokens: count,
  completionTokens: count,
  /** sha256 of the request ciphertext, base64url. */
  requestDigest: b64(32),
  /** sha256 over the reply chunk ciphertexts, each prefixed with its length, base64url. */
  replyDigest: b64(32),
  startedAt: timeMs,
  endedAt: timeMs,
  finishReason: finishReasonSchema,
});
export type Receipt = z.infer<typeof receiptSchema>;

export const signedReceiptSchema = z.strictObject({
  receipt: receiptSchema,
  signature: b64(64),
});
export type SignedReceipt = z.infer<typeof signedReceiptSchema>;

/** One wrapped copy of the content key, for one candidate agent. */
export const recipientSchema = z.strictObject({
  agentId: agentIdSchema,
  boxKeyId: boxKeyIdSchema,
  nonce: b64(24),
  /** The 32-byte content key sealed with NaCl box: 48 bytes. */
  wrappedKey: b64(48),
});
export type Recipient = z.infer<typeof recipientSchema>;

/** The visible header: everything the gateway sees of a request. */
export const envelopeHeaderSchema = z.strictObject({
  v: version,
  jobId: jobIdSchema,
  model: modelIdSchema,
  maxTokens: z.int().min(1).max(LIMITS.maxTokens),
  ephemeralKey: b64(32),
  /** Each agent at most once: an envelope for the same agent twice is refused (NJ_BAD_REQUEST at the gateway). */
  recipients: z
    .array(recipientSchema)
    .min(1)
    .max(LIMITS.maxRecipients)
    .refine((list) => new Set(list.map((r) => r.agentId)).size === list.length, { message: 'each agent may be named only once' }),
  bodyNonce: b64(24),
  bodyLength: z
    .int()
    .min(LIMITS.minRequestBucketBytes + 16)
    .max(LIMITS.maxRequestBodyBytes),
});
export type EnvelopeHeader = z.infer<typeof envelopeHeaderSchema>;

export const envelopeSchema = z.strictObject({
  header: envelopeHeaderSchema,
  body: b64Max(LIMITS.maxRequestBodyBytes),
});
export type Envelope = z.infer<typeof envelopeSchema>;

/** A tool (function) name, as OpenAI and Anthropic allow them: 1–64 of `a-zA-Z0-9_-`. */
export const toolNameSchema = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'tool names are 1 to 64 of a-z, A-Z, 0-9, _ and -');

/**
 * A JSON schema as the client sent it (a tool's parameters, a response format's schema): a JSON
 * object of at most LIMITS.maxJsonSchemaBytes as JSON text, nested at most
 * LIMITS.maxJsonSchemaDepth deep. The agent compiles it into a grammar; what it cannot compile is
 * refused there (NJ_BAD_REQUEST).
 */
export const jsonSchemaObjectSchema = z.record(z.string(), z.unknown()).superRefine((schema, ctx) => {
  let text: string;
  try {
    text = JSON.stringify(schema);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'a JSON schema must be plain JSON' });
    return;
  }
  if (text.length > LIMITS.maxJsonSchemaBytes) {
    ctx.addIssue({ code: 'custom', message: `a JSON schema may be at most ${LIMITS.maxJsonSchemaBytes} characters of JSON` });
  } else if (jsonDepth(text, LIMITS.maxJsonSchemaDepth) > LIMITS.maxJsonSchemaDepth) {
    ctx.addIssue({ code: 'custom', message: `a JSON schema may nest at most ${LIMITS.maxJsonSchemaDepth} levels` });
  }
});
/** A JSON schema, as {@link jsonSchemaObjectSchema} bounds it. */
export type JsonSchemaObject = z.infer<typeof jsonSchemaObjectSchema>;

/** A call the model made: its id (drawn by the agent), the function, and its arguments as JSON text. */
export const toolCallSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'tool call ids are 1 to 64 of a-z, A-Z, 0-9, _ and -'),
  name: toolNameSchema,
  /** The arguments as the model wrote them: JSON text that parses (it was generated under the function's grammar). */
  arguments: z.string().max(LIMITS.maxToolArgumentsLength),
});
/** One tool call. */
export type ToolCall = z.infer<typeof toolCallSchema>;

/**
 * One message of a conversation. An assistant message may carry the tool calls it made
 * (`toolCalls`); a `tool` message is a call's result and names the call (`toolCallId`).
 */
export const chatMessageSchema = z
  .strictObject({
    role: z.enum(['system', 'user', 'assistant', 'tool']),
    content: z.string(),
    toolCalls: z.array(toolCallSchema).min(1).max(LIMITS.maxToolCalls).optional(),
    toolCallId: toolCallSchema.shape.id.optional(),
  })
  .refine((m) => m.toolCalls === undefined || m.role === 'assistant', { message: 'only assistant messages carry toolCalls' })
  .refine((m) => (m.role === 'tool') === (m.toolCallId !== undefined), { message: 'a tool message, and only one, names its toolCallId' });
export type ChatMessage = z.infer<typeof chatMessageSchema>;

/** A function the model may call: its name, what it does, and its parameters' JSON schema. */
export const toolSchema = z.strictObject({
  name: toolNameSchema,
  description: z.string().max(LIMITS.maxToolDescriptionLength).optional(),
  parameters: jsonSchemaObjectSchema,
});
/** One tool. */
export type Tool = z.infer<typeof toolSchema>;

/**
 * Whether the model calls a tool: `auto` (it decides), `none` (it answers in text), `required`
 * (it calls one of them), or `{ name }` (it calls that one).
 */
export const toolChoiceSchema = z.union([z.enum(['auto', 'none', 'required']), z.strictObject({ name: toolNameSchema })]);
/** One tool choice. */
export type ToolChoice = z.infer<typeof toolChoiceSchema>;

/** The shape a text reply must have, enforced by a grammar at the agent. */
export const responseFormatSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('json_object') }),
  z.strictObject({
    type: z.literal('json_schema'),
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'schema names are 1 to 64 of a-z, A-Z, 0-9, _ and -'),
    schema: jsonSchemaObjectSchema,
    /** The client's `strict`; the agent always enforces the schema. */
    strict: z.boolean().optional(),
  }),
]);
/** A response format. */
export type ResponseFormat = z.infer<typeof responseFormatSchema>;

/** Sampling parameters, as the client asked. */
export const samplingSchema = z.strictObject({
  maxTokens: z.int().min(1).max(LIMITS.maxTokens),
  temperature: z.number().min(0).max(2).optional(),
  topP: z.number().gt(0).max(1).optional(),
  topK: z.int().min(1).max(1000).optional(),
  seed: z
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
  stop: z.array(z.string().min(1).max(LIMITS.maxStopLength)).max(LIMITS.maxStopSequences).optional(),
  /** OpenAI's frequency_penalty, -2 to 2: lowers a token's logit by this much per time it was generated. */
  frequencyPenalty: z.number().min(-2).max(2).optional(),
  /** OpenAI's presence_penalty, -2 to 2: lowers the logit of every token already generated by this much. */
  presencePenalty: z.number().min(-2).max(2).optional(),
});
export type Sampling = z.infer<typeof samplingSchema>;

/** A conversation's cache key: 128 to 512 random bits in base64url (22 to 86 characters). */
export const cacheKeySchema = z
  .string()
  .min(22)
  .max(86)
  .regex(/^[A-Za-z0-9_-]+$/, 'expected base64url');

/** What the body of an envelope decrypts to. */
export const requestPayloadSchema = z
  .strictObject({
    v: version,
    jobId: jobIdSchema,
    model: modelIdSchema,
    /** Milliseconds since the epoch when the client sealed the request. */
    created: timeMs,
    /** base64url sha256 of the canonical visible header. */
    headerDigest: b64(32),
    /** The conversation: one message or more for a chat job, none for an embedding job. */
    messages: z.array(chatMessageSchema).max(LIMITS.maxMessages),
    sampling: samplingSchema,
    /**
     * What the job is: absent for a chat reply, `embed` for one embedding vector per `input` text
     * (then `messages` is empty, there are no tools or format, and sampling.maxTokens is 1).
     */
    task: z.literal('embed').optional(),
    /** The texts to embed, in order (embedding jobs only). */
    input: z.array(z.string().min(1).max(LIMITS.maxEmbedInputLength)).min(1).max(LIMITS.maxEmbedInputs).optional(),
    /** The vector width the client expects; the agent refuses the job (NJ_BAD_REQUEST) when its model's differs. Optional. */
    dimensions: z.int().min(1).max(LIMITS.maxEmbeddingDimensions).optional(),
    /** Functions the model may call. Absent: none (and the body is what it was before tools). */
    tools: z.array(toolSchema).min(1).max(LIMITS.maxTools).optional(),
    /** Whether it calls one. Defaults to `auto` with tools. */
    toolChoice: toolChoiceSchema.optional(),
    /** The shape of a text reply. Absent: free text. */
    responseFormat: responseFormatSchema.optional(),
    /**
     * The conversation's cache key: random, 128 to 512 bits, base64url, secret to the client (it
     * travels only inside the envelope). The agent keeps the conversation's evaluated prefix warm
     * for the next turn with the same key. Absent: nothing is kept.
     */
    cacheKey: cacheKeySchema.optional(),
  })
  .superRefine(checkTools)
  .superRefine(checkTask);

/** The checks that tie a request's fields to its task: a chat job has messages, an embedding job has inputs and nothing of chat. */
function checkTask(
  p: {
    task?: 'embed' | undefined;
    messages: readonly unknown[];
    input?: readonly string[] | undefined;
    dimensions?: number | undefined;
  } & Pick<RequestPayload, 'tools' | 'toolChoice' | 'responseFormat' | 'sampling'>,
  ctx: z.RefinementCtx,
): void {
  if (p.task === undefined) {
    if (p.messages.length === 0)
      ctx.addIssue({ code: 'custom', path: ['messages'], message: 'Too small: expected array to have >=1 items' });
    if (p.input !== undefined || p.dimensions !== undefined)
      ctx.addIssue({ code: 'custom', path: ['input'], message: 'input and dimensions belong to embedding jobs (task embed)' });
    return;
  }
  if (p.input === undefined) ctx.addIssue({ code: 'custom', path: ['input'], message: 'an embedding job needs input' });
  if (p.messages.length > 0) ctx.addIssue({ code: 'custom', path: ['messages'], message: 'an embedding job has no messages' });
  if (p.tools !== undefined || p.toolChoice !== undefined || p.responseFormat !== undefined)
    ctx.addIssue({ code: 'custom', path: ['task'], message: 'an embedding job has no tools or response format' });
  if (p.sampling.maxTokens !== 1)
    ctx.addIssue({ code: 'custom', path: ['sampling', 'maxTokens'], message: 'an embedding job asks for maxTokens 1' });
}

/**
 * The checks across a request's tool fields: tool names differ, a tool choice other than `none`
 * has tools, a named choice names one of them (as issues on `ctx`).
 */
export function checkTools(
  p: { tools?: readonly { name: string }[] | undefined; toolChoice?: ToolChoice | undefined },
  ctx: z.RefinementCtx,
): void {
  const names = new Set(p.tools?.map((t) => t.name));
  if (p.tools !== undefined && names.size !== p.tools.length)
    ctx.addIssue({ code: 'custom', path: ['tools'], message: 'tool names must differ' });
  const choice = p.toolChoice;
  if (choice !== undefined && choice !== 'none' && p.tools === undefined)
    ctx.addIssue({ code: 'custom', path: ['toolChoice'], message: 'a tool choice other than none needs tools' });
  if (typeof choice === 'object' && !names.has(choice.name))
    ctx.addIssue({ code: 'custom', path: ['toolChoice'], message: `no tool is named ${choice.name}` });
}

/** True if a request constrains its reply: a grammar (tools, a response format) or penalties shape what is generated. */
export function isConstrained(payload: Pick<RequestPayload, 'tools' | 'toolChoice' | 'responseFormat' | 'sampling'>): boolean {
  const s = payload.sampling;
  return (
    (payload.tools !== undefined && payload.toolChoice !== 'none') ||
    payload.responseFormat !== undefined ||
    (s.frequencyPenalty ?? 0) !== 0 ||
    (s.presencePenalty ?? 0) !== 0
  );
}
export type RequestPayload = z.infer<typeof requestPayloadSchema>;

export const usageSchema = z.strictObject({ promptTokens: count, completionTokens: count });
export type Usage = z.infer<typeof usageSchema>;

/** What one reply chunk decrypts to. The final chunk carries the finish reason and usage. */
export const chunkPayloadSchema = z.strictObject({
  seq: z
    .int()
    .min(0)
    .max(2 ** 31),
  delta: z.string(),
  final: z
    .strictObject({
      finishReason: finishReasonSchema,
      usage: usageSchema,
      /** Which of the request's stop sequences ended the reply, when one did. Optional. */
      stopSequence: z.string().min(1).max(LIMITS.maxStopLength).optional(),
      /** The tool calls of a reply that ended in them (finishReason `tool_calls`). */
      toolCalls: z.array(toolCallSchema).min(1).max(LIMITS.maxToolCalls).optional(),
    })
    .optional(),
  /**
   * Embedding vectors of an embedding job, in input order, continuing the previous chunks' (each
   * the little-endian float32 values, base64url). Every input has one, across the reply's chunks.
   */
  embeddings: z
    .array(b64Max(LIMITS.maxEmbeddingDimensions * 4))
    .min(1)
    .max(LIMITS.maxEmbedInputs)
    .optional(),
});
export type ChunkPayload = z.infer<typeof chunkPayloadSchema>;

const codeSchema = z
  .string()
  .max(64)
  .refine((c): c is ErrorCode => Object.prototype.hasOwnProperty.call(ERROR_CODES, c), 'unknown error code')
  .transform((c) => c as ErrorCode);
const messageSchema = z.string().max(LIMITS.maxErrorMessageLength);

/** Agent states, as DESIGN.md names them. */
export const agentStateSchema = z.enum(['stopped', 'waiting', 'loading', 'serving', 'draining', 'paused', 'error']);
/** How hard the agent's machine is pressed for memory (macOS's levels; Linux maps PSI onto them). */
export const memoryPressureSchema = z.enum(['normal', 'warn', 'critical']);
/** How hard the agent's machine is pressed for memory. */
export type MemoryPressure = z.infer<typeof memoryPressureSchema>;
export type AgentState = z.infer<typeof agentStateSchema>;
/** Thermal states, coolest first (the names macOS and the status frame use). */
export const thermalStateSchema = z.enum(['nominal', 'fair', 'serious', 'critical']);
/** How hot the machine is. */
export type ThermalState = z.infer<typeof thermalStateSchema>;
/** Why an agent closes its link, as its goodbye frame says. */
export const goodbyeReasonSchema = z.enum(['paused', 'schedule', 'owner-active', 'quit', 'error']);
/** Why an agent closes its link. */
export type GoodbyeReason = z.infer<typeof goodbyeReasonSchema>;

// ---- agent → gateway ----

const frame = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) =>
  z.strictObject({ v: version, type: z.literal(type), ...shape });

export const helloFrame = frame('hello', {
  bundle: signedBundleSchema,
  enrollToken: z.string().min(1).max(LIMITS.maxTokenLength).optional(),
});
/**
 * The answer to the handshake's challenge: the identity key's signature and, from an agent with a
 * Secure Enclave key, the enclave's DER signature over the challenge, agent id and box key id
 * (src/shared/crypto/attestation.ts). Absent: the agent claims no attestation.
 */
export const authFrame = frame('auth', { signature: b64(64), enclaveSignature: b64Max(72).optional() });
export const statusFrame = frame('status', {
  state: agentStateSchema,
  model: modelIdSchema.nullable(),
  freeSlots: z.int().min(0).max(256),
  totalSlots: z.int().min(0).max(256),
  tokensPerSecond: z.number().min(0).max(1e7),
  ttftMs: z.number().min(0).max(1e7),
  memoryPressure: memoryPressureSchema,
  thermal: thermalStateSchema,
});
export const acceptedFrame = frame('accepted', { jobId: jobIdSchema, attempt: attemptSchema, replySalt: b64(16) });
export const declinedFrame = frame('declined', {
  jobId: jobIdSchema,
  attempt: attemptSchema,
  code: codeSchema,
  message: messageSchema,
});
export const chunkFrame = frame('chunk', {
  jobId: jobIdSchema,
  attempt: attemptSchema,
  seq: z
    .int()
    .min(0)
    .max(2 ** 31),
  data: b64Max(LIMITS.maxChunkBytes),
});
export const doneFrame = frame('done', { jobId: jobIdSchema, attempt: attemptSchema, receipt: signedReceiptSchema });
export const failedFrame = frame('failed', {
  jobId: jobIdSchema,
  attempt: attemptSchema,
  code: codeSchema,
  message: messageSchema,
});
/**
 * A receipt the agent signed for a job whose `done` it could not deliver (its link to the gateway
 * dropped): sent after the next welcome, to the same or a restarted gateway, until acknowledged.
 */
export const receiptFrame = frame('receipt', { jobId: jobIdSchema, attempt: attemptSchema, receipt: signedReceiptSchema });
export const bundleFrame = frame('bundle', { bundle: signedBundleSchema });
/** The answer to a periodic challenge, naming its nonce; `enclaveSignature` as in the auth frame. */
export const attestFrame = frame('attest', { nonce: b64(32), signature: b64(64), enclaveSignature: b64Max(72).optional() });
export const goodbyeFrame = frame('goodbye', {
  reason: goodbyeReasonSchema,
});

export const agentFrameSchema = z.discriminatedUnion('type', [
  helloFrame,
  authFrame,
  statusFrame,
  acceptedFrame,
  declinedFrame,
  chunkFrame,
  doneFrame,
  failedFrame,
  receiptFrame,
  bundleFrame,
  attestFrame,
  goodbyeFrame,
]);
/** Any frame an agent sends. */
export type AgentFrame = z.infer<typeof agentFrameSchema>;

// ---- gateway → agent ----

export const challengeFrame = frame('challenge', { nonce: b64(32), time: timeMs, gatewayId: z.string().max(128) });
export const welcomeFrame = frame('welcome', {
  agentId: agentIdSchema,
  trust: trustSchema,
  heartbeatMs: z.int().min(100).max(3_600_000),
  maxConcurrentJobs: z.int().min(1).max(256),
  operator: z.string().max(128).nullable(),
});
export const rejectFrame = frame('reject', { code: codeSchema, message: messageSchema });
export const jobFrame = frame('job', { jobId: jobIdSchema, attempt: attemptSchema, envelope: envelopeSchema });
export const cancelFrame = frame('cancel', { jobId: jobIdSchema, attempt: attemptSchema, reason: messageSchema });
export const errorFrame = frame('error', { code: codeSchema, message: messageSchema });

/**
 * What the gateway did with a delivered receipt: `settled` (billed now, late), `duplicate` (it was
 * settled before; no money moved), `refused` (it never will be: not the agent or attempt the job
 * was given to, a bad signature, a model the job did not ask for), `unknown` (no such job here),
 * `retry` (it could not decide now; deliver it again on a later connection).
 */
export const RECEIPT_OUTCOMES = ['settled', 'duplicate', 'refused', 'unknown', 'retry'] as const;
/** One of {@link RECEIPT_OUTCOMES}. */
export const receiptOutcomeSchema = z.enum(RECEIPT_OUTCOMES);
/** What the gateway did with a delivered receipt. */
export type ReceiptOutcome = z.infer<typeof receiptOutcomeSchema>;
/** The gateway's answer to a `receipt` frame. Only ever sent in answer to one. */
export const receiptAckFrame = frame('receipt-ack', {
  jobId: jobIdSchema,
  attempt: attemptSchema,
  outcome: receiptOutcomeSchema,
  /** Why, for `refused`, `unknown` and `retry`. */
  code: codeSchema.optional(),
  message: messageSchema.optional(),
});

export const gatewayFrameSchema = z.discriminatedUnion('type', [
  challengeFrame,
  welcomeFrame,
  rejectFrame,
  jobFrame,
  cancelFrame,
  errorFrame,
  receiptAckFrame,
]);
/** Any frame the gateway sends to an agent. */
export type GatewayFrame = z.infer<typeof gatewayFrameSchema>;

// ---- client ↔ gateway (HTTP) ----

/** POST /v1/jobs request body. */
export const jobRequestSchema = z.strictObject({ v: version, envelope: envelopeSchema });
export type JobRequest = z.infer<typeof jobRequestSchema>;

/**
 * The request header (and its value) with which a client asks `POST /v1/jobs` to begin its stream
 * at admission: the 200 and a first keepalive go out as soon as the job is held, keepalives follow
 * from there, and a failure before the first chunk is an `error` event instead of an HTTP error.
 * A gateway that does not know it answers as before.
 */
export const EARLY_STREAM_HEADER = { name: 'nightjar-stream', value: 'early' } as const;

/** One candidate agent, as the gateway offers it. */
export const candidateSchema = z.strictObject({ bundle: signedBundleSchema, trust: trustSchema });
export type Candidate = z.infer<typeof candidateSchema>;

/** A client-chosen random nonce (16 bytes) that names one directory request. */
export const directoryNonceSchema = b64(16);

/** The request a directory answer answers, as the gateway read it. */
export const directoryRequestSchema = z.strictObject({
  /** The client's nonce, or null when the client sent none (clients older than signed answers). */
  nonce: directoryNonceSchema.nullable(),
  model: modelIdSchema,
  k: z.int().min(1).max(LIMITS.maxCandidates),
  minTrust: trustSchema,
});
export type DirectoryRequest = z.infer<typeof directoryRequestSchema>;

/**
 * GET /v1/candidates answer: the candidates with the trust the gateway judged (v, model and
 * candidates, as before signed answers), plus the gateway key, the time and the request it answers;
 * `signature` is the gateway key's over all the rest (domain `directory/v1`).
 */
export const candidatesResponseSchema = z.strictObject({
  v: version,
  model: modelIdSchema,
  candidates: z.array(candidateSchema).max(LIMITS.maxCandidates),
  /** The gateway's Ed25519 public key, which signs this answer. */
  gatewayKey: b64(32),
  /** When the gateway signed it, ms since the epoch. */
  issuedAt: timeMs,
  request: directoryRequestSchema,
  signature: b64(64),
});
export type CandidatesResponse = z.infer<typeof candidatesResponseSchema>;
/** The signed part of a directory answer: all but its signature. */
export type DirectoryAnswer = Omit<CandidatesResponse, 'signature'>;

/**
 * An amount of money: a non-negative integer count of micro-credits (1 credit = 1 000 000),
 * written as a decimal string so amounts beyond 2^53 survive JSON.
 */
export const microCreditsSchema = z.string().regex(/^(0|[1-9][0-9]{0,18})$/, 'expected an integer count of micro-credits');

/** A model's price, in micro-credits per million tokens. */
export const modelPriceSchema = z.strictObject({
  promptPerMTok: microCreditsSchema,
  completionPerMTok: microCreditsSchema,
});
export type ModelPrice = z.infer<typeof modelPriceSchema>;

/** GET /v1/models answer. */
export const modelsResponseSchema = z.strictObject({
  v: version,
  models: z.array(
    z.strictObject({
      id: modelIdSchema,
      synthetic: z.boolean(),
      agents: z.int().min(0),
      freeSlots: z.int().min(0),
      /** What a job costs (absent from gateways that do not bill). Uncatalogued models are free. */
      price: modelPriceSchema.optional(),
      /**
       * True if the id is in the gateway's signed catalog: then only the files it lists are routed,
       * at the price shown. False for a free model whose files the catalog does not list (a
       * development gateway's synthetic model). Absent from gateways older than the catalog.
       */
      catalogued: z.boolean().optional(),
    }),
  ),
});

/** One file the gateway's catalog says IS a model: its sha256 and what it is. */
export const gatewayCatalogFileSchema = z.strictObject({
  sha256: hex32,
  /** Size of the file in bytes. */
  bytes: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  /** File name, as people know it (e.g. qwen2.5-1.5b-instruct-q4_k_m.gguf). */
  name: label.min(1),
  /** Quantization (e.g. Q4_K_M, Q8_0). */
  quantization: label.min(1),
  contextLength: z
    .int()
    .min(1)
    .max(2 ** 24),
  /** Where the file may be downloaded (http or https). */
  url: z
    .string()
    .max(LIMITS.maxCatalogUrlLength)
    .regex(/^https?:\/\/[!-~]+$/, 'expected an http(s) URL')
    .optional(),
});
export type GatewayCatalogFile = z.infer<typeof gatewayCatalogFileSchema>;

/** A model id of the catalog and the files that are it. */
export const gatewayCatalogModelSchema = z.strictObject({
  id: modelIdSchema,
  files: z.array(gatewayCatalogFileSchema).min(1).max(LIMITS.maxFilesPerCatalogModel),
});
export type GatewayCatalogModel = z.infer<typeof gatewayCatalogModelSchema>;

/**
 * The gateway's model catalog: which files (by sha256) each model id is priced and routed for.
 * Models are sorted by id and each model's files by sha256, so one catalog has one encoding.
 */
export const gatewayCatalogSchema = z.strictObject({
  v: version,
  /** The gateway's Ed25519 public key, which signs this catalog. */
  gatewayKey: b64(32),
  /** When the gateway signed it, ms since the epoch. */
  issuedAt: timeMs,
  models: z.array(gatewayCatalogModelSchema).max(LIMITS.maxCatalogModels),
});
export type GatewayCatalog = z.infer<typeof gatewayCatalogSchema>;

/** GET /v1/catalog answer: the catalog and the gateway key's signature over it. */
export const signedGatewayCatalogSchema = z.strictObject({
  catalog: gatewayCatalogSchema,
  signature: b64(64),
});
export type SignedGatewayCatalog = z.infer<typeof signedGatewayCatalogSchema>;

/**
 * A rotation statement: the old gateway key says that the new key replaces it. Signed by the old
 * key (domain `gateway-rotation/v1`), so a client that pinned the old key can move to the new one
 * without trusting the network. Valid until graceUntil, the end of the old key's grace period.
 */
export const gatewayRotationSchema = z.strictObject({
  v: version,
  oldKey: b64(32),
  newKey: b64(32),
  /** When the new key took over, ms since the epoch. */
  rotatedAt: timeMs,
  /** Until when a client may follow this statement, ms since the epoch. */
  graceUntil: timeMs,
});
export type GatewayRotation = z.infer<typeof gatewayRotationSchema>;

/** A rotation statement and the old key's signature over it. */
export const signedGatewayRotationSchema = z.strictObject({ rotation: gatewayRotationSchema, signature: b64(64) });
export type SignedGatewayRotation = z.infer<typeof signedGatewayRotationSchema>;

/**
 * GET /v1/gateway-key answer: the public key the gateway signs with, its id, and the rotation
 * statements still in their grace period, oldest first (absent when there are none, so a parser
 * older than rotation still reads the answer of a gateway that never rotated).
 */
export const gatewayKeyResponseSchema = z.strictObject({
  v: version,
  /** base64url Ed25519 public key. */
  key: b64(32),
  /** Hex of the first 8 bytes of a tagged hash of the key: what people compare. */
  keyId: z.string().regex(/^[0-9a-f]{16}$/, 'expected a gateway key id'),
  rotations: z.array(signedGatewayRotationSchema).min(1).max(LIMITS.maxGatewayRotations).optional(),
});
export type GatewayKeyResponse = z.infer<typeof gatewayKeyResponseSchema>;

/** An app version and app hash (the code directory hash, or Electron's asar integrity hash) that is a release. */
export const releaseSchema = z.strictObject({
  /** The app version, as the app reports it (e.g. 1.4.2). */
  version: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[0-9A-Za-z][0-9A-Za-z.+-]*$/, 'expected a version such as 1.4.2'),
  appHash: hex32,
});
export type Release = z.infer<typeof releaseSchema>;

/** The released-versions list: which app hashes are releases, sorted by appHash (one encoding). */
export const releasesListSchema = z.strictObject({
  v: version,
  /** The gateway's Ed25519 public key, which signs this list. */
  gatewayKey: b64(32),
  /** When the gateway signed it, ms since the epoch. */
  issuedAt: timeMs,
  releases: z.array(releaseSchema).max(LIMITS.maxReleases),
});
export type ReleasesList = z.infer<typeof releasesListSchema>;

/** GET /v1/releases answer: the list and the gateway key's signature over it (domain `releases/v1`). */
export const signedReleasesListSchema = z.strictObject({ releases: releasesListSchema, signature: b64(64) });
export type SignedReleasesList = z.infer<typeof signedReleasesListSchema>;

/** GET /v1/account answer: the calling API key and its balance. */
export const accountResponseSchema = z.strictObject({
  v: version,
  keyId: z.string().max(64),
  name: z.string().max(LIMITS.maxLabelLength),
  balance: microCreditsSchema,
  /** Part of the balance held for jobs running now. */
  held: microCreditsSchema,
});
export type AccountResponse = z.infer<typeof accountResponseSchema>;
export type ModelsResponse = z.infer<typeof modelsResponseSchema>;

export const startEvent = z.strictObject({
  type: z.literal('start'),
  agentId: agentIdSchema,
  attempt: attemptSchema,
  replySalt: b64(16),
});
export const chunkEvent = z.strictObject({
  type: z.literal('chunk'),
  seq: z
    .int()
    .min(0)
    .max(2 ** 31),
  data: b64Max(LIMITS.maxChunkBytes),
});
export const doneEvent = z.strictObject({ type: z.literal('done'), receipt: signedReceiptSchema });
export const errorEvent = z.strictObject({
  type: z.literal('error'),
  code: codeSchema,
  message: messageSchema,
  retryAfterMs: z.int().min(0).optional(),
});
export const jobEventSchema = z.discriminatedUnion('type', [startEvent, chunkEvent, doneEvent, errorEvent]);
/** One line of the POST /v1/jobs NDJSON stream. */
export type JobEvent = z.infer<typeof jobEventSchema>;

/** The body of every HTTP error answer. */
export const httpErrorSchema = z.strictObject({
  error: z.strictObject({ code: codeSchema, message: messageSchema, retryAfterMs: z.int().min(0).optional() }),
});
