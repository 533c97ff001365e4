/**
 * ESLint rule `nightjar/layers`: where code may run is visible in its path, and imports may only
 * cross layers in the directions DESIGN.md allows.
 *
 * - `src/shared` imports no Node built-in, no `electron` and no other layer: it runs unchanged in
 *   Node, Electron and the browser.
 * - `src/node` (what the Node-side layers share: logger, folders, fastify plugins) imports only
 *   `src/shared`; the agent, the Electron shell, the gateway, the client's Node half and the CLI
 *   may import it.
 * - Only `src/main/electron` imports `electron`.
 * - `src/main`, `src/gateway` and `src/client` stand side by side: none of them imports another
 *   (nor `src/cli`). `src/main/agent` never imports the Electron shell either.
 * - `src/cli`, the `nightjar` command, is the composition root: the only code that may import
 *   more than one of `src/main/agent`, `src/gateway` and `src/client`.
 * - `src/renderer`, the browser halves of the client (`sdk`, `web`) and the gateway's pages
 *   (`src/gateway/web`) import nothing from Node or `src/main`.
 * - Crossing into another layer goes through that layer's front door, its `index.ts`.
 */
import { builtinModules } from 'node:module';
import path from 'node:path';
import type { Rule } from 'eslint';

/** One runtime layer of the tree. */
export interface Layer {
  /** Short name used in messages. */
  readonly name: string;
  /** Folder, relative to the repository root, with forward slashes. */
  readonly dir: string;
  /** Layers (by name) this one may import, besides itself. */
  readonly mayImport: readonly string[];
  /** True where the code must also run in a browser or a sandboxed renderer. */
  readonly forbidNode: boolean;
}

/** The layers, most specific folder first. */
export const LAYERS: readonly Layer[] = [
  { name: 'client/sdk', dir: 'src/client/sdk', mayImport: ['shared'], forbidNode: true },
  { name: 'client/web', dir: 'src/client/web', mayImport: ['shared', 'client/sdk'], forbidNode: true },
  { name: 'shared', dir: 'src/shared', mayImport: [], forbidNode: true },
  { name: 'node', dir: 'src/node', mayImport: ['shared'], forbidNode: false },
  { name: 'agent', dir: 'src/main/agent', mayImport: ['shared', 'node'], forbidNode: false },
  { name: 'electron', dir: 'src/main/electron', mayImport: ['shared', 'node', 'agent'], forbidNode: false },
  { name: 'renderer', dir: 'src/renderer', mayImport: ['shared'], forbidNode: true },
  { name: 'gateway/web', dir: 'src/gateway/web', mayImport: ['shared'], forbidNode: true },
  { name: 'gateway', dir: 'src/gateway', mayImport: ['shared', 'node'], forbidNode: false },
  { name: 'client', dir: 'src/client', mayImport: ['shared', 'node', 'client/sdk'], forbidNode: false },
  { name: 'cli', dir: 'src/cli', mayImport: ['shared', 'node', 'agent', 'gateway', 'client'], forbidNode: false },
];

const NODE_BUILTINS = new Set(builtinModules);

function toPosix(p: string): string {
  return p.split(path.sep).join('/');
}

/** The layer a repository-relative path belongs to, if any. */
export function layerOf(relativePath: string): Layer | undefined {
  const p = toPosix(relativePath);
  return LAYERS.find((l) => p === l.dir || p.startsWith(`${l.dir}/`));
}

function isNodeBuiltin(specifier: string): boolean {
  if (specifier.startsWith('node:')) return true;
  const root = specifier.split('/')[0] ?? specifier;
  return NODE_BUILTINS.has(root);
}

function isFrontDoor(relativeTarget: string, layer: Layer): boolean {
  const rest = relativeTarget.slice(layer.dir.length);
  return /^\/index(\.[cm]?[jt]s)?$/.test(rest);
}

const rule: Rule.RuleModule = {
  meta: {
    type: 'problem',
    docs: { description: 'Keep imports inside the layer boundaries of DESIGN.md' },
    schema: [],
    messages: {
      node: '{{layer}} must run outside Node: it may not import the Node built-in "{{spec}}".',
      electron: 'Only src/main/electron may import "electron" ({{layer}} does).',
      crossLayer: '{{layer}} may not import {{target}} ("{{spec}}").',
      frontDoor: 'Import {{target}} through its front door ({{dir}}/index.ts), not "{{spec}}".',
    },
  },
  create(context) {
    const root = context.cwd;
    const fileRel = toPosix(path.relative(root, context.filename));
    const found = layerOf(fileRel);
    if (!found) return {};
    const layer: Layer = found;

    function check(node: Rule.Node, spec: string): void {
      if (spec === 'electron' || spec.startsWith('electron/')) {
        if (layer.name !== 'electron') {
          context.report({ node, messageId: 'electron', data: { layer: layer.name } });
        }
        return;
      }
      if (isNodeBuiltin(spec) && !spec.startsWith('.')) {
        if (layer.forbidNode) {
          context.report({ node, messageId: 'node', data: { layer: layer.name, spec } });
        }
        return;
      }
      if (!spec.startsWith('.')) return;
      const targetRel = toPosix(path.relative(root, path.resolve(path.dirname(context.filename), spec)));
      const target = layerOf(targetRel);
      if (!target || target === layer) return;
      if (!layer.mayImport.includes(target.name)) {
        context.report({
          node,
          messageId: 'crossLayer',
          data: { layer: layer.name, target: target.name, spec },
        });
        return;
      }
      if (!isFrontDoor(targetRel, target)) {
        context.report({
          node,
          messageId: 'frontDoor',
          data: { target: target.name, dir: target.dir, spec },
        });
      }
    }

    function fromSource(node: Rule.Node & { source?: unknown }): void {
      const source = node.source as { type?: string; value?: unknown } | null | undefined;
      if (source && source.type === 'Literal' && typeof source.value === 'string') {
        check(node, source.value);
      }
    }

    return {
      ImportDeclaration: fromSource,
      ExportNamedDeclaration: fromSource,
      ExportAllDeclaration: fromSource,
      ImportExpression: fromSource,
      CallExpression(node) {
        const callee = node.callee;
        const arg = node.arguments[0];
        if (callee.type === 'Identifier' && callee.name === 'require' && arg && arg.type === 'Literal' && typeof arg.value === 'string') {
          check(node, arg.value);
        }
      },
    };
  },
};

export default rule;
