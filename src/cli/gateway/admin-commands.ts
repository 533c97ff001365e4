/**
 * `nightjar gateway keys|operators|enroll|prices|catalog|key|releases|ledger|strikes`: administration of a gateway's database,
 * safe to run while the gateway runs (SQLite in WAL mode takes one writer at a time and readers
 * alongside). Secrets (API keys, operator tokens, enrollment tokens) are printed once, when they
 * are made, and never again: only their hashes are stored.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import {
  NightjarError,
  formatBytes,
  formatCredits,
  formatDateTime,
  fromBase64Url,
  gatewayKeyFingerprint,
  modelIdSchema,
  parseCredits,
  parseDuration,
  type GatewayCatalogFile,
} from '../../shared/index.js';
import {
  ACCOUNTS,
  HONESTY_DEFAULTS,
  SCORE_DEFAULTS,
  openPostgresStore,
  openSqliteStore,
  scoreOf,
  type GatewayStore,
} from '../../gateway/index.js';
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
  | 'catalog add'
  | 'catalog list'
  | 'catalog remove'
  | 'key show'
  | 'key rotate'
  | 'releases add'
  | 'releases list'
  | 'releases remove'
  | 'ledger check'
  | 'strikes list'
  | 'strikes clear';

/** Flags of the admin commands (each takes the ones it needs). */
export interface AdminFlags {
  /** The database file. Defaults to {@link DEFAULT_DB}. */
  db?: string;
  /** A cluster's PostgreSQL instead of the file. Defaults to none. */
  postgres?: string;
  name?: string;
  credit?: string;
  operator?: string;
  ttl?: string;
  prompt?: string;
  completion?: string;
  /** `catalog add`: a local copy of the file, whose sha256, size and name are taken from it. */
  from?: string;
  sha256?: string;
  bytes?: number;
  /** `catalog add`: the file's name (defaults to the --from file's). */
  fileName?: string;
  quantization?: string;
  context?: number;
  url?: string;
  /** `catalog add`: the Hugging Face repository (owner/name) whose --file-name it is: size, sha256 and URL from the Hub. */
  hf?: string;
  /** `catalog add --hf`: the branch, tag or commit. Defaults to main. */
  revision?: string;
  /** `key rotate`: the old key's grace period. Defaults to 30d. */
  grace?: string;
  /** `strikes list`: only this agent's. Defaults to every agent's. */
  agent?: string;
  /** `strikes clear`: every agent's strikes. Defaults to false (an agent id is needed). */
  all?: boolean;
}

/** sha256 (hex) and size of a local file, read as a stream. */
async function hashFile(file: string): Promise<{ sha256: string; bytes: number }> {
  const info = await stat(file).catch((cause: unknown) => {
    throw new NightjarError('NJ_USAGE', `cannot read ${file}: ${(cause as Error).message}`, { cause });
  });
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return { sha256: hash.digest('hex'), bytes: info.size };
}

/** The catalog entry `catalog add` describes, from its flags (and the --from file). */
async function catalogFileOf(
  values: AdminFlags,
  cwd: string,
  need: (v: string | undefined, flag: string) => string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<GatewayCatalogFile> {
  if (values.hf !== undefined) return hostedCatalogFile(values, need, env);
  if (values.revision !== undefined) throw new NightjarError('NJ_USAGE', '--revision is for --hf');
  const local = values.from === undefined ? null : path.resolve(cwd, values.from);
  const measured = local ? await hashFile(local) : null;
  if (measured && values.sha256 !== undefined && values.sha256 !== measured.sha256) {
    throw new NightjarError('NJ_USAGE', `--sha256 differs from the sha256 of ${values.from} (${measured.sha256})`);
  }
  const bytes = values.bytes ?? measured?.bytes;
  if (bytes === undefined) throw new NightjarError('NJ_USAGE', 'catalog add needs --bytes (or --from FILE)');
  if (values.context === undefined) throw new NightjarError('NJ_USAGE', 'catalog add needs --context');
  return {
    sha256: values.sha256 ?? measured?.sha256 ?? need(undefined, '--sha256 (or --from FILE)'),
    bytes,
    name: values.fileName ?? (local ? path.basename(local) : need(undefined, '--file-name (or --from FILE)')),
    quantization: need(values.quantization, '--quantization'),
    contextLength: values.context,
    ...(values.url === undefined ? {} : { url: values.url }),
  };
}

/** The catalog entry of a file on the Hub (`--hf REPO --file-name FILE`): size, sha256 and URL from its API. */
async function hostedCatalogFile(
  values: AdminFlags,
  need: (v: string | undefined, flag: string) => string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<GatewayCatalogFile> {
  for (const [given, flag] of [
    [values.from, '--from'],
    [values.sha256, '--sha256'],
    [values.bytes, '--bytes'],
    [values.url, '--url'],
  ] as const) {
    if (given !== undefined)
      throw new NightjarError('NJ_USAGE', `--hf reads the file's size, sha256 and URL from the Hub: leave out ${flag}`);
  }
  const file = need(values.fileName, '--file-name (the file in the --hf repository)');
  if (values.context === undefined) throw new NightjarError('NJ_USAGE', 'catalog add needs --context');
  const { lookUpHubFile, quantizationInName } = await import('./model-host.js');
  const hosted = await lookUpHubFile({ repo: values.hf!, file, revision: values.revision }, env);
  const quantization = values.quantization ?? quantizationInName(file);
  return {
    sha256: hosted.sha256,
    bytes: hosted.bytes,
    name: file.split('/').pop()!,
    quantization: quantization ?? need(undefined, '--quantization (the file name does not say it)'),
    contextLength: values.context,
    url: hosted.url,
  };
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

  if (values.postgres !== undefined && values.db !== undefined)
    throw new NightjarError('NJ_USAGE', '--postgres and --db exclude each other');
  const store: GatewayStore =
    values.postgres !== undefined
      ? await openPostgresStore({ connectionString: values.postgres, now })
      : await openSqliteStore({ path: path.resolve(ctx.io.cwd, values.db ?? DEFAULT_DB), now });
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
      case 'strikes list':
      case 'strikes clear':
        return await strikesCommand(command, args, values, store, now, out);
      default:
        // catalog, key and releases
        return await catalogCommand(command, args, values, { store, now, cwd: ctx.io.cwd, env: ctx.io.env, out, need });
    }
  } finally {
    await store.dispose();
  }
}

