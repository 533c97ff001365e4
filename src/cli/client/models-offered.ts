/**
 * `nightjar models offered`: the models a gateway offers clients right now.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_GATEWAY, commandClient, reportError, type ClientCommandIo } from './common.js';

/** Usage text of `nightjar models offered`. */
export const MODELS_OFFERED_USAGE = `Usage: nightjar models offered [options]

Lists the models a gateway offers clients, with how many agents serve each and their free slots.
Synthetic development models (random weights) are marked; clients refuse them unless allowed.

Options:
  --gateway URL        gateway address (env NIGHTJAR_GATEWAY; default ${DEFAULT_GATEWAY})
  --api-key KEY        client API key for the gateway (env NIGHTJAR_API_KEY)
  --json               print the list as JSON
  -h, --help           show this help
`;

/** Runs `nightjar models offered` (argv after `offered`; a leading `offered` is skipped). */
export async function modelsOfferedCommand(argv: string[], io: ClientCommandIo): Promise<number> {
  const args = argv[0] === 'offered' ? argv.slice(1) : argv;
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        gateway: { type: 'string' },
        'api-key': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    io.stderr.write(`error NJ_USAGE: ${(err as Error).message}\n\n${MODELS_OFFERED_USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(MODELS_OFFERED_USAGE);
    return 0;
  }
  try {
    const { client, gatewayUrl } = commandClient({ ...values, 'no-pin': true }, io);
    const models = await client.models(io.signal);
    if (values.json) {
      io.stdout.write(JSON.stringify(models, null, 2) + '\n');
      return 0;
    }
    if (models.length === 0) {
      io.stdout.write(`${gatewayUrl} offers no models right now (no agent is connected).\n`);
      return 0;
    }
    const rows = [
      ['MODEL', 'AGENTS', 'FREE SLOTS', ''],
      ...models.map((m) => [m.id, String(m.agents), String(m.freeSlots), m.synthetic ? 'synthetic (random weights)' : '']),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows)
      io.stdout.write(
        r
          .map((cell, i) => cell.padEnd(widths[i]!))
          .join('  ')
          .trimEnd() + '\n',
      );
    return 0;
  } catch (err) {
    return reportError(io, err);
  }
}
