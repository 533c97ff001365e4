/**
 * The `nightjar` command: dispatches to the agent, gateway and client commands. This is the
 * composition root, so it may import every layer's front door.
 */
import { NightjarError } from '../shared/index.js';
import { ADMIN_COMMANDS } from './gateway/admin-commands.js';
import { GATEWAY_USAGE, gatewayCommand } from './gateway/gateway-command.js';
import { chatCommand } from './client/chat.js';
import { clientReceiptsCommand } from './client/client-receipts.js';
import { modelsOfferedCommand } from './client/models-offered.js';
import { proxyCommand } from './client/proxy-command.js';
import { AGENT_VERSION } from '../main/agent/index.js';
import { logLevel, terminalLogger, untilAborted, type CliIo } from './io.js';
import { earningsCommand, manualCommand, receiptsCommand, statusCommand } from './agent/agent-commands.js';
import { dashboardCommand } from './agent/dashboard.js';
import { doctorCommand } from './agent/doctor.js';
import { keysCommand } from './agent/keys.js';
import { modelsCommand } from './agent/models.js';
import { serveCommand } from './agent/serve.js';
import { upCommand } from './agent/up.js';
import { chatPageSites } from './web-pages.js';

/** Top-level usage. */
export const USAGE = `Usage: nightjar <command> [options]

Commands:
  up          run a local network: gateway + agent on a synthetic model (what npm start runs)
  serve       run the provider agent: serve the selected model while this machine is idle
  status      what the running agent is doing, and why
  dashboard   open the running agent's dashboard in your browser
  pause       stop serving until resumed (--for 2h to pause for a while)
  resume      back to the policy
  serve-now   serve now, whatever idle time and schedule say
  models      list, pull, rm, select, synth (this machine); offered (what a gateway offers)
  earnings    tokens (and credits, where priced) per day and model, from the receipt log
  receipts    the receipts this agent signed (--client: those this machine verified as a client)
  keys        the agent's identity key
  doctor      check everything the agent needs, and say what to fix
  gateway     run a gateway
  chat        send an end-to-end encrypted prompt and stream the reply (or talk, interactively)
  proxy       a local OpenAI- and Anthropic-compatible endpoint that encrypts end to end
  version     print the version

Run nightjar <command> --help for a command's options.
`;

/** Runs the command line `argv`; resolves with the exit code. Never throws. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'up':
        return await upCommand(rest, io, (level, name) => terminalLogger(io, { level: logLevel(level), name }));
      case 'serve':
        return await serveCommand(rest, io, (level) => terminalLogger(io, { level: logLevel(level) }));
      case 'gateway':
        return await gatewayCommand(rest, {
          stdout: io.stdout,
          logger: ({ level, json }) => terminalLogger(io, { level: logLevel(level), json }),
          stopped: untilAborted(io.signal),
          sites: (ADMIN_COMMANDS as readonly string[]).includes(rest[0] ?? '')
            ? []
            : await chatPageSites(terminalLogger(io, { level: 'warn' })),
        });
      case 'chat':
        return await chatCommand(rest, io);
      case 'proxy':
        return await proxyCommand(rest, { ...io, logger: (level) => terminalLogger(io, { level: logLevel(level), name: 'proxy' }) });
      case 'models':
        // `models offered` asks a gateway (client side); the rest are this machine's model files.
        return rest[0] === 'offered' ? await modelsOfferedCommand(rest, io) : await modelsCommand(rest, io);
      case 'status':
        return await statusCommand(rest, io);
      case 'dashboard':
        return await dashboardCommand(rest, io);
      case 'pause':
        return await manualCommand('paused', rest, io);
      case 'resume':
        return await manualCommand('auto', rest, io);
      case 'serve-now':
        return await manualCommand('serve-now', rest, io);
      case 'earnings':
        return await earningsCommand(rest, io);
      case 'receipts':
        // `receipts --client` lists what this machine verified as a client; otherwise, what the agent signed.
        return rest.includes('--client') ? await clientReceiptsCommand(rest, io) : await receiptsCommand(rest, io);
      case 'keys':
        return await keysCommand(rest, io);
      case 'doctor':
        return await doctorCommand(rest, io);
      case 'version':
      case '--version':
        io.stdout.write(`nightjar ${AGENT_VERSION}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        io.stderr.write(`error NJ_USAGE: unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    const e =
      err instanceof NightjarError
        ? err
        : (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
          ? new NightjarError('NJ_USAGE', (err as Error).message)
          : new NightjarError('NJ_INTERNAL', (err as Error).message ?? String(err));
    io.stderr.write(`error ${e.code}: ${e.message}\n  ${e.hint}\n`);
    if (command === 'gateway' && e.code === 'NJ_USAGE') io.stderr.write(`\n${GATEWAY_USAGE}`);
    return e.code === 'NJ_USAGE' ? 2 : 1;
  }
}
