/**
 * What the proxy's tool tests share, whichever API's official package drives them: a real gateway,
 * the real engine on the synthetic tiny model and a proxy in front of them (registered as
 * beforeAll/afterAll hooks), and a tool schema with a hand-written check. The weights are random,
 * so only the grammar at the agent makes a call's arguments follow the schema.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { CompatProxy, NightjarClient } from '../../../src/client/index.js';
import { loadEngine, sha256File, writeSyntheticModel, type InferenceEngine, type ServedModel } from '../../../src/main/agent/index.js';
import { perTestFetch } from '../../helpers/http-client.js';
import { startNet, type TestNet } from './net.js';

/** The proxy and the model it serves, filled in by the hooks {@link toolsProxy} registers. */
export interface ToolsProxy {
  proxy: CompatProxy;
  model: ServedModel;
}

/** Registers hooks that start a gateway, an agent on the synthetic tiny model and a proxy (and stop them). */
export function toolsProxy(): ToolsProxy {
  const state = {} as ToolsProxy;
  let dir: string;
  let engine: InferenceEngine | undefined;
  let net: TestNet | undefined;
  const upstream = perTestFetch('node');
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-proxy-tools-'));
    const file = await writeSyntheticModel({ path: path.join(dir, 'synthetic-tiny.gguf'), shape: 'tiny' });
    engine = await loadEngine({ modelPath: file.path, threads: 1, slots: 2 });
    state.model = { id: file.modelId, sha256: await sha256File(file.path), synthetic: true, contextLength: engine.model.contextLength };
    net = await startNet();
    await net.addAgent(engine, { model: state.model });
    const client = new NightjarClient({
      gatewayUrl: net.gateway.url,
      trust: { allowSynthetic: true },
      fetch: upstream.fetch,
      retry: { modelUnknownMs: 0 },
    });
    state.proxy = await CompatProxy.start({ client, port: 0, listSynthetic: true });
  }, 60_000);
  afterAll(async () => {
    await state.proxy?.dispose();
    await net?.close();
    await engine?.dispose();
    await rm(dir, { recursive: true, force: true });
  });
  return state;
}

/** Bounded fields only: a random model under an unbounded string rule rarely closes the string. */
export const WEATHER_PARAMS = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 6 },
    days: { type: 'integer' },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
  },
  required: ['city', 'days', 'unit'],
  additionalProperties: false,
} as const;

/** A second tool's parameters. */
export const TIME_PARAMS = { type: 'object', properties: { utc: { type: 'boolean' } }, required: ['utc'] } as const;

/** Checks `value` against WEATHER_PARAMS by hand (no JSON-schema validator in the tree): keys, types, bounds. */
export function validWeather(value: unknown): void {
  expect(typeof value).toBe('object');
  const a = value as Record<string, unknown>;
  expect(Object.keys(a).sort()).toEqual(['city', 'days', 'unit']);
  expect(typeof a['city']).toBe('string');
  expect((a['city'] as string).length).toBeLessThanOrEqual(6);
  expect(Number.isInteger(a['days'])).toBe(true);
  expect(['celsius', 'fahrenheit']).toContain(a['unit']);
}

/** Checks a call of either tool: get_weather's arguments against WEATHER_PARAMS, get_time's against TIME_PARAMS. */
export function validCall(name: string, args: unknown): void {
  if (name === 'get_weather') return validWeather(args);
  expect(name).toBe('get_time');
  expect(typeof (args as Record<string, unknown>)['utc']).toBe('boolean');
}
