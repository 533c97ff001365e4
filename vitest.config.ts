import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    setupFiles: ['test/setup/leak-check.ts'],
    // Suites that need services or a browser run under their own scripts (see .ci/run).
    exclude: ['test/**/*.services.test.ts', 'test/**/*.browser.test.ts', 'test/**/*.keychain.test.ts', 'node_modules/**'],
  },
});
