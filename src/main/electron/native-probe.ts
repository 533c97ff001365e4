/**
 * The native addon's test-load in the app: Electron runs this module in a utility process
 * (utilityProcess.fork, see native-test-load.ts) with the addon's path as its one argument. It
 * requires the addon, calls its one harmless function and reports to the main process; if the
 * addon crashes, only this process dies. The main process judges the report with judgeTestLoad.
 */
import { createRequire } from 'node:module';

const addonPath = process.argv.at(-1) ?? '';
const addon = createRequire(import.meta.url)(addonPath) as { addonInfo?: () => unknown };
process.parentPort.postMessage({ info: addon.addonInfo?.(), calls: Object.keys(addon) });
