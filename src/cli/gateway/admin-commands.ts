/**
 * `nightjar gateway keys|operators|enroll|prices|ledger`: administration of a gateway's database,
 * safe to run while the gateway runs (SQLite in WAL mode takes one writer at a time and readers
 * alongside). Secrets (API keys, operator tokens, enrollment tokens) are printed once, when they
 * are made, and never again: only their hashes are stored.
 */
import { parseArgs } from 'node:util';
import { NightjarError, formatCredits, modelIdSchema, parseCredits, parseDuration, type Clock } from '../../shared/index.js';
import { ACCOUNTS, openSqliteStore, type GatewayStore } from '../../gateway/index.js';

/** Default database file of `nightjar gateway`, relative to the working directory. */
export const DEFAULT_DB = 'nightjar-gateway.db';

/** Usage of the admin subcommands. */
export const ADMIN_USAGE = `Administration (each takes --db PATH, default ${DEFAULT_DB}):
  nightjar gateway keys create --name NAME [--credit AMOUNT]   issue a client API key (shown once)
  nightjar gateway keys list                                   keys, balances and holds
  nightjar gateway keys topup KEY_ID AMOUNT                    add credits to a key
  nightjar gateway keys revoke KEY_ID                          stop a key working
  nightjar gateway operators create --name NAME                add an operator; prints its dashboard token (once)
  nightjar gateway operators list                              operators and their balances
  nightjar gateway operators token OPERATOR_ID                 replace an operator's dashboard token
  nightjar gateway operators payout OPERATOR_ID AMOUNT         record a payout to an operator
  nightjar gateway enroll --operator OPERATOR_ID [--ttl 7d]    issue a single-use enrollment token (shown once)
  nightjar gateway enroll list [--operator OPERATOR_ID]        enrollment tokens and who used them
  nightjar gateway enroll unbind AGENT_ID                      remove an agent's operator binding
  nightjar gateway prices set MODEL --prompt P --completion C  price per million tokens, in credits (0 = free)
  nightjar gateway prices list
  nightjar gateway prices remove MODEL                         the model is refused until priced again
  nightjar gateway ledger check                                verify the ledger's invariants

Amounts are in credits with up to six decimals (1 credit = 1 000 000 micro-credits).
`;

/** Subcommands handled here. */
export const ADMIN_COMMANDS = ['keys', 'operators', 'enroll', 'prices', 'ledger'] as const;

/** What an admin command needs. */
export interface AdminContext {
  stdout: { write(text: string): unknown };
  /** Defaults to the system clock's time. */
  clock?: Pick<Clock, 'now'>;
}

function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

const time = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));

/** Runs one admin command; resolves with the exit code. */
export async function adminCommand(argv: string[], ctx: AdminContext): Promise<number> {
  const [group, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      db: { type: 'string' },
      name: { type: 'string' },
      credit: { type: 'string' },
      operator: { type: 'string' },
      ttl: { type: 'string' },
      prompt: { type: 'string' },
      completion: { type: 'string' },
    },
  });
  const now = (ctx.clock ?? { now: Date.now }).now();
  const out = (text: string): void => void ctx.stdout.write(text);
  const [verb, ...args] = positionals;
  const arg = (i: number, what: string): string => {
    const v = args[i];
    if (v === undefined) throw new NightjarError('NJ_USAGE', `${group} ${verb ?? ''} needs ${what}`.replace(/ +/g, ' '));
    return v;
  };
  const need = (v: string | undefined, flag: string): string => {
    if (v === undefined) throw new NightjarError('NJ_USAGE', `${group} ${verb ?? ''} needs ${flag}`.replace(/ +/g, ' '));
    return v;
  };

  const store: GatewayStore = await openSqliteStore({ path: values.db ?? DEFAULT_DB, now });
  try {
    const { accounts, ledger } = store;
    switch (`${group} ${group === 'enroll' && (verb === undefined || verb.startsWith('-')) ? 'create' : (verb ?? '')}`) {
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
        const id = arg(0, 'a key id');
        const balance = await ledger.topUp(id, parseCredits(arg(1, 'an amount'), 'the amount'), now, 'admin top-up');
        out(`Key ${id} now holds ${formatCredits(balance)} credits.\n`);
        return 0;
      }
      case 'keys revoke': {
        const id = arg(0, 'a key id');
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
        const id = arg(0, 'an operator id');
        const token = await accounts.rotateOperatorToken(id);
        out(`New dashboard token for operator ${id} (the old one no longer works; shown once):\n\n  ${token}\n\n`);
        return 0;
      }
      case 'operators payout': {
        const id = arg(0, 'an operator id');
        const balance = await ledger.payout(id, parseCredits(arg(1, 'an amount'), 'the amount'), now, 'admin payout');
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
        const agentId = arg(0, 'an agent id');
        if (!(await accounts.unbindAgent(agentId))) throw new NightjarError('NJ_NOT_FOUND', `agent ${agentId} is not bound to an operator`);
        out(`Agent ${agentId} is unbound; it serves only free jobs until enrolled again (on its next connection).\n`);
        return 0;
      }
      case 'prices set': {
        const model = modelIdSchema.safeParse(arg(0, 'a model id'));
        if (!model.success) throw new NightjarError('NJ_USAGE', 'a model id uses a-z, 0-9 and ._:/-');
        const price = {
          promptPerMTok: parseCredits(need(values.prompt, '--prompt'), '--prompt'),
          completionPerMTok: parseCredits(need(values.completion, '--completion'), '--completion'),
        };
        await accounts.setPrice(model.data, price, now);
        out(
          `${model.data}: ${formatCredits(price.promptPerMTok)} credits per million prompt tokens, ${formatCredits(price.completionPerMTok)} per million completion tokens.\n`,
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
        const model = arg(0, 'a model id');
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
      default:
        throw new NightjarError('NJ_USAGE', `unknown command: nightjar gateway ${[group, verb].filter(Boolean).join(' ')}`);
    }
  } finally {
    await store.dispose();
  }
}
