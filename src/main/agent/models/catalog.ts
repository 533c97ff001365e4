/**
 * The model catalog: what an owner can download. A catalog is a JSON file
 * `{ "v": 1, "models": [CatalogEntry…] }` (schema in src/shared/control/contract.ts); the agent
 * has a small built-in one and merges the file named by `catalogFile` in config.json over it.
 *
 * About the built-in entries: they point at public GGUF files on Hugging Face, but nothing here
 * could reach the network to check them, so none is `verified`, and none carries a sha256 or a
 * size. Nightjar never loads a file whose hash it has not checked, so pulling one of these needs
 * the file's sha256 from its Hugging Face page (the file view lists "SHA256"):
 * `nightjar models pull llama-3.2-1b-instruct-q4_k_m --sha256 <hex>`. The hash is checked while
 * the file streams in; a file that does not match is deleted, never installed. `minMemoryBytes`
 * are Nightjar's sizing advice (weights plus room for a 4096-token context per slot), not
 * measurements.
 */
import { readFile } from 'node:fs/promises';
import { NightjarError, catalogSchema, describeIssues, type Catalog, type CatalogEntry } from '../../../shared/index.js';

const GiB = 1024 ** 3;
const hf = (repo: string, file: string): string => `https://huggingface.co/${repo}/resolve/main/${file}`;

/** The built-in catalog. Unverified: see the module comment. */
export const BUILT_IN_CATALOG: Catalog = {
  v: 1,
  models: [
    {
      id: 'qwen2.5-0.5b-instruct-q4_k_m',
      name: 'Qwen2.5 0.5B Instruct (Q4_K_M)',
      url: hf('Qwen/Qwen2.5-0.5B-Instruct-GGUF', 'qwen2.5-0.5b-instruct-q4_k_m.gguf'),
      sha256: null,
      bytes: null,
      quantization: 'Q4_K_M',
      contextLength: 32768,
      minMemoryBytes: 2 * GiB,
      license: 'Apache-2.0',
      verified: false,
    },
    {
      id: 'qwen2.5-1.5b-instruct-q4_k_m',
      name: 'Qwen2.5 1.5B Instruct (Q4_K_M)',
      url: hf('Qwen/Qwen2.5-1.5B-Instruct-GGUF', 'qwen2.5-1.5b-instruct-q4_k_m.gguf'),
      sha256: null,
      bytes: null,
      quantization: 'Q4_K_M',
      contextLength: 32768,
      minMemoryBytes: 4 * GiB,
      license: 'Apache-2.0',
      verified: false,
    },
    {
      id: 'qwen2.5-1.5b-instruct-q8_0',
      name: 'Qwen2.5 1.5B Instruct (Q8_0)',
      url: hf('Qwen/Qwen2.5-1.5B-Instruct-GGUF', 'qwen2.5-1.5b-instruct-q8_0.gguf'),
      sha256: null,
      bytes: null,
      quantization: 'Q8_0',
      contextLength: 32768,
      minMemoryBytes: 6 * GiB,
      license: 'Apache-2.0',
      verified: false,
    },
    {
      id: 'llama-3.2-1b-instruct-q4_k_m',
      name: 'Llama 3.2 1B Instruct (Q4_K_M)',
      url: hf('bartowski/Llama-3.2-1B-Instruct-GGUF', 'Llama-3.2-1B-Instruct-Q4_K_M.gguf'),
      sha256: null,
      bytes: null,
      quantization: 'Q4_K_M',
      contextLength: 131072,
      minMemoryBytes: 4 * GiB,
      license: 'Llama 3.2 Community License',
      verified: false,
    },
    {
      id: 'llama-3.2-1b-instruct-q8_0',
      name: 'Llama 3.2 1B Instruct (Q8_0)',
      url: hf('bartowski/Llama-3.2-1B-Instruct-GGUF', 'Llama-3.2-1B-Instruct-Q8_0.gguf'),
      sha256: null,
      bytes: null,
      quantization: 'Q8_0',
      contextLength: 131072,
      minMemoryBytes: 6 * GiB,
      license: 'Llama 3.2 Community License',
      verified: false,
    },
    {
      id: 'llama-3.2-3b-instruct-q4_k_m',
      name: 'Llama 3.2 3B Instruct (Q4_K_M)',
      url: hf('bartowski/Llama-3.2-3B-Instruct-GGUF', 'Llama-3.2-3B-Instruct-Q4_K_M.gguf'),
      sha256: null,
      bytes: null,
      quantization: 'Q4_K_M',
      contextLength: 131072,
      minMemoryBytes: 8 * GiB,
      license: 'Llama 3.2 Community License',
      verified: false,
    },
  ],
};

/** Validates a parsed catalog; `where` names it in errors. */
export function parseCatalog(value: unknown, where: string): Catalog {
  const parsed = catalogSchema.safeParse(value);
  if (!parsed.success) throw new NightjarError('NJ_CONFIG_INVALID', `${where}: ${describeIssues(parsed.error)}`);
  const seen = new Set<string>();
  for (const m of parsed.data.models) {
    if (seen.has(m.id)) throw new NightjarError('NJ_CONFIG_INVALID', `${where}: model id ${m.id} appears twice`);
    seen.add(m.id);
    if (m.verified && (m.sha256 === null || m.bytes === null)) {
      throw new NightjarError('NJ_CONFIG_INVALID', `${where}: ${m.id} is marked verified but has no sha256 or bytes`);
    }
  }
  return parsed.data;
}

/** Reads a catalog file. */
export async function loadCatalogFile(file: string): Promise<Catalog> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(file, 'utf8'));
  } catch (cause) {
    throw new NightjarError('NJ_CONFIG_INVALID', `The catalog ${file} cannot be read as JSON: ${(cause as Error).message}`, { cause });
  }
  return parseCatalog(value, file);
}

/** The built-in catalog with `extra`'s entries added (an entry with a built-in id replaces it). */
export function mergeCatalogs(base: Catalog, extra: Catalog | null): CatalogEntry[] {
  const byId = new Map(base.models.map((m) => [m.id, m]));
  for (const m of extra?.models ?? []) byId.set(m.id, m);
  return [...byId.values()];
}
