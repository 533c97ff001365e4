/**
 * The dashboard: what the agent says (status, models, policy, earnings, receipts), kept fresh
 * from its events, and the screens that show it. Screens are mounted once when shown and told to
 * update when the state changes, so a form being edited is not redrawn under the owner's hands.
 */
import {
  NightjarError,
  STATE_LABELS,
  type AgentStatusSnapshot,
  type ControlEvent,
  type DownloadProgress,
  type EarningsSummary,
  type ModelsSnapshot,
  type NightjarBridge,
  type Policy,
  type ReceiptsPage,
} from '../shared/index.js';
import { h, replaceChildren } from './dom.js';

/** Everything the screens read. */
export interface AppState {
  status: AgentStatusSnapshot | null;
  models: ModelsSnapshot | null;
  policy: Policy | null;
  earnings: EarningsSummary | null;
  receipts: ReceiptsPage | null;
  /** Latest progress per model id, from download events. */
  downloads: Map<string, DownloadProgress>;
  /** Recent tokens/s readings, oldest first. */
  tokensPerSecond: number[];
  /** Models to select as soon as their download is done ("Download and use"). */
  selectWhenDownloaded: Set<string>;
}

/** What can be fetched again. */
export type Resource = 'status' | 'models' | 'policy' | 'earnings' | 'receipts';

/** The screens. */
export const SCREENS = ['status', 'setup', 'models', 'availability', 'earnings', 'security'] as const;
/** A screen's id (its route is `#/<id>`). */
export type ScreenId = (typeof SCREENS)[number];

/** What a screen gets to work with. */
export interface AppContext {
  readonly bridge: NightjarBridge;
  readonly state: AppState;
  /** Fetches resources again (coalesced) and updates the shown screen. */
  refresh(...what: Resource[]): Promise<void>;
  /** Shows another screen. */
  navigate(id: ScreenId): void;
  /** Shows an error to the owner: its message and, for a NightjarError, what to do. */
  report(err: unknown): void;
  /** Shows a short confirmation. */
  notice(text: string): void;
  /** Called with every event (after the state is updated). */
  onEvent(listener: (event: ControlEvent) => void): () => void;
}

/** One screen. */
export interface Screen {
  readonly title: string;
  /** Builds the screen into `root`. */
  mount(root: HTMLElement): void;
  /** The state changed. */
  update(): void;
  /** The screen is being left. Defaults to nothing. */
  unmount?(): void;
}

/** Options of {@link App}. */
export interface AppOptions {
  /** The bridge to the agent. Required. */
  bridge: NightjarBridge;
  /** Builds each screen. Required. */
  screens: Record<ScreenId, (ctx: AppContext) => Screen>;
  /** The document to draw in. Defaults to the global document. */
  document?: Document;
  /** How often status is read while nothing else changes it (live tokens/s). Defaults to 2000 ms. */
  pollMs?: number;
}

const HISTORY = 60;

/** The dashboard application. */
export class App {
  readonly state: AppState = {
    status: null,
    models: null,
    policy: null,
    earnings: null,
    receipts: null,
    downloads: new Map(),
    tokensPerSecond: [],
    selectWhenDownloaded: new Set(),
  };
  readonly #o: AppOptions;
  readonly #doc: Document;
  readonly #ctx: AppContext;
  readonly #listeners = new Set<(event: ControlEvent) => void>();
  readonly #inflight = new Map<Resource, { again: boolean; done: Promise<void> }>();
  #screen: { id: ScreenId; screen: Screen } | null = null;
  #unsubscribe: (() => void) | null = null;
  #poll: ReturnType<typeof setInterval> | null = null;
  #toastTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(options: AppOptions) {
    this.#o = options;
    this.#doc = options.document ?? document;
    const listeners = this.#listeners;
    this.#ctx = {
      bridge: options.bridge,
      state: this.state,
      refresh: (...what) => this.refresh(...what),
      navigate: (id) => this.navigate(id),
      report: (err) => this.report(err),
      notice: (text) => this.notice(text),
      onEvent(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
  }

