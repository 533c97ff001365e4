/**
 * The physical ceiling on decode speed: a chip cannot generate tokens faster than its memory can
 * stream the model's weights.
 *
 * The bound. In decode, each new token is one forward pass through every layer, and every layer
 * reads all of its weights: a dense model reads (nearly) the whole file once per token, and the
 * file is what the weights are stored as (quantized weights are read quantized). Batching several
 * sequences shares one read among them, but a job is one sequence, and its own token rate is
 * bounded by one full read per token. KV-cache reads and activations are ignored: they add bytes
 * per token and so only lower the true ceiling further. Hence
 *
 *     ceiling tokens/s = memory bandwidth (bytes/s) ÷ model file size (bytes) × margin
 *
 * with a margin (default 1.25) for measurement noise at the gateway (chunk batching on the wire,
 * clock granularity, a file a little larger than the weights it holds). A mixture-of-experts model
 * reads only its active experts per token and breaks the bound: such files must not be catalogued
 * with their whole size as the bytes read (docs/honesty.md).
 *
 * The figures are Apple's published unified-memory bandwidth per chip. This machine could not fetch
 * Apple's pages; each row's source says which published figure it is. A chip not in the table (or a
 * chip name the table cannot read) has no ceiling. Where one chip name covers variants with
 * different bandwidth (M3 Max, M4 Max bins), the row takes the higher figure: the ceiling must hold
 * for every machine that reports the name. M1 is left out: Apple's tech specs do not state its
 * bandwidth, and this table does not guess.
 */

/** One chip's published unified-memory bandwidth. */
export interface ChipBandwidth {
  /** The chip's name as Apple writes it, without "Apple " (e.g. "M2 Pro"). */
  readonly chip: string;
  /** Unified-memory bandwidth, GB/s (10^9 bytes per second). */
  readonly gbPerSecond: number;
  /** Where the figure is published. */
  readonly source: string;
}

const src = (chip: string, note = ''): string => `Apple tech specs, ${chip} (figure as published${note})`;

/** Apple Silicon chips and their published unified-memory bandwidth. */
export const CHIP_BANDWIDTH: readonly ChipBandwidth[] = [
  { chip: 'M1 Pro', gbPerSecond: 200, source: src('M1 Pro') },
  { chip: 'M1 Max', gbPerSecond: 400, source: src('M1 Max') },
  { chip: 'M1 Ultra', gbPerSecond: 800, source: src('M1 Ultra') },
  { chip: 'M2', gbPerSecond: 100, source: src('M2') },
  { chip: 'M2 Pro', gbPerSecond: 200, source: src('M2 Pro') },
  { chip: 'M2 Max', gbPerSecond: 400, source: src('M2 Max') },
  { chip: 'M2 Ultra', gbPerSecond: 800, source: src('M2 Ultra') },
  { chip: 'M3', gbPerSecond: 100, source: src('M3') },
  { chip: 'M3 Pro', gbPerSecond: 150, source: src('M3 Pro') },
  { chip: 'M3 Max', gbPerSecond: 400, source: src('M3 Max', '; 300 GB/s for the 14-core CPU bin, the higher figure kept') },
  { chip: 'M3 Ultra', gbPerSecond: 819, source: src('M3 Ultra') },
  { chip: 'M4', gbPerSecond: 120, source: src('M4') },
  { chip: 'M4 Pro', gbPerSecond: 273, source: src('M4 Pro') },
  { chip: 'M4 Max', gbPerSecond: 546, source: src('M4 Max', '; 410 GB/s for the 14-core CPU bin, the higher figure kept') },
];

const BY_NAME = new Map(CHIP_BANDWIDTH.map((c) => [c.chip.toLowerCase(), c]));

/** The table's row for a bundle's platform.chip ("Apple M2 Pro", "M2 Pro"), or null if it has none. */
export function chipBandwidth(chip: string): ChipBandwidth | null {
  const name = chip
    .trim()
    .replace(/^apple\s+/i, '')
    .replace(/\s+/g, ' ')
    .toLowerCase();
  return BY_NAME.get(name) ?? null;
}

/** Margin over the bound for measurement noise. */
export const CEILING_MARGIN = 1.25;

/**
 * The fastest decode, tokens/s, that `chip` can run a model file of `modelBytes` at (times
 * `margin`); null when the chip is not in the table or the size is unknown.
 */
export function ceilingTokensPerSecond(chip: string, modelBytes: number | null, margin = CEILING_MARGIN): number | null {
  const row = chipBandwidth(chip);
  if (!row || modelBytes === null || !(modelBytes > 0)) return null;
  return ((row.gbPerSecond * 1e9) / modelBytes) * margin;
}
