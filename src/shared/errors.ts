/**
 * Every error a person or a program can see carries a stable `NJ_…` code from this registry.
 * The registry says what went wrong in general terms and what to do next; the thrown message
 * adds the particulars. A test walks the registry and docs/errors.md.
 */

/** One entry of the registry. */
export interface ErrorCodeInfo {
  /** HTTP status a gateway answers with when this error ends a request. */
  readonly status: number;
  /** What to do next, addressed to whoever sees the error. */
  readonly hint: string;
}

/** The registry of stable error codes. Append only: codes are never renamed or reused. */
export const ERROR_CODES = {
  // Protocol and framing
  NJ_PROTOCOL_VERSION: { status: 426, hint: 'Upgrade Nightjar on both ends to the same protocol version.' },
  NJ_FRAME_INVALID: { status: 400, hint: 'The peer sent a malformed message; update it or report a bug.' },
  NJ_FRAME_TOO_LARGE: { status: 413, hint: 'Send a smaller message; the limit is in the error text.' },
  NJ_FRAME_UNEXPECTED: { status: 400, hint: 'The peer sent a message out of order; reconnect.' },
  NJ_BAD_REQUEST: { status: 400, hint: 'Fix the request as the message describes and send it again.' },
  NJ_PAYLOAD_TOO_LARGE: { status: 413, hint: 'Shorten the conversation or raise the limit on the gateway.' },

  // Crypto and trust
  NJ_DECRYPT_FAILED: { status: 400, hint: 'The data was altered, truncated or sealed for another key; do not trust it.' },
  NJ_BAD_SIGNATURE: { status: 400, hint: 'The signature does not verify; the data was altered or forged.' },
  NJ_BAD_KEY: { status: 400, hint: 'A key has the wrong length or is not a usable curve point.' },
  NJ_BUNDLE_INVALID: { status: 400, hint: 'The agent key bundle is malformed, forged or expired; pick another agent.' },
  NJ_NOT_A_RECIPIENT: { status: 400, hint: 'This request was sealed for other agents; route it to one of them.' },
  NJ_HEADER_MISMATCH: { status: 400, hint: 'The visible header was altered in transit; resend from the client.' },
  NJ_STALE_REQUEST: { status: 400, hint: 'The request is too old or from the future; check the clock and resend.' },
  NJ_REPLAY: { status: 409, hint: 'This jobId was already seen; send a fresh request.' },
  NJ_CHUNK_SEQUENCE: { status: 502, hint: 'Reply chunks arrived out of order, duplicated or with a gap; retry the request.' },
  NJ_STREAM_TRUNCATED: { status: 502, hint: 'The reply ended without its final chunk; retry the request.' },
  NJ_RECEIPT_INVALID: { status: 502, hint: 'The receipt does not match the job that ran; do not pay for it and report the agent.' },
  NJ_TRUST_POLICY: { status: 503, hint: 'No agent meets your trust policy; relax it or try again later.' },
  NJ_PINNED_KEY_CHANGED: { status: 502, hint: 'An agent you pinned presented a different identity key; investigate before unpinning.' },
  NJ_CATALOG_INVALID: { status: 502, hint: 'The model catalog is malformed or not signed by the gateway key you expect; do not trust it.' },
  NJ_GATEWAY_KEY_MISMATCH: {
    status: 502,
    hint: 'Compare the gateway key fingerprint; if you trust it, run `nightjar trust reset --gateway URL`.',
  },
  NJ_DIRECTORY_INVALID: { status: 502, hint: 'The candidates answer is forged, stale or replayed; check your clock, then retry.' },
  NJ_RELEASES_INVALID: { status: 502, hint: 'The released-versions list is malformed, stale or forged; do not trust it.' },

  // Agents and authentication
  NJ_AUTH_FAILED: { status: 401, hint: 'The agent could not prove its identity key; check its keychain entry.' },
  NJ_AUTH_TIMEOUT: { status: 408, hint: 'The handshake took too long; check the network and reconnect.' },
  NJ_AGENT_REPLACED: { status: 409, hint: 'The same agent identity connected again elsewhere; only one session is kept.' },

  // Routing and jobs
  NJ_MODEL_UNKNOWN: { status: 404, hint: 'No agent serves this model; `nightjar chat` without --model picks one the gateway offers.' },
  NJ_NO_CAPACITY: { status: 503, hint: 'Every agent for this model is busy; retry after the hinted delay.' },
  NJ_DUPLICATE_JOB: { status: 409, hint: 'A job with this jobId is already running; use a fresh jobId.' },
  NJ_AGENT_FAILED: { status: 502, hint: 'The agent failed while serving the job; retry, another agent may take it.' },
  NJ_JOB_TIMEOUT: { status: 504, hint: 'The job took too long; retry or ask for fewer tokens.' },
  NJ_CANCELLED: { status: 499, hint: 'The job was cancelled; nothing more will arrive for it.' },
  NJ_DECLINED: { status: 503, hint: 'The agent declined the job; the gateway tries the next candidate.' },
  NJ_GATEWAY_UNREACHABLE: { status: 502, hint: 'Check the gateway URL and that the gateway is running.' },
  NJ_SHUTTING_DOWN: { status: 503, hint: 'The gateway is shutting down; retry in a moment.' },
  NJ_STORE_BUSY: {
    status: 503,
    hint: "The gateway's database is locked by another program (a backup, an admin tool, a sqlite3 shell); retry in a moment.",
  },
  NJ_STREAM_BROKEN: {
    status: 502,
    hint: 'The connection to the gateway broke mid-reply; the partial text is not a whole answer, retry the request.',
  },

  // Engine and models
  NJ_MODEL_NOT_SERVED: { status: 404, hint: 'This agent does not serve that model; ask the gateway for another candidate.' },
  NJ_MODEL_LOAD_FAILED: { status: 500, hint: 'The model file could not be loaded; check it with `nightjar doctor`.' },
  NJ_MODEL_FILE_INVALID: { status: 400, hint: 'The file is not a usable GGUF model; download it again.' },
  NJ_CONTEXT_OVERFLOW: { status: 413, hint: 'The conversation does not fit the model context; shorten it or lower max tokens.' },
  NJ_ENGINE_BUSY: { status: 503, hint: 'All sequences are busy; the gateway will route elsewhere.' },
  NJ_ENGINE_FAILED: { status: 500, hint: 'Generation failed inside the engine; see the agent log.' },

  // Local configuration
  NJ_CONFIG_INVALID: { status: 400, hint: 'Fix the named field in the config file or command line.' },
  NJ_USAGE: { status: 400, hint: 'Run the command with --help to see its usage.' },
  NJ_INTERNAL: { status: 500, hint: 'This is a bug in Nightjar; report it with the log lines around it.' },

  // Client
  NJ_PROXY_UNAUTHORIZED: {
    status: 401,
    hint: 'Send the token the proxy was given (its --token-file or NIGHTJAR_PROXY_TOKEN) as a bearer token or x-api-key.',
  },
  NJ_PROXY_FORBIDDEN: { status: 403, hint: 'Call the proxy from a program on this machine at a loopback address, not from a web page.' },
  NJ_UNSUPPORTED_FEATURE: {
    status: 400,
    hint: 'Leave out the parameter or field the message names; docs/client.md lists what the proxy serves.',
  },

  // Agent
  NJ_KEYCHAIN_UNAVAILABLE: { status: 500, hint: 'Unlock or install the OS keychain, or opt in to a plaintext key file with --key-file.' },
  NJ_KEY_FILE_INSECURE: { status: 500, hint: 'Make the key file private (chmod 600 FILE) and owned by you, then start again.' },
  NJ_MODEL_NOT_INSTALLED: { status: 404, hint: 'See `nightjar models list`; download one with `nightjar models pull ID`.' },
  NJ_MODEL_DOES_NOT_FIT: { status: 507, hint: 'Free memory, pick a smaller model, or lower --slots or --context.' },
  NJ_DISK_FULL: { status: 507, hint: 'Free disk space, or remove a model with `nightjar models rm ID`.' },
  NJ_DOWNLOAD_FAILED: { status: 502, hint: 'Check the network and run the same pull again; it resumes where it stopped.' },
  NJ_CONTROL_UNAUTHORIZED: { status: 401, hint: 'Send the token from the agent control file as a Bearer token.' },
  NJ_CONTROL_FORBIDDEN: { status: 403, hint: 'Call the control API from this machine, not from a web page of another site.' },
  NJ_AGENT_NOT_RUNNING: { status: 503, hint: 'Start the agent with `nightjar serve`, then try again.' },

  // Gateway
  NJ_UNAUTHORIZED: { status: 401, hint: 'Send a valid key or token as Authorization: Bearer …; the gateway operator issues them.' },
  NJ_RATE_LIMITED: { status: 429, hint: 'Slow down and retry after the hinted delay, or ask the gateway operator for a higher limit.' },
  NJ_INSUFFICIENT_FUNDS: {
    status: 402,
    hint: 'The balance cannot cover this request at its worst case; top up the key or ask for fewer tokens.',
  },
  NJ_MODEL_UNPRICED: {
    status: 403,
    hint: 'The gateway has no price for this model; its operator sets one with `nightjar gateway prices set`.',
  },
  NJ_ENROLL_INVALID: { status: 401, hint: 'The enrollment token is unknown, expired or already used; ask the operator for a new one.' },
  NJ_NOT_FOUND: { status: 404, hint: 'Check the path or id: no such endpoint, key, operator, token or agent exists.' },
  NJ_COUNTERSIGN_DUPLICATE: { status: 409, hint: 'This job already has its countersignature; nothing more to send.' },
  NJ_EVIDENCE_INVALID: {
    status: 400,
    hint: 'The evidence does not open or does not match the receipt; send what the SDK kept for that job, unchanged.',
  },
  NJ_ALREADY_REVEALED: { status: 409, hint: 'This job was revealed and audited before; its verdict stands and nothing more moves.' },
  NJ_AUDIT_UNAVAILABLE: {
    status: 501,
    hint: "No checker here holds this job's model file; the gateway's operator adds it with `nightjar gateway --audit-models DIR`.",
  },

  // App
  NJ_NOT_LINKED: { status: 409, hint: 'Link this Mac to a gateway: open the dashboard (or run `nightjar serve --gateway URL`).' },
  NJ_IPC_FORBIDDEN: {
    status: 403,
    hint: 'Only the dashboard window of the Nightjar app may call the agent; this is a bug or an attack, report it.',
  },
  NJ_DASHBOARD_TICKET: { status: 401, hint: 'Open the dashboard again with `nightjar dashboard`; each link works once, within a minute.' },

  // Waits
  NJ_TIMEOUT: { status: 504, hint: 'Something Nightjar waited for did not happen in time; check what the message names, then retry.' },
} as const satisfies Record<string, ErrorCodeInfo>;

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** True if `code` is a registered error code. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

