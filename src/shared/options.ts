/**
 * Options are resolved once, where their owner is built (as ws's server does): one defaults object
 * per options type, merged here, and the resolved object used from then on. Callers pass options
 * straight through, `undefined` included, without conditional spreads.
 */

/**
 * `options` over `defaults`: every field of `defaults` takes the option's value unless the option
 * is missing or `undefined`. Fields `defaults` does not have are copied too.
 */
export function withDefaults<D extends object, O extends Partial<D> = Partial<D>>(defaults: D, options: O | undefined): D & O {
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  if (options) {
    for (const [key, value] of Object.entries(options)) if (value !== undefined) out[key] = value;
  }
  return out as D & O;
}
