/**
 * Builds the browser chat page into a folder the gateway serves as a static site
 * (`Gateway.start({ sites: [{ prefix: '/chat/', dir }] })`): index.html, chat.css and chat.js,
 * the page's TypeScript (src/client/web) bundled with the SDK by esbuild. No inline script or
 * style anywhere, so the page runs under the gateway's strict Content Security Policy.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as EsbuildModule from 'esbuild';
import { NightjarError, withDefaults } from '../shared/index.js';

type Esbuild = typeof EsbuildModule;

/** Options of {@link buildChatPage}. */
export interface BuildChatPageOptions {
  /** Minify chat.js. Defaults to true. */
  minify?: boolean;
  /** Write chat.js.map next to it. Defaults to false. */
  sourcemap?: boolean;
}

/** The defaults of {@link BuildChatPageOptions}. */
export const CHAT_PAGE_DEFAULTS: Readonly<Required<BuildChatPageOptions>> = { minify: true, sourcemap: false };

/** What {@link buildChatPage} wrote. */
export interface BuiltChatPage {
  /** The folder. */
  dir: string;
  /** File names written, relative to `dir`. */
  files: string[];
}

/** The page. Scripts and styles come from files of this origin only. */
export const CHAT_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Nightjar chat</title>
<link rel="icon" href="favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="chat.css">
<script type="module" src="chat.js"></script>
</head>
<body>
<header>
  <div class="brand"><h1>Nightjar</h1><span>end-to-end encrypted chat</span></div>
  <form id="settings" class="settings">
    <label>Model <select id="model" aria-label="Model"></select></label>
    <label class="check"><input type="checkbox" id="synthetic"> Show synthetic models</label>
    <label>API key <input type="password" id="api-key" autocomplete="off" spellcheck="false" placeholder="optional"></label>
    <button type="button" id="new-chat">New chat</button>
  </form>
</header>
<main id="conversation" aria-live="polite"></main>
<form id="composer" class="composer">
  <textarea id="prompt" rows="3" placeholder="Message (Enter sends, Shift+Enter for a new line)" aria-label="Message"></textarea>
  <button type="submit" id="send">Send</button>
  <button type="button" id="stop" hidden>Stop</button>
</form>
<footer id="status" role="status"></footer>
</body>
</html>
`;

// In the templates below, a backslash that ends a line continues it: the text has no line break there.
/** The page's style sheet. */
export const CHAT_PAGE_CSS = `:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #fafafa; --muted: #6e6e73; --line: #d2d2d7;
  --user: #e8f0fe; --bot: #ffffff; --accent: #3a5ccc; --bad: #b3261e; font: 15px/1.45 system-ui, sans-serif; }
@media (prefers-color-scheme: dark) { :root { --fg: #f5f5f7; --bg: #161617; --muted: #a1a1a6; --line: #3a3a3c;
  --user: #243355; --bot: #1f1f21; --accent: #8ea6ff; --bad: #ff8a80; } }
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: flex; flex-direction: column; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: center; justify-content: space-between;
  padding: 12px 20px; border-bottom: 1px solid var(--line); }
.brand { display: flex; align-items: baseline; gap: 10px; }
.brand h1 { margin: 0; font-size: 20px; }
.brand span { color: var(--muted); font-size: 13px; }
.settings { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; }
.settings label { display: flex; gap: 6px; align-items: center; font-size: 13px; color: var(--muted); }
select, input, textarea, button { font: inherit; color: inherit; }
select, input[type=password], textarea { background: var(--bot); border: 1px solid var(--line); border-radius: 6px; padding: 5px 8px; }
button { background: var(--accent); color: #fff; border: 0; border-radius: 6px; padding: 6px 14px; cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
#new-chat { background: transparent; color: var(--accent); border: 1px solid var(--line); }
main { flex: 1; overflow-y: auto; padding: 20px; display: flex; flex-direction: column; \
gap: 14px; max-width: 860px; width: 100%; margin: 0 auto; }
.message { border: 1px solid var(--line); border-radius: 10px; padding: 10px 14px; max-width: 88%; }
.message.user { align-self: flex-end; background: var(--user); }
.message.assistant { align-self: flex-start; background: var(--bot); }
.message .body { white-space: pre-wrap; overflow-wrap: anywhere; }
.message .meta { margin-top: 6px; font-size: 12px; color: var(--muted); }
.message.user .meta { display: none; }
.message.streaming .body::after { content: '▍'; color: var(--muted); }
.message.failed .meta, .message.incomplete .meta { color: var(--bad); }
.message.incomplete .body { opacity: .7; }
.composer { display: flex; gap: 10px; padding: 12px 20px; border-top: 1px solid var(--line); \
max-width: 860px; width: 100%; margin: 0 auto; }
.composer textarea { flex: 1; resize: vertical; }
#stop { background: var(--bad); }
footer { padding: 6px 20px 12px; font-size: 12px; color: var(--muted); text-align: center; }
footer.error { color: var(--bad); }
`;

/** The page's icon: a crescent moon, for a bird that flies at night. */
export const CHAT_PAGE_ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">\
<circle cx="16" cy="16" r="15" fill="#1d2340"/><path d="M20 6a10 10 0 1 0 6 16A8 8 0 1 1 20 6z" fill="#f5d77a"/></svg>
`;

/** The page's entry: the TypeScript source when run from source, the compiled module from dist/. */
function entryPoint(): string {
  for (const name of ['web/main.ts', 'web/main.js']) {
    const file = fileURLToPath(new URL(name, import.meta.url));
    if (existsSync(file)) return file;
  }
  throw new NightjarError('NJ_CONFIG_INVALID', 'the chat page source (src/client/web/main.ts) is missing; rebuild Nightjar');
}

/** Bundles the chat page into `outDir` (created if needed). */
export async function buildChatPage(outDir: string, options: BuildChatPageOptions = {}): Promise<BuiltChatPage> {
  let esbuild: Esbuild;
  try {
    esbuild = await import('esbuild');
  } catch (cause) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'building the chat page needs esbuild (a development dependency); run npm ci', { cause });
  }
  const { minify, sourcemap } = withDefaults(CHAT_PAGE_DEFAULTS, options);
  const dir = path.resolve(outDir);
  await mkdir(dir, { recursive: true });
  await esbuild.build({
    entryPoints: [entryPoint()],
    outfile: path.join(dir, 'chat.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome120', 'firefox121', 'safari17'],
    minify,
    sourcemap,
    legalComments: 'none',
    logLevel: 'silent',
  });
  await writeFile(path.join(dir, 'index.html'), CHAT_PAGE_HTML);
  await writeFile(path.join(dir, 'chat.css'), CHAT_PAGE_CSS);
  await writeFile(path.join(dir, 'favicon.svg'), CHAT_PAGE_ICON);
  return { dir, files: ['index.html', 'chat.css', 'chat.js', 'favicon.svg', ...(sourcemap ? ['chat.js.map'] : [])] };
}
