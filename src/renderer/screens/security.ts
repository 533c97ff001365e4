/** Security: the trust level the gateway grants, and each protection with what to do if it falls short. */
import { formatBytes } from '../../shared/index.js';
import type { AppContext, Screen } from '../app.js';
import { h, replaceChildren } from '../dom.js';
import { securityChecks, trustSummary, type CheckResult } from '../model/security.js';
import { facts } from './common.js';

const RESULT_TEXT: Readonly<Record<CheckResult, string>> = { ok: 'OK', warn: 'Attention', fail: 'Failing', unknown: 'Not checked' };

/** The Security screen. */
export function securityScreen(ctx: AppContext): Screen {
  const body = h('div', {});
  let key = '';
  return {
    title: 'Security',
    mount(el) {
      el.append(
        h('h1', {}, 'Security'),
        h(
          'p',
          { class: 'lead' },
          'Clients seal each request for this Mac alone; the gateway relays ciphertext. What follows is how well this Mac keeps its side.',
        ),
        body,
      );
    },
    update() {
      const s = ctx.state.status;
      if (!s) return;
      const checks = securityChecks(s);
      const k = JSON.stringify([checks, s.gateway.trust]);
      if (k === key) return;
      key = k;
      const trust = trustSummary(s);
      const p = s.security.platform;
      replaceChildren(
        body,
        h(
          'section',
          { class: 'card', id: 'trust', 'aria-labelledby': 'trust-h' },
          h('h2', { id: 'trust-h' }, 'Trust level'),
          h('p', { class: 'big', 'data-field': 'trust-level' }, trust.level),
          h('p', { class: 'muted' }, trust.detail),
        ),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'checks-h' },
          h('h2', { id: 'checks-h' }, 'Protections'),
          h(
            'ul',
            { class: 'checks', id: 'checks' },
            ...checks.map((c) =>
              h(
                'li',
                { 'data-check': c.id, 'data-result': c.result },
                h('span', { class: `result ${c.result}` }, RESULT_TEXT[c.result]),
                h(
                  'div',
                  {},
                  h('strong', {}, c.title),
                  h('p', {}, c.detail),
                  c.action ? h('p', { class: 'action' }, h('span', { class: 'visually-hidden' }, 'What to do: '), c.action) : null,
                ),
              ),
            ),
          ),
        ),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'machine-h' },
          h('h2', { id: 'machine-h' }, 'What this Mac publishes'),
          h('p', { class: 'muted' }, 'Signed into its key bundle, for clients to judge.'),
          facts([
            ['Agent id', 'agent-id', s.agentId],
            ['System', 'os', `${p.os} ${p.osVersion} (${p.arch})`],
            ['Chip', 'chip', p.chip],
            ['Memory', 'memory', formatBytes(p.memoryBytes)],
            ['App version', 'app-version', s.security.posture.appVersion],
          ]),
        ),
      );
    },
  };
}
