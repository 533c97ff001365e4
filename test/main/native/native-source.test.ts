/**
 * The macOS half of the addon cannot be compiled or run here, so this test reads its source and
 * pins what it does: every system call and framework name the macOS calls rest on must appear in
 * code (comments stripped) inside an `#ifdef __APPLE__` section, and none outside one, so a call
 * cannot vanish, or leak into the Linux stub, without this failing. binding.gyp must link the
 * frameworks on macOS only.
 *
 * Fails without any one of the pinned names: shown once by deleting the `ptrace(PT_DENY_ATTACH, 0, 0, 0)`
 * call ("ptrace(PT_DENY_ATTACH, 0, 0, 0): expected false to be true"), and once by calling
 * csr_get_active_config outside the macOS section ("no macOS API outside __APPLE__").
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../../..');
const SOURCE = readFileSync(path.join(root, 'native/src/nightjar_native.cc'), 'utf8');
const GYP = readFileSync(path.join(root, 'native/binding.gyp'), 'utf8');

/** What the macOS section must call (or name), grouped by the API it implements. */
const PINNED: Record<string, readonly string[]> = {
  denyDebuggerAttach: ['ptrace(PT_DENY_ATTACH, 0, 0, 0)', 'P_TRACED', 'KERN_PROC_PID'],
  sipStatus: ['extern "C" int csr_get_active_config(uint32_t* config)', 'csr_get_active_config(&mask)'],
  codeSigning: [
    'SecCodeCopySelf(kSecCSDefaultFlags',
    'SecCodeCheckValidity(code.get(), kSecCSDefaultFlags',
    'SecCodeCopySigningInformation(',
    'kSecCSSigningInformation',
    'kSecCodeInfoTeamIdentifier',
    'kSecCodeInfoFlags',
    'kSecCodeSignatureRuntime',
    'kSecCodeInfoUnique',
    'errSecCSUnsigned',
  ],
  secureEnclave: [
    'SecKeyCreateRandomKey(',
    'kSecAttrTokenIDSecureEnclave',
    'kSecAttrKeyTypeECSECPrimeRandom',
    'int bits = 256',
    'kSecAttrKeySizeInBits',
    'kSecAttrIsPermanent',
    'kSecAttrApplicationTag',
    'kSecPrivateKeyAttrs',
    'kSecUseDataProtectionKeychain',
    'SecAccessControlCreateWithFlags(',
    'kSecAttrAccessibleWhenUnlockedThisDeviceOnly',
    'kSecAccessControlPrivateKeyUsage',
    'kSecAttrAccessControl',
    'SecItemCopyMatching(',
    'SecKeyCopyPublicKey(',
    'SecKeyCopyExternalRepresentation(',
    'CFDataGetLength(raw.get()) != 65',
    'SecKeyCreateSignature(',
    'kSecKeyAlgorithmECDSASignatureMessageX962SHA256',
    'SecItemDelete(',
  ],
  hidIdleTime: [
    'IOServiceGetMatchingService(',
    'IOServiceMatching("IOHIDSystem")',
    'IORegistryEntryCreateCFProperty(',
    'CFSTR("HIDIdleTime")',
  ],
  thermalState: ['objc_getClass("NSProcessInfo")', 'sel_registerName("processInfo")', 'sel_registerName("thermalState")'],
  chipName: ['sysctlbyname(name', '"machdep.cpu.brand_string"'],
  coreCounts: ['"hw.perflevel0.physicalcpu"', '"hw.perflevel1.physicalcpu"'],
};

/** The source with comments blanked out (string literals kept), so a name in a comment does not count. */
function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*|"(?:\\.|[^"\\\n])*"/g, (m) => (m.startsWith('"') ? m : m.replace(/[^\n]/g, ' ')));
}

/**
 * Splits the source into the code compiled only on macOS and the rest, following #if/#ifdef/
 * #ifndef/#elif/#else/#endif nesting. A branch is "Apple" when it is the true branch of
 * `#ifdef __APPLE__` / `#if defined(__APPLE__)` or the `#else` of `#ifndef __APPLE__`.
 */
