/**
 * Refuses weak Ed25519 public keys: points of small order (for which a signature verifying on any
 * message can be made without the secret) and encodings that are not a canonical curve point.
 * RFC 8032 verifiers do not check this; an identity key is long-lived and names an agent, so
 * Nightjar checks it once per key. Plain BigInt arithmetic on the affine twisted Edwards curve.
 */

const P = 2n ** 255n - 19n;

function mod(a: bigint): bigint {
  const r = a % P;
  return r < 0n ? r + P : r;
}

function pow(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

const inv = (a: bigint): bigint => pow(a, P - 2n);
const D = mod(-121665n * inv(121666n));
const SQRT_M1 = pow(2n, (P - 1n) / 4n);

/** Decodes a 32-byte point encoding, or null if it is not a canonical curve point. */
function decode(bytes: Uint8Array): [bigint, bigint] | null {
  if (bytes.length !== 32) return null;
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? bytes[i]! & 0x7f : bytes[i]!);
  const sign = (bytes[31]! >> 7) & 1;
  if (y >= P) return null;
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  const x2 = mod(u * inv(v));
  let x = pow(x2, (P + 3n) / 8n);
  if (mod(x * x) !== x2) x = mod(x * SQRT_M1);
  if (mod(x * x) !== x2) return null;
  if (x === 0n && sign === 1) return null;
  if (Number(x & 1n) !== sign) x = P - x;
  return [x, y];
}

function double([x, y]: [bigint, bigint]): [bigint, bigint] {
  // Complete twisted Edwards addition (a = −1) of the point with itself.
  const t = mod(D * x * x * y * y);
  return [mod(2n * x * y * inv(1n + t)), mod((y * y + x * x) * inv(1n - t))];
}

const cache = new Map<string, boolean>();

/** True if `publicKey` is not a canonical Ed25519 point, or is one of small order (8·A = 0). */
export function isWeakEd25519Key(publicKey: Uint8Array): boolean {
  const key = Array.from(publicKey, (b) => b.toString(16).padStart(2, '0')).join('');
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const point = decode(publicKey);
  let weak = point === null;
  if (point) {
    const [x, y] = double(double(double(point)));
    weak = x === 0n && y === 1n;
  }
  if (cache.size >= 4096) cache.delete(cache.keys().next().value as string);
  cache.set(key, weak);
  return weak;
}