/**
 * `strikes list` (every strike that still weighs, newest first, and each agent's score with the
 * default score options) and `strikes clear <agent-id>|--all`; resolves with the exit code.
 */
async function strikesCommand(
  command: 'strikes list' | 'strikes clear',
  args: readonly string[],
  values: AdminFlags,
  store: GatewayStore,
  now: number,
  out: (text: string) => void,
): Promise<number> {
  if (command === 'strikes clear') {
    const agentId = args[0];
    if (agentId === undefined && !values.all) throw new NightjarError('NJ_USAGE', 'strikes clear needs an agent id, or --all');
    if (agentId !== undefined && values.all) throw new NightjarError('NJ_USAGE', 'strikes clear takes an agent id or --all, not both');
    const n = await store.strikes.clear(agentId);
    out(
      `Cleared ${n} ${n === 1 ? 'strike' : 'strikes'}${agentId === undefined ? '' : ` of ${agentId}`}; ` +
        'a running gateway routes on the cleared score within catalogRefreshMs.\n',
    );
    return 0;
  }
  const score = { ...SCORE_DEFAULTS, halfLifeMs: HONESTY_DEFAULTS.strikeHalfLifeMs, minScore: HONESTY_DEFAULTS.minScore };
  const strikes = await store.strikes.list({ since: now - 10 * score.halfLifeMs, ...(values.agent ? { agentId: values.agent } : {}) });
  if (strikes.length === 0) {
    out('No strikes.\n');
    return 0;
  }
  const agents = [...new Set(strikes.map((s) => s.agentId))];
  const summary = [['AGENT', 'STRIKES', 'SCORE', 'ROUTED']];
  for (const a of agents) {
    const own = strikes.filter((s) => s.agentId === a);
    const v = scoreOf(own, now, score);
    summary.push([a, String(own.length), v.toFixed(2), v < score.minScore ? 'no (below the floor)' : 'yes, ranked lower']);
  }
  out(table(summary));
  out('\n');
  const rows = [['AGENT', 'TIME', 'REASON', 'JOB', 'DETAILS']];
  for (const s of strikes) {
    const details = Object.entries(s.details)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    rows.push([s.agentId, time(s.at), s.reason, s.jobId ?? '-', details]);
  }
  out(table(rows));
  return 0;
}

/** What {@link catalogCommand} needs of the admin command it runs for. */
interface CatalogCommandContext {
  store: GatewayStore;
  now: number;
  cwd: string;
  /** The environment (HF_ENDPOINT and HF_TOKEN for `catalog add --hf`). */
  env: Readonly<Record<string, string | undefined>>;
  out(text: string): void;
  need(v: string | undefined, flag: string): string;
}