function splitByApple(source: string): { apple: string; other: string } {
  const stack: { apple: boolean; kind: 'apple' | 'not-apple' | 'other' }[] = [];
  const apple: string[] = [];
  const other: string[] = [];
  for (const line of source.split('\n')) {
    const directive = /^\s*#\s*(ifdef|ifndef|if|elif|else|endif)\b(.*)$/.exec(line);
    if (directive) {
      const [, word, rest] = directive;
      const namesApple = /\b__APPLE__\b/.test(rest!);
      const negated = /!\s*defined/.test(rest!);
      if (word === 'ifdef' || word === 'if') {
        const kind = namesApple ? (negated ? 'not-apple' : 'apple') : 'other';
        stack.push({ kind, apple: kind === 'apple' });
      } else if (word === 'ifndef') {
        stack.push({ kind: namesApple ? 'not-apple' : 'other', apple: false });
      } else if (word === 'elif') {
        const top = stack.at(-1)!;
        top.apple = namesApple && !negated;
        if (top.kind === 'apple') top.kind = 'other';
      } else if (word === 'else') {
        const top = stack.at(-1)!;
        top.apple = top.kind === 'not-apple';
      } else {
        stack.pop();
      }
      continue;
    }
    (stack.some((s) => s.apple) ? apple : other).push(line);
  }
  expect(stack, 'balanced #if/#endif').toHaveLength(0);
  return { apple: apple.join('\n'), other: other.join('\n') };
}

const code = stripComments(SOURCE);
const { apple, other } = splitByApple(code);

describe('the native source', () => {
  for (const [api, names] of Object.entries(PINNED)) {
    it(`${api}: its system calls sit inside #ifdef __APPLE__ and nowhere else`, () => {
      for (const name of names) {
        expect(apple.includes(name), name).toBe(true);
        expect(other.includes(name), `${name} outside __APPLE__`).toBe(false);
      }
    });
  }

  it('names no macOS API outside #ifdef __APPLE__', () => {
    const names = ['ptrace', 'PT_\\w+', 'csr_\\w+', 'Sec[A-Z]\\w*', 'kSec\\w+', 'errSec\\w+', 'IO[A-Z]\\w+', 'io_\\w+', 'objc_\\w+'];
    names.push('sel_\\w+', 'sysctl\\w*', 'CF[A-Z]\\w*', 'kCF\\w+', 'NS[A-Z]\\w+');
    const macApi = new RegExp(`\\b(${names.join('|')})\\b`, 'g');
    expect(
      [...other.matchAll(macApi)].map((m) => m[0]),
      'no macOS API outside __APPLE__',
    ).toEqual([]);
  });

  it('includes the macOS headers only inside #ifdef __APPLE__', () => {
    for (const header of ['Security/Security.h', 'IOKit/IOKitLib.h', 'CoreFoundation/CoreFoundation.h', 'sys/ptrace.h', 'objc/message.h']) {
      expect(apple.includes(`#include <${header}>`), header).toBe(true);
      expect(other.includes(header), `${header} outside __APPLE__`).toBe(false);
    }
  });

  it('never runs csrutil, ioreg or any other program', () => {
    for (const word of ['csrutil', 'popen', 'system(', 'exec', 'posix_spawn', 'NSTask']) expect(code.includes(word), word).toBe(false);
  });

  it('answers unsupported from every call outside macOS', () => {
    const calls = [...code.matchAll(/^Napi::Value (\w+)\(const Napi::CallbackInfo& info\) \{$/gm)].map((m) => m[1]);
    expect(calls).toHaveLength(11);
    for (const name of calls.filter((c) => c !== 'AddonInfo')) {
      const body = code.slice(code.indexOf(`Napi::Value ${name}(`), code.indexOf('\n}\n', code.indexOf(`Napi::Value ${name}(`)));
      expect(body, name).toMatch(/#else\n\s+return Unsupported\(env\);\n#endif/);
    }
  });

  it('links the frameworks on macOS only (binding.gyp)', () => {
    const mac = GYP.slice(GYP.indexOf(`"OS=='mac'"`));
    expect(GYP.indexOf(`"OS=='mac'"`)).toBeGreaterThan(0);
    for (const framework of ['CoreFoundation', 'Security', 'IOKit', 'Foundation']) {
      expect(mac.includes(`-framework ${framework}`), framework).toBe(true);
      expect(GYP.indexOf(`-framework ${framework}`)).toBeGreaterThan(GYP.indexOf(`"OS=='mac'"`));
    }
  });
});
