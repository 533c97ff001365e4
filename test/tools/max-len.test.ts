/**
 * The 140-character line limit, run through the project's real ESLint config: prettier wraps code
 * at 140 but not strings or comments, so removing max-len from the config (or letting it ignore
 * strings or comments) fails here.
 */
import path from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const eslint = new ESLint({ cwd: root });

/** The lines ESLint's max-len reports in `code`, linted as if it were `file`. */
async function tooLong(file: string, code: string): Promise<number[]> {
  const [result] = await eslint.lintText(code, { filePath: path.join(root, file) });
  const messages = result?.messages ?? [];
  expect(messages.filter((m) => m.fatal).map((m) => m.message)).toEqual([]);
  return messages.filter((m) => m.ruleId === 'max-len').map((m) => m.line);
}

/** A line of exactly `length` characters: `head`, then x's, then `tail`. */
function lineOf(length: number, head: string, tail = ''): string {
  const line = head + 'x'.repeat(length - head.length - tail.length) + tail;
  expect(line).toHaveLength(length);
  return line;
}

const string = (length: number, name: string): string => lineOf(length, `export const ${name} = '`, "';");
const comment = (length: number): string => lineOf(length, '// ');

describe('max-len', () => {
  it.each([
    ['src/main/agent/x.ts', 'a string', string],
    ['src/renderer/x.ts', 'a comment', comment],
    ['test/main/x.test.ts', 'a string', string],
  ])('%s: reports %s of 141 characters, not one of 140', async (file, _what, make) => {
    const code = `${make(140, 'a')}\n${make(141, 'b')}\n`;
    expect(await tooLong(file, code)).toEqual([2]);
  });

  it('counts a tab as two columns', async () => {
    const code = `export function f(): string {\n\treturn '${'x'.repeat(128)}';\n}\n`;
    expect(code.split('\n')[1]).toHaveLength(139); // 140 columns with the tab as two: allowed
    expect(await tooLong('src/main/agent/x.ts', code)).toEqual([]);
    expect(await tooLong('src/main/agent/x.ts', code.replace("'x", "'xx"))).toEqual([2]);
  });

  it('lets a long URL through', async () => {
    const code = `// See ${lineOf(150, 'https://example.com/')}\nexport const u = 1;\n`;
    expect(await tooLong('src/main/agent/x.ts', code)).toEqual([]);
  });
});
