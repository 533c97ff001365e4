/**
 * A local HTTP server that serves one file the way a model host does (Range, If-Range, a strong
 * ETag) and misbehaves on request: drops the connection mid-file, flips a byte, ignores ranges,
 * throttles so a download can be interrupted half-way.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ModelServerOptions {
  /** Drop the connection after this many body bytes, for each of the first `dropTimes` requests. */
  dropAfterBytes?: number;
  dropTimes?: number;
  /** Flip the byte at this offset of the file on the wire. */
  corruptAt?: number;
  /** Answer 200 with the whole file even when a range is asked for. */
  ignoreRange?: boolean;
  /** Send the body in chunks of this size, waiting `intervalMs` between them. */
  throttle?: { chunkBytes: number; intervalMs: number };
  /** Answer every request with this status and no body. */
  status?: number;
  /** ETag of the file. Defaults to "v1". */
  etag?: string;
}

export interface RecordedRequest {
  range: string | null;
  ifRange: string | null;
  status: number;
}

export interface ModelServer {
  readonly url: string;
  readonly requests: RecordedRequest[];
  options: ModelServerOptions;
  close(): Promise<void>;
}

export async function startModelServer(file: Buffer, initial: ModelServerOptions = {}): Promise<ModelServer> {
  const requests: RecordedRequest[] = [];
  let drops = 0;
  const timers = new Set<NodeJS.Timeout>();
  const state: { options: ModelServerOptions } = { options: initial };
  const server = http.createServer((req, res) => {
    const o = state.options;
    const etag = o.etag ?? '"v1"';
    const range = req.headers.range ?? null;
    const ifRange = (req.headers['if-range'] as string | undefined) ?? null;
    let status = 200;
    let start = 0;
    if (o.status) status = o.status;
    else if (range && !o.ignoreRange && (ifRange === null || ifRange === etag)) {
      const m = /^bytes=(\d+)-$/.exec(range);
      start = m ? Number(m[1]) : 0;
      status = start >= file.length ? 416 : 206;
    }
    requests.push({ range, ifRange, status });
    if (status !== 200 && status !== 206) {
      res.writeHead(status, status === 416 ? { 'content-range': `bytes */${file.length}` } : {});
      res.end();
      return;
    }
    const body = Buffer.from(file.subarray(start));
    if (o.corruptAt !== undefined && o.corruptAt >= start) body[o.corruptAt - start]! ^= 0xff;
    const headers: http.OutgoingHttpHeaders = {
      'content-length': body.length,
      etag,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    if (status === 206) headers['content-range'] = `bytes ${start}-${file.length - 1}/${file.length}`;
    res.writeHead(status, headers);
    const dropAt = o.dropAfterBytes !== undefined && drops < (o.dropTimes ?? 1) ? o.dropAfterBytes : null;
    if (dropAt !== null) drops++;
    const limit = dropAt === null ? body.length : Math.min(body.length, dropAt);
    // Before a drop, send in small paced chunks, so the client has taken the bytes in when the
    // connection goes (a stream that errors drops what its reader has not read yet).
    const throttle = o.throttle ?? (dropAt === null ? undefined : { chunkBytes: 8192, intervalMs: 5 });
    const chunk = throttle?.chunkBytes ?? 64 * 1024;
    let sent = 0;
    const pump = (): void => {
      if (res.destroyed) return;
      if (sent >= limit) {
        if (dropAt === null) return void res.end();
        // Let the client take in what was sent, then cut the connection mid-body.
        const t = setTimeout(() => {
          timers.delete(t);
          res.socket?.destroy();
        }, 50);
        timers.add(t);
        return;
      }
      const part = body.subarray(sent, Math.min(limit, sent + chunk));
      sent += part.length;
      res.write(part);
      if (throttle) {
        const t = setTimeout(() => {
          timers.delete(t);
          pump();
        }, throttle.intervalMs);
        timers.add(t);
      } else setImmediate(pump);
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/model.gguf`,
    requests,
    get options() {
      return state.options;
    },
    set options(o: ModelServerOptions) {
      state.options = o;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
