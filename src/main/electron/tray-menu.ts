/**
 * What the menu-bar item says: its title (a state mark and today's earnings) and its menu, as
 * pure functions of the agent's status. tray.ts turns them into Electron calls.
 */
import {
  STATE_LABELS,
  formatCredits,
  formatTokens,
  type AgentState,
  type AgentStatusSnapshot,
  type EarningsTotal,
} from '../../shared/index.js';

/** What a menu item does when chosen. */
export type TrayAction = 'pause' | 'resume' | 'serve-now' | 'open-dashboard' | 'preferences' | 'toggle-login' | 'quit';

/** One item of the tray menu. */
export interface TrayMenuItem {
  /** Stable id (tests, and Electron's menu item id). */
  id: string;
  type: 'normal' | 'separator' | 'checkbox';
  label: string;
  enabled: boolean;
  checked?: boolean;
  accelerator?: string;
  action?: TrayAction;
}

/** What the tray shows. */
export interface TrayInput {
  /** The agent's status; null before the first answer. */
  status: AgentStatusSnapshot | null;
  /** Today's earnings from the receipt log; null before the first answer. */
  today: EarningsTotal | null;
  /** Whether the app opens at login. */
  launchAtLogin: boolean;
}

/** A one-character mark per state, for the menu-bar title. */
export const STATE_MARKS: Readonly<Record<AgentState, string>> = {
  stopped: '',
  waiting: '○',
  loading: '◌',
  serving: '●',
  draining: '◐',
  paused: '‖',
  error: '!',
};

/** Today's earnings, short: "0.12" credits, or "1.2k tok" when no price is configured; "" for nothing yet. */
export function todayText(today: EarningsTotal | null): string {
  if (!today || today.jobs === 0) return '';
  return today.microCredits === null ? `${formatTokens(today.completionTokens)} tok` : formatCredits(today.microCredits, 'compact');
}

/** The menu-bar title: the state's mark and today's earnings, e.g. "● 0.12"; "" when there is nothing to say. */
export function trayTitle(input: Pick<TrayInput, 'status' | 'today'>): string {
  const mark = input.status ? STATE_MARKS[input.status.state] : '';
  return [mark, todayText(input.today)].filter(Boolean).join(' ');
}

/** The tooltip: state and reason. */
export function trayToolTip(status: AgentStatusSnapshot | null): string {
  if (!status) return 'Nightjar — starting';
  return `Nightjar — ${STATE_LABELS[status.state]}${status.reason ? `: ${status.reason.message}` : ''}`;
}

function info(id: string, label: string): TrayMenuItem {
  return { id, type: 'normal', label, enabled: false };
}

function separator(n: number): TrayMenuItem {
  return { id: `separator-${n}`, type: 'separator', label: '', enabled: true };
}

/** The tray menu for a status. */
export function trayMenu(input: TrayInput): TrayMenuItem[] {
  const s = input.status;
  const items: TrayMenuItem[] = [];
  if (!s) {
    items.push(info('state', 'Starting…'));
  } else {
    const reason = s.state === 'serving' ? null : s.reason?.message;
    items.push(info('state', reason ? `${STATE_LABELS[s.state]} — ${reason}` : STATE_LABELS[s.state]));
    items.push(info('model', s.model ? `Model: ${s.model.id}${s.model.synthetic ? ' (synthetic)' : ''}` : 'No model selected'));
    const attestation = s.security.attestation;
    if (attestation) {
      // Why this Mac is not attested, by reason code (the Security screen says what to do).
      const why = attestation[0] === 'valid' ? '' : ` (not attested: ${attestation.join(', ')})`;
      items.push(info('trust', `Trust: ${s.gateway.trust ?? 'not known yet'}${why}`));
    }
    if (s.state === 'serving' || s.state === 'draining')
      items.push(info('rate', `${s.activeJobs} job${s.activeJobs === 1 ? '' : 's'} · ${s.tokensPerSecond.toFixed(1)} tokens/s`));
  }
  const today = input.today;
  items.push(
    info(
      'earnings',
      !today || today.jobs === 0
        ? 'Earned today: nothing yet'
        : today.microCredits === null
          ? `Today: ${today.jobs} job${today.jobs === 1 ? '' : 's'}, ${formatTokens(today.completionTokens)} tokens`
          : `Earned today: ${formatCredits(today.microCredits)} credits`,
    ),
  );
  items.push(separator(1));
  const mode = s?.manual.mode ?? 'auto';
  const ready = s !== null && s.state !== 'stopped';
  if (mode === 'paused') {
    items.push({ id: 'resume', type: 'normal', label: 'Resume', enabled: ready, action: 'resume' });
  } else {
    items.push({ id: 'pause', type: 'normal', label: 'Pause', enabled: ready, action: 'pause' });
  }
  if (mode === 'serve-now') {
    items.push({ id: 'resume', type: 'normal', label: 'Back to Schedule', enabled: ready, action: 'resume' });
  } else {
    items.push({ id: 'serve-now', type: 'normal', label: 'Serve Now', enabled: ready && s.gatewayUrl !== null, action: 'serve-now' });
  }
  items.push(separator(2));
  items.push({
    id: 'open-dashboard',
    type: 'normal',
    label: s?.gatewayUrl === null ? 'Set Up Nightjar…' : 'Open Dashboard…',
    enabled: true,
    action: 'open-dashboard',
  });
  items.push({
    id: 'preferences',
    type: 'normal',
    label: 'Preferences…',
    enabled: true,
    accelerator: 'CommandOrControl+,',
    action: 'preferences',
  });
  items.push({
    id: 'launch-at-login',
    type: 'checkbox',
    label: 'Launch at Login',
    enabled: true,
    checked: input.launchAtLogin,
    action: 'toggle-login',
  });
  items.push(separator(3));
  items.push({ id: 'quit', type: 'normal', label: 'Quit Nightjar', enabled: true, accelerator: 'CommandOrControl+Q', action: 'quit' });
  return items;
}