  /** Loads everything, subscribes to events, and shows the screen the URL names (or the one that fits). */
  async start(): Promise<void> {
    this.#unsubscribe = this.#o.bridge.onEvent((e) => this.#onEvent(e));
    await this.refresh('status', 'models', 'policy', 'earnings', 'receipts');
    const nav = this.#doc.getElementById('nav');
    nav?.addEventListener('click', (e) => {
      const link = (e.target as Element).closest('a[data-screen]');
      if (!link) return;
      e.preventDefault();
      this.navigate(link.getAttribute('data-screen') as ScreenId);
    });
    // Only routes (#/name) navigate; other fragments (the skip link's #main) are in-page anchors.
    this.#doc.defaultView?.addEventListener('hashchange', () => {
      if (this.#doc.defaultView?.location.hash.startsWith('#/')) this.#route();
    });
    const needsSetup = this.state.status?.gatewayUrl === null || this.state.models?.selected === null;
    this.#route(needsSetup ? 'setup' : 'status');
    this.#poll = setInterval(() => void this.refresh('status'), this.#o.pollMs ?? 2000);
    this.#doc.body.dataset.ready = 'true';
  }

  /** Stops listening and polling. */
  dispose(): void {
    this.#unsubscribe?.();
    if (this.#poll) clearInterval(this.#poll);
    this.#screen?.screen.unmount?.();
  }

  #route(fallback: ScreenId = 'status'): void {
    const hash = this.#doc.defaultView?.location.hash ?? '';
    const id = /^#\/([a-z]+)$/.exec(hash)?.[1];
    this.#show(SCREENS.includes(id as ScreenId) ? (id as ScreenId) : fallback);
  }

  /** Shows a screen and moves focus to its heading. */
  navigate(id: ScreenId): void {
    const win = this.#doc.defaultView;
    if (win && win.location.hash !== `#/${id}`) win.history.pushState(null, '', `#/${id}`);
    this.#show(id);
  }

  #show(id: ScreenId): void {
    if (this.#screen?.id === id) return;
    this.#screen?.screen.unmount?.();
    const main = this.#doc.getElementById('main')!;
    const screen = this.#o.screens[id](this.#ctx);
    this.#screen = { id, screen };
    main.replaceChildren();
    main.dataset.screen = id;
    screen.mount(main);
    screen.update();
    this.#doc.title = `${screen.title} — Nightjar`;
    for (const a of this.#doc.querySelectorAll('#nav a[data-screen]')) {
      if (a.getAttribute('data-screen') === id) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    main.querySelector('h1')?.setAttribute('tabindex', '-1');
    (main.querySelector('h1') as HTMLElement | null)?.focus();
  }

  /**
   * Fetches resources again. A call while the same resource is being fetched does not start a
   * second request but makes the first fetch once more when it ends: its answer may predate
   * whatever prompted the call (an event), and must not be the last word.
   */
  async refresh(...what: Resource[]): Promise<void> {
    await Promise.all(what.map((r) => this.#refreshOne(r)));
    this.#render();
  }

  #refreshOne(r: Resource): Promise<void> {
    const running = this.#inflight.get(r);
    if (running) {
      running.again = true;
      return running.done;
    }
    const entry: { again: boolean; done: Promise<void> } = { again: false, done: Promise.resolve() };
    entry.done = (async () => {
      do {
        entry.again = false;
        try {
          await this.#fetch(r);
        } catch (err) {
          this.report(err);
        }
      } while (entry.again);
      this.#inflight.delete(r);
    })();
    this.#inflight.set(r, entry);
    return entry.done;
  }

  async #fetch(r: Resource): Promise<void> {
    const b = this.#o.bridge;
    switch (r) {
      case 'status':
        this.state.status = await b.status({});
        this.#pushRate(this.state.status.tokensPerSecond);
        return;
      case 'models': {
        this.state.models = await b.listModels({});
        for (const d of this.state.models.downloads) this.state.downloads.set(d.modelId, d);
        return;
      }
      case 'policy':
        this.state.policy = await b.getPolicy({});
        return;
      case 'earnings':
        this.state.earnings = await b.earnings({ days: 31 });
        return;
      case 'receipts':
        this.state.receipts = await b.receipts({ limit: 50 });
        return;
    }
  }

  #pushRate(tps: number): void {
    const h = this.state.tokensPerSecond;
    h.push(tps);
    if (h.length > HISTORY) h.splice(0, h.length - HISTORY);
  }

  #onEvent(e: ControlEvent): void {
    const s = this.state.status;
    switch (e.type) {
      case 'state':
        if (s) Object.assign(s, { state: e.state, since: e.since, reason: e.reason, decision: e.decision });
        void this.refresh('status');
        break;
      case 'link':
        if (s) s.link = e.link;
        void this.refresh('status');
        break;
      case 'jobs':
        if (s)
          Object.assign(s, {
            activeJobs: e.activeJobs,
            jobsServed: e.jobsServed,
            freeSlots: e.freeSlots,
            totalSlots: e.totalSlots,
            tokensPerSecond: e.tokensPerSecond,
            ttftMs: e.ttftMs,
          });
        this.#pushRate(e.tokensPerSecond);
        break;
      case 'receipt':
        void this.refresh('earnings', 'receipts');
        break;
      case 'download':
        this.state.downloads.set(e.progress.modelId, e.progress);
        if (e.progress.phase === 'done' || e.progress.phase === 'failed') void this.#downloaded(e.progress);
        break;
      case 'environment':
        if (s) s.environment = e.reading;
        break;
      case 'preempted':
        break;
    }
    this.#render();
    for (const l of [...this.#listeners]) l(e);
  }

  async #downloaded(progress: DownloadProgress): Promise<void> {
    const id = progress.modelId;
    if (progress.phase === 'failed') {
      this.state.selectWhenDownloaded.delete(id);
      this.report(new NightjarError('NJ_DOWNLOAD_FAILED', `The download of ${id} failed: ${progress.error?.message ?? 'no reason given'}`));
    } else if (this.state.selectWhenDownloaded.delete(id)) {
      await this.#o.bridge.selectModel({ id }).then(
        () => this.notice(`${id} is downloaded and selected.`),
        (err: unknown) => this.report(err),
      );
    }
    await this.refresh('models', 'status');
  }

  #render(): void {
    const s = this.state.status;
    const pill = this.#doc.getElementById('state-pill');
    if (pill && s) {
      pill.dataset.state = s.state;
      replaceChildren(pill, h('span', { class: 'dot', 'aria-hidden': 'true' }), STATE_LABELS[s.state]);
    }
    this.#screen?.screen.update();
  }

  /** Shows an error with what to do. */
  report(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const hint = err instanceof NightjarError ? err.hint : null;
    this.#toast('error', message, hint);
  }

  /** Shows a short confirmation. */
  notice(text: string): void {
    this.#toast('notice', text, null);
  }

  #toast(kind: 'error' | 'notice', text: string, hint: string | null): void {
    const toast = this.#doc.getElementById('toast');
    if (!toast) return;
    toast.dataset.kind = kind;
    replaceChildren(toast, h('p', {}, text), hint ? h('p', { class: 'hint' }, hint) : null);
    toast.hidden = false;
    if (this.#toastTimer) clearTimeout(this.#toastTimer);
    this.#toastTimer = setTimeout(() => (toast.hidden = true), kind === 'error' ? 12_000 : 4000);
  }
}
