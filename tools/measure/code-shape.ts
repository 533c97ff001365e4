/**
 * Measures the shape of the code the way issue 11 states its targets, so the figures in the
 * closing note can be re-run: `npx tsx tools/measure/code-shape.ts [--max-function-lines N]`.
 *
 * - Function length: every function-like node under src/ (declarations, methods, constructors,
 *   accessors, arrow functions and function expressions), measured from the line its node starts
 *   on to the line it ends on, both included. A nested function counts inside its parent as well.
 * - Polling waits in test/: calls that re-check a condition on a timer instead of awaiting an
 *   event — `waitFor(…)`, `until(…)`, `vi.waitFor`/`vi.waitUntil`, `expect.poll`, Playwright's
 *   `waitForFunction`/`waitForTimeout`, and an awaited `tick`/`sleep`/timer promise inside a loop.
 * - Lines over 140 characters in src/, test/, bench/ and tools/.
 *
 * Exits 1 when a function is longer than the limit (150 lines by default).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const POLLERS = new Set(['waitFor', 'until', 'waitUntil', 'poll', 'waitForFunction', 'waitForTimeout']);
const SLEEPERS = new Set(['tick', 'sleep', 'delay', 'setTimeout']);

function filesUnder(dir: string, ext = '.ts'): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...filesUnder(full, ext));
    else if (name.endsWith(ext)) out.push(full);
  }
  return out;
}

function parse(file: string): ts.SourceFile {
  return ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
}

/** Functions of `file` with their line spans. */
export function functionLengths(file: string): { name: string; line: number; lines: number }[] {
  const source = parse(file);
  const found: { name: string; line: number; lines: number }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      const named = (node as { name?: ts.Node }).name;
      const parent = node.parent;
      const name = named
        ? named.getText(source)
        : ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)
          ? parent.name.getText(source)
          : '(anonymous)';
      found.push({ name, line: start + 1, lines: end - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function calleeName(call: ts.CallExpression): string | null {
  const e = call.expression;
  if (ts.isIdentifier(e)) return e.text;
  if (ts.isPropertyAccessExpression(e)) return e.name.text;
  return null;
}

function insideLoop(node: ts.Node): boolean {
  for (let n = node.parent; n && !ts.isFunctionLike(n); n = n.parent) {
    if (ts.isWhileStatement(n) || ts.isDoStatement(n) || ts.isForStatement(n)) return true;
  }
  return false;
}

/** Polling waits in a test file. */
export function pollingWaits(file: string): number {
  const source = parse(file);
  let count = 0;
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node)) {
      const name = calleeName(node);
      const isDefinition = ts.isFunctionDeclaration(node.parent);
      if (name && POLLERS.has(name) && !isDefinition) count++;
      else if (name && SLEEPERS.has(name) && ts.isAwaitExpression(node.parent) && insideLoop(node)) count++;
    }
    if (ts.isNewExpression(node) && ts.isAwaitExpression(node.parent) && insideLoop(node) && /setTimeout/.test(node.getText(source)))
      count++;
    ts.forEachChild(node, visit);
  };
  visit(source);
  return count;
}

function main(): number {
  const limitArg = process.argv.indexOf('--max-function-lines');
  const limit = limitArg > 0 ? Number(process.argv[limitArg + 1]) : 150;
  const fns = filesUnder(path.join(ROOT, 'src')).flatMap((f) => functionLengths(f).map((fn) => ({ ...fn, file: path.relative(ROOT, f) })));
  fns.sort((a, b) => b.lines - a.lines);
  const over = fns.filter((f) => f.lines > limit);
  console.log(`functions in src/: ${fns.length}; longest:`);
  for (const f of fns.slice(0, 10)) console.log(`  ${String(f.lines).padStart(4)}  ${f.file}:${f.line}  ${f.name}`);
  console.log(`functions over ${limit} lines: ${over.length}`);
  const testFiles = filesUnder(path.join(ROOT, 'test'));
  const waits = testFiles.map((f) => ({ file: path.relative(ROOT, f), n: pollingWaits(f) })).filter((w) => w.n > 0);
  console.log(`polling waits in test/: ${waits.reduce((s, w) => s + w.n, 0)} in ${waits.length} files`);
  for (const w of waits.sort((a, b) => b.n - a.n).slice(0, 10)) console.log(`  ${String(w.n).padStart(4)}  ${w.file}`);
  let long = 0;
  for (const dir of ['src', 'test', 'bench', 'tools']) {
    for (const f of [...filesUnder(path.join(ROOT, dir)), ...filesUnder(path.join(ROOT, dir), '.js')]) {
      long += readFileSync(f, 'utf8')
        .split('\n')
        .filter((l) => l.length > 140).length;
    }
  }
  console.log(`lines over 140 characters: ${long}`);
  return over.length > 0 ? 1 : 0;
}

process.exitCode = main();
