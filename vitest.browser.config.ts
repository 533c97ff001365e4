import { defineConfig } from 'vitest/config';

/** Suites that drive a real headless Chromium (/usr/bin/chromium): `npm run test:browser`. */
export default defineConfig({
  test: {
    include: ['test/**/*.browser.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    setupFiles: ['test/setup/leak-check.ts'],
  },
});
