import { defineConfig } from 'vitest/config';

/** The suites that need a real OS keychain (run inside a D-Bus session: `npm run test:keychain`). */
export default defineConfig({
  test: {
    include: ['test/**/*.keychain.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    setupFiles: ['test/setup/leak-check.ts'],
  },
});
