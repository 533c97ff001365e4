/**
 * `nightjar models offered`: the models a gateway offers clients right now.
 */
import type { CommandContext } from '../io.js';
import { table } from '../table.js';
import { commandClient, reportError, type ClientCommandIo } from './common.js';

/** Flags of `nightjar models offered`. */
export interface ModelsOfferedFlags {
  gateway?: string;
  apiKey?: string;
  apiKeyFile?: string;
  json?: boolean;
}

/** Runs `nightjar models offered`. */
export async function modelsOfferedCommand(values: ModelsOfferedFlags, ctx: CommandContext): Promise<number> {
  const io: ClientCommandIo = { ...ctx.io, signal: ctx.signal };
  try {
    const { client, gatewayUrl } = await commandClient({ ...values, pin: false }, io);
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
    io.stdout.write(table(rows));
    return 0;
  } catch (err) {
    return reportError(io, err);
  }
}
