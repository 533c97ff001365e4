/** Registers the leak checks of ./leaks.ts around every test and every test file. */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { expectNoGrowth, snapshot } from './leaks.js';

let fileStart = new Map<string, number>();
let testStart = new Map<string, number>();

beforeAll(() => {
  fileStart = snapshot();
});
beforeEach(() => {
  testStart = snapshot();
});
afterEach(async (ctx) => {
  await expectNoGrowth(testStart, `test "${ctx.task.name}"`);
});
afterAll(async () => {
  await expectNoGrowth(fileStart, 'this test file');
});
