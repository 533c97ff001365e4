/**
 * Debian's headless Chromium for the browser suites, started the way this machine needs it: no
 * sandbox (tests run as root), and none of the background connections the closed network refuses.
 */
import { chromium, type Browser } from 'playwright-core';

/** Launches /usr/bin/chromium headless with the suites' flags. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}
