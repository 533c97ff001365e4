/**
 * Process entry of the `nightjar` command: wires the real streams, environment and signals into
 * main(). First Ctrl-C stops gracefully; a second one exits at once.
 */
import { main } from './main.js';

const controller = new AbortController();
let interrupts = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupts++;
    if (interrupts > 1) {
      process.stderr.write('\nStopping now.\n');
      process.exit(130);
    }
    process.stderr.write('\nStopping (Ctrl-C again to force)…\n');
    controller.abort();
  });
}

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  cwd: process.cwd(),
  signal: controller.signal,
});
process.exitCode = code;
// Long-running commands have closed their servers by now; stdin may still hold the loop open.
process.stdin.unref?.();
