/**
 * Draws the app's icons and writes them as PNG files (node:zlib, no image library):
 *
 * - assets/trayTemplate.png (16×16) and assets/trayTemplate@2x.png (32×32): the menu-bar icon, a
 *   crescent moon in black on transparent — a macOS template image (the name ends in
 *   "Template"), which the system tints for light and dark menu bars;
 * - assets/icon.png (1024×1024): the app icon, a gold crescent and two stars on a night-blue
 *   rounded square.
 *
 * Deterministic: the same bytes on every run (a test checks the committed files against it).
 *
 *   npx tsx tools/make-icons.ts [outDir]     (default: assets/)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** Encodes RGBA pixels (row by row, 4 bytes each) as a PNG: 8-bit RGBA, no filtering. */
export function encodePng(width: number, height: number, rgba: Uint8Array): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // colour type: RGBA
  const raw = Buffer.alloc(height * (1 + width * 4));
  for (let y = 0; y < height; y++) {
    raw[y * (1 + width * 4)] = 0; // filter: none
    Buffer.from(rgba.buffer, rgba.byteOffset + y * width * 4, width * 4).copy(raw, y * (1 + width * 4) + 1);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** A shape on the unit square: true where (x, y) is inside. */
type Shape = (x: number, y: number) => boolean;

const inCircle =
  (cx: number, cy: number, r: number): Shape =>
  (x, y) =>
    (x - cx) ** 2 + (y - cy) ** 2 <= r * r;

/** The crescent: a disc with a smaller disc taken out towards the upper right. */
const crescent: Shape = (x, y) => inCircle(0.47, 0.53, 0.4)(x, y) && !inCircle(0.66, 0.36, 0.33)(x, y);

/** Coverage of `shape` over each pixel, by supersampling `s`×`s` points. */
function coverage(size: number, shape: Shape, s: number, box: { x: number; y: number; w: number } = { x: 0, y: 0, w: 1 }): Float32Array {
  const out = new Float32Array(size * size);
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      let hits = 0;
      for (let sy = 0; sy < s; sy++) {
        for (let sx = 0; sx < s; sx++) {
          const x = (px + (sx + 0.5) / s) / size;
          const y = (py + (sy + 0.5) / s) / size;
          if (shape((x - box.x) / box.w, (y - box.y) / box.w)) hits++;
        }
      }
      out[py * size + px] = hits / (s * s);
    }
  }
  return out;
}

/** The tray template: black, alpha = coverage. */
export function trayTemplate(size: number): Buffer {
  const cov = coverage(size, crescent, 8, { x: 0.06, y: 0.02, w: 0.92 });
  const rgba = new Uint8Array(size * size * 4);
  for (let i = 0; i < size * size; i++) rgba[i * 4 + 3] = Math.round(cov[i]! * 255);
  return encodePng(size, size, rgba);
}

/** A rounded square (macOS icon grid: 824/1024 of the canvas, corner radius 185/1024). */
const roundedSquare: Shape = (x, y) => {
  const lo = 100 / 1024;
  const hi = 924 / 1024;
  const r = 185 / 1024;
  if (x < lo || x > hi || y < lo || y > hi) return false;
  const cx = Math.min(Math.max(x, lo + r), hi - r);
  const cy = Math.min(Math.max(y, lo + r), hi - r);
  return (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
};

const star =
  (cx: number, cy: number, r: number): Shape =>
  (x, y) => {
    // A four-pointed star: |dx|^0.5 + |dy|^0.5 <= r^0.5.
    const dx = Math.abs(x - cx);
    const dy = Math.abs(y - cy);
    return Math.sqrt(dx) + Math.sqrt(dy) <= Math.sqrt(r);
  };

/** The app icon, `size`×`size`. */
export function appIcon(size: number): Buffer {
  const s = 3;
  const bg = coverage(size, roundedSquare, s);
  const moon = coverage(size, crescent, s, { x: 0.24, y: 0.22, w: 0.56 });
  const stars = coverage(size, (x, y) => star(0.7, 0.3, 0.05)(x, y) || star(0.78, 0.46, 0.025)(x, y), s);
  const rgba = new Uint8Array(size * size * 4);
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      const i = py * size + px;
      const t = py / size;
      // Night blue, lighter towards the bottom.
      let r = 22 + 22 * t;
      let g = 28 + 30 * t;
      let b = 64 + 56 * t;
      const m = moon[i]!;
      r = r * (1 - m) + 245 * m;
      g = g * (1 - m) + 215 * m;
      b = b * (1 - m) + 122 * m;
      const st = stars[i]!;
      r = r * (1 - st) + 220 * st;
      g = g * (1 - st) + 228 * st;
      b = b * (1 - st) + 255 * st;
      rgba[i * 4] = Math.round(r);
      rgba[i * 4 + 1] = Math.round(g);
      rgba[i * 4 + 2] = Math.round(b);
      rgba[i * 4 + 3] = Math.round(bg[i]! * 255);
    }
  }
  return encodePng(size, size, rgba);
}

/** Writes the three icons into `dir`; returns their paths. */
export async function makeIcons(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: [string, Buffer][] = [
    ['trayTemplate.png', trayTemplate(16)],
    ['trayTemplate@2x.png', trayTemplate(32)],
    ['icon.png', appIcon(1024)],
  ];
  for (const [name, png] of files) await writeFile(path.join(dir, name), png);
  return files.map(([name]) => path.join(dir, name));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '../assets'));
  for (const file of await makeIcons(out)) console.log(`wrote ${path.relative(process.cwd(), file)}`);
}
