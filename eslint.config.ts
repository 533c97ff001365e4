import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import layers from './tools/eslint/layers.ts';

/** Browser globals that code under src/shared must not touch: it runs in Node too. */
const DOM_GLOBALS = ['window', 'document', 'navigator', 'localStorage', 'sessionStorage', 'location', 'HTMLElement'];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'bench/out/', '**/*.bundle.js'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    plugins: { nightjar: { rules: { layers } } },
    rules: {
      'nightjar/layers': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'error',
      // Prettier wraps code at its printWidth (140) but leaves strings and comments alone; this holds them to the
      // same width. (Core max-len is deprecated, kept until ESLint 11; @stylistic/max-len is where it went.)
      'max-len': ['error', { code: 140, tabWidth: 2, ignoreUrls: true }],
      // noUncheckedIndexedAccess makes byte loops say `bytes[i]!`; that is the intended idiom.
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['src/shared/**'],
    rules: {
      'no-restricted-globals': [
        'error',
        ...DOM_GLOBALS.map((name) => ({ name, message: 'src/shared runs in Node too: no DOM.' })),
        { name: 'Buffer', message: 'src/shared runs in the browser too: use Uint8Array.' },
        { name: 'process', message: 'src/shared runs in the browser too.' },
      ],
    },
  },
  {
    files: ['bin/**'],
    languageOptions: { globals: { process: 'readonly', URL: 'readonly' } },
  },
  {
    files: ['test/**', 'bench/**', 'tools/**', 'src/cli/**'],
    rules: { 'no-console': 'off' },
  },
);
