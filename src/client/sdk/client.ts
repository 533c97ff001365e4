/**
 * The client SDK: ask the gateway for candidate agents, verify the gateway's signed answer (its
 * pinned key, the nonce sent, the request, a fresh time) and each bundle against a trust policy,
 * seal the request for them, stream and open the reply, verify the receipt. Runs in Node and in
 * the browser (fetch, WebCrypto, no Node built-ins).
 */
import { z } from 'zod';
import {
  LIMITS,
  NightjarError,
  cacheKeySchema,
  PROTOCOL_VERSION,
  ReplyOpener,
  decodeEmbedding,
  TRUST_LEVELS,
  bytesEqual,
  prepareEphemeral,
  candidatesResponseSchema,
  followRotations,
  gatewayKeyFingerprint,
  gatewayKeyIdFor,
  gatewayKeyMatches,
  gatewayKeyResponseSchema,
  parseGatewayKey,
  randomBytes,
  signedGatewayCatalogSchema,
  signedReleasesListSchema,
  verifyDirectoryAnswer,
  verifySignedCatalog,
  verifySignedReleases,
  chatMessageSchema,
  deriveReplyKeys,
  describeIssues,
  errorFromPayload,
  EARLY_STREAM_HEADER,
  fromBase64Url,
  httpErrorSchema,
  jobEventSchema,
  modelIdSchema,
  modelsResponseSchema,
  samplingSchema,
  sealRequest,
  systemClock,
  toBase64Url,
  validate,
  verifyBundle,
  withDefaults,
  delay,
  verifyReceipt,
  completionTokensReceived,
  constrainedReplyBytes,
  checkTools,
  toolSchema,
  toolChoiceSchema,
  responseFormatSchema,
  type ResponseFormat,
  type Tool,
  type ToolCall,
  type ToolChoice,
  countersign,
  countersignKeyOf,
  jobEvidence,
  jobEvidenceSchema,
  revealResponseSchema,
  utf8,
  type AuditVerdict,
  type JobEvidence,
  type CountersignStatement,
  type ChatMessage,
  type Clock,
  type ErrorCode,
  type GatewayKeyExpectation,
  type VerifiedGatewayCatalog,
  type VerifiedReleases,
  type FinishReason,
  type JobEvent,
  type ModelsResponse,
  type PreparedEphemeral,
  type Receipt,
  type Sampling,
  type SealedRequest,
  type SignedBundle,
  type SignedReceipt,
  type Trust,
  type ReleasedApps,
  judgeBundleAttestation,
  type Usage,
  type VerifiedBundle,
} from '../../shared/index.js';
import { MemoryGatewayKeyStore, type GatewayKeyStore } from './gateway-pins.js';
import { readNdjson } from './ndjson.js';
import type { PinStore } from './pins.js';
import { resolveRetryPolicy, retryDelay, type ResolvedRetryPolicy, type RetryPolicy } from './retry.js';

/** Which agents the client accepts. */
export interface TrustPolicy {
  /** Lowest trust level accepted. Defaults to 'signed'. */
  minTrust?: Trust;
  /** Accept models from synthetic GGUF files (development networks). Defaults to false. */
  allowSynthetic?: boolean;
  /**
   * Pinned identity keys: agents accepted are pinned on first use, and an agent presenting
   * another key than its pin is a hard error (NJ_PINNED_KEY_CHANGED). Defaults to no pinning.
   */
  pins?: PinStore;
  /** Use only agents already in `pins`: the gateway cannot steer the client to new agents. Defaults to false. */
  onlyPinned?: boolean;
  /**
   * Which app hashes are releases, checked by the client itself for `attested`. Defaults to the
   * gateway's signed released-versions list (GET /v1/releases, verified like the directory answer),
   * fetched when minTrust is attested and an attested candidate is offered. The Secure Enclave
   * co-signature and the hardened posture are always checked here.
   */
  releases?: ReleasedApps;
}

/** Options of {@link NightjarClient}. */
export interface NightjarClientOptions {
  /** Base URL of the gateway's HTTP API, e.g. http://127.0.0.1:8787. Required. */
  gatewayUrl: string;
  /** Client API key, sent as a bearer token. Defaults to none. */
  apiKey?: string;
  /**
   * The gateway's signing key, given rather than trusted on first use: its base64url public key
   * (32 bytes), its fingerprint (32 hex digits) or its id (16 hex digits), as `nightjar gateway key`
   * prints them. Anything the gateway signs with another key is refused (NJ_GATEWAY_KEY_MISMATCH)
   * unless a rotation statement signed by this key leads to it. Defaults to pinning on first use in
   * `gatewayKeys`.
   */
  gatewayKey?: string;
  /** Where the gateway key is pinned on first use (and moved by rotations). Defaults to a MemoryGatewayKeyStore of this client alone. */
  gatewayKeys?: GatewayKeyStore;
  /**
   * How far a directory answer's issuedAt may be from this client's clock, either way: an older
   * one is stale and refused (NJ_DIRECTORY_INVALID). Defaults to 30 000 ms.
   */
  directoryWindowMs?: number;
  /** Trust policy. Defaults as TrustPolicy says. */
  trust?: TrustPolicy;
  /** Candidates to seal each request for (the gateway fails over between them). Defaults to 3. */
  candidates?: number;
  /**
   * How long verified candidates for a model are reused by further requests, saving a round
   * trip to the gateway. Any failure before a reply starts drops them, and a retry always asks
   * afresh. 0 asks for every request. Defaults to 5000 ms.
   */
  candidatesTtlMs?: number;
  /** When to send a request again; `false` never. Defaults as RetryPolicy says. */
  retry?: RetryPolicy | false;
  /** fetch implementation. Defaults to globalThis.fetch. */
  fetch?: typeof fetch;
  /**
   * How long a reply stream may stay silent, once the gateway has shown it sends keepalives (an
   * empty line every 250 ms while it has nothing else to send), before the SDK takes the
   * connection for broken and ends the request with NJ_STREAM_BROKEN. The SDK asks the gateway to
   * begin the stream at admission, so this covers the wait for the first chunk too (a slow agent
   * is the gateway's to time out: its keepalives go on meanwhile). A gateway that sends no
   * keepalives is never timed out this way. 0 never. Defaults to 1000 ms.
   */
  streamIdleMs?: number;
  /** Time and timers (bundle validity, request time, retry waits). Defaults to the system clock. */
  clock?: Clock;
  /** Numbers in [0, 1) for the jitter of retry waits. Defaults to Math.random. */
  random?: () => number;
  /** Seals a request. Defaults to the real envelope; tests may substitute to prove a point. */
  seal?: typeof sealRequest;
  /**
   * Called with every verified result before it is handed out (to keep a receipt log). A
   * rejection is ignored: the result stays valid; the callback reports its own failures.
   * Defaults to none.
   */
  onReceipt?: (result: ChatResult) => void | Promise<void>;
  /**
   * After each reply that started (finished or broken), countersign what was received and post it
   * to the gateway (POST /v1/jobs/:jobId/countersign, docs/protocol.md "Countersignature"), in the
   * background: a receipt that claims more than this count is disputed and not paid. Needs an API
   * key (an anonymous job is free). Defaults to true.
   */
  countersign?: boolean;
  /** Posts of one countersignature before giving up (network errors, 429 and 5xx are retried, 1 s, 2 s, …). Defaults to 3. */
  countersignAttempts?: number;
}

