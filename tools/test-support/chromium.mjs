// Headless Chromium for the JavaScript tests: the one launcher of e2e/,
// interop/node/chromium.mjs and clients/js/test/demo.test.mjs, so that every
// browser test runs the same browser the same way.
//
// It starts Debian's /usr/bin/chromium itself (not playwright-core's
// launch(), which adds flags of its own) with the flags below, a fresh
// --user-data-dir and --remote-debugging-port=0, reads the DevTools URL
// Chromium prints on stderr, and connects the caller's playwright-core to
// it over CDP. playwright-core is loaded from the caller's package (`from`:
// the caller's import.meta.url): Node resolves a bare import relative to the
// importing file, and this module, outside the three packages, has no
// node_modules of its own. Every wait is bounded; close() disconnects, kills
// the browser's process group and removes the profile, and process.mjs's
// exit hook does the same on any other way out. When Chromium or
// playwright-core is missing it fails with a message saying what to install.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_WAIT_MS, Proc, bounded, removeTempDir, tempDir } from './process.mjs';

/** Debian's Chromium. */
export const CHROMIUM = '/usr/bin/chromium';

/** The flags Chromium always runs with (plus --user-data-dir, the DevTools port and the caller's). */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The `chromium` export of the playwright-core installed for the module at the URL `from`. */
function playwrightFor(from, install) {
  try {
    return createRequire(from)('playwright-core').chromium;
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e;
    const dir = path.dirname(fileURLToPath(from));
    throw new Error(`no playwright-core installed for ${dir}: ${install}`);
  }
}

/**
 * Starts Chromium and connects to it.
 *   from     the caller's import.meta.url (whose package's playwright-core connects)
 *   install  what to run when Chromium or playwright-core is missing (for the error message)
 *   args     more Chromium flags (e.g. --ignore-certificate-errors-spki-list=...)
 *   wait     the bound of each wait, in milliseconds
 * Resolves with { browser (playwright-core's Browser), proc, close() }.
 */
export async function launchChromium({ from, install, args = [], wait = DEFAULT_WAIT_MS }) {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no ${CHROMIUM}: install Debian's chromium package (${install})`);
  const chromium = playwrightFor(from, install);
  const userDataDir = tempDir('ferrows-chromium-');
  const proc = new Proc('chromium', CHROMIUM, [
    ...CHROMIUM_FLAGS,
    `--user-data-dir=${userDataDir}`,
    '--remote-debugging-port=0',
    ...args,
    'about:blank',
  ]);
  const launched = {
    browser: null,
    proc,
    async close() {
      if (this.browser) await bounded('close the CDP connection', this.browser.close(), wait).catch(() => {});
      await proc.kill();
      removeTempDir(userDataDir);
    },
  };
  try {
    const m = await proc.waitOutput('DevTools endpoint', /DevTools listening on (ws:\/\/\S+)/, wait);
    launched.browser = await bounded('connect to Chromium over CDP', chromium.connectOverCDP(m[1], { timeout: wait }), wait);
    return launched;
  } catch (e) {
    await launched.close();
    throw e;
  }
}
