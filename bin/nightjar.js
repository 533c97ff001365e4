#!/usr/bin/env node
// The `nightjar` command. Runs the compiled CLI in dist/ (build it with `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cli/run.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('nightjar: not built yet. Run `npm run build` (or `npm start`) in the repository first.\n');
  process.exit(1);
}
await import(entry.href);
