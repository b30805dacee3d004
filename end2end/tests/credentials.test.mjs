// Task-scoped credentials in the browser, in Chromium with a DevTools virtual authenticator:
//
//   the first admin enrols -> adds an HTTP gateway on /admin/credentials (the secret typed once,
//   the list shows only its fingerprint) -> names it on a rule in the policy editor -> an
//   agent's request waits -> the request page says what approving releases -> the admin
//   approves with the passkey -> the agent sends the approved call through /gw/… with its grant
//   -> a real HTTP server on loopback receives it with the secret, which the agent never saw.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';

import {
  addVirtualAuthenticator,
  artifactsDir,
  collectPageProblems,
  launchBrowser,
  startServer,
} from '../lib/harness.mjs';

const HYDRATED = '[data-hydrated="true"]';
const SECRET = `Bearer upstream-${Math.random().toString(36).slice(2)}`;

let server;
let browser;
let upstream;
const received = [];

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  upstream = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      received.push({ method: req.method, url: req.url, authorization: req.headers.authorization, body });
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ transfer: 'tr_1' }));
    });
  });
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
  upstream?.close();
});

test('an admin adds a gateway, the approver reads what it releases, the agent calls through it', { timeout: 180_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const problems = collectPageProblems(page);
  await addVirtualAuthenticator(page);
  try {
    const open = async (url) => {
      await page.goto(url, { waitUntil: 'load' });
      await page.waitForSelector(HYDRATED, { state: 'attached' });
    };
    const link = server.logs().match(/https?:\/\/\S+\/enrol\/\S+/)?.[0];
    assert.ok(link, 'serve printed a first-admin link');
    await open(link);
    await page.fill('#email', 'admin@example.com');
    await page.fill('#display_name', 'Ada Admin');
    await page.fill('#passkey_name', 'Laptop');
    await page.click('button[type=submit]');
    await page.waitForURL(`${server.baseUrl}/`);
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    const agent = await page.evaluate(async () => {
      const res = await fetch('/api/app/create_agent', { method: 'POST', body: new URLSearchParams({ name: 'payer' }) });
      return res.json();
    });
    const key = agent.api_key;

    // The gateway, added on its page.
    await open(`${server.baseUrl}/admin/credentials`);
    await page.fill('#provider-name', 'bank-api');
    await page.selectOption('#provider-kind', 'http');
    await page.fill('#base-url', `http://127.0.0.1:${upstream.address().port}/api`);
    await page.fill('#operations', 'POST /v2/transfers');
    await page.fill('#secret', SECRET);
    await page.click('#add-provider button[type=submit]');
    await page.waitForSelector('tr[data-provider="bank-api"]');
    const listed = await page.textContent('#providers');
    assert.match(listed, /hmac-sha256:/);
    assert.ok(!listed.includes(SECRET.slice(7)), 'the secret is never shown');

    // A rule that releases it, from the policy editor.
    await open(`${server.baseUrl}/admin/policy`);
    await page.click('button:has-text("Add a rule")');
    const card = page.locator('.rule-card').nth(0);
    await card.locator('input[name=id]').fill('transfers');
    await card.locator('input[name=action]').fill('payments.*');
    await card.locator('input[name=credential]').fill('bank-api');
    await page.click('button:has-text("Check draft")');
    await page.waitForSelector('.draft-diff');
    assert.match(await page.textContent('.draft-diff'), /\+ credential = "bank-api"/);
    await page.click('button:has-text("Apply as a new version")');
    await page.waitForSelector('.version-row[data-version="1"]');

    const agentCall = async (method, pathname, body, headers = {}) => {
      const res = await fetch(`${server.baseUrl}${pathname}`, {
        method,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    };
    const params = { to: 'DE89 3704 0044 0532 0130 00', amount: '125.00' };
    const asked = await agentCall('POST', '/api/v1/requests', {
      action: { type: 'payments.transfer', target: 'bank-api', operation: 'POST /v2/transfers', params },
      intent: { goal: 'Pay supplier invoice INV-1042' },
    });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));

    // The approver reads what approving releases, and approves.
    await open(`${server.baseUrl}/requests/${asked.body.id}`);
    assert.match(await page.textContent('#releases'), /one POST \/v2\/transfers to bank-api through the gateway/);
    await page.click('button.approve');
    await page.waitForSelector('article.request[data-status="approved"]');
    const decided = await agentCall('GET', `/api/v1/requests/${asked.body.id}`);
    const grant = decided.body.grant.token;

    // A different body is refused before the upstream sees anything; the approved call passes.
    let r = await agentCall('POST', '/gw/bank-api/v2/transfers', { ...params, amount: '9125.00' }, { 'countersign-grant': grant });
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(received.length, 0);
    r = await agentCall('POST', '/gw/bank-api/v2/transfers', params, { 'countersign-grant': grant });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.deepEqual(r.body, { transfer: 'tr_1' });
    assert.equal(received.length, 1);
    assert.equal(received[0].authorization, SECRET);
    assert.equal(received[0].url, '/api/v2/transfers');
    r = await agentCall('POST', '/gw/bank-api/v2/transfers', params, { 'countersign-grant': grant });
    assert.equal(r.status, 409, 'a replay is refused');
    assert.deepEqual(problems.pageErrors, [], problems.summary());
  } catch (err) {
    server?.dumpLogs('credentials flow failed');
    await page.screenshot({ path: path.join(artifactsDir(), 'credentials-failure.png'), fullPage: true }).catch(() => {});
    throw err;
  } finally {
    await context.close();
  }
});
