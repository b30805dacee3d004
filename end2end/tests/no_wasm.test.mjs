// The forms that change state work before the page's wasm has loaded, in a browser that runs
// no JavaScript at all: registering an agent, inviting someone, renaming a passkey and setting
// the guards. The browser posts each form itself; the server answers with a redirect back to
// the page, which shows the result (a one-time key or link: once, then never again) or the
// error.
//
// Signing in needs a passkey ceremony, which needs JavaScript, so the admin enrols in an
// ordinary context and the session cookie is carried into one with JavaScript disabled.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { addVirtualAuthenticator, artifactsDir, launchBrowser, startServer } from '../lib/harness.mjs';

const HYDRATED = '[data-hydrated="true"]';
const UI_TIMEOUT_MS = 20_000;

let server;
let browser;
let page; // the admin's page, without JavaScript

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

async function withLogs(fn) {
  try {
    await fn();
  } catch (err) {
    server?.dumpLogs('no-wasm forms failed');
    await page
      ?.screenshot({ path: path.join(artifactsDir(), 'no-wasm-failure.png'), fullPage: true })
      .catch(() => {});
    throw err;
  }
}

/** Submits the form `selector` on the no-JavaScript page and waits for the page it returns to. */
async function post(selector, pathname) {
  await Promise.all([
    page.waitForURL((url) => url.pathname === pathname && url.href !== 'about:blank', { waitUntil: 'load' }),
    page.click(`${selector} button[type=submit]`),
  ]);
  await page.waitForLoadState('load');
}

test('the admin enrols with a passkey, then turns JavaScript off', { timeout: 60_000 }, () =>
  withLogs(async () => {
    const link = server.logs().match(/https?:\/\/\S+\/enrol\/\S+/)?.[0];
    assert.ok(link, `serve printed no first-admin link:\n${server.logs()}`);
    const withJs = await browser.newContext();
    const enrolling = await withJs.newPage();
    enrolling.setDefaultTimeout(UI_TIMEOUT_MS);
    await addVirtualAuthenticator(enrolling);
    await enrolling.goto(link, { waitUntil: 'load' });
    await enrolling.waitForSelector(HYDRATED, { state: 'attached' });
    await enrolling.fill('#email', 'admin@example.com');
    await enrolling.fill('#display_name', 'Ada Admin');
    await enrolling.fill('#passkey_name', 'Laptop');
    await enrolling.click('button[type=submit]');
    await enrolling.waitForURL(`${server.baseUrl}/`);

    const noJs = await browser.newContext({ javaScriptEnabled: false, storageState: await withJs.storageState() });
    await withJs.close();
    page = await noJs.newPage();
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    // Playwright's own evaluate still works with JavaScript disabled (and the browser may still
    // preload the wasm), so the proof that the page's scripts do not run is that once the
    // network is quiet the page has not hydrated, which it would have with JavaScript on.
    await page.goto(`${server.baseUrl}/agents`, { waitUntil: 'networkidle' });
    assert.match(await page.textContent('header'), /Ada Admin/);
    assert.equal(await page.locator(HYDRATED).count(), 0, 'the page does not hydrate');
  }));

test('registering an agent shows its key once', { timeout: 60_000 }, () =>
  withLogs(async () => {
    await page.fill('#agent-name', 'form-bot');
    await post('#register-agent', '/agents');
    const key = (await page.textContent('#api-key')).trim();
    assert.match(key, /^cs_agent_/);
    assert.match(await page.textContent('.agents'), /form-bot/);
    const res = await fetch(`${server.baseUrl}/api/v1/requests/req_none`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 404, 'the key shown authenticates the new agent');

    await page.goto(`${server.baseUrl}/agents`, { waitUntil: 'load' });
    assert.doesNotMatch(await page.textContent('main'), /cs_agent_/, 'the key is not shown again');
  }));

test('inviting someone shows the link once, and a refused invitation says why', { timeout: 60_000 }, () =>
  withLogs(async () => {
    await page.goto(`${server.baseUrl}/admin/people`, { waitUntil: 'load' });
    await page.fill('#invite-email', 'olive@example.com');
    await page.selectOption('#invite-role', 'owner');
    await page.fill('#invite-groups', 'finance');
    await post('#invite', '/admin/people');
    assert.match(await page.textContent('#invite-link'), /\/enrol\//);
    assert.match(await page.textContent('main'), /Invitation for olive@example\.com/);

    await page.goto(`${server.baseUrl}/admin/people`, { waitUntil: 'load' });
    assert.equal(await page.locator('#invite-link').count(), 0, 'the link is not shown again');

    // The admin is already enrolled: the server refuses, and the page it returns to says so.
    await page.fill('#invite-email', 'admin@example.com');
    await post('#invite', '/admin/people');
    assert.equal(await page.locator('#invite-link').count(), 0);
    assert.match(await page.textContent('#invite'), /admin@example\.com|already/i);
  }));

test('renaming a passkey works from a closed details box', { timeout: 60_000 }, () =>
  withLogs(async () => {
    await page.goto(`${server.baseUrl}/account`, { waitUntil: 'load' });
    await page.click('.passkey-row details summary');
    await page.fill('.passkey-row details input[name=name]', 'Work laptop');
    await post('.passkey-row details form', '/account');
    assert.match(await page.textContent('.passkey-row strong'), /^Work laptop$/);
  }));

test('the guards are set from the form, the checkbox both ways, and a bad number is refused', { timeout: 60_000 }, () =>
  withLogs(async () => {
    await page.goto(`${server.baseUrl}/admin/guards`, { waitUntil: 'load' });
    for (const id of ['max_pending_per_agent', 'prompts_per_approver_per_minute', 'deny_cooldown_seconds', 'approve_delay_ms']) {
      assert.match(await page.inputValue(`#${id}`), /^\d+$/, `the stored ${id} is shown before the wasm loads`);
    }
    const wasCollapsing = await page.isChecked('#collapse_identical');
    await page.fill('#max_pending_per_agent', '7');
    await page.fill('#approve_delay_ms', '1500');
    await page.setChecked('#collapse_identical', !wasCollapsing);
    await post('#guards', '/admin/guards');
    assert.equal(await page.inputValue('#max_pending_per_agent'), '7');
    assert.equal(await page.inputValue('#approve_delay_ms'), '1500');
    assert.equal(await page.isChecked('#collapse_identical'), !wasCollapsing);

    await page.setChecked('#collapse_identical', wasCollapsing);
    await page.fill('#deny_cooldown_seconds', 'soon');
    await post('#guards', '/admin/guards');
    assert.match(await page.textContent('#guards'), /invalid|number/i, 'the refusal is shown');
    await page.goto(`${server.baseUrl}/admin/guards`, { waitUntil: 'load' });
    assert.equal(await page.inputValue('#max_pending_per_agent'), '7', 'nothing was changed');
    assert.equal(await page.isChecked('#collapse_identical'), !wasCollapsing);
  }));
