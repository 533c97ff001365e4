#!/usr/bin/env node
/* global process, console */
// Builds the native addon (native/) during `npm ci` / `npm install`: `node-gyp rebuild` in native/.
// The addon is optional — the agent works without it (every call then answers "unsupported") — so a
// failed build (no compiler, no Python, no headers) warns and exits 0 rather than break the install.
// CI proves the build happened: test/main/native/addon.test.ts fails when CI=1 and the .node is missing.
// Set NIGHTJAR_SKIP_NATIVE=1 to skip the build.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const native = path.join(root, 'native');

if (process.env.NIGHTJAR_SKIP_NATIVE === '1') {
  console.warn('nightjar: NIGHTJAR_SKIP_NATIVE=1, not building the native addon');
  process.exit(0);
}

// npm hands its own node-gyp to lifecycle scripts (npm_config_node_gyp); outside npm, the project's
// node-gyp, then the one bundled with npm beside this node, then the one on PATH.
function findNodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  try {
    return createRequire(path.join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    const bundled = path.join(
      path.dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    );
    return existsSync(bundled) ? bundled : null;
  }
}
const gyp = findNodeGyp();
const [command, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const result = spawnSync(command, args, { cwd: native, stdio: 'inherit', shell: !gyp && process.platform === 'win32' });

if (result.status !== 0) {
  // Leave no half-built addon behind: the wrapper treats a missing file as "unsupported".
  rmSync(path.join(native, 'build'), { recursive: true, force: true });
  const why = result.error ? result.error.message : `node-gyp exited with ${result.status ?? result.signal}`;
  console.warn(
    `nightjar: the native addon did not build (${why}); the agent will run without it (SIP, code signing, ` +
      'Secure Enclave, idle and thermal calls answer "unsupported"). To build it: install a C++ compiler, ' +
      'make and Python 3, then run `npm run build:native`.',
  );
}
process.exit(0);
