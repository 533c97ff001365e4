/**
 * What gateway nodes say to each other over NATS, as zod schemas: every message read from NATS is
 * checked against these (and against the protocol's own schemas for the frames, envelopes and
 * bundles it carries) before anything acts on it. Another node is a peer, not trusted blindly: a
 * message that fails is dropped and counted, never half-applied.
 *
 * Version 1. Every message is JSON, at most {@link ClusterWireLimits.maxMessageBytes}.
 */
import { z } from 'zod';
import {
  LIMITS,
  NightjarError,
  acceptedFrame,
  agentIdSchema,
  agentStateSchema,
  attemptSchema,
  chunkFrame,
  declinedFrame,
  doneFrame,
  envelopeSchema,
  failedFrame,
  jobIdSchema,
  memoryPressureSchema,
  modelIdSchema,
  receiptOutcomeSchema,
  signedBundleSchema,
  trustSchema,
  isErrorCode,
  type ErrorCode,
} from '../../shared/index.js';
import { NODE_ID_PATTERN } from './node-liveness.js';

/** The cluster wire's version. */
export const CLUSTER_WIRE_VERSION = 1;

const v = z.literal(CLUSTER_WIRE_VERSION);
const nodeId = z.string().regex(NODE_ID_PATTERN, 'expected a node id');
const text = z.string().max(LIMITS.maxErrorMessageLength);
const code = z
  .string()
  .max(64)
  .refine((c): c is ErrorCode => isErrorCode(c), 'unknown error code')
  .transform((c) => c as ErrorCode);
const ms = z.number().min(0).max(Number.MAX_SAFE_INTEGER);

/** An agent's presence in the key-value bucket, written by the node that holds its socket. */
export const presenceSchema = z.strictObject({
  v,
  agentId: agentIdSchema,
  nodeId,
  operatorId: z.string().min(1).max(64).nullable(),
  trust: trustSchema,
  /** What its last heartbeat said, free slots corrected by its node for jobs dispatched since. */
  status: z
    .strictObject({
      state: agentStateSchema,
      model: modelIdSchema.nullable(),
      freeSlots: z.int().min(0).max(256),
      totalSlots: z.int().min(0).max(256),
      tokensPerSecond: z.number().min(0).max(1e7),
      ttftMs: z.number().min(0).max(1e7),
      memoryPressure: memoryPressureSchema.optional(),
    })
    .nullable(),
  accepting: z.boolean(),
  challengeFresh: z.boolean(),
  connectedAt: ms,
  bundle: signedBundleSchema,
  /** The writing node's clock when written. */
  at: ms,
});
/** An agent's presence entry. */
export type PresenceRecord = z.infer<typeof presenceSchema>;

/** Job node → agent node: dispatch one attempt (a request; the answer is {@link dispatchAnswerSchema}). */
export const dispatchSchema = z.strictObject({
  v,
  /** The job's node: where the attempt's events go. */
  from: nodeId,
  agentId: agentIdSchema,
  jobId: jobIdSchema,
  attempt: attemptSchema,
  envelope: envelopeSchema,
});
export type DispatchMessage = z.infer<typeof dispatchSchema>;

export const dispatchAnswerSchema = z.discriminatedUnion('ok', [
  z.strictObject({ v, ok: z.literal(true) }),
  z.strictObject({ v, ok: z.literal(false), code, message: text }),
]);
export type DispatchAnswer = z.infer<typeof dispatchAnswerSchema>;

/** Any node → every node: what one job the sender timed says of an agent's speed (routing only, never a strike). */
export const speedSampleSchema = z.strictObject({
  v,
  from: nodeId,
  agentId: agentIdSchema,
  model: modelIdSchema,
  tokensPerSecond: z.number().min(0).max(1e7).nullable(),
  ttftMs: z.number().min(0).max(1e7),
});
export type SpeedSampleMessage = z.infer<typeof speedSampleSchema>;

/** Job node → agent node: cancel or forget an attempt. */
export const controlSchema = z.strictObject({
  v,
  from: nodeId,
  type: z.enum(['cancel', 'forget']),
  jobId: jobIdSchema,
  attempt: attemptSchema,
  reason: text,
});
export type ControlMessage = z.infer<typeof controlSchema>;

const attemptBase = {
  v,
  from: nodeId,
  jobId: jobIdSchema,
  attempt: attemptSchema,
  seq: z
    .int()
    .min(0)
    .max(2 ** 31),
};

/**
 * Agent node → job node: what the agent said about one attempt, in order (`seq` counts from 0 per
 * attempt), plus keepalives while it is open and `lost` when the agent's socket closed. A `done` is
 * sent as a request: its answer is the receipt's acknowledgement ({@link receiptAckSchema}).
 */
export const attemptEventSchema = z.discriminatedUnion('event', [
  z.strictObject({ ...attemptBase, event: z.literal('accepted'), frame: acceptedFrame }),
  z.strictObject({ ...attemptBase, event: z.literal('chunk'), frame: chunkFrame, arrivedAt: ms }),
  z.strictObject({ ...attemptBase, event: z.literal('declined'), frame: declinedFrame }),
  z.strictObject({ ...attemptBase, event: z.literal('failed'), frame: failedFrame }),
  z.strictObject({ ...attemptBase, event: z.literal('done'), frame: doneFrame }),
  z.strictObject({ ...attemptBase, event: z.literal('lost'), reason: text }),
  z.strictObject({ ...attemptBase, event: z.literal('alive') }),
]);
export type AttemptEvent = z.infer<typeof attemptEventSchema>;

/** Job node → agent node: the answer to a `done` (null: the job can no longer bill it; settle it late). */
export const receiptAckSchema = z.strictObject({
  v,
  ack: z.strictObject({ outcome: receiptOutcomeSchema, code: code.optional(), message: text.optional() }).nullable(),
});
export type ReceiptAckMessage = z.infer<typeof receiptAckSchema>;

/** Limits on what is read from NATS. */
export interface ClusterWireLimits {
  /** Largest message read; larger ones are dropped unparsed. */
  maxMessageBytes: number;
}

/** Parses one NATS message against `schema`; throws NJ_FRAME_INVALID (or NJ_FRAME_TOO_LARGE) without acting on it. */
export function readWire<S extends z.ZodType>(schema: S, data: Uint8Array, limits: ClusterWireLimits): z.infer<S> {
  if (data.length > limits.maxMessageBytes) throw new NightjarError('NJ_FRAME_TOO_LARGE', `a cluster message of ${data.length} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw new NightjarError('NJ_FRAME_INVALID', 'a cluster message that is not JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new NightjarError('NJ_FRAME_INVALID', `a malformed cluster message: ${parsed.error.issues[0]?.message ?? ''}`);
  return parsed.data as z.infer<S>;
}

/** Encodes a message for NATS. */
export function writeWire(message: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(message));
}
