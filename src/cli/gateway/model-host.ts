/**
 * `nightjar gateway catalog add MODEL --hf REPO --file-name FILE`: a model file's size and sha256
 * from its host's API instead of typed by hand. The host is Hugging Face's Hub API (or any server
 * answering in its shape, at HF_ENDPOINT, the variable Hugging Face's own tools read): the tree of
 * a repository at a revision lists each file with its size and, for a file kept in LFS (every GGUF
 * is), `lfs.oid`, the sha256 of its content. The download URL is the file's `resolve` address.
 * HF_TOKEN, when set, is sent as a bearer token (a gated or private repository).
 */
import { NightjarError } from '../../shared/index.js';

/** The Hub the lookups go to unless HF_ENDPOINT names another. */
export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';

/** The largest tree answer read. */
const MAX_TREE_BYTES = 8 * 1024 * 1024;

/** How long a lookup may take. */
const LOOKUP_TIMEOUT_MS = 20_000;

/** What the host says of one file. */
export interface HostedFile {
  sha256: string;
  bytes: number;
  /** Where it downloads from. */
  url: string;
}

/** Where a file is on the Hub. */
export interface HubFileRef {
  /** `owner/name`. */
  repo: string;
  /** Path inside the repository, like `Llama-3.2-1B-Instruct-Q4_K_M.gguf` or `q4/model.gguf`. */
  file: string;
  /** Branch, tag or commit. Defaults to `main`. */
  revision?: string;
}

const REPO = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const FILE = /^(?!.*\.\.)[A-Za-z0-9._\-/]{1,255}$/;
const REVISION = /^[A-Za-z0-9._\-/]{1,128}$/;

/** Looks a file up in its repository's tree; throws NJ_USAGE / NJ_NOT_FOUND / NJ_DOWNLOAD_FAILED with what to do. */
export async function lookUpHubFile(
  ref: HubFileRef,
  env: Readonly<Record<string, string | undefined>>,
  fetchImpl: typeof fetch = fetch,
): Promise<HostedFile> {
  const revision = ref.revision ?? 'main';
  if (!REPO.test(ref.repo)) throw new NightjarError('NJ_USAGE', `--hf takes a repository as owner/name, not "${ref.repo}"`);
  if (!FILE.test(ref.file)) throw new NightjarError('NJ_USAGE', `--file-name "${ref.file}" is not a file path in a repository`);
  if (!REVISION.test(revision)) throw new NightjarError('NJ_USAGE', `--revision "${revision}" is not a branch, tag or commit`);
  const endpoint = (env.HF_ENDPOINT || DEFAULT_HF_ENDPOINT).replace(/\/+$/, '');
  if (!/^https?:\/\//.test(endpoint)) throw new NightjarError('NJ_USAGE', `HF_ENDPOINT must be an http(s) address, not "${endpoint}"`);
  const dir = ref.file.includes('/') ? ref.file.slice(0, ref.file.lastIndexOf('/')) : '';
  const rev = encodeURIComponent(revision);
  const tree = `${endpoint}/api/models/${ref.repo}/tree/${rev}${dir ? `/${dir}` : ''}`;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (env.HF_TOKEN) headers.authorization = `Bearer ${env.HF_TOKEN}`;
  let response: Response;
  try {
    response = await fetchImpl(tree, { headers, signal: AbortSignal.timeout(LOOKUP_TIMEOUT_MS) });
  } catch (cause) {
    throw new NightjarError('NJ_DOWNLOAD_FAILED', `cannot reach ${endpoint} to look up ${ref.repo}: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (response.status === 401 || response.status === 403) {
    throw new NightjarError(
      'NJ_UNAUTHORIZED',
      `${endpoint} refused the lookup of ${ref.repo} (HTTP ${response.status}): ` +
        'a gated or private repository needs HF_TOKEN set to a token that may read it',
    );
  }
  if (response.status === 404) {
    throw new NightjarError(
      'NJ_NOT_FOUND',
      `${endpoint} has no repository ${ref.repo} at revision ${revision}${dir ? ` with a folder ${dir}` : ''}`,
    );
  }
  if (!response.ok)
    throw new NightjarError('NJ_DOWNLOAD_FAILED', `${endpoint} answered HTTP ${response.status} to the lookup of ${ref.repo}`);
  const text = await readCapped(response);
  let entries: unknown;
  try {
    entries = JSON.parse(text);
  } catch {
    throw new NightjarError('NJ_DOWNLOAD_FAILED', `${endpoint}'s answer for ${ref.repo} is not JSON`);
  }
  if (!Array.isArray(entries)) throw new NightjarError('NJ_DOWNLOAD_FAILED', `${endpoint}'s answer for ${ref.repo} is not a file list`);
  const entry = entries.find(
    (e): e is Record<string, unknown> => typeof e === 'object' && e !== null && (e as { path?: unknown }).path === ref.file,
  );
  if (!entry) {
    const ggufs = entries
      .map((e) => (typeof e === 'object' && e !== null ? (e as { path?: unknown }).path : null))
      .filter((p): p is string => typeof p === 'string' && p.endsWith('.gguf'))
      .slice(0, 8);
    throw new NightjarError(
      'NJ_NOT_FOUND',
      `${ref.repo} has no file ${ref.file} at ${revision}` + (ggufs.length ? `; its GGUF files: ${ggufs.join(', ')}` : ''),
    );
  }
  const lfs = entry.lfs as { oid?: unknown; size?: unknown } | undefined;
  const sha256 = typeof lfs?.oid === 'string' ? lfs.oid.toLowerCase() : null;
  const bytes = typeof lfs?.size === 'number' ? lfs.size : null;
  if (sha256 === null || !/^[0-9a-f]{64}$/.test(sha256) || bytes === null || !Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new NightjarError(
      'NJ_DOWNLOAD_FAILED',
      `${ref.repo}/${ref.file} is not stored in LFS, so ${endpoint} gives no sha256 for it; download it and use --from FILE`,
    );
  }
  const file = ref.file.split('/').map(encodeURIComponent).join('/');
  return { sha256, bytes, url: `${endpoint}/${ref.repo}/resolve/${rev}/${file}` };
}

async function readCapped(response: Response): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > MAX_TREE_BYTES) throw new NightjarError('NJ_DOWNLOAD_FAILED', `the file list is larger than ${MAX_TREE_BYTES} bytes`);
  const reader = response.body?.getReader();
  if (!reader) return '';
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > MAX_TREE_BYTES) {
      await reader.cancel();
      throw new NightjarError('NJ_DOWNLOAD_FAILED', `the file list is larger than ${MAX_TREE_BYTES} bytes`);
    }
    parts.push(value);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** The quantization a GGUF file's name says (`…-Q4_K_M.gguf` → Q4_K_M), or null. */
export function quantizationInName(file: string): string | null {
  const m = /(?:^|[-_.])((?:IQ|Q)\d(?:_[A-Z0-9]+)*|F16|BF16|F32)(?=[-_.]|\.gguf$)/i.exec(file.split('/').pop() ?? '');
  return m ? m[1]!.toUpperCase() : null;
}
