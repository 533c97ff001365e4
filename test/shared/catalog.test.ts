/**
 * The gateway's signed model catalog (DESIGN.md "Catalog"): which files (by sha256) a model id
 * is priced and routed for, signed by the gateway key over canonical JSON under its own domain.
 * Judged by a tamper matrix (every field flipped, the order broken, another key) and by
 * agreement of the WebCrypto and tweetnacl backends.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CATALOG_DOMAIN,
  CryptoError,
  LIMITS,
  canonicalJson,
  createSignedCatalog,
  createWebCryptoBackend,
  decodeSignedCatalog,
  fromBase64Url,
  gatewayKeyFromSeed,
  gatewayKeyIdFor,
  naclBackend,
  signingBytes,
  toBase64Url,
  utf8,
  verifySignedCatalog,
  type GatewayCatalogModel,
  type GatewayKeyPair,
  type SignedGatewayCatalog,
} from '../../src/shared/index.js';
import { expectNjError } from './support/expect-error.js';
import { NOW, clone, testBytes } from './support/fixtures.js';

let K: GatewayKeyPair;
let M: GatewayKeyPair;
let signed: SignedGatewayCatalog;

const FILE_A = {
  sha256: 'cd'.repeat(32),
  bytes: 1_117_320_736,
  name: 'qwen2.5-1.5b-instruct-q4_k_m.gguf',
  quantization: 'Q4_K_M',
  contextLength: 32768,
  url: 'https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct-GGUF/resolve/main/qwen2.5-1.5b-instruct-q4_k_m.gguf',
};
const FILE_B = {
  sha256: 'ab'.repeat(32),
  bytes: 1_894_532_128,
  name: 'qwen2.5-1.5b-instruct-q8_0.gguf',
  quantization: 'Q8_0',
  contextLength: 32768,
};
const MODELS: GatewayCatalogModel[] = [
  { id: 'qwen2.5-1.5b', files: [FILE_A, FILE_B] },
  { id: 'llama-3.2-1b', files: [{ ...FILE_B, sha256: 'ef'.repeat(32), name: 'llama.gguf' }] },
];

beforeAll(async () => {
  [K, M] = await Promise.all([gatewayKeyFromSeed(testBytes('catalog/gateway', 32)), gatewayKeyFromSeed(testBytes('catalog/mallory', 32))]);
  signed = await createSignedCatalog({ key: K, models: MODELS, now: NOW });
});

const verify = (input: unknown) => verifySignedCatalog(input, { gatewayKey: K.publicKey, now: NOW });
const flipB64 = (text: string, bit = 0): string => {
  const bytes = fromBase64Url(text);
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return toBase64Url(bytes);
};
const flipHex = (text: string): string => (parseInt(text[0]!, 16) ^ 1).toString(16) + text.slice(1);
const flipText = (text: string): string => String.fromCharCode(text.charCodeAt(0) ^ 1) + text.slice(1);

describe('a well-formed catalog', () => {
  it('is sorted (ids, then each id’s sha256s), names its key, and is signed over its canonical encoding under catalog/v1', async () => {
    const c = signed.catalog;
    expect(c.models.map((m) => m.id)).toEqual(['llama-3.2-1b', 'qwen2.5-1.5b']);
    expect(c.models[1]!.files.map((f) => f.sha256)).toEqual([FILE_B.sha256, FILE_A.sha256]);
    expect({ v: c.v, gatewayKey: c.gatewayKey, issuedAt: c.issuedAt }).toEqual({
      v: 1,
      gatewayKey: toBase64Url(K.publicKey),
      issuedAt: NOW,
    });
    expect(signingBytes(CATALOG_DOMAIN, c)).toEqual(utf8(`nightjar/catalog/v1\n${canonicalJson(c)}`));
    const verified = await verify(signed);
    expect(verified.catalog).toEqual(c);
    expect(verified.gatewayKey).toEqual(K.publicKey);
    expect(verified.file('qwen2.5-1.5b', FILE_A.sha256)).toEqual(FILE_A);
    // A file is that model only under the id it is listed for.
    expect(verified.file('llama-3.2-1b', FILE_A.sha256)).toBeUndefined();
    expect(verified.file('other', FILE_A.sha256)).toBeUndefined();
  });

  it('signs byte for byte the same with WebCrypto and tweetnacl, and each verifies the other', async () => {
    const web = createWebCryptoBackend(globalThis.crypto.subtle);
    const bytes = signingBytes(CATALOG_DOMAIN, signed.catalog);
    const a = await web.sign(K.seed, bytes);
    const b = await naclBackend.sign(K.seed, bytes);
    expect(toBase64Url(a)).toBe(signed.signature);
    expect(b).toEqual(a);
    expect(await naclBackend.verify(K.publicKey, bytes, a)).toBe(true);
    expect(await web.verify(K.publicKey, bytes, b)).toBe(true);
  });

  it('has a key id of 16 hex digits derived from the public key alone', () => {
    expect(K.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(gatewayKeyIdFor(K.publicKey)).toBe(K.keyId);
    expect(M.keyId).not.toBe(K.keyId);
  });

  it('an empty catalog is valid (a gateway that catalogues nothing)', async () => {
    const empty = await createSignedCatalog({ key: K, models: [], now: NOW });
    expect((await verify(empty)).catalog.models).toEqual([]);
  });
});

// Fails without the signature check in verifySignedCatalog (each altered field would be accepted).
describe('tamper matrix: every field altered is refused', () => {
  const SIGNATURE = 'catalog signature does not verify';
  const cases: [string, (s: SignedGatewayCatalog) => void][] = [
    ['issuedAt', (s) => void (s.catalog.issuedAt -= 1)],
    ['models[0].id', (s) => void (s.catalog.models[0]!.id = 'llama-3.2-1c')],
    ['models[1].files[1].sha256', (s) => void (s.catalog.models[1]!.files[1]!.sha256 = 'ce' + 'cd'.repeat(31))],
    ['files[0].bytes', (s) => void (s.catalog.models[1]!.files[0]!.bytes += 1)],
    ['files[0].name', (s) => void (s.catalog.models[1]!.files[0]!.name = flipText(s.catalog.models[1]!.files[0]!.name))],
    ['files[0].quantization', (s) => void (s.catalog.models[1]!.files[0]!.quantization = 'Q8_1')],
    ['files[0].contextLength', (s) => void (s.catalog.models[1]!.files[0]!.contextLength = 65536)],
    ['files[1].url', (s) => void (s.catalog.models[1]!.files[1]!.url = s.catalog.models[1]!.files[1]!.url + 'x')],
    ['a url removed', (s) => void delete s.catalog.models[1]!.files[1]!.url],
    ['a url added', (s) => void (s.catalog.models[0]!.files[0]!.url = 'https://example.com/x.gguf')],
    ['a file removed', (s) => void s.catalog.models[1]!.files.splice(0, 1)],
    ['a model removed', (s) => void s.catalog.models.splice(0, 1)],
    ['a file added', (s) => void s.catalog.models[0]!.files.push({ ...FILE_A, sha256: 'ff'.repeat(32) })],
    ['signature, bit 0 flipped', (s) => void (s.signature = flipB64(s.signature, 0))],
    ['signature, bit 511 flipped', (s) => void (s.signature = flipB64(s.signature, 511))],
  ];
  it.each(cases)('%s', async (_name, mutate) => {
    const tampered = clone(signed);
    mutate(tampered);
    await expectNjError(() => verify(tampered), CryptoError, 'NJ_CATALOG_INVALID', SIGNATURE);
  });

  // Fails without the expected-key check: Mallory's catalog, validly signed by Mallory, would pass.
  it('a catalog signed by another key (re-signed, key swapped) is refused when the gateway key is given', async () => {
    const forged = await createSignedCatalog({ key: M, models: MODELS, now: NOW });
    await expectNjError(
      () => verify(forged),
      CryptoError,
      'NJ_CATALOG_INVALID',
      'the catalog is signed by another gateway key than the expected one',
    );
    // Without an expected key it only proves integrity: it verifies as Mallory's.
    expect((await verifySignedCatalog(forged)).gatewayKey).toEqual(M.publicKey);
    const swapped = clone(signed);
    swapped.catalog.gatewayKey = toBase64Url(M.publicKey);
    await expectNjError(() => verifySignedCatalog(swapped), CryptoError, 'NJ_CATALOG_INVALID', SIGNATURE);
    swapped.catalog.gatewayKey = flipB64(signed.catalog.gatewayKey, 9);
    await expectNjError(() => verifySignedCatalog(swapped), CryptoError, 'NJ_CATALOG_INVALID', /signature does not verify|weak/);
  });

  it('a weak (small-order) gateway key is refused before any signature check', async () => {
    const weak = clone(signed);
    weak.catalog.gatewayKey = toBase64Url(new Uint8Array(32));
    await expectNjError(
      () => verifySignedCatalog(weak),
      CryptoError,
      'NJ_CATALOG_INVALID',
      'the catalog gateway key is a weak (small-order or non-canonical) point',
    );
  });

  // Fails without checkOrder: a repeated file or id is one catalog with two encodings.
  it('an unsorted or repeated model or file is refused', async () => {
    const swapped = clone(signed);
    swapped.catalog.models.reverse();
    await expectNjError(() => verify(swapped), CryptoError, 'NJ_CATALOG_INVALID', /must be sorted by id without repeats/);
    const repeated = clone(signed);
    repeated.catalog.models[1]!.files[1] = { ...repeated.catalog.models[1]!.files[0]! };
    await expectNjError(() => verify(repeated), CryptoError, 'NJ_CATALOG_INVALID', /files of qwen2.5-1.5b must be sorted by sha256/);
    await expectNjError(
      () => createSignedCatalog({ key: K, models: [MODELS[0]!, MODELS[0]!], now: NOW }),
      CryptoError,
      'NJ_CATALOG_INVALID',
      /sorted by id without repeats/,
    );
  });

  it('an unknown field, a bad sha256 or a non-http URL is refused by the schema', async () => {
    const extra = clone(signed) as unknown as { catalog: Record<string, unknown> };
    extra.catalog.synthetic = false;
    await expectNjError(() => verify(extra), CryptoError, 'NJ_CATALOG_INVALID', /catalog is invalid at catalog/);
    const sha = clone(signed);
    sha.catalog.models[0]!.files[0]!.sha256 = flipHex('AB'.repeat(32));
    await expectNjError(() => verify(sha), CryptoError, 'NJ_CATALOG_INVALID', /sha256: expected 32 bytes of lower-case hex/);
    await expectNjError(
      () => createSignedCatalog({ key: K, models: [{ id: 'x', files: [{ ...FILE_A, url: 'file:///etc/passwd' }] }], now: NOW }),
      CryptoError,
      'NJ_CATALOG_INVALID',
      /url: expected an http\(s\) URL/,
    );
  });

  it('a catalog from the future, or older than maxAgeMs, is refused', async () => {
    const later = await createSignedCatalog({ key: K, models: MODELS, now: NOW + 120_000 });
    await expectNjError(() => verify(later), CryptoError, 'NJ_CATALOG_INVALID', 'the catalog was issued in the future');
    await expectNjError(
      () => verifySignedCatalog(signed, { now: NOW + 3600_001, maxAgeMs: 3600_000 }),
      CryptoError,
      'NJ_CATALOG_INVALID',
      'the catalog is older than allowed',
    );
  });
});

describe('bounds', () => {
  it(`refuses more than ${LIMITS.maxCatalogModels} models or ${LIMITS.maxFilesPerCatalogModel} files per model`, async () => {
    const many = Array.from({ length: LIMITS.maxCatalogModels + 1 }, (_, i) => ({ id: `m${String(i).padStart(4, '0')}`, files: [FILE_A] }));
    await expectNjError(
      () => createSignedCatalog({ key: K, models: many, now: NOW }),
      CryptoError,
      'NJ_CATALOG_INVALID',
      /models: Too big/,
    );
    const files = Array.from({ length: LIMITS.maxFilesPerCatalogModel + 1 }, (_, i) => ({
      ...FILE_A,
      sha256: i.toString(16).padStart(64, '0'),
    }));
    await expectNjError(
      () => createSignedCatalog({ key: K, models: [{ id: 'x', files }], now: NOW }),
      CryptoError,
      'NJ_CATALOG_INVALID',
      /files: Too big/,
    );
  });

  it(`decodes an answer as text, refusing one over ${LIMITS.maxCatalogBytes} bytes before parsing it`, async () => {
    const text = JSON.stringify(signed);
    expect((await decodeSignedCatalog(text, { gatewayKey: K.publicKey })).catalog).toEqual(signed.catalog);
    await expectNjError(
      () => decodeSignedCatalog(' '.repeat(LIMITS.maxCatalogBytes + 1)),
      CryptoError,
      'NJ_CATALOG_INVALID',
      `catalog is ${LIMITS.maxCatalogBytes + 1} bytes; the limit is ${LIMITS.maxCatalogBytes}`,
    );
    await expectNjError(() => decodeSignedCatalog('{"catalog":'), CryptoError, 'NJ_CATALOG_INVALID', 'catalog is not JSON');
  });
});

describe('fuzzed (fast-check)', () => {
  const refused = async (input: () => Promise<unknown>): Promise<boolean> => {
    try {
      await input();
      return false;
    } catch (err) {
      return err instanceof CryptoError && err.code === 'NJ_CATALOG_INVALID';
    }
  };

  it('any JSON value is refused with NJ_CATALOG_INVALID, never another failure', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (v) => refused(() => verify(v))),
      { numRuns: 2000 },
    );
  });

  it('the signed text with one character changed is refused, or still means exactly the same catalog', async () => {
    const text = JSON.stringify(signed);
    await fc.assert(
      fc.asyncProperty(fc.nat(text.length - 1), fc.integer({ min: 32, max: 126 }), async (at, code) => {
        const altered = text.slice(0, at) + String.fromCharCode(code) + text.slice(at + 1);
        try {
          const verified = await decodeSignedCatalog(altered, { gatewayKey: K.publicKey, now: NOW });
          return JSON.stringify(verified.signed) === text;
        } catch (err) {
          return err instanceof CryptoError && err.code === 'NJ_CATALOG_INVALID';
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('any catalog within the bounds signs and verifies, given in any order', async () => {
    const hex = fc.stringMatching(/^[0-9a-f]{64}$/);
    const file = fc.record({
      sha256: hex,
      bytes: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      name: fc.string({ minLength: 1, maxLength: 128 }),
      quantization: fc.string({ minLength: 1, maxLength: 16 }),
      contextLength: fc.integer({ min: 1, max: 2 ** 24 }),
    });
    const model = fc.record({
      id: fc.stringMatching(/^[a-z0-9][a-z0-9._:/-]{0,30}$/),
      files: fc.uniqueArray(file, { minLength: 1, maxLength: 4, selector: (f) => f.sha256 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(model, { maxLength: 6, selector: (m) => m.id }), async (models) => {
        const made = await createSignedCatalog({ key: K, models, now: NOW });
        const verified = await verify(made);
        return models.every((m) => m.files.every((f) => verified.file(m.id, f.sha256)?.bytes === f.bytes));
      }),
      { numRuns: 200 },
    );
  });
});
