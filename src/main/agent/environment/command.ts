/**
 * Running a system command (ioreg, pmset, sysctl, vm_stat) without a shell, for the sources that
 * read the machine.
 */
import { execFile } from 'node:child_process';

/** Runs a command and resolves with its standard output. */
export type CommandRunner = (file: string, args: readonly string[]) => Promise<string>;

/** Runs commands with execFile (no shell), a 5 s timeout and a 1 MiB output limit. */
export const execCommand: CommandRunner = (file, args) =>
  new Promise((resolve, reject) => {
    execFile(file, [...args], { timeout: 5000, maxBuffer: 1 << 20, encoding: 'utf8' }, (err, stdout) =>
      err ? reject(err) : resolve(stdout),
    );
  });
