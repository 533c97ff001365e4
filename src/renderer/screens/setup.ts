/**
 * Set up (onboarding): link this Mac to a gateway with an enrollment token, pick a model that
 * fits it, watch the download, done.
 */
import type { AgentStatusSnapshot } from '../../shared/index.js';
import type { AppContext, Screen } from '../app.js';
import { h, replaceChildren } from '../dom.js';
import { catalogList, installedList, memoryLine, refreshModelLists } from './model-list.js';

/**
 * Step 1's form: the gateway address and enrollment token, linking on submit. `url` is returned
 * too so the screen can fill in the address the agent already has.
 */
function linkForm(ctx: AppContext): { form: HTMLFormElement; url: HTMLInputElement } {
  const url = h('input', {
    id: 'gateway-url',
    name: 'gateway-url',
    type: 'url',
    required: true,
    autocomplete: 'url',
    spellcheck: 'false',
    placeholder: 'https://gateway.example',
  });
  const token = h('input', {
    id: 'enroll-token',
    name: 'enroll-token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'njen_…',
    'aria-describedby': 'enroll-help',
  });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'link' }, 'Link this Mac');
  const form = h(
    'form',
    { id: 'link-form', class: 'form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'gateway-url' }, 'Gateway address'), url),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'enroll-token' }, 'Enrollment token'),
      token,
      h(
        'small',
        { id: 'enroll-help', class: 'muted' },
        'From your operator (`nightjar gateway enroll`). It binds this Mac to their account once, so your earnings reach it.',
      ),
    ),
    h('div', { class: 'row-actions' }, submit),
  );

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!url.value.trim()) {
      url.setAttribute('aria-invalid', 'true');
      url.focus();
      ctx.report(new Error('Enter the gateway address your operator gave you, such as https://gateway.example.'));
      return;
    }
    url.removeAttribute('aria-invalid');
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    ctx.bridge
      .link({ gatewayUrl: url.value.trim(), enrollToken: token.value.trim() || null })
      .then(async (status) => {
        token.value = '';
        ctx.notice(`Linked to ${status.gatewayUrl ?? 'the gateway'}.`);
        await ctx.refresh('status');
        document.getElementById('step-model-h')?.focus();
      })
      .catch(ctx.report)
      .finally(() => {
        submit.disabled = false;
        submit.removeAttribute('aria-busy');
      });
  });
  return { form, url };
}

/** Step 1's state: which gateway this Mac is linked to and how, or that it refused this Mac. */
function showLinkState(linkState: HTMLElement, s: AgentStatusSnapshot): void {
  const g = s.gateway;
  replaceChildren(
    linkState,
    s.gatewayUrl === null
      ? h('p', { class: 'muted' }, 'Not linked yet.')
      : h(
          'p',
          {},
          `Linked to ${s.gatewayUrl} — `,
          h('strong', { 'data-field': 'link' }, s.link),
          g.operator ? `, operator ${g.operator}` : '',
          g.trust ? `, trusted as ${g.trust}` : '',
          '.',
        ),
    g.rejected
      ? h(
          'p',
          { class: 'error', 'data-field': 'rejected' },
          `The gateway refused this Mac: ${g.rejected.message} Ask your operator for a new enrollment token.`,
        )
      : null,
  );
}

/** Step 3: done once linked (and not refused) with a model selected, with a way on to Status. */
function showDone(ctx: AppContext, done: HTMLElement): void {
  const s = ctx.state.status;
  const m = ctx.state.models;
  const ready = s !== null && s.gatewayUrl !== null && m?.selected != null && !s.gateway.rejected;
  replaceChildren(
    done,
    h('h2', { id: 'step-done-h' }, '3. Done'),
    ready
      ? h(
          'p',
          { 'data-field': 'ready' },
          'This Mac serves while you are away, on AC power and cool enough. Change when on the Availability screen.',
        )
      : h('p', { class: 'muted' }, 'Finish the steps above.'),
    ready ? h('button', { type: 'button', class: 'primary', id: 'to-status' }, 'Go to Status') : null,
  );
  done.querySelector('#to-status')?.addEventListener('click', () => ctx.navigate('status'));
}

/** The Set up screen. */
export function setupScreen(ctx: AppContext): Screen {
  const linkState = h('div', { class: 'link-state', 'data-field': 'link-state', role: 'status' });
  const models = h('div', { class: 'step-body' });
  const memory = h('p', { class: 'muted', 'data-field': 'memory' });
  const done = h('section', { class: 'card step', id: 'step-done', 'aria-labelledby': 'step-done-h' });
  const { form, url } = linkForm(ctx);
  let modelsKey = '';

  return {
    title: 'Set up',
    mount(el) {
      el.append(
        h('h1', {}, 'Set up this Mac'),
        h(
          'p',
          { class: 'lead' },
          'Nightjar serves encrypted chat requests with your Mac’s spare time and pays your operator account. Three steps:',
        ),
        h(
          'section',
          { class: 'card step', id: 'step-link', 'aria-labelledby': 'step-link-h' },
          h('h2', { id: 'step-link-h' }, '1. Link it to a gateway'),
          linkState,
          form,
        ),
        h(
          'section',
          { class: 'card step', id: 'step-model', 'aria-labelledby': 'step-model-h' },
          h('h2', { id: 'step-model-h', tabindex: '-1' }, '2. Pick a model that fits'),
          memory,
          models,
        ),
        done,
      );
    },
    update() {
      const s = ctx.state.status;
      if (s) {
        if (!url.value && s.gatewayUrl && document.activeElement !== url)
          url.value = s.gatewayUrl.replace(/^ws(s?):/, 'http$1:').replace(/\/v1\/agent$/, '');
        showLinkState(linkState, s);
      }
      memory.textContent = memoryLine(ctx);
      // Rebuild the lists only when what they show changes (not on every tokens/s tick).
      modelsKey = refreshModelLists(ctx, models, modelsKey, () => [
        h('h3', {}, 'On this Mac'),
        installedList(ctx),
        h('h3', {}, 'Download'),
        catalogList(ctx, { selectAfterDownload: true }),
      ]);
      showDone(ctx, done);
    },
  };
}
