/**
 * `nightjar gateway keys|operators|enroll|prices|ledger`: administration of a gateway's database,
 * safe to run while the gateway runs (SQLite in WAL mode takes one writer at a time and readers
 * alongside). Secrets (API keys, operator tokens, enrollment tokens) are printed once, when they
 * are made, and never again: only their hashes are stored.
 */
import path from 'node:path';
import { NightjarError, formatCredits, formatDateTime, modelIdSchema, parseCredits, parseDuration } from '../../shared/index.js';
import { ACCOUNTS, openSqliteStore, type GatewayStore } from '../../gateway/index.js';
import { DEFAULT_DB } from '../flags.js';
import type { CommandContext } from '../io.js';
import { table } from '../table.js';

/** One admin command, as `group verb`. */
export type AdminCommand =
  | 'keys create'
  | 'keys list'
  | 'keys topup'
  | 'keys revoke'
  | 'operators create'
  | 'operators list'
  | 'operators token'
  | 'operators payout'
  | 'enroll create'
  | 'enroll list'
  | 'enroll unbind'
  | 'prices set'
  | 'prices list'
  | 'prices remove'
  | 'ledger check';

/** Flags of the admin commands (each takes the ones it needs). */
export interface AdminFlags {
  /** The database file. Defaults to {@link DEFAULT_DB}. */
  db?: string;
  name?: string;
  credit?: string;
  operator?: string;
  ttl?: string;
  prompt?: string;
  completion?: string;
}

const time = (ms: number | null): string => (ms === null ? '-' : formatDateTime(ms));

/**
 * Runs one admin command with its arguments (the command table checks their number) and flags;
 * resolves with the exit code.
 */
