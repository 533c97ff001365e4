/**
 * What the agent says about the machine it runs on. Posture fields the agent cannot check here
 * are null; on a Mac the native addon fills them in.
 */
import os from 'node:os';
import type { Platform, Posture } from '../../shared/index.js';

/** The platform section of a bundle, read from the OS. */
export function detectPlatform(): Platform {
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  return {
    os: process.platform,
    osVersion: os.release().slice(0, 128),
    arch: process.arch,
    chip: cpu.trim().slice(0, 128) || 'unknown',
    memoryBytes: os.totalmem(),
  };
}

/** The posture of an agent without the native addon: nothing attested. */
export function unattestedPosture(appVersion: string): Posture {
  return { sip: null, hardenedRuntime: null, debuggerDenied: null, secureEnclave: false, appVersion, appHash: null };
}
