/**
 * Measures reconnect storms: a fleet of real agents on one real gateway (in this process, on
 * loopback), the gateway stopped and started again on the same port after an outage, and when each
 * agent is back. Prints, per run, how long the fleet took (median, 90th percentile, last) and the
 * most handshakes within any 100 ms, as a share of the fleet. docs/agent.md quotes its figures.
 *
 *   npx tsx tools/measure/reconnect-storm.ts [--agents 200,500] [--outage 2000,6000,20000] [--runs 1]
 *       [--initial-ms 500] [--max-ms 5000]   (the agents' backoff; the link's defaults otherwise)
 *
 * Loopback puts every agent behind one address, so the gateway's per-address caps are lifted: its
 * connection cap always (256 by default), its handshake cap to its overall one (128) unless
 * `--per-ip-cap` keeps it at its default (16). A real fleet connects from many addresses.
 */
import { parseArgs } from 'node:util';
import { percentile, reconnectStorm } from '../../test/helpers/reconnect-storm.js';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '200' },
    outage: { type: 'string', default: '6000' },
    runs: { type: 'string', default: '1' },
    'per-ip-cap': { type: 'boolean', default: false },
    'initial-ms': { type: 'string' },
    'max-ms': { type: 'string' },
  },
});
const list = (text: string): number[] => text.split(',').map(Number);
const optional = (text: string | undefined): number | undefined => (text === undefined ? undefined : Number(text));
const backoff = { initialMs: optional(values['initial-ms']), maxMs: optional(values['max-ms']) };

console.log('agents  outage   median     p90    last   peak/100ms  refused');
for (const agents of list(values.agents)) {
  for (const outageMs of list(values.outage)) {
    for (let run = 0; run < Number(values.runs); run++) {
      const f = await reconnectStorm({
        agents,
        outageMs,
        backoff,
        gateway: { maxAgentConnectionsPerIp: 1_000_000, maxPendingHandshakesPerIp: values['per-ip-cap'] ? undefined : 128 },
        timeoutMs: 120_000,
      });
      const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`.padStart(7);
      const peak = `${f.peakPer100Ms} (${((100 * f.peakPer100Ms) / agents).toFixed(1)} %)`;
      console.log(
        `${String(agents).padStart(6)}  ${s(outageMs)}  ${s(percentile(f.servingMs, 0.5))} ${s(percentile(f.servingMs, 0.9))}` +
          ` ${s(f.servingMs.at(-1)!)}   ${peak.padStart(10)}  ${String(f.refused).padStart(7)}`,
      );
    }
  }
}
