/**
 * A local HTTP server for one file, the way a model host serves it, that stops half-way until
 * the test lets it go on: the first part is sent in small paced chunks (so the agent reports
 * progress while it arrives), then the response waits for release(). A test can watch a download
 * in progress without racing it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GatedFileServer {
  /** URL of the file. */
  readonly url: string;
  /** Lets every waiting response send the rest. */
  release(): void;
  close(): Promise<void>;
}

export async function startGatedFileServer(
  file: Buffer,
  options: { holdAt?: number; chunkBytes?: number; intervalMs?: number } = {},
): Promise<GatedFileServer> {
  const holdAt = options.holdAt ?? Math.floor(file.length / 2);
  const chunk = options.chunkBytes ?? 8192;
  let released = false;
  const waiting = new Set<() => void>();
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Math.min(Number(m[1]), file.length) : 0;
    const headers: http.OutgoingHttpHeaders = {
      'content-length': file.length - start,
      etag: '"gated-v1"',
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    if (m) headers['content-range'] = `bytes ${start}-${file.length - 1}/${file.length}`;
    res.writeHead(m ? 206 : 200, headers);
    let sent = start;
    const pump = (): void => {
      if (res.destroyed) return;
      if (sent >= file.length) return void res.end();
      if (sent >= holdAt && !released) {
        waiting.add(pump);
        return;
      }
      const end = Math.min(file.length, sent + chunk, released ? file.length : Math.max(holdAt, sent + 1));
      res.write(file.subarray(sent, end));
      sent = end;
      const t = setTimeout(
        () => {
          timers.delete(t);
          pump();
        },
        released ? 0 : (options.intervalMs ?? 25),
      );
      timers.add(t);
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/tiny.gguf`,
    release() {
      released = true;
      for (const w of [...waiting]) {
        waiting.delete(w);
        w();
      }
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