/** One chat completion request. */
export interface ChatRequest {
  /** A model id the gateway offers. Required. */
  model: string;
  /** The conversation, oldest first. Required, at least one message. */
  messages: ChatMessage[];
  /** Most tokens to generate. Defaults to 256. */
  maxTokens?: number;
  /** Sampling temperature, 0 for greedy. Defaults to the agent's default. */
  temperature?: number;
  /** Nucleus sampling. Defaults to the agent's default. */
  topP?: number;
  /** Top-k sampling. Defaults to the agent's default. */
  topK?: number;
  /** Sampling seed. Defaults to a random one at the agent. */
  seed?: number;
  /** Stop sequences; the reply ends before the first one (a tool call is not cut by them). Defaults to none. */
  stop?: string[];
  /** OpenAI's frequency_penalty, -2 to 2. Defaults to 0 (none). */
  frequencyPenalty?: number;
  /** OpenAI's presence_penalty, -2 to 2. Defaults to 0 (none). */
  presencePenalty?: number;
  /**
   * Functions the model may call (at most LIMITS.maxTools). The agent never runs one: a reply that
   * calls one ends with finishReason 'tool_calls' and {@link ChatResult.toolCalls}. Defaults to none.
   */
  tools?: Tool[];
  /** 'auto', 'none', 'required' or { name }. Defaults to 'auto' when there are tools. */
  toolChoice?: ToolChoice;
  /** The shape of a text reply (json_object, or json_schema), enforced by a grammar at the agent. Defaults to free text. */
  responseFormat?: ResponseFormat;
  /**
   * The conversation's cache key, the same for every turn of one conversation and secret to this
   * client ({@link newCacheKey}; 128 to 512 random bits, base64url). It travels only inside the
   * envelope: the agent keeps the conversation's evaluated prefix warm for a short time, for the
   * next turn with the same key only, and this client seals that turn for the agent that served
   * the last one first (the others follow, for failover). Defaults to none.
   */
  cacheKey?: string;
  /** Aborting cancels the job at the agent. Defaults to none. */
  signal?: AbortSignal;
  /** Told before each retry. Defaults to none. */
  onRetry?: (info: RetryInfo) => void;
  /**
   * Keep the job's evidence (its content key, envelope, reply salt and reply chunks) in
   * {@link ChatResult.evidence}, so the job can be revealed to the gateway's auditor later
   * ({@link NightjarClient.reveal}). The content key then outlives the job, inside the evidence:
   * whoever holds the evidence can read the whole conversation and its reply. Defaults to false
   * (the key is wiped when the reply ends).
   */
  keepEvidence?: boolean;
}

/** An embedding request: texts in, one vector per text out, computed by an agent serving the model. */
export interface EmbeddingsRequest {
  /** A model id the gateway offers, served by agents that can embed. Required. */
  model: string;
  /**
   * The texts to embed, in order: 1 to LIMITS.maxEmbedInputs non-empty strings of at most
   * LIMITS.maxEmbedInputLength characters. Required.
   */
  input: string[];
  /** The width the caller expects; the agent refuses the job (NJ_BAD_REQUEST) if its model's differs. Defaults to the model's. */
  dimensions?: number;
  /** Aborting cancels the job at the agent. Defaults to none. */
  signal?: AbortSignal;
  /** Told before each retry. Defaults to none. */
  onRetry?: (info: RetryInfo) => void;
}

/** Verified embeddings: one vector per input, in order, all of the model's width. */
export interface EmbeddingsResult extends ServedBy {
  model: string;
  /** One vector per input text, in input order. */
  embeddings: Float32Array[];
  /** promptTokens as the agent counted them over every text; completionTokens is 0. */
  usage: Usage;
  /** The agent's receipt, verified against what was sent and received. */
  receipt: Receipt;
  /** The receipt as signed. */
  signedReceipt: SignedReceipt;
  /** The agent's identity key (base64url) that signed the receipt. */
  identityKey: string;
}

/** The embedding part of a job on its way through #run and #send. */
interface EmbedJob {
  input: string[];
  dimensions?: number;
}

/** What #send gives back: a chat result, and for an embedding job its vectors. */
type SendResult = ChatResult & { embeddings?: Float32Array[] };

const embedInputSchema = z.strictObject({
  model: modelIdSchema,
  input: z.array(z.string().min(1).max(LIMITS.maxEmbedInputLength)).min(1).max(LIMITS.maxEmbedInputs),
  dimensions: z.int().min(1).max(LIMITS.maxEmbeddingDimensions).optional(),
});

/** What the gateway's auditor made of a revealed job ({@link NightjarClient.reveal}). */
export interface RevealResult {
  jobId: string;
  /** The agent whose reply was checked. */
  agentId: string;
  /** The re-check's verdict: pass, or the findings with their reasons and figures. */
  verdict: AuditVerdict;
  /** The job's charge went back to this key (a failed verdict while the job's earnings were still pending). */
  forfeited: boolean;
  /** Micro-credits given back, a decimal string ("0" when nothing moved). */
  refunded: string;
  /** The gateway's sentence on what was recorded and what moved (or why nothing did). */
  message: string;
}

/** What the SDK tells {@link ChatRequest.onRetry} before it sends a request again. */
export interface RetryInfo {
  /** Why the last send failed. */
  error: NightjarError;
  /** Sends so far. */
  sent: number;
  /** Wait before the next send. */
  delayMs: number;
}

/** Who serves a reply: known once its first chunk arrives. */
export interface ServedBy {
  /** The job that produced the reply (each send has a fresh jobId). */
  jobId: string;
  agentId: string;
  /** The trust this client grants the agent: 'attested' only when its own check of the co-signature and the gateway's agree. */
  trust: Trust;
  /** The gateway's attempt number for this job (0 for the first agent tried). */
  attempt: number;
  /** Sends of the request so far, 1 unless the SDK retried. */
  sends: number;
}

/** A verified, finished completion. */
export interface ChatResult extends ServedBy {
  model: string;
  text: string;
  finishReason: FinishReason;
  /** Which stop sequence ended the reply, when the agent says so. */
  stopSequence?: string;
  /** The calls of a reply that ended in them (finishReason 'tool_calls'; `text` is then empty). At most one today. */
  toolCalls?: ToolCall[];
  usage: Usage;
  /** The agent's receipt, verified against what was sent and received. */
  receipt: Receipt;
  /** The receipt as signed, for records that are checked again later. */
  signedReceipt: SignedReceipt;
  /** The agent's identity key (base64url) that signed the receipt. */
  identityKey: string;
  /**
   * The job's evidence, only when the request asked to keep it ({@link ChatRequest.keepEvidence}).
   * It holds the content key: whoever holds it can read the conversation and the reply.
   */
  evidence?: JobEvidence;
}

