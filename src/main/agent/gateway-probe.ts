/**
 * Can this machine reach the gateway, and do the clocks agree? Opens the agent WebSocket, says
 * hello with a throwaway identity's bundle, and reads the challenge (which carries the gateway's
 * time); then closes without authenticating. Used by `nightjar doctor`.
 */
import WebSocket from 'ws';
import {
  LIMITS,
  NightjarError,
  PROTOCOL_VERSION,
  createBundle,
  decodeMessage,
  gatewayFrameSchema,
  generateBoxKey,
  generateIdentity,
  withDefaults,
  type BundleModel,
  type Platform,
  type Posture,
} from '../../shared/index.js';

/** What {@link probeGateway} found. */
export interface GatewayProbe {
  /** The gateway's clock minus ours, estimated at the midpoint of the round trip (ms). */
  clockSkewMs: number;
  /** From opening the socket to the challenge (ms). */
  roundTripMs: number;
  gatewayId: string;
}

/** Options of {@link probeGateway}. */
export interface GatewayProbeOptions {
  /** The gateway's agent WebSocket URL. Required. */
  url: string;
  /** The model the throwaway bundle names. Required. */
  model: BundleModel;
  /** The platform the throwaway bundle names. Required. */
  platform: Platform;
  /** The posture the throwaway bundle names. Required. */
  posture: Posture;
  /** Gives up after this long. Defaults to 5000 ms. */
  timeoutMs?: number;
  /** Defaults to Date.now. */
  now?: () => number;
}

const PROBE_DEFAULTS: Required<Pick<GatewayProbeOptions, 'timeoutMs' | 'now'>> = { timeoutMs: 5000, now: Date.now };

/** Probes the gateway; throws NJ_GATEWAY_UNREACHABLE (or the gateway's rejection). */
export async function probeGateway(options: GatewayProbeOptions): Promise<GatewayProbe> {
  const { now, timeoutMs } = withDefaults(PROBE_DEFAULTS, options);
  const bundle = await createBundle({
    identity: await generateIdentity(),
    boxKey: await generateBoxKey(),
    models: [options.model],
    slots: 1,
    platform: options.platform,
    posture: options.posture,
    now: now(),
  });
  return new Promise<GatewayProbe>((resolve, reject) => {
    const socket = new WebSocket(options.url, {
      maxPayload: LIMITS.maxAgentFrameBytes,
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
    });
    let sentAt = 0;
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
      socket.close();
    };
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(new NightjarError('NJ_GATEWAY_UNREACHABLE', `The gateway at ${options.url} did not answer within ${timeoutMs} ms.`)),
        ),
      timeoutMs,
    );
    socket.on('open', () => {
      sentAt = now();
      socket.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'hello', bundle }));
    });
    socket.on('message', (data) => {
      let frame;
      try {
        frame = decodeMessage(gatewayFrameSchema, data as Buffer, LIMITS.maxAgentFrameBytes, 'gateway frame');
      } catch (err) {
        return finish(() => reject(err));
      }
      if (frame.type === 'challenge') {
        const at = now();
        return finish(() => resolve({ clockSkewMs: frame.time - (sentAt + at) / 2, roundTripMs: at - sentAt, gatewayId: frame.gatewayId }));
      }
      if (frame.type === 'reject' || frame.type === 'error') {
        return finish(() => reject(new NightjarError(frame.code, frame.message)));
      }
    });
    socket.on('error', (err) =>
      finish(() =>
        reject(
          new NightjarError('NJ_GATEWAY_UNREACHABLE', `The gateway at ${options.url} cannot be reached: ${err.message}`, { cause: err }),
        ),
      ),
    );
    socket.on('close', () =>
      finish(() =>
        reject(new NightjarError('NJ_GATEWAY_UNREACHABLE', `The gateway at ${options.url} closed the connection before its challenge.`)),
      ),
    );
  });
}
