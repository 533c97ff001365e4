/**
 * NATS for the cluster suites (127.0.0.1:4222 with JetStream; NIGHTJAR_TEST_NATS points elsewhere):
 * each test run gets a bucket and a subject prefix of its own, and removes the bucket's stream after.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { randomBytes, toHex } from '../../../src/shared/index.js';

/** The NATS server the suites use. */
export const NATS_URL = process.env.NIGHTJAR_TEST_NATS ?? 'nats://127.0.0.1:4222';

/** A bucket and a subject prefix no other run uses. */
export interface ScratchNats {
  readonly bucket: string;
  readonly prefix: string;
  /** Deletes the bucket (its stream). */
  drop(): Promise<void>;
}

export function scratchNats(): ScratchNats {
  const id = toHex(randomBytes(5));
  const bucket = `nj_test_${id}`;
  return {
    bucket,
    prefix: `njt${id}`,
    async drop() {
      const nc = await connect({ servers: NATS_URL });
      try {
        const jsm = await jetstreamManager(nc);
        await jsm.streams.delete(`KV_${bucket}`).catch(() => false);
      } finally {
        await nc.close();
      }
    },
  };
}