/** A streaming completion: iterate for text deltas; `result` settles at the end. */
export interface ChatStream extends AsyncIterable<string> {
  /** The jobId of the job that serves the reply; settles with the first chunk. */
  readonly jobId: Promise<string>;
  /** Who serves the reply; settles with the first chunk. */
  readonly served: Promise<ServedBy>;
  /** The verified result, or the error that ended the request. */
  readonly result: Promise<ChatResult>;
  /** Cancels the request (and the job at the agent). Breaking out of iteration does the same. */
  cancel(): void;
}

/**
 * A reply that broke off after some of its text was delivered. The text so far is in
 * `partialText`; it is not a complete answer, and no receipt covers it. The code is the cause's
 * (usually NJ_AGENT_FAILED).
 */
export class IncompleteReplyError extends NightjarError {
  /** The text delivered before the reply broke off. */
  readonly partialText: string;
  /** Who was serving it. */
  readonly servedBy: ServedBy;

  constructor(cause: NightjarError, partialText: string, servedBy: ServedBy) {
    super(cause.code, `the reply broke off after ${partialText.length} characters: ${cause.message}`, {
      cause,
      retryAfterMs: cause.retryAfterMs,
    });
    this.partialText = partialText;
    this.servedBy = servedBy;
  }
}

/** The longest NDJSON line accepted from the gateway. */
const MAX_EVENT_LINE = Math.ceil((LIMITS.maxChunkBytes * 4) / 3) + 4096;

const requestSchema = z
  .object({
    model: modelIdSchema,
    messages: z.array(chatMessageSchema).min(1).max(LIMITS.maxMessages),
    sampling: samplingSchema,
    tools: z.array(toolSchema).min(1).max(LIMITS.maxTools).optional(),
    toolChoice: toolChoiceSchema.optional(),
    responseFormat: responseFormatSchema.optional(),
    cacheKey: cacheKeySchema.optional(),
  })
  .superRefine(checkTools);

/** Conversations whose last agent a client remembers (the least recently served forgotten first). */
const MAX_REMEMBERED_CONVERSATIONS = 1024;

/**
 * A fresh conversation cache key ({@link ChatRequest.cacheKey}): 256 random bits, base64url. Use
 * one per conversation, never one across conversations or users.
 */
export function newCacheKey(): string {
  return toBase64Url(randomBytes(32));
}

/** `candidates` with the one of `agentId` (if among them) moved to the front, the rest in order. */
function preferring<T extends { verified: VerifiedBundle }>(candidates: readonly T[], agentId: string | undefined): T[] {
  const at = agentId === undefined ? -1 : candidates.findIndex((c) => c.verified.bundle.agentId === agentId);
  return at <= 0 ? [...candidates] : [candidates[at]!, ...candidates.slice(0, at), ...candidates.slice(at + 1)];
}

/** True if the request puts its reply under a grammar (tools it may call, a response format). */
function grammarConstrained(request: ChatRequest): boolean {
  return (request.tools !== undefined && request.tools.length > 0 && request.toolChoice !== 'none') || request.responseFormat !== undefined;
}

/** What one send has received so far. */
interface SendState {
  served: ServedBy | null;
  text: string;
  /** An embedding job's vectors, in order. */
  vectors: Float32Array[];
}

interface Sink {
  delta(text: string): void;
  start(served: ServedBy): void;
}

interface Candidate {
  verified: VerifiedBundle;
  trust: Trust;
}

/** The default of {@link NightjarClientOptions.directoryWindowMs}. */
const DIRECTORY_WINDOW_MS = 30_000;

/** The defaults of {@link TrustPolicy}. */
export const TRUST_DEFAULTS: Readonly<Required<Omit<TrustPolicy, 'pins' | 'releases'>>> & Pick<TrustPolicy, 'pins' | 'releases'> = {
  minTrust: 'signed',
  allowSynthetic: false,
  pins: undefined,
  onlyPinned: false,
  releases: undefined,
};

/** The gateway's word for the app hash (where the client does not check it against a list itself). */
const GATEWAY_WORD_RELEASES: ReleasedApps = { isRelease: () => true };

/** True if `text` is JSON text. */
function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** A verified released-versions list as the attestation check asks it. */
function signedReleasesApps(list: VerifiedReleases): ReleasedApps {
  return { isRelease: (appHash) => list.release(appHash) !== undefined };
}

/** The defaults of {@link NightjarClientOptions} (trust and retry have their own). */
export const CLIENT_DEFAULTS: Readonly<
  Required<
    Pick<
      NightjarClientOptions,
      | 'candidates'
      | 'candidatesTtlMs'
      | 'streamIdleMs'
      | 'fetch'
      | 'clock'
      | 'random'
      | 'seal'
      | 'directoryWindowMs'
      | 'countersign'
      | 'countersignAttempts'
    >
  >
> = {
  candidates: 3,
  directoryWindowMs: DIRECTORY_WINDOW_MS,
  candidatesTtlMs: 5000,
  streamIdleMs: 1000,
  // Called through globalThis at each use: a browser refuses fetch called on another object.
  fetch: (input, init) => globalThis.fetch(input, init),
  clock: systemClock,
  random: () => Math.random(),
  seal: sealRequest,
  countersign: true,
  countersignAttempts: 3,
};

/** {@link NightjarClientOptions} resolved once, when the client is built. */
interface ResolvedClientOptions extends Readonly<
  Required<Omit<NightjarClientOptions, 'apiKey' | 'onReceipt' | 'trust' | 'retry' | 'gatewayKey' | 'gatewayKeys'>>
> {
  readonly apiKey: string | undefined;
  /** The gateway key given, parsed; null to pin on first use. */
  readonly gatewayKey: GatewayKeyExpectation | null;
  readonly gatewayKeys: GatewayKeyStore;
  readonly onReceipt: NightjarClientOptions['onReceipt'];
  readonly trust: typeof TRUST_DEFAULTS;
  readonly retry: ResolvedRetryPolicy;
}

/** The most tokens a request that names none asks for. */
const DEFAULT_MAX_TOKENS = 256;

/** A client of one gateway. Holds no sockets of its own (fetch pools belong to the fetch). */
export class NightjarClient {
  readonly #o: ResolvedClientOptions;
  readonly #base: string;
  readonly #recent = new Map<string, { at: number; candidates: Candidate[] }>();
  /** The agent that served each conversation's last turn, by cache key, least recent first. */
  readonly #lastAgent = new Map<string, string>();
  /**
   * An ephemeral key agreed, after a reply, with the agents that sent it: the next request to
   * them (a conversation's next turn) seals without waiting for WebCrypto. Used once.
   */
  #spare: Promise<PreparedEphemeral | null> | null = null;
  /** The gateway key this client trusts now (pinned, given, or moved by a rotation); null until first use. */
  #gatewayKey: Uint8Array | null = null;
  /** Settles when the last gateway key check is done: checks run one at a time. */
  #keyCheck: Promise<unknown> = Promise.resolve();
  /** Countersignatures still being posted. */
  readonly #countersigns = new Set<Promise<void>>();

