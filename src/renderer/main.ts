/**
 * The dashboard's entry. In the menu-bar app the preload script has put the IPC bridge at
 * `window.nightjar`; in a browser the page redeems the ticket in its URL for the loopback
 * control API's token. Then the app starts.
 */
// First: zod must be jitless before the contract's schemas are built (see jitless.ts).
import './jitless.js';
import { NightjarError, type PreloadApi } from '../shared/index.js';
import { App, type AppContext, type Screen, type ScreenId } from './app.js';
import { bridgeFromPreload, connectFromLocation } from './bridge.js';
import { h, replaceChildren } from './dom.js';
import { availabilityScreen } from './screens/availability.js';
import { earningsScreen } from './screens/earnings.js';
import { modelsScreen } from './screens/models.js';
import { securityScreen } from './screens/security.js';
import { setupScreen } from './screens/setup.js';
import { statusScreen } from './screens/status.js';

const SCREEN_BUILDERS: Record<ScreenId, (ctx: AppContext) => Screen> = {
  status: statusScreen,
  setup: setupScreen,
  models: modelsScreen,
  availability: availabilityScreen,
  earnings: earningsScreen,
  security: securityScreen,
};

function fatal(err: unknown): void {
  const main = document.getElementById('main');
  if (!main) return;
  const hint = err instanceof NightjarError ? err.hint : null;
  replaceChildren(
    main,
    h('h1', {}, 'The dashboard cannot reach the agent'),
    h('p', { 'data-field': 'fatal' }, err instanceof Error ? err.message : String(err)),
    hint ? h('p', { class: 'hint' }, hint) : null,
  );
  document.getElementById('nav')?.setAttribute('hidden', '');
  document.body.dataset.ready = 'error';
}

async function boot(): Promise<void> {
  const preload = (window as unknown as { nightjar?: PreloadApi }).nightjar;
  const bridge = preload
    ? bridgeFromPreload(preload)
    : await connectFromLocation(
        {
          origin: location.origin,
          hash: location.hash,
          replaceHash: (hash) => history.replaceState(null, '', `${location.pathname}${location.search}${hash}`),
        },
        (input, init) => fetch(input, init),
      );
  document.body.dataset.transport = preload ? 'ipc' : 'http';
  const app = new App({ bridge, screens: SCREEN_BUILDERS });
  window.addEventListener('pagehide', () => app.dispose());
  await app.start();
}

boot().catch(fatal);
