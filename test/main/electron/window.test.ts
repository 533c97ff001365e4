/**
 * The dashboard window, safe by construction: its options (isolation, sandbox, no Node, no
 * webview), its CSP (in the app and on the control server), navigation and window.open refused,
 * no permission granted and no request leaving app://; and app://dashboard serving only the
 * dashboard's own files, each with the CSP.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  APP_CSP,
  DASHBOARD_SCHEME_PRIVILEGES,
  DASHBOARD_URL,
  DashboardWindow,
  dashboardFile,
  dashboardResponse,
  dashboardWindowOptions,
  guardSession,
  guardWebContents,
  isAllowedRequest,
} from '../../../src/main/electron/index.js';
import { PAGE_CSP } from '../../../src/shared/index.js';
import { FakeBrowserWindow, FakeSession, FakeWebContents } from './support/fakes.js';

describe('window options', () => {
  it('isolate the page, sandbox it, give it no Node and no webviews; DevTools only when asked', () => {
    const options = dashboardWindowOptions('/app/dist/app/preload.cjs', { devTools: false });
    expect(options.webPreferences).toEqual({
      preload: '/app/dist/app/preload.cjs',
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      experimentalFeatures: false,
      navigateOnDragDrop: false,
      safeDialogs: true,
      spellcheck: false,
      devTools: false,
    });
    expect(options.show).toBe(false);
    expect(dashboardWindowOptions('/p', { devTools: true }).webPreferences.devTools).toBe(true);
  });
});

describe('content security policy', () => {
  it('allows only the page’s own scripts, styles and images; no network in the app, its own origin in a browser', () => {
    expect(APP_CSP).toBe(
      "default-src 'none';script-src 'self';style-src 'self';img-src 'self' data:;font-src 'self';connect-src 'none';" +
        "base-uri 'none';form-action 'none';frame-ancestors 'none'",
    );
    // The app's policy is the one page policy (PAGE_CSP, what the control server sends a browser) without the network.
    expect(PAGE_CSP).toBe(APP_CSP.replace("connect-src 'none'", "connect-src 'self'"));
    for (const csp of [APP_CSP, PAGE_CSP]) expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|\*|http:|https:/);
  });
});

describe('guards', () => {
  // Security: fails if guardWebContents stops preventing navigation (the page could load a remote site
  // that would then hold the preload bridge's window).
  it('refuse every navigation and redirect, deny window.open, and keep webviews out', () => {
    const contents = new FakeWebContents(1);
    guardWebContents(contents);
    for (const url of ['https://attacker.example/', 'app://dashboard/other.html', 'file:///etc/passwd', 'javascript:alert(1)']) {
      expect(contents.navigate('will-navigate', url).prevented, url).toBe(true);
      expect(contents.navigate('will-redirect', url).prevented, url).toBe(true);
    }
    expect(contents.openHandler!({ url: 'https://attacker.example/' })).toEqual({ action: 'deny' });
    expect(contents.openHandler!({ url: DASHBOARD_URL })).toEqual({ action: 'deny' });
    const attach = {
      prevented: false,
      preventDefault() {
        this.prevented = true;
      },
    };
    contents.emit('will-attach-webview', attach);
    expect(attach.prevented).toBe(true);
  });

  it('grant no permission and cancel every request that is not app:// (or inline data)', () => {
    const session = new FakeSession();
    guardSession(session);
    let granted: boolean | null = null;
    session.requestHandler!({}, 'notifications', (g) => (granted = g));
    expect(granted).toBe(false);
    expect(session.checkHandler!({}, 'media')).toBe(false);
    const decide = (url: string): boolean | undefined => {
      let cancel: boolean | undefined;
      session.beforeRequest!({ url }, (r) => (cancel = r.cancel));
      return cancel;
    };
    for (const url of ['https://cdn.example/lib.js', 'http://127.0.0.1:8787/', 'ws://127.0.0.1:1/', 'file:///etc/hosts'])
      expect(decide(url), url).toBe(true);
    for (const url of ['app://dashboard/app.js', 'data:image/png;base64,AAAA']) expect(decide(url), url).toBe(false);
    expect(isAllowedRequest('appx://dashboard/')).toBe(false);
  });
});

describe('the dashboard window', () => {
  it('opens once with the safe options and guards, comes to front when opened again, and forgets itself when closed', async () => {
    const created: FakeBrowserWindow[] = [];
    const win = new DashboardWindow({
      create: (o) => (created.push(new FakeBrowserWindow(o, 40 + created.length)), created.at(-1)!),
      preload: '/p.cjs',
    });
    await win.open();
    expect(created).toHaveLength(1);
    const first = created[0]!;
    expect(first.options).toEqual(dashboardWindowOptions('/p.cjs', { devTools: false }));
    expect(first.loaded).toEqual([DASHBOARD_URL]);
    expect(first.shown).toBe(1); // on ready-to-show
    expect(first.webContents.navigate('will-navigate', 'https://attacker.example/').prevented).toBe(true);
    expect(win.owns(40)).toBe(true);
    expect(win.owns(41)).toBe(false);

    await win.open('availability');
    expect(created).toHaveLength(1);
    expect(first.loaded.at(-1)).toBe(`${DASHBOARD_URL}#/availability`);
    expect(first.focused).toBe(1);

    win.send('nightjar:event', { type: 'link', link: 'connected' });
    expect(first.webContents.sent).toEqual([{ channel: 'nightjar:event', args: [{ type: 'link', link: 'connected' }] }]);
    // Should the contents ever show another page, events are not sent there.
    first.webContents.url = 'https://attacker.example/';
    win.send('nightjar:event', { type: 'link', link: 'waiting' });
    expect(first.webContents.sent).toHaveLength(1);

    first.close();
    expect(win.window).toBeNull();
    expect(win.owns(40)).toBe(false);
    await win.open();
    expect(created).toHaveLength(2);
  });
});

describe('app://dashboard', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'nightjar-app-protocol-'));
    await writeFile(path.join(root, 'index.html'), '<!doctype html>');
    await writeFile(path.join(root, 'app.js'), 'export {};');
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('is a privileged standard, secure scheme that does not bypass CSP', () => {
    expect(DASHBOARD_SCHEME_PRIVILEGES).toEqual({
      scheme: 'app',
      privileges: {
        standard: true,
        secure: true,
        supportFetchAPI: false,
        corsEnabled: false,
        stream: false,
        bypassCSP: false,
        allowServiceWorkers: false,
      },
    });
  });

  it('maps only flat dashboard files of known types under app://dashboard', () => {
    expect(dashboardFile('app://dashboard/', root)).toBe(path.join(root, 'index.html'));
    expect(dashboardFile('app://dashboard/app.js?x=1#y', root)).toBe(path.join(root, 'app.js'));
    // Dot segments are resolved by the URL itself (as Chromium does): these name app://dashboard/secret.js.
    expect(dashboardFile('app://dashboard/../secret.js', root)).toBe(path.join(root, 'secret.js'));
    expect(dashboardFile('app://dashboard/%2e%2e/secret.js', root)).toBe(path.join(root, 'secret.js'));
    for (const url of [
      'app://dashboard/%2e%2e%2fsecret.js',
      'app://dashboard/..%2f..%2fetc%2fpasswd.js',
      'app://dashboard/sub/app.js',
      'app://dashboard/.hidden.js',
      'app://dashboard/readme.txt',
      'app://other/index.html',
      'app://user@dashboard/index.html',
      'https://dashboard/index.html',
      'app://dashboard/%E0%A4%A.js',
    ]) {
      expect(dashboardFile(url, root), url).toBeNull();
    }
  });

  it('answers with the file and the CSP, and 404 for anything else', async () => {
    const ok = await dashboardResponse(new Request('app://dashboard/app.js'), root);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('export {};');
    expect(Object.fromEntries(ok.headers)).toMatchObject({
      'content-type': 'text/javascript; charset=utf-8',
      'content-security-policy': APP_CSP,
      'x-content-type-options': 'nosniff',
    });
    for (const req of [
      new Request('app://dashboard/missing.js'),
      new Request('app://dashboard/../x.js'),
      new Request('app://dashboard/app.js', { method: 'POST', body: 'x' }),
    ]) {
      const r = await dashboardResponse(req, root);
      expect(r.status, req.url).toBe(404);
      expect(r.headers.get('content-security-policy')).toBe(APP_CSP);
    }
  });
});