export async function adminCommand(
  command: AdminCommand,
  args: readonly string[],
  values: AdminFlags,
  ctx: CommandContext,
): Promise<number> {
  const now = ctx.clock.now();
  const out = (text: string): void => void ctx.io.stdout.write(text);
  const arg = (i: number): string => args[i]!;
  const need = (v: string | undefined, flag: string): string => {
    if (v === undefined) throw new NightjarError('NJ_USAGE', `${command} needs ${flag}`);
    return v;
  };

  const store: GatewayStore = await openSqliteStore({ path: path.resolve(ctx.io.cwd, values.db ?? DEFAULT_DB), now });
  try {
    const { accounts, ledger } = store;
    switch (command) {
      case 'keys create': {
        const credit = values.credit === undefined ? 0n : parseCredits(values.credit, '--credit');
        const key = await accounts.createApiKey({ name: need(values.name, '--name'), now });
        if (credit > 0n) await ledger.topUp(key.id, credit, now, 'initial credit');
        out(`Created API key ${key.id} (${key.name}) with ${formatCredits(credit)} credits.\n`);
        out(`Give this key to the client now; it is not stored and will not be shown again:\n\n  ${key.key}\n\n`);
        return 0;
      }
      case 'keys list': {
        const rows = [['ID', 'NAME', 'BALANCE', 'HELD', 'CREATED', 'REVOKED']];
        for (const k of await accounts.listApiKeys()) {
          const { balance, held } = await ledger.clientBalance(k.id);
          rows.push([k.id, k.name, formatCredits(balance), formatCredits(held), time(k.createdAt), time(k.revokedAt)]);
        }
        out(table(rows));
        return 0;
      }
      case 'keys topup': {
        const id = arg(0);
        const balance = await ledger.topUp(id, parseCredits(arg(1), 'the amount'), now, 'admin top-up');
        out(`Key ${id} now holds ${formatCredits(balance)} credits.\n`);
        return 0;
      }
      case 'keys revoke': {
        const id = arg(0);
        if (!(await accounts.revokeApiKey(id, now))) throw new NightjarError('NJ_NOT_FOUND', `no API key ${id}`);
        out(`Key ${id} is revoked; requests with it are refused from now on.\n`);
        return 0;
      }
      case 'operators create': {
        const op = await accounts.createOperator({ name: need(values.name, '--name'), now });
        out(`Created operator ${op.id} (${op.name}).\n`);
        out(`Dashboard sign-in token (shown once; keep it secret):\n\n  ${op.token}\n\n`);
        out(`Bind an agent to this operator with: nightjar gateway enroll --operator ${op.id}\n`);
        return 0;
      }
      case 'operators list': {
        const rows = [['ID', 'NAME', 'BALANCE', 'AGENTS', 'CREATED']];
        for (const op of await accounts.listOperators()) {
          const agents = await accounts.listAgents(op.id);
          rows.push([
            op.id,
            op.name,
            formatCredits(await ledger.balance(ACCOUNTS.operator(op.id))),
            String(agents.length),
            time(op.createdAt),
          ]);
        }
        out(table(rows));
        return 0;
      }
      case 'operators token': {
        const id = arg(0);
        const token = await accounts.rotateOperatorToken(id);
        out(`New dashboard token for operator ${id} (the old one no longer works; shown once):\n\n  ${token}\n\n`);
        return 0;
      }
      case 'operators payout': {
        const id = arg(0);
        const balance = await ledger.payout(id, parseCredits(arg(1), 'the amount'), now, 'admin payout');
        out(`Recorded the payout; operator ${id} now holds ${formatCredits(balance)} credits.\n`);
        return 0;
      }
      case 'enroll create': {
        const operatorId = need(values.operator, '--operator');
        const token = await accounts.createEnrollmentToken({ operatorId, now, ttlMs: parseDuration(values.ttl ?? '7d', '--ttl') });
        out(`Enrollment token ${token.id} for operator ${operatorId}, valid until ${time(token.expiresAt)}, for one agent.\n`);
        out(`Start the agent with it (shown once):\n\n  ${token.token}\n\n`);
        return 0;
      }
      case 'enroll list': {
        const rows = [['ID', 'OPERATOR', 'EXPIRES', 'USED', 'AGENT']];
        for (const t of await accounts.listEnrollmentTokens(values.operator))
          rows.push([t.id, t.operatorId, time(t.expiresAt), time(t.usedAt), t.usedBy ?? '-']);
        out(table(rows));
        return 0;
      }
      case 'enroll unbind': {
        const agentId = arg(0);
        if (!(await accounts.unbindAgent(agentId))) throw new NightjarError('NJ_NOT_FOUND', `agent ${agentId} is not bound to an operator`);
        out(`Agent ${agentId} is unbound; it serves only free jobs until enrolled again (on its next connection).\n`);
        return 0;
      }
      case 'prices set': {
        const model = modelIdSchema.safeParse(arg(0));
        if (!model.success) throw new NightjarError('NJ_USAGE', 'a model id uses a-z, 0-9 and ._:/-');
        const price = {
          promptPerMTok: parseCredits(need(values.prompt, '--prompt'), '--prompt'),
          completionPerMTok: parseCredits(need(values.completion, '--completion'), '--completion'),
        };
        await accounts.setPrice(model.data, price, now);
        out(
          `${model.data}: ${formatCredits(price.promptPerMTok)} credits per million prompt tokens, ` +
            `${formatCredits(price.completionPerMTok)} per million completion tokens.\n`,
        );
        return 0;
      }
      case 'prices list': {
        const rows = [['MODEL', 'PROMPT/MTOK', 'COMPLETION/MTOK', 'UPDATED']];
        for (const p of await accounts.listPrices())
          rows.push([p.model, formatCredits(p.promptPerMTok), formatCredits(p.completionPerMTok), time(p.updatedAt)]);
        out(table(rows));
        return 0;
      }
      case 'prices remove': {
        const model = arg(0);
        if (!(await accounts.removePrice(model))) throw new NightjarError('NJ_NOT_FOUND', `${model} has no price`);
        out(`${model} has no price now; the gateway refuses it (NJ_MODEL_UNPRICED) until it is priced again.\n`);
        return 0;
      }
      case 'ledger check': {
        const problems = await ledger.checkInvariants();
        if (problems.length === 0) {
          out('The ledger balances: every account matches its transfers, holds match running jobs, nothing was charged twice.\n');
          return 0;
        }
        out(problems.map((p) => `PROBLEM ${p}`).join('\n') + '\n');
        return 1;
      }
    }
  } finally {
    await store.dispose();
  }
}
