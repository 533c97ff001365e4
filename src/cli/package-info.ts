/**
 * Where the package is and which version it is, from package.json, without loading any layer:
 * `nightjar version` and `nightjar --help` stay quick.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository (or installed package) root, from this file's place: src/cli/ when run from
 * source, dist/src/cli/ when built.
 */
export function packageRoot(): string {
  const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const above = path.dirname(src);
  return path.basename(above) === 'dist' ? path.dirname(above) : above;
}

let version: string | undefined;

/** The package's version, from its package.json (read once). */
export function packageVersion(): string {
  version ??= (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  return version;
}
