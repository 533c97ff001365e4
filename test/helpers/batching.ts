/**
 * Comparing a reply generated alongside others with the same reply generated alone.
 *
 * llama.cpp's CPU decoding is not bitwise invariant to what else is in the batch (the kernel is
 * chosen by batch size, and other sequences' KV cells change the attention's shape), so on a
 * random-weights synthetic model a near-tie can flip a greedy pick late in a reply when the
 * batches come out differently — seen once in a full CI run on a loaded 2-core VM, at about the
 * 38th token. What must hold is that each job continues its own prompt: the replies agree on
 * their first {@link BATCHED_PREFIX} tokens (a synthetic greedy token is one character).
 */
export const BATCHED_PREFIX = 16;

/** The part of each reply that batching must leave exactly as it is alone. */
export function batchedPrefixes(texts: readonly string[]): string[] {
  return texts.map((t) => t.slice(0, BATCHED_PREFIX));
}