  constructor(options: NightjarClientOptions) {
    this.#o = {
      ...withDefaults(CLIENT_DEFAULTS, options),
      apiKey: options.apiKey,
      gatewayKey: options.gatewayKey === undefined ? null : parseGatewayKey(options.gatewayKey),
      gatewayKeys: options.gatewayKeys ?? new MemoryGatewayKeyStore(),
      onReceipt: options.onReceipt,
      trust: withDefaults(TRUST_DEFAULTS, options.trust),
      retry: resolveRetryPolicy(options.retry),
    };
    this.#base = options.gatewayUrl.replace(/\/+$/, '');
    // HTTP drops whitespace around a header value (RFC 9110 §5.5): a key with a space would be
    // sent as some other string. Keys are printable ASCII; refuse anything else rather than send it.
    if (options.apiKey && !/^[!-~]{1,256}$/.test(options.apiKey)) {
      throw new NightjarError(
        'NJ_CONFIG_INVALID',
        'the API key has a space or a character that is not printable ASCII in it; copy the key again exactly',
      );
    }
    const k = this.#o.candidates;
    if (!Number.isInteger(k) || k < 1 || k > LIMITS.maxCandidates) {
      throw new NightjarError('NJ_CONFIG_INVALID', `candidates must be an integer from 1 to ${LIMITS.maxCandidates}`);
    }
  }

  /** The gateway's base URL. */
  get gatewayUrl(): string {
    return this.#base;
  }

  /** Models the gateway offers. */
  async models(signal?: AbortSignal): Promise<ModelsResponse['models']> {
    const res = await this.#get('/v1/models', signal);
    return validate(modelsResponseSchema, await this.#json(res, signal), 'models answer').models;
  }

  /**
   * The gateway's model catalog (GET /v1/catalog), verified: signed by the gateway key this client
   * pinned or was given (NJ_GATEWAY_KEY_MISMATCH otherwise), intact and not from the future
   * (NJ_CATALOG_INVALID otherwise).
   */
  async catalog(signal?: AbortSignal): Promise<VerifiedGatewayCatalog> {
    const raw = await this.#json(await this.#get('/v1/catalog', signal), signal);
    const parsed = signedGatewayCatalogSchema.safeParse(raw);
    if (!parsed.success) throw new NightjarError('NJ_CATALOG_INVALID', `the catalog is invalid at ${describeIssues(parsed.error)}`);
    const gatewayKey = await this.#trustedGatewayKey(fromBase64Url(parsed.data.catalog.gatewayKey), signal);
    return verifySignedCatalog(parsed.data, { gatewayKey, now: this.#o.clock.now() });
  }

  /**
   * The gateway's released-versions list (GET /v1/releases), verified: signed by the gateway key
   * this client pinned or was given (NJ_GATEWAY_KEY_MISMATCH otherwise), intact and not from the
   * future (NJ_RELEASES_INVALID otherwise).
   */
  async releases(signal?: AbortSignal): Promise<VerifiedReleases> {
    const raw = await this.#json(await this.#get('/v1/releases', signal), signal);
    const parsed = signedReleasesListSchema.safeParse(raw);
    if (!parsed.success) throw new NightjarError('NJ_RELEASES_INVALID', `the releases list is invalid at ${describeIssues(parsed.error)}`);
    const gatewayKey = await this.#trustedGatewayKey(fromBase64Url(parsed.data.releases.gatewayKey), signal);
    return verifySignedReleases(parsed.data, { gatewayKey, now: this.#o.clock.now() });
  }

  /** The gateway key this client trusts now (after the first signed answer), or null before. */
  get trustedGatewayKey(): { key: string; keyId: string; fingerprint: string } | null {
    const key = this.#gatewayKey;
    return key ? { key: toBase64Url(key), keyId: gatewayKeyIdFor(key), fingerprint: gatewayKeyFingerprint(key) } : null;
  }

  /**
   * The key a signed document must be signed by, given that it names `signer`: the key given, or
   * the pinned one (pinning `signer` on first use), moved along rotation statements signed by it
   * when the gateway names a newer key. Checks run one at a time, so two first uses pin once.
   */
  #trustedGatewayKey(signer: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const check = this.#keyCheck.then(() => this.#checkGatewayKey(signer, signal));
    this.#keyCheck = check.catch(() => undefined);
    return check;
  }

  async #checkGatewayKey(signer: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const given = this.#o.gatewayKey;
    const store = this.#o.gatewayKeys;
    if (!this.#gatewayKey) {
      if (given && 'key' in given) this.#gatewayKey = given.key;
      else if (given) {
        // Given by id or fingerprint: the key itself is learnt from the first answer that matches it.
        if (!gatewayKeyMatches(given, signer)) throw this.#keyMismatch(signer, null);
        this.#gatewayKey = signer;
      } else {
        const pinned = await store.get(this.#base);
        if (pinned) this.#gatewayKey = pinned;
        else {
          await store.set(this.#base, signer, 'first-use');
          this.#gatewayKey = signer;
        }
      }
    }
    const trusted = this.#gatewayKey;
    if (bytesEqual(trusted, signer)) return trusted;
    // Another key: follow the gateway's rotation statements, if the pinned key signed a way to it.
    const raw = await this.#json(await this.#get('/v1/gateway-key', signal), signal);
    const current = gatewayKeyResponseSchema.safeParse(raw);
    if (!current.success || current.data.key !== toBase64Url(signer)) throw this.#keyMismatch(signer, trusted);
    const chain = await followRotations(trusted, signer, current.data.rotations ?? [], { now: this.#o.clock.now() });
    if (!chain) throw this.#keyMismatch(signer, trusted);
    if (!given) await store.set(this.#base, signer, 'rotation');
    this.#gatewayKey = signer;
    return signer;
  }

  #keyMismatch(signer: Uint8Array, trusted: Uint8Array | null): NightjarError {
    const code: ErrorCode = 'NJ_GATEWAY_KEY_MISMATCH';
    const got = `gateway key ${gatewayKeyIdFor(signer)} (fingerprint ${gatewayKeyFingerprint(signer)})`;
    if (this.#o.gatewayKey) {
      const was = trusted ? `the key given (${gatewayKeyIdFor(trusted)})` : 'the key given';
      return new NightjarError(
        code,
        `${this.#base} signs with ${got}, not ${was}, and no rotation statement signed by it leads there; ` +
          'check the key you gave (--gateway-key) against `nightjar gateway key` on the gateway',
      );
    }
    return new NightjarError(
      code,
      `${this.#base} signs with ${got}, not the pinned key ${trusted ? gatewayKeyIdFor(trusted) : ''}: ` +
        'the gateway’s key changed without a rotation statement signed by the pinned key; ' +
        `if you trust the new key, run \`nightjar trust reset --gateway ${this.#base}\``,
    );
  }

  /** Streams a completion. */
  chat(request: ChatRequest): ChatStream {
    const queue: string[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    const controller = new AbortController();
    const outer = request.signal;
    const onOuterAbort = (): void => controller.abort(outer?.reason);
    if (outer?.aborted) controller.abort(outer.reason);
    else outer?.addEventListener('abort', onOuterAbort, { once: true });

    let resolveServed!: (s: ServedBy) => void;
    let rejectServed!: (e: unknown) => void;
    const served = new Promise<ServedBy>((res, rej) => {
      resolveServed = res;
      rejectServed = rej;
    });
    const result = this.#run(request, controller.signal, {
      delta(text) {
        queue.push(text);
        wake?.();
      },
      start: resolveServed,
    }).finally(() => {
      finished = true;
      outer?.removeEventListener('abort', onOuterAbort);
      wake?.();
    });
    result.catch(rejectServed);
    served.catch(() => undefined);
    const jobId = served.then((s) => s.jobId);
    jobId.catch(() => undefined);
    return {
      jobId,
      served,
      result,
      cancel: () => controller.abort(),
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            while (queue.length > 0) yield queue.shift()!;
            if (finished) {
              await result;
              return;
            }
            await new Promise<void>((r) => (wake = r));
            wake = null;
          }
        } finally {
          // A consumer that stops reading early (break, throw) cancels the job.
          if (!finished) controller.abort();
        }
      },
    };
  }

  /** A completion, whole. */
  complete(request: ChatRequest): Promise<ChatResult> {
    return this.chat(request).result;
  }

  /**
   * Embeds texts: one sealed job whose reply carries a vector per text, checked to be one per
   * input, all the same width (and `dimensions` wide when asked). Throws NJ_BAD_REQUEST for bad
   * input (before anything is sent) and when the agent refuses it (a model that does not embed, a
   * width that differs), NJ_CONTEXT_OVERFLOW for a text longer than the agent's context.
   */
  async embeddings(request: EmbeddingsRequest): Promise<EmbeddingsResult> {
    const checked = embedInputSchema.safeParse({ model: request.model, input: request.input, dimensions: request.dimensions });
    if (!checked.success) throw new NightjarError('NJ_BAD_REQUEST', `the request is invalid at ${describeIssues(checked.error)}`);
    const embed: EmbedJob = { input: request.input, ...(request.dimensions === undefined ? {} : { dimensions: request.dimensions }) };
    const chat: ChatRequest = {
      model: request.model,
      messages: [],
      maxTokens: 1,
      ...(request.onRetry === undefined ? {} : { onRetry: request.onRetry }),
    };
    const controller = new AbortController();
    const outer = request.signal;
    const onOuterAbort = (): void => controller.abort(outer?.reason);
    if (outer?.aborted) controller.abort(outer.reason);
    else outer?.addEventListener('abort', onOuterAbort, { once: true });
    let result: SendResult;
    try {
      result = await this.#run(chat, controller.signal, { delta: () => undefined, start: () => undefined }, embed);
    } finally {
      outer?.removeEventListener('abort', onOuterAbort);
    }
    const vectors = result.embeddings ?? [];
    const width = vectors[0]?.length ?? 0;
    if (
      vectors.length !== request.input.length ||
      vectors.some((v) => v.length !== width) ||
      (request.dimensions !== undefined && width !== request.dimensions) ||
      result.text !== '' ||
      result.usage.completionTokens !== 0
    ) {
      throw new NightjarError(
        'NJ_FRAME_UNEXPECTED',
        `the agent's reply does not fit the embedding request (${vectors.length} vectors for ${request.input.length} texts, ` +
          'or widths that differ)',
      );
    }
    return {
      jobId: result.jobId,
      agentId: result.agentId,
      trust: result.trust,
      attempt: result.attempt,
      sends: result.sends,
      model: result.model,
      embeddings: vectors,
      usage: result.usage,
      receipt: result.receipt,
      signedReceipt: result.signedReceipt,
      identityKey: result.identityKey,
    };
  }

  /**
   * Candidate bundles for `model` that pass the trust policy, verified, best first. The answer must
   * be signed by the gateway key (pinned or given), name the nonce this call sent and its model, k
   * and minTrust, and be fresh (directoryWindowMs); each candidate's trust as the gateway signed it
   * must reach minTrust, and so must the trust this client grants it.
   */
  async candidates(model: string, signal?: AbortSignal): Promise<Candidate[]> {
    const policy = this.#o.trust;
    const k = this.#o.candidates;
    const minTrust = policy.minTrust;
    const nonce = toBase64Url(randomBytes(16));
    const path = `/v1/candidates?model=${encodeURIComponent(model)}&k=${k}&minTrust=${minTrust}&nonce=${nonce}`;
    const res = await this.#get(path, signal);
    const raw = await this.#json(res, signal);
    const parsed = candidatesResponseSchema.safeParse(raw);
    if (!parsed.success) {
      throw new NightjarError('NJ_DIRECTORY_INVALID', `the candidates answer is invalid at ${describeIssues(parsed.error)}`);
    }
    const gatewayKey = await this.#trustedGatewayKey(fromBase64Url(parsed.data.gatewayKey), signal);
    const answer = await verifyDirectoryAnswer(parsed.data, {
      gatewayKey,
      request: { nonce, model, k, minTrust },
      now: this.#o.clock.now(),
      windowMs: this.#o.directoryWindowMs,
    });
    // For `attested`, the app hash is checked here too: against the trust policy's list, else the
    // gateway's signed released-versions list (fetched only when an attested candidate is offered).
    const releases =
      policy.releases ??
      (minTrust === 'attested' && answer.candidates.some((c) => c.trust === 'attested')
        ? signedReleasesApps(await this.releases(signal))
        : GATEWAY_WORD_RELEASES);
    const reasons: string[] = [];
    // Each candidate is checked on its own, all at once; a pinned key that changed ends it all.
    const checked = await Promise.all(
      answer.candidates.map((c) =>
        this.#checkCandidate(c.bundle, c.trust, model, policy, minTrust, releases).catch((err: unknown) => {
          if (err instanceof NightjarError && err.code === 'NJ_PINNED_KEY_CHANGED') throw err;
          reasons.push(err instanceof Error ? err.message : String(err));
          return null;
        }),
      ),
    );
    const accepted = checked.filter((c): c is Candidate => c !== null);
    if (accepted.length === 0) {
      const why = reasons.length ? `: ${[...new Set(reasons)].join('; ')}` : '';
      throw new NightjarError('NJ_TRUST_POLICY', `no candidate for ${model} meets the trust policy${why}`);
    }
    for (const a of accepted) await policy.pins?.set(a.verified.bundle.agentId, a.verified.identityKey);
    return accepted;
  }

  /** Candidates for `model`: recent verified ones while they are fresh and valid, else asked for. */
  async #candidatesFor(model: string, signal: AbortSignal, fresh: boolean): Promise<Candidate[]> {
    const ttl = this.#o.candidatesTtlMs;
    const now = this.#o.clock.now();
    const hit = this.#recent.get(model);
    if (!fresh && hit && now - hit.at < ttl && hit.candidates.every((c) => c.verified.bundle.notAfter > now)) return hit.candidates;
    const candidates = await this.candidates(model, signal);
    if (ttl > 0) this.#recent.set(model, { at: now, candidates });
    return candidates;
  }

  /** Verifies one candidate's bundle against the trust policy; throws why it is refused. */
  async #checkCandidate(
    signed: SignedBundle,
    gatewayTrust: Trust,
    model: string,
    policy: typeof TRUST_DEFAULTS,
    minTrust: Trust,
    releases: ReleasedApps,
  ): Promise<Candidate> {
    // The gateway's own judgment, from the signed answer: it must reach minTrust before anything else.
    if (TRUST_LEVELS.indexOf(gatewayTrust) < TRUST_LEVELS.indexOf(minTrust)) {
      throw new NightjarError(
        'NJ_TRUST_POLICY',
        `the gateway judged agent ${signed.bundle.agentId.slice(0, 8)} ${gatewayTrust}; the policy asks for ${minTrust}`,
      );
    }
    const pinned = await policy.pins?.get(signed.bundle.agentId);
    if (policy.onlyPinned && !pinned) {
      throw new NightjarError(
        'NJ_TRUST_POLICY',
        `agent ${signed.bundle.agentId.slice(0, 8)} is not pinned and only pinned agents are allowed`,
      );
    }
    const verified = await verifyBundle(signed, { now: this.#o.clock.now(), pinnedIdentityKey: pinned });
    const entry = verified.bundle.models.find((m) => m.id === model);
    if (!entry) throw new NightjarError('NJ_TRUST_POLICY', 'the bundle does not list the model');
    if (entry.synthetic && !policy.allowSynthetic) {
      throw new NightjarError('NJ_TRUST_POLICY', `${model} is a synthetic model (random weights); allow synthetic models to use it`);
    }
    // `attested` needs both words: the gateway's (it judged the enclave's live answers to its
    // challenges, and the app hash against its released list) and this client's own check of the
    // bundle's Secure Enclave co-signature and posture. The gateway's word alone never lifts an
    // agent above `signed`; a client holding a released list checks the app hash itself too.
    let trust: Trust = 'signed';
    let why = '';
    if (gatewayTrust === 'attested' || minTrust === 'attested') {
      const judged = await judgeBundleAttestation(verified.bundle, releases);
      if (judged.trust === 'attested' && gatewayTrust === 'attested') trust = 'attested';
      else why = judged.trust === 'attested' ? ' (the gateway does not vouch for it)' : ` (${judged.reasons.join(', ')})`;
    }
    if (TRUST_LEVELS.indexOf(trust) < TRUST_LEVELS.indexOf(minTrust)) {
      throw new NightjarError('NJ_TRUST_POLICY', `the agent is ${trust}${why}; the policy asks for ${minTrust}`);
    }
    return { verified, trust };
  }

  /**
   * Reveals one job to the gateway's auditor (POST /v1/jobs/:jobId/reveal): hands over its evidence
   * (kept with {@link ChatRequest.keepEvidence}), which gives the gateway's operator that
   * conversation, so the gateway re-checks the reply against the model file the agent's receipt
   * names. A failed check strikes the agent and, while the job's earnings are pending, gives its
   * charge back. Needs the API key that paid for the job. Throws NightjarError:
   * NJ_EVIDENCE_INVALID (the evidence does not open or match the receipt), NJ_NOT_FOUND (not this
   * key's job, or one without a receipt), NJ_ALREADY_REVEALED, NJ_AUDIT_UNAVAILABLE (the gateway
   * holds no checker for the file), NJ_RATE_LIMITED (with retryAfterMs).
   */
  async reveal(evidence: JobEvidence, signal?: AbortSignal): Promise<RevealResult> {
    if (this.#o.apiKey === undefined) throw new NightjarError('NJ_UNAUTHORIZED', 'revealing a job needs the API key that paid for it');
    const checked = jobEvidenceSchema.safeParse(evidence);
    if (!checked.success) throw new NightjarError('NJ_EVIDENCE_INVALID', `evidence: ${describeIssues(checked.error)}`);
    let res: Response;
    try {
      res = await this.#o.fetch(`${this.#base}/v1/jobs/${checked.data.jobId}/reveal`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...this.#auth() },
        body: JSON.stringify(checked.data),
        signal,
      });
    } catch (cause) {
      throw this.#transportError(cause, signal);
    }
    if (!res.ok) throw await this.#httpError(res);
    const answer = validate(revealResponseSchema, await this.#json(res, signal), 'reveal answer');
    if (answer.jobId !== checked.data.jobId) throw new NightjarError('NJ_FRAME_INVALID', 'the gateway answered the reveal of another job');
    const { jobId, agentId, verdict, forfeited, refunded, message } = answer;
    return { jobId, agentId, verdict, forfeited, refunded, message };
  }

  /**
   * Resolves once every countersignature under way has been posted or given up on (at once if
   * none is). A program that exits right after a reply awaits it so the gateway gets its count.
   */
  async countersigned(): Promise<void> {
    while (this.#countersigns.size > 0) await Promise.all([...this.#countersigns]);
  }

  /** Posts a countersignature in the background, with bounded retries; failures are dropped (the window allows for them). */
  #postCountersign(statement: CountersignStatement): void {
    const apiKey = this.#o.apiKey;
    if (!this.#o.countersign || apiKey === undefined) return;
    const body = JSON.stringify(countersign(statement, countersignKeyOf(apiKey)));
    const url = `${this.#base}/v1/jobs/${statement.jobId}/countersign`;
    const post = async (): Promise<void> => {
      for (let attempt = 1; attempt <= this.#o.countersignAttempts; attempt++) {
        try {
          const res = await this.#o.fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...this.#auth() }, body });
          await res.body?.cancel().catch(() => undefined);
          // Taken, already taken, or refused for good (a 4xx other than 429): nothing to retry.
          if (res.ok || (res.status >= 400 && res.status < 500 && res.status !== 429)) return;
        } catch {
          // The gateway was not reached: retry.
        }
        if (attempt < this.#o.countersignAttempts) await delay(this.#o.clock, 1000 * 2 ** (attempt - 1)).catch(() => undefined);
      }
    };
    const done: Promise<void> = post().finally(() => this.#countersigns.delete(done));
    this.#countersigns.add(done);
  }

  async #run(request: ChatRequest, signal: AbortSignal, sink: Sink, embed?: EmbedJob): Promise<SendResult> {
    const sampling = embed ? { maxTokens: 1 } : this.#check(request);
    const started = this.#o.clock.now();
    let modelUnknown = 0;
    for (let sends = 1; ; sends++) {
      const state: SendState = { served: null, text: '', vectors: [] };
      try {
        const result = await this.#send(request, sampling, signal, sink, sends, state, embed);
        if (this.#o.onReceipt) await Promise.resolve(this.#o.onReceipt(result)).catch(() => undefined);
        return result;
      } catch (err) {
        const error = signal.aborted
          ? new NightjarError('NJ_CANCELLED', 'the request was cancelled', { cause: err })
          : err instanceof NightjarError
            ? err
            : new NightjarError('NJ_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
        this.#recent.delete(request.model);
        if (state.served) {
          if (error.code === 'NJ_CANCELLED') throw error;
          throw new IncompleteReplyError(error, state.text, state.served);
        }
        if (error.code === 'NJ_MODEL_UNKNOWN') modelUnknown++;
        const retry = { sent: sends, modelUnknown, elapsedMs: this.#o.clock.now() - started };
        const wait = signal.aborted ? null : retryDelay(this.#o.retry, error, retry, this.#o.random);
        if (wait === null) throw error;
        request.onRetry?.({ error, sent: sends, delayMs: wait });
        await delay(this.#o.clock, wait, signal).catch((cause: unknown) => {
          throw new NightjarError('NJ_CANCELLED', 'the request was cancelled', { cause });
        });
      }
    }
  }

  #check(request: ChatRequest): Sampling {
    // Fields left undefined are absent from the sealed JSON (JSON.stringify drops them).
    const sampling: Sampling = {
      maxTokens: request.maxTokens ?? DEFAULT_MAX_TOKENS,
      temperature: request.temperature,
      topP: request.topP,
      topK: request.topK,
      seed: request.seed,
      stop: request.stop?.length ? request.stop : undefined,
      frequencyPenalty: request.frequencyPenalty || undefined,
      presencePenalty: request.presencePenalty || undefined,
    };
    const checked = requestSchema.safeParse({
      model: request.model,
      messages: request.messages,
      sampling,
      tools: request.tools?.length ? request.tools : undefined,
      toolChoice: request.toolChoice,
      responseFormat: request.responseFormat,
      cacheKey: request.cacheKey,
    });
    if (!checked.success) throw new NightjarError('NJ_BAD_REQUEST', `the request is invalid at ${describeIssues(checked.error)}`);
    return sampling;
  }

  async #send(
    request: ChatRequest,
    sampling: Sampling,
    signal: AbortSignal,
    sink: Sink,
    sends: number,
    state: SendState,
    embed?: EmbedJob,
  ): Promise<SendResult> {
    const listed = await this.#candidatesFor(request.model, signal, sends > 1);
    // A conversation's next turn goes first to the agent holding it warm, if it is still offered.
    const candidates = request.cacheKey === undefined ? listed : preferring(listed, this.#lastAgent.get(request.cacheKey));
    const recipients = candidates.map((c) => c.verified);
    const prepared = await this.#takeSpare();
    let sealed: SealedRequest;
    try {
      sealed = await this.#o.seal({
        model: request.model,
        messages: request.messages,
        sampling,
        ...(request.tools?.length ? { tools: request.tools } : {}),
        ...(request.toolChoice === undefined ? {} : { toolChoice: request.toolChoice }),
        ...(request.responseFormat === undefined ? {} : { responseFormat: request.responseFormat }),
        ...(embed === undefined ? {} : { embed }),
        ...(request.cacheKey === undefined ? {} : { cacheKey: request.cacheKey }),
        recipients,
        now: this.#o.clock.now(),
        prepared,
      });
    } finally {
      // Spent by the seal, or agreed with other agents: either way never used again.
      prepared?.discard();
    }
    try {
      let res: Response;
      try {
        res = await this.#o.fetch(`${this.#base}/v1/jobs`, {
          method: 'POST',
          // The stream begins at admission, keepalives with it: silence before the first chunk is
          // then a dead connection too, not an agent still thinking (the gateway times that out).
          headers: { 'content-type': 'application/json', [EARLY_STREAM_HEADER.name]: EARLY_STREAM_HEADER.value, ...this.#auth() },
          body: JSON.stringify({ v: PROTOCOL_VERSION, envelope: sealed.envelope }),
          signal,
        });
      } catch (cause) {
        throw this.#transportError(cause);
      }
      if (!res.ok) throw await this.#httpError(res);
      if (!res.body) throw new NightjarError('NJ_STREAM_TRUNCATED', 'the gateway sent no reply body');

      let opener: ReplyOpener | null = null;
      let agent: Candidate | null = null;
      let chunks = 0;
      // Kept only when asked (keepEvidence): the chunk ciphertexts as relayed, and the reply salt.
      const kept: { replySalt: string; chunks: { seq: number; data: string }[] } | null = request.keepEvidence
        ? { replySalt: '', chunks: [] }
        : null;
      let replyDigest: Uint8Array | null = null;
      const countersignReply = (): void => {
        if (!opener || !state.served) return;
        replyDigest ??= opener.digest();
        this.#postCountersign({
          v: PROTOCOL_VERSION,
          jobId: sealed.jobId,
          replyDigest: toBase64Url(replyDigest),
          // A call is generated but delivered as the final chunk's toolCalls: its bytes count too.
          // An embedding job generates nothing: its reply is vectors, and its receipt counts 0.
          completionTokens: embed
            ? 0
            : completionTokensReceived(
                utf8(state.text).length,
                sampling.maxTokens,
                sampling.stop,
                constrainedReplyBytes(grammarConstrained(request), opener.finished ? (opener.finish().toolCalls ?? []) : []),
              ),
          chunks,
          received: opener.finished ? 'done' : 'broken',
        });
      };
      try {
        try {
          const lines = readNdjson(res.body, MAX_EVENT_LINE, { idleMs: this.#o.streamIdleMs, clock: this.#o.clock, peer: this.#base });
          for await (const line of lines) {
            const event: JobEvent = validate(jobEventSchema, JSON.parse(line), 'job event');
            switch (event.type) {
              case 'start': {
                if (opener) throw new NightjarError('NJ_FRAME_UNEXPECTED', 'the gateway started the reply twice');
                agent = candidates.find((x) => x.verified.bundle.agentId === event.agentId) ?? null;
                if (!agent) throw new NightjarError('NJ_FRAME_UNEXPECTED', 'the reply comes from an agent the request was not sealed for');
                opener = new ReplyOpener(deriveReplyKeys(sealed.contentKey, fromBase64Url(event.replySalt), event.agentId));
                if (kept) kept.replySalt = event.replySalt;
                state.served = { jobId: sealed.jobId, agentId: event.agentId, trust: agent.trust, attempt: event.attempt, sends };
                sink.start(state.served);
                break;
              }
              case 'chunk': {
                if (!opener) throw new NightjarError('NJ_FRAME_UNEXPECTED', 'a chunk arrived before the reply started');
                const chunk = opener.open(event.seq, fromBase64Url(event.data));
                chunks++;
                kept?.chunks.push({ seq: event.seq, data: event.data });
                if (chunk.delta) {
                  state.text += chunk.delta;
                  sink.delta(chunk.delta);
                }
                if (chunk.embeddings !== undefined) {
                  // Only an embedding job's reply carries vectors, and never more than it has texts.
                  if (!embed || state.vectors.length + chunk.embeddings.length > embed.input.length)
                    throw new NightjarError('NJ_FRAME_UNEXPECTED', 'the reply carries embeddings the request did not ask for');
                  for (const e of chunk.embeddings) state.vectors.push(decodeEmbedding(e));
                }
                break;
              }
              case 'done': {
                if (!opener || !agent || !state.served)
                  throw new NightjarError('NJ_FRAME_UNEXPECTED', 'the job ended before the reply started');
                replyDigest = opener.digest();
                const result = await this.#finish(request, sealed, opener, replyDigest, agent, state.served, state.text, event.receipt);
                if (request.cacheKey === undefined) this.#prepareSpare(recipients);
                else {
                  this.#rememberAgent(request.cacheKey, state.served.agentId);
                  // The spare fits only the next turn's recipients in their order: this agent first.
                  this.#prepareSpare(preferring(candidates, state.served.agentId).map((c) => c.verified));
                }
                if (embed) return { ...result, embeddings: state.vectors };
                if (!kept) return result;
                // A copy of the key goes into the evidence before the finally below wipes the original.
                const evidence = jobEvidence({
                  jobId: sealed.jobId,
                  agentId: state.served.agentId,
                  attempt: state.served.attempt,
                  contentKey: sealed.contentKey,
                  envelope: sealed.envelope,
                  replySalt: kept.replySalt,
                  chunks: kept.chunks,
                });
                return { ...result, evidence };
              }
              case 'error':
                throw errorFromPayload(event);
            }
          }
        } catch (err) {
          if (err instanceof NightjarError) throw err;
          if (err instanceof SyntaxError) throw new NightjarError('NJ_FRAME_INVALID', 'the gateway sent a line that is not JSON');
          if (signal.aborted) throw this.#transportError(err, signal);
          // The response had begun: the gateway was reached, and then the connection broke.
          throw new NightjarError('NJ_STREAM_BROKEN', `the connection to the gateway at ${this.#base} broke off mid-reply`, { cause: err });
        }
        if (opener) opener.finish();
        throw new NightjarError('NJ_STREAM_TRUNCATED', 'the gateway closed the reply before it was done');
      } finally {
        // Done or broken, the gateway hears what this client received (docs/protocol.md "Countersignature").
        countersignReply();
      }
    } finally {
      sealed.contentKey.fill(0);
    }
  }

  async #finish(
    request: ChatRequest,
    sealed: SealedRequest,
    opener: ReplyOpener,
    replyDigest: Uint8Array,
    agent: Candidate,
    served: ServedBy,
    text: string,
    signed: SignedReceipt,
  ): Promise<ChatResult> {
    const final = opener.finish();
    const receipt = await verifyReceipt(signed, {
      identityKey: agent.verified.identityKey,
      agentId: agent.verified.bundle.agentId,
      jobId: sealed.jobId,
      attempt: served.attempt,
      model: request.model,
      requestDigest: sealed.requestDigest,
      replyDigest,
      promptTokens: final.usage.promptTokens,
      completionTokens: final.usage.completionTokens,
    });
    const file = agent.verified.bundle.models.find((m) => m.id === request.model);
    if (receipt.finishReason !== final.finishReason || file?.sha256 !== receipt.modelSha256) {
      throw new NightjarError('NJ_RECEIPT_INVALID', 'the receipt disagrees with the reply it covers');
    }
    const stopSequence =
      final.finishReason === 'stop' && final.stopSequence !== undefined && request.stop?.includes(final.stopSequence)
        ? final.stopSequence
        : undefined;
    // Tool calls only end a reply that ended in them, name a function the request offered, and
    // carry arguments that parse (the agent generated them under the function's grammar).
    const offered = new Set(request.toolChoice === 'none' ? [] : (request.tools ?? []).map((t) => t.name));
    const fits = (c: ToolCall): boolean => offered.has(c.name) && isJson(c.arguments);
    if ((final.finishReason === 'tool_calls') !== (final.toolCalls !== undefined) || final.toolCalls?.some((c) => !fits(c))) {
      throw new NightjarError(
        'NJ_FRAME_UNEXPECTED',
        "the reply's tool calls do not fit the request (a function it did not offer, arguments that are not JSON, " +
          'or calls without finish reason tool_calls)',
      );
    }
    return {
      ...served,
      model: request.model,
      text,
      finishReason: final.finishReason,
      stopSequence,
      ...(final.toolCalls === undefined ? {} : { toolCalls: final.toolCalls }),
      usage: final.usage,
      receipt,
      signedReceipt: signed,
      identityKey: toBase64Url(agent.verified.identityKey),
    };
  }

  /** Remembers the agent that served a conversation's turn, forgetting the least recent beyond the bound. */
  #rememberAgent(cacheKey: string, agentId: string): void {
    this.#lastAgent.delete(cacheKey);
    this.#lastAgent.set(cacheKey, agentId);
    while (this.#lastAgent.size > MAX_REMEMBERED_CONVERSATIONS) this.#lastAgent.delete(this.#lastAgent.keys().next().value!);
  }

  /** The spare ephemeral key, if one was prepared (it may not fit this request's recipients). */
  async #takeSpare(): Promise<PreparedEphemeral | undefined> {
    const spare = this.#spare;
    this.#spare = null;
    return (await spare) ?? undefined;
  }

  /** Agrees a spare ephemeral key with `recipients` in the background, replacing any other. */
  #prepareSpare(recipients: readonly VerifiedBundle[]): void {
    const previous = this.#spare;
    // A failure here costs only the head start: the next seal draws its own key.
    this.#spare = prepareEphemeral(recipients).catch(() => null);
    void previous?.then((p) => p?.discard());
  }

  #auth(): Record<string, string> {
    return this.#o.apiKey ? { authorization: `Bearer ${this.#o.apiKey}` } : {};
  }

  async #get(path: string, signal?: AbortSignal): Promise<Response> {
    let res: Response;
    try {
      res = await this.#o.fetch(`${this.#base}${path}`, { headers: this.#auth(), signal });
    } catch (cause) {
      throw this.#transportError(cause, signal);
    }
    if (!res.ok) throw await this.#httpError(res);
    return res;
  }

  async #json(res: Response, signal?: AbortSignal): Promise<unknown> {
    try {
      return await res.json();
    } catch (cause) {
      if (signal?.aborted) throw this.#transportError(cause, signal);
      throw new NightjarError('NJ_FRAME_INVALID', 'the gateway answered with something that is not JSON', { cause });
    }
  }

  #transportError(cause: unknown, signal?: AbortSignal): NightjarError {
    if (signal?.aborted) return new NightjarError('NJ_CANCELLED', 'the request was cancelled', { cause });
    return new NightjarError('NJ_GATEWAY_UNREACHABLE', `cannot reach the gateway at ${this.#base}`, { cause });
  }

  async #httpError(res: Response): Promise<NightjarError> {
    try {
      const body = httpErrorSchema.safeParse(await res.json());
      if (body.success) return errorFromPayload(body.data.error);
    } catch {
      // Not a Nightjar error body: fall through.
    }
    return new NightjarError('NJ_GATEWAY_UNREACHABLE', `${this.#base} answered HTTP ${res.status}; is it a Nightjar gateway?`);
  }
}
