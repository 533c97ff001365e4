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
 * The figures are Apple's published unified-memory bandwidth per chip, as Apple's announcements and
 * tech specs state them. This machine cannot reach Apple's pages; on 2026-12-01 each figure was
 * checked against stored copies of reports that quote those announcements (each row's source names
 * one). A chip not in the table (or a chip name the table cannot read) has no ceiling. Where one
 * chip name covers variants with different bandwidth (M3 Max, M4 Max bins), the row takes the
 * higher figure: the ceiling must hold for every machine that reports the name. Apple states no
 * figure for the M1; its row is the bus figure (LPDDR4X-4266 on a 128-bit bus, 68.25 GB/s), which
 * reports quote as 66.7–68.25 GB/s: the higher is kept. The M5 Pro and M5 Max are left out: the
 * only stored report of their figures is a single secondary source.
 *
 * Published figures are rounded down from the bus figures in places (the M1 and M2 Ultra's "800"
 * is 819.2 on the bus, the M2's "100" is 102.4): at most 2.4 %, well inside the 1.25 margin.
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

const MACRUMORS_M2 = 'macrumors.com/2022/06/06/apple-announces-m2-chip-with-support-for-up-to-24gb-memory';
const WIKIPEDIA_M2 = 'en.wikipedia.org/wiki/Apple_M2 (Memory, revision of 2023-06-18)';
const MACRUMORS_M3 = 'macrumors.com/2023/10/31/apple-m3-pro-less-memory-bandwidth';
const MACRUMORS_M4_MAX = 'macrumors.com/2024/10/30/apple-announces-m4-max-chip';
const MACTRAST_M4 = "mactrast.com/?p=168123 (Apple's M4 Pro and M4 Max announcement, quoted)";
const TECHPOWERUP_M3_ULTRA = 'techpowerup.com/news-tags/Mac Studio (M3 Ultra announcement, 2025-03-05)';
const ARS_ULTRA = 'Ars Technica on the M3 Ultra (2025-03-05): M1, M2 and M3 Ultra at 819.2 GB/s on the bus';
const DIG_WATCH_M5 = 'dig.watch/updates/apple-launches-m5-with-bigger-ai-gains (M5 announcement, 2025-10-15)';

const src = (chip: string, where: string, note = ''): string => `Apple, ${chip}: figure as published${note}; checked against ${where}`;

/** Apple Silicon chips and their published unified-memory bandwidth. */
export const CHIP_BANDWIDTH: readonly ChipBandwidth[] = [
  {
    chip: 'M1',
    gbPerSecond: 68.25,
    source: 'Bus figure (LPDDR4X-4266, 128-bit); Apple publishes none; reports quote 66.7–68.25 GB/s, the higher kept',
  },
  { chip: 'M1 Pro', gbPerSecond: 200, source: src('M1 Pro', MACRUMORS_M3, ' (M3 Pro compared with it)') },
  { chip: 'M1 Max', gbPerSecond: 400, source: src('M1 Max', WIKIPEDIA_M2, ' (M2 Max compared with it)') },
  { chip: 'M1 Ultra', gbPerSecond: 819.2, source: src('M1 Ultra', ARS_ULTRA, ' as 800; the bus figure 819.2 kept') },
  { chip: 'M2', gbPerSecond: 100, source: src('M2', MACRUMORS_M2) },
  { chip: 'M2 Pro', gbPerSecond: 200, source: src('M2 Pro', WIKIPEDIA_M2) },
  { chip: 'M2 Max', gbPerSecond: 400, source: src('M2 Max', WIKIPEDIA_M2) },
  { chip: 'M2 Ultra', gbPerSecond: 819.2, source: src('M2 Ultra', ARS_ULTRA, ' as 800; the bus figure 819.2 kept') },
  { chip: 'M3', gbPerSecond: 100, source: src('M3', MACRUMORS_M3) },
  { chip: 'M3 Pro', gbPerSecond: 150, source: src('M3 Pro', MACRUMORS_M3) },
  { chip: 'M3 Max', gbPerSecond: 400, source: src('M3 Max', MACRUMORS_M3, '; 300 GB/s for the 14-core CPU bin, the higher kept') },
  { chip: 'M3 Ultra', gbPerSecond: 819.2, source: src('M3 Ultra', TECHPOWERUP_M3_ULTRA, ' as 819; the bus figure 819.2 kept') },
  { chip: 'M4', gbPerSecond: 120, source: src('M4', MACTRAST_M4) },
  { chip: 'M4 Pro', gbPerSecond: 273, source: src('M4 Pro', MACTRAST_M4) },
  { chip: 'M4 Max', gbPerSecond: 546, source: src('M4 Max', MACRUMORS_M4_MAX, '; 410 GB/s for the 14-core CPU bin, the higher kept') },
  { chip: 'M5', gbPerSecond: 153, source: src('M5', DIG_WATCH_M5) },
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
