/**
 * Decoding at the boundary (src/shared/protocol): size before parsing, then JSON, then version,
 * then a strict schema; errors name the field and never its value.
 */
import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { z } from 'zod';
import {
  LIMITS,
  ProtocolError,
  agentFrameSchema,
  b64,
  byteLengthUtf8,
  decodeMessage,
  gatewayFrameSchema,
  httpErrorSchema,
  jobEventSchema,
  jobIdSchema,
  jobRequestSchema,
  candidatesResponseSchema,
  modelsResponseSchema,
  sealRequest,
  signReceipt,
  toBase64Url,
  validate,
  type ErrorCode,
} from '../../src/shared/index.js';
import { errorChainText, expectNjError } from './support/expect-error.js';
import { MESSAGES, MODEL, NOW, SAMPLING, makeAgent, testBytes } from './support/fixtures.js';

const encoder = new TextEncoder();
const GOODBYE = { v: 1, type: 'goodbye', reason: 'quit' } as const;
const decodeAgent = (data: string | Uint8Array, max = 1 << 20) => decodeMessage(agentFrameSchema, data, max, 'frame');

afterEach(() => {
  vi.restoreAllMocks();
});

describe('size comes first', () => {
  // Fails if decodeMessage parses before checking the size (the error would then be "not JSON").
  it('refuses an oversized frame before parsing it', async () => {
    const parse = vi.spyOn(JSON, 'parse');
    await expectNjError(() => decodeAgent('x'.repeat(11), 10), ProtocolError, 'NJ_FRAME_TOO_LARGE', 'frame is 11 bytes; the limit is 10');
    await expectNjError(
      () => decodeAgent(new Uint8Array(11), 10),
      ProtocolError,
      'NJ_FRAME_TOO_LARGE',
      'frame is 11 bytes; the limit is 10',
    );
    expect(parse).not.toHaveBeenCalled();
  });

  it('counts UTF-8 bytes, not characters', async () => {
    // Six characters, twelve bytes.
    await expectNjError(() => decodeAgent('éééééé', 10), ProtocolError, 'NJ_FRAME_TOO_LARGE', 'frame is 12 bytes; the limit is 10');
  });

  it('accepts a frame of exactly the limit', () => {
    const text = JSON.stringify(GOODBYE);
    expect(decodeAgent(text, encoder.encode(text).length)).toEqual(GOODBYE);
    expect(decodeAgent(encoder.encode(text), encoder.encode(text).length)).toEqual(GOODBYE);
  });

  it.each([
    ['ASCII', 'abc', 3],
    ['two-byte', 'é', 2],
    ['three-byte', '€', 3],
    ['a surrogate pair', '😀', 4],
    ['a lone high surrogate at the end', '\ud800', 3],
    ['a lone low surrogate', '\udc00', 3],
    ['a high surrogate before a letter', '\ud800a', 4],
    ['a high surrogate before a CJK character', '\ud800\u4e00', 6],
    ['two high surrogates', '\ud800\ud800', 6],
  ])('byteLengthUtf8 counts %s as TextEncoder does', (_what, text, bytes) => {
    expect(encoder.encode(text).length).toBe(bytes);
    expect(byteLengthUtf8(text)).toBe(bytes);
  });

  // A string that undercounts slips past the size limit. Fails if byteLengthUtf8 pairs a high
  // surrogate with whatever follows it.
  it('byteLengthUtf8 agrees with TextEncoder on any sequence of UTF-16 code units', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0xd800, max: 0xdfff })), { maxLength: 40 }),
        (units) => {
          const text = String.fromCharCode(...units);
          expect(byteLengthUtf8(text)).toBe(encoder.encode(text).length);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('a frame padded with lone surrogates cannot pass for smaller than it is', async () => {
    // Built by hand: JSON.stringify would escape the lone surrogates.
    const text = `{"v":1,"type":"goodbye","reason":"${'\ud800\u4e00'.repeat(10)}"}`;
    const size = encoder.encode(text).length;
    await expectNjError(
      () => decodeAgent(text, size - 1),
      ProtocolError,
      'NJ_FRAME_TOO_LARGE',
      `frame is ${size} bytes; the limit is ${size - 1}`,
    );
  });
});

