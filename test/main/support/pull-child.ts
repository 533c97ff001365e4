/**
 * Runs one model download in its own process, so a test can kill it with SIGKILL half-way.
 * argv: url dir fileName sha256 modelId. Prints each progress event as a JSON line.
 */
import { downloadFile } from '../../../src/main/agent/models/download.js';

const [url, dir, fileName, sha256, modelId] = process.argv.slice(2) as [string, string, string, string, string];
await downloadFile({
  url,
  dir,
  fileName,
  sha256,
  modelId,
  checkpointBytes: 16 * 1024,
  progressIntervalMs: 0,
  reserveBytes: 0,
  onProgress: (p) => process.stdout.write(JSON.stringify(p) + '\n'),
});
process.stdout.write('{"finished":true}\n');
