import { defineConfig } from 'vitest/config';

/** Suites that need running services (PostgreSQL at 127.0.0.1:5432, NATS with JetStream at 127.0.0.1:4222): `npm run test:services`. */
export default defineConfig({
  test: {
    include: ['test/**/*.services.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    setupFiles: ['test/setup/leak-check.ts'],
  },
});