describe('then JSON, then version, then schema', () => {
  it.each(['', '{', '{"v":1,', 'undefined', "{'v':1}", '{"v":1}x'])('refuses %j as not JSON', async (text) => {
    const error = await expectNjError(() => decodeAgent(text), ProtocolError, 'NJ_FRAME_INVALID', 'frame is not JSON');
    expect(error.cause).toBeUndefined();
  });

  // Fails if decodeMessage goes back to a lenient decoder, which turns bad bytes into U+FFFD.
  it('refuses bytes that are not UTF-8 rather than repairing them', async () => {
    const bytes = new Uint8Array([
      ...encoder.encode('{"v":1,"type":"failed","jobId":"AAAAAAAAAAAAAAAAAAAAAA","attempt":0,"code":"NJ_AGENT_FAILED","message":"bo'),
      0xff,
      ...encoder.encode('om"}'),
    ]);
    await expectNjError(() => decodeAgent(bytes), ProtocolError, 'NJ_FRAME_INVALID', 'frame is not JSON');
    expect(decodeAgent(bytes.map((b) => (b === 0xff ? 0x4f : b))).type).toBe('failed');
  });

  // The version is checked before the schema, so a newer peer's new frame type gets the
  // version error (and a close code it can act on) rather than "invalid".
  it.each<[unknown, string]>([
    [2, 'frame speaks protocol 2; this side speaks 1'],
    [0, 'frame speaks protocol 0; this side speaks 1'],
    ['1', 'frame speaks protocol ?; this side speaks 1'],
    [null, 'frame speaks protocol ?; this side speaks 1'],
  ])('refuses version %j with NJ_PROTOCOL_VERSION, before the schema', async (v, message) => {
    await expectNjError(() => decodeAgent(JSON.stringify({ v, type: 'telepathy' })), ProtocolError, 'NJ_PROTOCOL_VERSION', message);
  });

  it('refuses a frame with no version', async () => {
    await expectNjError(
      () => decodeAgent('{"type":"goodbye","reason":"quit"}'),
      ProtocolError,
      'NJ_FRAME_INVALID',
      'frame is invalid at v: Invalid input: expected 1',
    );
  });

  it('refuses an unknown frame type', async () => {
    await expectNjError(
      () => decodeAgent('{"v":1,"type":"telepathy"}'),
      ProtocolError,
      'NJ_FRAME_INVALID',
      /^frame is invalid at type: Invalid discriminator value/,
    );
  });

  it.each(['[]', 'null', '1', '"goodbye"'])('refuses the non-object %s', async (text) => {
    await expectNjError(
      () => decodeAgent(text),
      ProtocolError,
      'NJ_FRAME_INVALID',
      /^frame is invalid at \(root\): Invalid input: expected object, received /,
    );
  });

  it('refuses unknown fields, at the top and nested', async () => {
    await expectNjError(
      () => decodeAgent(JSON.stringify({ ...GOODBYE, extra: 1 })),
      ProtocolError,
      'NJ_FRAME_INVALID',
      'frame is invalid at (root): Unrecognized key: "extra"',
    );
    const status = {
      v: 1,
      type: 'status',
      state: 'serving',
      model: null,
      freeSlots: 1,
      totalSlots: 2,
      tokensPerSecond: 30,
      ttftMs: 120,
      memoryPressure: 'normal',
      thermal: 'nominal',
    };
    expect(decodeAgent(JSON.stringify(status))).toEqual(status);
    const agent = await makeAgent('codec-agent');
    const hello = { v: 1, type: 'hello', bundle: { ...agent.signed, bundle: { ...agent.signed.bundle, extra: true } } };
    await expectNjError(
      () => decodeAgent(JSON.stringify(hello)),
      ProtocolError,
      'NJ_FRAME_INVALID',
      'frame is invalid at bundle.bundle: Unrecognized key: "extra"',
    );
  });

  it('validate() names the structure and the first failing path', async () => {
    await expectNjError(
      () => validate(jobIdSchema, 'short', 'job id'),
      ProtocolError,
      'NJ_FRAME_INVALID',
      'job id is invalid at (root): expected 16 bytes of base64url',
    );
  });
});

