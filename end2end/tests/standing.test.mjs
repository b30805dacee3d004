// Approvals that fit how people work, in Chromium with a DevTools virtual authenticator:
//
//   a rule allows standing approvals -> an agent asks for a transfer -> the owner opens
//   "Approve with limits…", caps the amount, and also approves similar requests (two uses,
//   the payee pinned) with one passkey ceremony -> the grant carries the cap -> the next
//   matching request comes back approved at once, while others (another target, a higher
//   amount, after the last use) wait -> a second standing approval is revoked from /standing
//   and the next matching request waits for a human again -> a third, for one minute, covers
//   until its minute is up and then no longer.
//
// And a batch: five pending requests of one agent selected in the inbox and approved with one
// passkey ceremony; the agent receives five grants.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import {
  addVirtualAuthenticator,
  artifactsDir,
  collectPageProblems,
  launchBrowser,
  startServer,
} from '../lib/harness.mjs';

const HYDRATED = '[data-hydrated="true"]';
const PAYEE = 'DE89 3704 0044 0532 0130 00';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

/** The claims of a compact JWS (the signature is the server's business; tested elsewhere). */
function claims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

test('narrow an approval, give a standing approval, watch it cover only its pattern, revoke one', { timeout: 180_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
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
    await page.fill('#email', 'owner@example.com');
    await page.fill('#display_name', 'Olive Owner');
    await page.fill('#passkey_name', 'Phone');
    await page.click('button[type=submit]');
    await page.waitForURL(`${server.baseUrl}/`);
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    const { key, applied } = await page.evaluate(async () => {
      const agent = await (await fetch('/api/app/create_agent', { method: 'POST', body: new URLSearchParams({ name: 'payer' }) })).json();
      const rule = {
        id: 'payments', action: 'payments.*', outcome: 'require', approvals: '1', approvers: 'owner',
        standing_max_seconds: '3600', standing_max_uses: '10',
      };
      const res = await fetch('/api/app/admin/apply_policy_draft', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ base_version: 0, rules: [rule] }),
      });
      return { key: agent.api_key, applied: `${res.status} ${await res.text()}` };
    });
    assert.match(applied, /^200 /, applied);

    const agentCall = async (method, pathname, body) => {
      const res = await fetch(`${server.baseUrl}${pathname}`, {
        method,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    };
    const transfer = (amount, { to = PAYEE, target = 'bank-api' } = {}) => ({
      action: { type: 'payments.transfer', target, operation: 'POST /v2/transfers', params: { to, amount } },
      intent: { goal: 'Pay supplier invoice INV-1042' },
      context: { amount: { value: amount, currency: 'EUR' } },
    });
    const ask = (body) => agentCall('POST', '/api/v1/requests', body);

    // Narrow and make standing, in one ceremony.
    const asked = await ask(transfer('50.00'));
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    await open(`${server.baseUrl}/requests/${asked.body.id}`);
    await page.click('details.limits summary');
    await page.fill('#narrow-amount', '40.00');
    await page.check('#standing-on');
    await page.fill('#standing-uses', '2');
    await page.fill('#standing-minutes', '10');
    await page.fill('#standing-amount', '100');
    // The payee stays pinned; the amount parameter may vary (within the cap).
    await page.uncheck('input[name=pin][value=amount]');
    assert.ok(await page.isChecked('input[name=pin][value=to]'));
    await page.click('button.approve');
    await page.waitForSelector('article.request[data-status="approved"]');
    const decided = await agentCall('GET', `/api/v1/requests/${asked.body.id}`);
    assert.deepEqual(claims(decided.body.grant.token).authorization_details[0].amount_max, { value: '40.00', currency: 'EUR' });

    // Inside the pattern: approved at once, no prompt. Outside it: waits for a human.
    let r = await ask(transfer('60.00'));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, 'approved');
    assert.ok(claims(r.body.grant.token).standing_approval);
    r = await ask(transfer('60.00', { target: 'other-bank' }));
    assert.equal(r.body.status, 'pending', 'another target');
    r = await ask(transfer('150.00'));
    assert.equal(r.body.status, 'pending', 'a higher amount');
    r = await ask(transfer('10.00', { to: 'FR76 3000 6000 0112 3456 7890 189' }));
    assert.equal(r.body.status, 'pending', 'another payee');
    r = await ask(transfer('70.00'));
    assert.equal(r.body.status, 'approved', 'the second use');
    r = await ask(transfer('80.00'));
    assert.equal(r.body.status, 'pending', 'after the last use');

    // A second standing approval, revoked from the list in one click.
    const second = await ask(transfer('51.00'));
    await open(`${server.baseUrl}/requests/${second.body.id}`);
    await page.click('details.limits summary');
    await page.check('#standing-on');
    await page.uncheck('input[name=pin][value=amount]');
    await page.click('button.approve');
    await page.waitForSelector('article.request[data-status="approved"]');
    // Its cap defaults to the amount asked (51.00 EUR).
    r = await ask(transfer('45.00'));
    assert.equal(r.body.status, 'approved', 'the second standing approval covers it');
    await open(`${server.baseUrl}/standing`);
    const active = page.locator('li.standing-row[data-state="active"]');
    assert.equal(await active.count(), 1);
    assert.match(await page.textContent('.standing-list'), /used up/);
    await active.locator('button:has-text("Revoke")').click();
    await page.waitForSelector('li.standing-row[data-state="revoked"]');
    r = await ask(transfer('46.00'));
    assert.equal(r.body.status, 'pending', 'revoked: a human is asked again');

    // A third, for one minute: it covers until its time runs out, then a human is asked again.
    const third = await ask(transfer('30.00'));
    await open(`${server.baseUrl}/requests/${third.body.id}`);
    await page.click('details.limits summary');
    await page.check('#standing-on');
    await page.uncheck('input[name=pin][value=amount]');
    await page.fill('#standing-minutes', '1');
    await page.click('button.approve');
    await page.waitForSelector('article.request[data-status="approved"]');
    r = await ask(transfer('20.00'));
    assert.equal(r.body.status, 'approved', 'within its minute');
    await new Promise((resolve) => setTimeout(resolve, 61_000));
    r = await ask(transfer('21.00'));
    assert.equal(r.body.status, 'pending', 'after expiry');
    assert.deepEqual(problems.pageErrors, [], problems.summary());
  } catch (err) {
    server?.dumpLogs('standing approvals flow failed');
    await page.screenshot({ path: path.join(artifactsDir(), 'standing-failure.png'), fullPage: true }).catch(() => {});
    throw err;
  } finally {
    await context.close();
  }
});

