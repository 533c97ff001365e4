import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { nightjarDirs } from '../../src/node/index.js';

describe('nightjarDirs', () => {
  it.each([
    ['darwin', {}, '/Users/ada', '/Users/ada/Library/Application Support/Nightjar', '/Users/ada/Library/Application Support/Nightjar'],
    ['linux', {}, '/home/ada', '/home/ada/.config/nightjar', '/home/ada/.local/share/nightjar'],
    ['linux', { XDG_CONFIG_HOME: '/cfg', XDG_DATA_HOME: '/data' }, '/home/ada', '/cfg/nightjar', '/data/nightjar'],
    // The XDG spec: a relative path is invalid and ignored.
    [
      'linux',
      { XDG_CONFIG_HOME: 'rel', XDG_DATA_HOME: 'rel' },
      '/home/ada',
      '/home/ada/.config/nightjar',
      '/home/ada/.local/share/nightjar',
    ],
    ['darwin', { NIGHTJAR_HOME: '/tmp/nj' }, '/Users/ada', '/tmp/nj/config', '/tmp/nj/data'],
  ] as const)('%s %j (home %s) → config %s, data %s', (platform, env, home, config, data) => {
    const dirs = nightjarDirs({ platform, env, home });
    expect([dirs.config, dirs.data]).toEqual([config, data]);
  });

  it('uses APPDATA and the Windows path rules on win32', () => {
    const dirs = nightjarDirs({ platform: 'win32', env: { APPDATA: 'C:\\Users\\ada\\AppData\\Roaming' }, home: 'C:\\Users\\ada' });
    expect(dirs.config).toBe('C:\\Users\\ada\\AppData\\Roaming\\Nightjar');
    expect(dirs.path).toBe(path.win32);
  });

  it('takes the home folder from the environment it is given before the process’s', () => {
    expect(nightjarDirs({ platform: 'linux', env: { HOME: '/home/bob' } }).config).toBe('/home/bob/.config/nightjar');
  });
});
