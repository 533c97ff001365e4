/**
 * The command table's flag parsers, and its copies of the layers' lists (repeated there so
 * `nightjar --help` loads no layer): each must equal its layer's.
 */
import { InvalidArgumentError } from 'commander';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  LOG_LEVEL_CHOICES,
  SYNTHETIC_SHAPE_CHOICES,
  TRUST_LEVEL_CHOICES,
  collect,
  decimal,
  helpAfter,
  integer,
  port,
} from '../../src/cli/flags.js';
import { SYNTHETIC_SHAPES, type SyntheticShapeName } from '../../src/main/agent/index.js';
import { LOG_LEVELS, TRUST_LEVELS, type LogLevel } from '../../src/shared/index.js';

describe('the lists the table repeats', () => {
  it('equal the layers’', () => {
    expect([...TRUST_LEVEL_CHOICES]).toEqual([...TRUST_LEVELS]);
    expect([...SYNTHETIC_SHAPE_CHOICES].sort()).toEqual(Object.keys(SYNTHETIC_SHAPES).sort());
    expect([...LOG_LEVEL_CHOICES]).toEqual([...LOG_LEVELS]);
    expectTypeOf<(typeof LOG_LEVEL_CHOICES)[number]>().toEqualTypeOf<LogLevel>();
    expectTypeOf<(typeof SYNTHETIC_SHAPE_CHOICES)[number]>().toEqualTypeOf<SyntheticShapeName>();
  });
});

describe('flag parsers', () => {
  it('take whole numbers in range, and say what they take otherwise', () => {
    expect(port('0')).toBe(0);
    expect(port('65535')).toBe(65535);
    for (const bad of ['65536', '-1', '1.5', '', ' ', 'x', '8e3.5']) expect(() => port(bad)).toThrow(InvalidArgumentError);
    expect(() => port('70000')).toThrow('It must be a whole number from 0 to 65535.');
    expect(integer(1)('3')).toBe(3);
    expect(() => integer(1)('0')).toThrow('It must be a whole number 1 or more.');
    expect(decimal('0.7')).toBe(0.7);
    expect(() => decimal('warm')).toThrow('It must be a number.');
    expect(() => decimal('Infinity')).toThrow(InvalidArgumentError);
    expect(collect('b', collect('a', undefined))).toEqual(['a', 'b']);
  });

  it('wraps help paragraphs at 100 columns and keeps indented lines', () => {
    const text = helpAfter(
      `${'word '.repeat(40).trim()}`,
      'Examples:\n  nightjar chat "a very long example line that stays as it is, however long it happens to be, really"',
    );
    const lines = text.split('\n');
    expect(lines[0]).toBe('');
    expect(lines.every((l) => l.length <= 100 || l.startsWith('  '))).toBe(true);
    expect(text).toContain('\n\nExamples:\n  nightjar chat "a very long example');
  });
});