test('a batch of five is approved from the inbox with one passkey ceremony', { timeout: 180_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const problems = collectPageProblems(page);
  await addVirtualAuthenticator(page);
  let own;
  let assertions = 0;
  page.on('request', (req) => {
    if (req.url().endsWith('/api/ui/batch/finish')) assertions += 1;
  });
  try {
    const open = async (url) => {
      await page.goto(url, { waitUntil: 'load' });
      await page.waitForSelector(HYDRATED, { state: 'attached' });
    };
    // A server of its own, so the inbox holds only this test's requests.
    own = await startServer();
    const link = own.logs().match(/https?:\/\/\S+\/enrol\/\S+/)?.[0];
    assert.ok(link, 'serve printed a first-admin link');
    await open(link);
    await page.fill('#email', 'batcher@example.com');
    await page.fill('#display_name', 'Bea Batcher');
    await page.fill('#passkey_name', 'Laptop');
    await page.click('button[type=submit]');
    await page.waitForURL(`${own.baseUrl}/`);
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    const key = await page.evaluate(async () => {
      const res = await fetch('/api/app/create_agent', { method: 'POST', body: new URLSearchParams({ name: 'batch-bot' }) });
      return (await res.json()).api_key;
    });
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${own.baseUrl}/api/v1/requests`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          action: { type: 'payments.refund', target: 'shop', params: { order: `ORD-${i}` } },
          intent: { goal: `Refund order ORD-${i}` },
        }),
      });
      assert.equal(res.status, 202);
      ids.push((await res.json()).id);
    }
    await open(`${own.baseUrl}/`);
    for (const id of ids) {
      await page.check(`li.inbox-row[data-request-id="${id}"] input.select`);
    }
    // The approve delay guard counts from when each request was first shown.
    await page.waitForTimeout(1_600);
    await page.click('button.batch-approve');
    await page.waitForSelector('.batch .outcome');
    assert.match(await page.textContent('.batch .outcome'), /Approved 5\./);
    assert.equal(assertions, 1, 'one passkey ceremony');
    for (const id of ids) {
      const res = await fetch(`${own.baseUrl}/api/v1/requests/${id}`, { headers: { authorization: `Bearer ${key}` } });
      const body = await res.json();
      assert.equal(body.status, 'approved', JSON.stringify(body));
      assert.ok(body.grant.token);
    }
    assert.deepEqual(problems.pageErrors, [], problems.summary());
  } catch (err) {
    own?.dumpLogs('batch approval failed');
    await page.screenshot({ path: path.join(artifactsDir(), 'batch-failure.png'), fullPage: true }).catch(() => {});
    throw err;
  } finally {
    await context.close();
    await own?.stop();
  }
});