describe('errors never echo a value', () => {
  const CANARY = 'CANARY_prompt_text_7f3a';
  const JOB = toBase64Url(testBytes('codec/job', 16));

  // Each frame carries the canary in an invalid field; the error must say where, never what.
  it.each<[string, unknown]>([
    ['an enum', { ...GOODBYE, reason: CANARY }],
    ['the discriminator', { v: 1, type: CANARY }],
    ['a base64url id', { v: 1, type: 'auth', signature: CANARY }],
    ['an error code', { v: 1, type: 'failed', jobId: JOB, attempt: 0, code: CANARY, message: 'x' }],
    ['an over-long message', { v: 1, type: 'failed', jobId: JOB, attempt: 0, code: 'NJ_AGENT_FAILED', message: CANARY.repeat(100) }],
    ['a number field', { v: 1, type: 'accepted', jobId: JOB, attempt: CANARY, replySalt: toBase64Url(new Uint8Array(16)) }],
    [
      'a model id',
      {
        v: 1,
        type: 'status',
        state: 'serving',
        model: CANARY,
        freeSlots: 1,
        totalSlots: 1,
        tokensPerSecond: 1,
        ttftMs: 1,
        memoryPressure: 'normal',
        thermal: 'nominal',
      },
    ],
    ['an unknown field’s value', { ...GOODBYE, note: CANARY }],
    ['an array element', { v: 1, type: 'chunk', jobId: JOB, attempt: 0, seq: 0, data: [CANARY] }],
    ['several fields at once', { v: 1, type: 'declined', jobId: CANARY, attempt: CANARY, code: CANARY, message: 5 }],
  ])('in %s', async (_what, frame) => {
    let caught: unknown;
    try {
      decodeAgent(JSON.stringify(frame));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ProtocolError);
    expect((caught as ProtocolError).code).toBe<ErrorCode>('NJ_FRAME_INVALID');
    expect(errorChainText(caught)).not.toContain('CANARY');
    expect(JSON.stringify((caught as ProtocolError).toJSON())).not.toContain('CANARY');
  });

  it('in text that is not JSON', () => {
    let caught: unknown;
    try {
      decodeAgent(`{"v":1,"type":"goodbye","reason":${CANARY}}`);
    } catch (error) {
      caught = error;
    }
    expect((caught as ProtocolError).code).toBe('NJ_FRAME_INVALID');
    expect(errorChainText(caught)).not.toContain('CANARY');
  });

  // An unknown field's name is named (it is the offending field), but a hostile peer picks the
  // name, so the message stays short enough to go back in an error frame. Fails if describeIssues
  // stops bounding what it returns.
  it('names an unknown field, within the error-message limit however long its name', async () => {
    const error = await expectNjError(
      () => decodeAgent(JSON.stringify({ ...GOODBYE, ['k'.repeat(50_000)]: 1 })),
      ProtocolError,
      'NJ_FRAME_INVALID',
      /^frame is invalid at \(root\): Unrecognized key: "kkkk/,
    );
    expect(error.message.length).toBeLessThanOrEqual(LIMITS.maxErrorMessageLength);
    expect(error.message.endsWith('…')).toBe(true);
  });
});

