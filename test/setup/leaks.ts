/**
 * Fails a test (and a test file) that leaves a socket, server, timer, child process or file
 * handle open. Resources are counted by type before and after; a test gets a short grace for
 * closes already under way.
 */

const WATCHED = new Set(['TCPServerWrap', 'TCPSocketWrap', 'Timeout', 'ProcessWrap', 'FileHandle', 'UDPWrap']);
const GRACE_MS = 2000;

export function snapshot(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) {
    if (WATCHED.has(type)) counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}

export function grown(before: Map<string, number>, after: Map<string, number>): string[] {
  const out: string[] = [];
  for (const [type, n] of after) {
    const was = before.get(type) ?? 0;
    if (n > was) out.push(`${n - was} × ${type}`);
  }
  return out;
}

export async function expectNoGrowth(before: Map<string, number>, where: string, graceMs = GRACE_MS): Promise<void> {
  const deadline = Date.now() + graceMs;
  let extra = grown(before, snapshot());
  while (extra.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    extra = grown(before, snapshot());
  }
  if (extra.length > 0) throw new Error(`${where} left handles open: ${extra.join(', ')}`);
}
