// The app shell: the release server renders a page (sign-in, the one every visitor
// can see), and the release
// wasm (optimised by wasm-opt) hydrates it in a real browser without errors.
//
// Why this test exists: a broken wasm-opt (e.g. Debian's binaryen 108) builds
// without complaint but the page then fails at hydration with
// "WebAssembly.Table.set(): Argument 1 is invalid for table". Only loading the
// release build in Chromium catches that. The app marks its main element with
// data-hydrated="true" once hydration has run, which is what we wait for.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { artifactsDir, collectPageProblems, launchBrowser, startServer } from '../lib/harness.mjs';

const HYDRATION_TIMEOUT_MS = 20_000;

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

// Runs even when before() or the test failed, so nothing is left running.
after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

test('the sign-in page is server-rendered and hydrates without errors', { timeout: 60_000 }, async () => {
  try {
    // 1. The server-rendered HTML, before any script runs.
    const res = await fetch(`${server.baseUrl}/sign-in`);
    const html = await res.text();
    assert.equal(res.status, 200, `GET /sign-in answered ${res.status}:\n${html.slice(0, 2000)}`);
    assert.match(html, /<title[^>]*>[^<]*Countersign[^<]*<\/title>/, 'SSR HTML has no <title> containing "Countersign"');

    // 1b. The wasm bundle goes out gzipped (node's fetch decodes it; the header says how it came).
    const wasm = await fetch(`${server.baseUrl}/pkg/countersign.wasm`, { headers: { 'accept-encoding': 'gzip' } });
    await wasm.arrayBuffer();
    assert.equal(wasm.status, 200);
    assert.equal(wasm.headers.get('content-encoding'), 'gzip', 'the wasm bundle is served gzipped');

    // 2. The same page in Chromium, hydrated by the release wasm.
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems = collectPageProblems(page);

    const response = await page.goto(`${server.baseUrl}/sign-in`, { waitUntil: 'load' });
    assert.equal(response?.status(), 200, `browser navigation to /sign-in answered ${response?.status()}`);

    let hydrationError;
    try {
      await page.waitForSelector('[data-hydrated="true"]', { state: 'attached', timeout: HYDRATION_TIMEOUT_MS });
    } catch (err) {
      hydrationError = err;
    }
    // Screenshot either way: on failure it shows what the user would see.
    await page.screenshot({ path: path.join(artifactsDir(), 'shell.png'), fullPage: true });

    if (hydrationError) {
      assert.fail(
        `the page did not hydrate within ${HYDRATION_TIMEOUT_MS / 1000} s ` +
          `(no element with data-hydrated="true"; screenshot in test-results/shell.png)\n${problems.summary()}`,
      );
    }
    assert.deepEqual(problems.pageErrors, [], `uncaught errors in the page:\n${problems.summary()}`);
    assert.deepEqual(problems.consoleErrors, [], `console errors in the page:\n${problems.summary()}`);

    await context.close();
  } catch (err) {
    server?.dumpLogs('shell test failed');
    throw err;
  }
});