describe('schemas', () => {
  const samples: [string, z.ZodType, Record<string, unknown>][] = [];

  beforeAll(async () => {
    const agent = await makeAgent('codec-samples');
    const sealed = await sealRequest({ model: MODEL.id, messages: MESSAGES, sampling: SAMPLING, recipients: [agent.verified], now: NOW });
    const receipt = await signReceipt(
      {
        v: 1,
        jobId: sealed.jobId,
        attempt: 0,
        agentId: agent.identity.agentId,
        model: MODEL.id,
        modelSha256: MODEL.sha256,
        promptTokens: 1,
        completionTokens: 1,
        requestDigest: toBase64Url(sealed.requestDigest),
        replyDigest: toBase64Url(new Uint8Array(32)),
        startedAt: NOW,
        endedAt: NOW,
        finishReason: 'stop',
      },
      agent.identity,
    );
    const job = { jobId: sealed.jobId, attempt: 0 };
    const b32 = toBase64Url(new Uint8Array(32));
    const sig = toBase64Url(new Uint8Array(64));
    const agentFrames: Record<string, unknown>[] = [
      { type: 'hello', bundle: agent.signed, enrollToken: 'enroll-123' },
      { type: 'auth', signature: sig },
      {
        type: 'status',
        state: 'serving',
        model: MODEL.id,
        freeSlots: 1,
        totalSlots: 2,
        tokensPerSecond: 40.5,
        ttftMs: 90,
        memoryPressure: 'warn',
        thermal: 'fair',
      },
      { type: 'accepted', ...job, replySalt: toBase64Url(new Uint8Array(16)) },
      { type: 'declined', ...job, code: 'NJ_ENGINE_BUSY', message: 'busy' },
      { type: 'chunk', ...job, seq: 0, data: toBase64Url(new Uint8Array(80)) },
      { type: 'done', ...job, receipt },
      { type: 'failed', ...job, code: 'NJ_ENGINE_FAILED', message: 'boom' },
      { type: 'bundle', bundle: agent.signed },
      { type: 'attest', nonce: b32, signature: sig },
      { type: 'goodbye', reason: 'owner-active' },
    ];
    const gatewayFrames: Record<string, unknown>[] = [
      { type: 'challenge', nonce: b32, time: NOW, gatewayId: 'gw-1' },
      { type: 'welcome', agentId: agent.identity.agentId, trust: 'signed', heartbeatMs: 5000, maxConcurrentJobs: 2, operator: null },
      { type: 'reject', code: 'NJ_AUTH_FAILED', message: 'no' },
      { type: 'job', ...job, envelope: sealed.envelope },
      { type: 'cancel', ...job, reason: 'client went away' },
      { type: 'error', code: 'NJ_FRAME_INVALID', message: 'bad' },
    ];
    for (const f of agentFrames) samples.push([`agent frame "${String(f.type)}"`, agentFrameSchema, { v: 1, ...f }]);
    for (const f of gatewayFrames) samples.push([`gateway frame "${String(f.type)}"`, gatewayFrameSchema, { v: 1, ...f }]);
    samples.push(
      ['job request', jobRequestSchema, { v: 1, envelope: sealed.envelope }],
      [
        'candidates response',
        candidatesResponseSchema,
        {
          v: 1,
          model: MODEL.id,
          candidates: [{ bundle: agent.signed, trust: 'attested' }],
          gatewayKey: agent.signed.bundle.identityKey,
          issuedAt: NOW,
          request: { nonce: toBase64Url(new Uint8Array(16)), model: MODEL.id, k: 3, minTrust: 'signed' },
          signature: toBase64Url(new Uint8Array(64)),
        },
      ],
      ['models response', modelsResponseSchema, { v: 1, models: [{ id: MODEL.id, synthetic: false, agents: 3, freeSlots: 4 }] }],
      [
        'job event "start"',
        jobEventSchema,
        { type: 'start', agentId: agent.identity.agentId, attempt: 0, replySalt: toBase64Url(new Uint8Array(16)) },
      ],
      ['job event "done"', jobEventSchema, { type: 'done', receipt }],
      ['job event "error"', jobEventSchema, { type: 'error', code: 'NJ_NO_CAPACITY', message: 'later', retryAfterMs: 500 }],
      ['HTTP error', httpErrorSchema, { error: { code: 'NJ_NO_CAPACITY', message: 'later' } }],
    );
  });

  it('accept a valid sample of every frame and message', () => {
    expect(samples).toHaveLength(24);
    for (const [what, schema, sample] of samples) {
      expect(decodeMessage(schema, JSON.stringify(sample), LIMITS.maxAgentFrameBytes, what), what).toEqual(sample);
    }
  });

  // Every schema is strict. Fails if any of them stops refusing unknown fields.
  it('refuse an unknown field in every frame and message', () => {
    for (const [what, schema, sample] of samples) {
      expect(() => decodeMessage(schema, JSON.stringify({ ...sample, extra: 0 }), LIMITS.maxAgentFrameBytes, what), what).toThrow(
        `${what} is invalid at (root): Unrecognized key: "extra"`,
      );
    }
  });

  it('refuse another version in every frame that carries one', () => {
    for (const [what, schema, sample] of samples) {
      if (!('v' in sample)) continue;
      expect(() => decodeMessage(schema, JSON.stringify({ ...sample, v: 2 }), LIMITS.maxAgentFrameBytes, what), what).toThrow(
        `${what} speaks protocol 2; this side speaks 1`,
      );
    }
  });

  // One spelling per byte string, checked where the value is only ever compared as text.
  it.each([1, 2, 16, 24, 32, 48, 64, 65])('b64(%s) accepts the canonical encoding of random bytes and no other spelling', (n) => {
    const schema = b64(n);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    fc.assert(
      fc.property(fc.uint8Array({ minLength: n, maxLength: n }), (bytes) => {
        const text = toBase64Url(bytes);
        expect(schema.safeParse(text).success).toBe(true);
        const head = text.slice(0, -1);
        const accepted = [...alphabet].filter((c) => schema.safeParse(head + c).success);
        // A whole last group has 64 spellings; a partial one only the zero-padded ones.
        expect(accepted).toHaveLength(n % 3 === 0 ? 64 : n % 3 === 1 ? 4 : 16);
        expect(schema.safeParse(text + 'A').success).toBe(false);
        expect(schema.safeParse(head).success).toBe(false);
      }),
      { numRuns: 20 },
    );
  });
});

describe('describeIssues', () => {
  it('never cuts a surrogate pair in half', () => {
    for (let pad = 0; pad < 4; pad++) {
      const name = 'k'.repeat(pad) + '😀'.repeat(200);
      let message = '';
      try {
        decodeAgent(JSON.stringify({ ...GOODBYE, [name]: 1 }));
      } catch (error) {
        message = (error as ProtocolError).message;
      }
      expect(message.endsWith('…')).toBe(true);
      expect(encoder.encode(message).length).toBe(byteLengthUtf8(message));
      expect(/[\ud800-\udbff](?![\udc00-\udfff])/.test(message), `pad ${pad}`).toBe(false);
    }
  });
});
