/**
 * Protocol version and the hard limits every peer enforces at its boundary. Peers may configure
 * tighter limits (see each component's options); none may accept more than these.
 */

/** The protocol version every frame and signed structure carries. */
export const PROTOCOL_VERSION = 1;

/** Protocol-wide ceilings. */
export const LIMITS = {
  /** Longest model id. */
  maxModelIdLength: 128,
  /** Models one agent may advertise in a bundle. */
  maxModelsPerBundle: 16,
  /** Recipients (candidate agents) one envelope may be wrapped for. */
  maxRecipients: 8,
  /** Candidates a client may ask the gateway for. */
  maxCandidates: 8,
  /** Smallest padded request plaintext; requests pad up to powers of two from here. */
  minRequestBucketBytes: 1024,
  /** Largest request ciphertext (padded plaintext plus the 16-byte tag). */
  maxRequestBodyBytes: 4 * 1024 * 1024 + 16,
  /** Reply chunk plaintexts pad up to a multiple of this. */
  chunkPadBytes: 64,
  /** Largest reply chunk ciphertext. */
  maxChunkBytes: 64 * 1024,
  /** Largest single WebSocket frame between agent and gateway. */
  maxAgentFrameBytes: 6 * 1024 * 1024,
  /** Messages in one conversation. */
  maxMessages: 1024,
  /** Tokens a request may ask for. */
  maxTokens: 32768,
  /** Stop sequences per request, and the longest one. */
  maxStopSequences: 8,
  maxStopLength: 256,
  /** How far in the future a request's created time may be. */
  maxClockSkewMs: 60_000,
  /** How old a request may be when an agent opens it. */
  maxRequestAgeMs: 5 * 60_000,
  /** Longest error message carried in a frame. */
  maxErrorMessageLength: 1024,
  /** Longest enrollment token. */
  maxTokenLength: 256,
  /** Longest free-text field in a bundle (versions, chip names). */
  maxLabelLength: 128,
  /** Failover attempts per job. */
  maxAttempts: 8,
  /** Model ids one signed catalog may list. */
  maxCatalogModels: 256,
  /** Files one model id of the catalog may list (quantizations, re-uploads). */
  maxFilesPerCatalogModel: 16,
  /** Longest download URL of a catalog file. */
  maxCatalogUrlLength: 2048,
  /** Largest signed catalog document, as JSON text (the bounds above fit well inside it). */
  maxCatalogBytes: 4 * 1024 * 1024,
  /**
   * Deepest nesting of any JSON text a peer parses (frames, API bodies): checked by a byte scan
   * before JSON.parse. Nightjar's own messages nest under 10 levels; tool schemas a little more.
   */
  maxJsonDepth: 64,
  /** App hashes one signed released-versions list may name. */
  maxReleases: 1024,
  /** Rotation statements one GET /v1/gateway-key answer may carry (the keys still in their grace period). */
  maxGatewayRotations: 16,
  /** Tools (functions) one request may offer the model. */
  maxTools: 64,
  /** Longest tool description, in characters. */
  maxToolDescriptionLength: 4096,
  /**
   * Largest JSON schema (a tool's parameters, a response format's schema), as JSON text: it is
   * compiled into a grammar at the agent, so it is bounded in size and depth (a 16 KiB schema
   * compiles in milliseconds).
   */
  maxJsonSchemaBytes: 16 * 1024,
  /** Deepest nesting of a JSON schema (objects and arrays, counted as JSON nesting). */
  maxJsonSchemaDepth: 24,
  /** Tool calls one reply may carry (the agent makes at most one today). */
  maxToolCalls: 8,
  /** Longest arguments string of one tool call, in characters: it travels in the final chunk (at most 64 KiB). */
  maxToolArgumentsLength: 32 * 1024,
  /** Texts one embedding request may carry (OpenAI allows 2048; each is evaluated in turn at the agent). */
  maxEmbedInputs: 256,
  /** Longest text one embedding request may carry, in characters (it must also fit the agent's context in tokens). */
  maxEmbedInputLength: 64 * 1024,
  /** Widest embedding vector a reply may carry: 8192 float32 values are 32 KiB, inside one reply chunk. */
  maxEmbeddingDimensions: 8192,
  /** Largest signed directory answer or released-versions list, as JSON text. */
  maxSignedAnswerBytes: 1024 * 1024,
} as const;

/**
 * WebSocket close codes Nightjar uses besides the standard ones (RFC 6455 §7.4; 1009 is sent by
 * ws itself for an oversized frame).
 */
export const CLOSE_CODES = {
  /** Normal shutdown of the peer. */
  goingAway: 1001,
  /** A frame that is not valid protocol. */
  badFrame: 4400,
  /** The agent failed the challenge. */
  authFailed: 4401,
  /** The gateway refused the agent's enrollment token or binding. */
  enrollRefused: 4403,
  /** The handshake did not finish in time. */
  authTimeout: 4408,
  /** The same identity connected again; this session is replaced. */
  replaced: 4409,
  /** Unsupported protocol version. */
  version: 4426,
} as const;
