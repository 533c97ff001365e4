/**
 * The browser chat page: pick a model, chat, see which agent served each reply and its trust.
 * Every request is sealed here, in the page, with the same SDK as every other client; the
 * gateway that serves this page relays only ciphertext. Text is only ever set as textContent.
 */
import { z } from 'zod';
import { NightjarError, type ChatMessage } from '../../shared/index.js';
import { IncompleteReplyError, NightjarClient, type ChatStream } from '../sdk/index.js';
import { LocalStorageGatewayKeyStore, LocalStoragePinStore } from './local-pins.js';

// The page runs under a CSP without 'unsafe-eval': keep zod from probing for `new Function`.
z.config({ jitless: true });

const MAX_TOKENS = 512;
const API_KEY_ITEM = 'nightjar.apiKey';

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

const ui = {
  model: element<HTMLSelectElement>('model'),
  synthetic: element<HTMLInputElement>('synthetic'),
  apiKey: element<HTMLInputElement>('api-key'),
  newChat: element<HTMLButtonElement>('new-chat'),
  conversation: element<HTMLElement>('conversation'),
  composer: element<HTMLFormElement>('composer'),
  prompt: element<HTMLTextAreaElement>('prompt'),
  send: element<HTMLButtonElement>('send'),
  stop: element<HTMLButtonElement>('stop'),
  status: element<HTMLElement>('status'),
};

const pins = new LocalStoragePinStore();
// The page pins the gateway's key per browser profile (see docs/client.md, "The chat page").
const gatewayKeys = new LocalStorageGatewayKeyStore();
let history: ChatMessage[] = [];
let current: ChatStream | null = null;

function session(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

function client(): NightjarClient {
  const apiKey = ui.apiKey.value.trim();
  return new NightjarClient({
    gatewayUrl: window.location.origin,
    apiKey: apiKey || undefined,
    trust: { allowSynthetic: ui.synthetic.checked, pins },
    gatewayKeys,
  });
}

function setStatus(text: string, kind: 'info' | 'error' = 'info'): void {
  ui.status.textContent = text;
  ui.status.className = kind;
}

function describe(err: unknown): string {
  if (err instanceof NightjarError) return `${err.code}: ${err.message}. ${err.hint}`;
  return err instanceof Error ? err.message : String(err);
}

async function loadModels(): Promise<void> {
  const previous = ui.model.value;
  ui.model.replaceChildren();
  try {
    const models = (await client().models()).filter((m) => ui.synthetic.checked || !m.synthetic);
    for (const m of models) {
      const option = document.createElement('option');
      option.value = m.id;
      option.textContent = `${m.id}${m.synthetic ? ' (synthetic)' : ''} · ${m.agents} agent${m.agents === 1 ? '' : 's'}`;
      ui.model.append(option);
    }
    if (models.some((m) => m.id === previous)) ui.model.value = previous;
    ui.send.disabled = models.length === 0;
    setStatus(
      models.length
        ? 'Messages are encrypted in this page for the agent that answers; the gateway sees ciphertext only.'
        : ui.synthetic.checked
          ? 'The gateway offers no models right now.'
          : 'No real models on offer. Tick "Show synthetic models" to use development models (random weights).',
    );
  } catch (err) {
    ui.send.disabled = true;
    setStatus(describe(err), 'error');
  }
}

function bubble(role: 'user' | 'assistant', text: string): { root: HTMLElement; body: HTMLElement; meta: HTMLElement } {
  const root = document.createElement('article');
  root.className = `message ${role}`;
  const body = document.createElement('div');
  body.className = 'body';
  body.textContent = text;
  const meta = document.createElement('div');
  meta.className = 'meta';
  root.append(body, meta);
  ui.conversation.append(root);
  root.scrollIntoView({ block: 'end' });
  return { root, body, meta };
}

function busy(on: boolean): void {
  ui.send.hidden = on;
  ui.stop.hidden = !on;
  ui.prompt.disabled = on;
  ui.model.disabled = on;
}

async function send(): Promise<void> {
  const text = ui.prompt.value.trim();
  const model = ui.model.value;
  if (!text || !model || current) return;
  ui.prompt.value = '';
  bubble('user', text);
  history.push({ role: 'user', content: text });
  const reply = bubble('assistant', '');
  reply.root.classList.add('streaming');
  reply.meta.textContent = 'sealing for verified agents…';
  busy(true);
  const stream = client().chat({ model, messages: [...history], maxTokens: MAX_TOKENS });
  current = stream;
  stream.served.then(
    (s) => {
      reply.root.dataset.agent = s.agentId;
      reply.root.dataset.trust = s.trust;
      reply.meta.textContent = `agent ${s.agentId.slice(0, 8)} · ${s.trust} · streaming…`;
    },
    () => undefined,
  );
  try {
    for await (const delta of stream) {
      reply.body.textContent += delta;
      reply.root.scrollIntoView({ block: 'end' });
    }
    const result = await stream.result;
    history.push({ role: 'assistant', content: result.text });
    reply.root.dataset.receipt = 'verified';
    reply.root.dataset.job = result.jobId;
    reply.meta.textContent =
      `agent ${result.agentId.slice(0, 8)} · ${result.trust} · receipt verified ✓ · ` +
      `${result.usage.promptTokens} + ${result.usage.completionTokens} tokens · ${result.finishReason}`;
    reply.meta.title = `agent ${result.agentId}\njob ${result.jobId}\nmodel file sha256 ${result.receipt.modelSha256}`;
  } catch (err) {
    // A reply that did not complete is not part of the conversation.
    history.pop();
    reply.root.classList.add(err instanceof IncompleteReplyError ? 'incomplete' : 'failed');
    const cancelled = err instanceof NightjarError && err.code === 'NJ_CANCELLED';
    reply.meta.textContent = cancelled
      ? 'stopped — not part of the conversation'
      : err instanceof IncompleteReplyError
        ? `incomplete, no receipt — ${describe(err)}`
        : describe(err);
  } finally {
    reply.root.classList.remove('streaming');
    current = null;
    busy(false);
    ui.prompt.focus();
  }
}

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  void send();
});
ui.prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    void send();
  }
});
ui.stop.addEventListener('click', () => current?.cancel());
ui.newChat.addEventListener('click', () => {
  current?.cancel();
  history = [];
  ui.conversation.replaceChildren();
  ui.prompt.focus();
});
ui.synthetic.addEventListener('change', () => void loadModels());
ui.apiKey.value = session()?.getItem(API_KEY_ITEM) ?? '';
ui.apiKey.addEventListener('change', () => {
  session()?.setItem(API_KEY_ITEM, ui.apiKey.value.trim());
  void loadModels();
});
busy(false);
void loadModels();