/** `catalog add|list|remove`, `key show|rotate` and `releases add|list|remove`; resolves with the exit code. */
async function catalogCommand(
  command:
    'catalog add' | 'catalog list' | 'catalog remove' | 'key show' | 'key rotate' | 'releases add' | 'releases list' | 'releases remove',
  args: readonly string[],
  values: AdminFlags,
  c: CatalogCommandContext,
): Promise<number> {
  switch (command) {
    case 'catalog add': {
      const model = args[0]!;
      const file = await catalogFileOf(values, c.cwd, c.need, c.env);
      const added = await c.store.catalog.addFile(model, file, c.now);
      c.out(
        `${added ? 'Catalogued' : 'Updated'} ${file.name} (${file.sha256}, ${formatBytes(file.bytes)}) as ${model}: ` +
          `jobs for ${model} now go only to agents serving a file the catalog lists for it, at its price.\n`,
      );
      if (!(await c.store.accounts.getPrice(model))) {
        c.out(`${model} has no price yet; set one with: nightjar gateway prices set ${model} --prompt CREDITS --completion CREDITS\n`);
      }
      return 0;
    }
    case 'catalog list': {
      const rows = [['MODEL', 'SHA256', 'SIZE', 'QUANT', 'CONTEXT', 'FILE', 'ADDED']];
      for (const f of await c.store.catalog.listFiles())
        rows.push([f.model, f.sha256, formatBytes(f.bytes), f.quantization, String(f.contextLength), f.name, time(f.addedAt)]);
      c.out(table(rows));
      return 0;
    }
    case 'catalog remove': {
      const model = args[0]!;
      const n = await c.store.catalog.removeFile(model, values.sha256);
      if (n === 0)
        throw new NightjarError(
          'NJ_NOT_FOUND',
          `the catalog lists no ${values.sha256 === undefined ? 'file' : `file ${values.sha256}`} for ${model}`,
        );
      const left = (await c.store.catalog.listFiles()).filter((f) => f.model === model).length;
      c.out(
        `Removed ${n} ${n === 1 ? 'file' : 'files'} of ${model} from the catalog` +
          (left > 0 ? `; ${left} still ${left === 1 ? 'is' : 'are'} that model.\n` : '; agents serving it are no longer priced for it.\n'),
      );
      return 0;
    }
    case 'key show':
    case 'key rotate':
      return keyCommand(command, values, c);
    case 'releases add': {
      const [version, appHash] = [args[0]!, args[1]!];
      const added = await c.store.catalog.addRelease({ version, appHash }, c.now);
      c.out(`${added ? 'Listed' : 'Updated'} ${appHash} as release ${version}; the gateway serves it signed at GET /v1/releases.\n`);
      return 0;
    }
    case 'releases list': {
      const rows = [['VERSION', 'APP HASH', 'ADDED']];
      for (const r of await c.store.catalog.listReleases()) rows.push([r.version, r.appHash, time(r.addedAt)]);
      c.out(table(rows));
      return 0;
    }
    case 'releases remove': {
      const appHash = args[0]!;
      if ((await c.store.catalog.removeRelease(appHash)) === 0)
        throw new NightjarError('NJ_NOT_FOUND', `no release has app hash ${appHash}`);
      c.out(`${appHash} is no longer a release.\n`);
      return 0;
    }
  }
}

/** `key show` (the active key: id, public key, created, fingerprint; retired keys) and `key rotate`. */
async function keyCommand(command: 'key show' | 'key rotate', values: AdminFlags, c: CatalogCommandContext): Promise<number> {
  if (command === 'key rotate') {
    const graceMs = parseDuration(values.grace ?? '30d', '--grace');
    const { retired, active } = await c.store.catalog.rotateKey(c.now, graceMs);
    c.out(`Rotated: gateway key ${active.keyId} signs from now on (a running gateway moves to it within catalogRefreshMs).\n`);
    c.out(
      `Key ${retired.keyId} is retired and signs nothing more; its rotation statement lets clients that pinned it ` +
        `follow to the new key until ${time(c.now + graceMs)}.\n`,
    );
    c.out(`New fingerprint, for clients that are given the key:\n\n  ${gatewayKeyFingerprint(fromBase64Url(active.publicKey))}\n\n`);
    return 0;
  }
  await c.store.catalog.gatewayKey(c.now);
  const [active, ...retired] = await c.store.catalog.listKeys();
  c.out(`Gateway key ${active!.keyId} (Ed25519), created ${time(active!.createdAt)}.\n`);
  c.out('It signs the model catalog, every directory answer and the released-versions list.\n');
  c.out(`Public key (give it to clients: --gateway-key):\n\n  ${active!.publicKey}\n\n`);
  const fingerprint = gatewayKeyFingerprint(fromBase64Url(active!.publicKey));
  c.out(`Fingerprint (what a client compares; its first 16 digits are the id):\n\n  ${fingerprint}\n\n`);
  if (retired.length > 0) {
    const rows = [['RETIRED KEY', 'CREATED', 'RETIRED', 'FOLLOWABLE UNTIL']];
    for (const k of retired) rows.push([k.keyId, time(k.createdAt), time(k.retiredAt), time(k.graceUntil)]);
    c.out(table(rows));
  }
  return 0;
}