/** The base of every error Nightjar throws on purpose. */
export class NightjarError extends Error {
  /** Stable code from {@link ERROR_CODES}. */
  readonly code: ErrorCode;
  /** What to do next. */
  readonly hint: string;
  /** Milliseconds after which a retry may succeed, where that is known. */
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = ERROR_CODES[code].hint;
    this.retryAfterMs = options?.retryAfterMs;
  }

  /** HTTP status for this error's code. */
  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  /** The wire form: what a peer is told. Never includes the cause. */
  toJSON(): ErrorPayload {
    return {
      code: this.code,
      message: this.message,
      ...(this.retryAfterMs === undefined ? {} : { retryAfterMs: this.retryAfterMs }),
    };
  }
}

/** The message of a thrown value, for a log line (never its stack or its cause's text). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A message or field that breaks the protocol. */
export class ProtocolError extends NightjarError {}

/** Decryption, signature or key failure: the data must not be trusted. */
export class CryptoError extends NightjarError {}

/** The serialisable form of an error, as sent between peers. */
export interface ErrorPayload {
  code: ErrorCode;
  message: string;
  retryAfterMs?: number;
}

/** Rebuilds an error received from a peer; unknown codes become NJ_FRAME_INVALID. */
export function errorFromPayload(payload: { code: string; message: string; retryAfterMs?: number }): NightjarError {
  const code: ErrorCode = isErrorCode(payload.code) ? payload.code : 'NJ_FRAME_INVALID';
  return new NightjarError(code, payload.message, payload.retryAfterMs === undefined ? undefined : { retryAfterMs: payload.retryAfterMs });
}
