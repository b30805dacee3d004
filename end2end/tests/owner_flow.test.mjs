// The owner's side, end to end, in Chromium with DevTools virtual authenticators:
//
//   the first admin enrols (one-time link printed by `serve`) -> invites an owner
//   -> the owner enrols -> registers an agent (API key shown once)
//   -> the agent asks over HTTP -> the request appears in the open inbox without a reload
//   -> the owner approves with the passkey -> the agent's long-wait returns the grant
//   -> the grant redeems exactly once.
//
// Then: the deny path (the reason reaches the agent), a request that expires while its page
// is open, and an authenticator without user verification being refused. Screenshots of the
// request page at 360 px and 1280 px go to end2end/test-results/.
//
// The test prints one measured figure (not asserted: these machines are shared and noisy):
// `inbox latency`, from the agent's POST to the row being visible in the open inbox.

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
const UI_TIMEOUT_MS = 20_000;

let server;
let browser;
const state = {}; // shared across the tests of this file, in order

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

/** A fresh browser profile with its own virtual passkey authenticator. */
async function person({ width = 1280, height = 900, uv = true } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  const problems = collectPageProblems(page);
  const authenticator = await addVirtualAuthenticator(page, { isUserVerified: uv, hasUserVerification: uv });
  return { context, page, problems, authenticator };
}

async function open(page, url) {
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector(HYDRATED, { state: 'attached' });
}

async function agentCall(method, pathname, body, key = state.apiKey) {
  const res = await fetch(`${server.baseUrl}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json };
}

function transfer(amount, extra = {}) {
  return {
    action: {
      type: 'payments.transfer',
      target: 'bank-api',
      operation: 'POST /v2/transfers',
      params: { to: 'DE89 3704 0044 0532 0130 00', amount, memo: { invoice: 'INV-1042', lines: ['hosting', 'support'] } },
    },
    intent: { goal: 'Pay supplier invoice INV-1042', rationale: 'Invoice approved in ticket FIN-77; due today' },
    context: {
      environment: 'production',
      data_sensitivity: 'confidential',
      amount: { value: amount, currency: 'EUR' },
      delegation: [{ actor: 'planner-agent', on_behalf_of: 'owner@example.com' }],
    },
    expires_in: 300,
    ...extra,
  };
}

async function withLogs(fn) {
  try {
    await fn();
  } catch (err) {
    server?.dumpLogs('owner flow failed');
    throw err;
  }
}

test('the first admin enrols and invites an owner, who enrols', { timeout: 120_000 }, () =>
  withLogs(async () => {
    const link = server.logs().match(/https?:\/\/\S+\/enrol\/\S+/)?.[0];
    assert.ok(link, `serve printed no first-admin link:\n${server.logs()}`);

    const admin = await person();
    await open(admin.page, link);
    await admin.page.fill('#email', 'admin@example.com');
    await admin.page.fill('#display_name', 'Ada Admin');
    await admin.page.fill('#passkey_name', 'Laptop');
    await admin.page.click('button[type=submit]');
    await admin.page.waitForURL(`${server.baseUrl}/`);
    await admin.page.waitForSelector(HYDRATED, { state: 'attached' });
    assert.match(await admin.page.textContent('header'), /Ada Admin/);

    await open(admin.page, `${server.baseUrl}/admin/people`);
    await admin.page.fill('#invite-email', 'owner@example.com');
    await admin.page.selectOption('#invite-role', 'owner');
    await admin.page.click('form button[type=submit]');
    const invite = (await admin.page.textContent('#invite-link')).trim();
    assert.match(invite, /\/enrol\//);
    assert.deepEqual(admin.problems.pageErrors, [], admin.problems.summary());

    const owner = await person();
    await open(owner.page, invite);
    assert.match(await owner.page.textContent('main'), /owner@example\.com/);
    await owner.page.fill('#display_name', 'Olive Owner');
    await owner.page.fill('#passkey_name', 'Laptop');
    await owner.page.click('button[type=submit]');
    await owner.page.waitForURL(`${server.baseUrl}/`);
    state.admin = admin;
    state.owner = owner;
  }));

test('the owner signs out and back in with the passkey picker', { timeout: 60_000 }, () =>
  withLogs(async () => {
    const { page } = state.owner;
    await open(page, `${server.baseUrl}/`);
    await page.click('header button:has-text("Sign out")');
    await page.waitForURL(`${server.baseUrl}/sign-in`);
    // Signed out, the inbox sends you to sign in and back.
    await page.goto(`${server.baseUrl}/agents`);
    await page.waitForURL(/\/sign-in\?next=/);
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    // No e-mail typed: a discoverable credential from the virtual authenticator.
    await page.click('button[type=submit]');
    await page.waitForURL(`${server.baseUrl}/agents`);
    assert.match(await page.textContent('header'), /Olive Owner/);
  }));

test('the owner registers an agent; its key is shown once', { timeout: 60_000 }, () =>
  withLogs(async () => {
    const { page } = state.owner;
    await open(page, `${server.baseUrl}/agents`);
    await page.fill('#agent-name', 'invoice-bot');
    await page.click('form button[type=submit]');
    state.apiKey = (await page.textContent('#api-key')).trim();
    assert.match(state.apiKey, /^cs_agent_/);
    assert.match(await page.textContent('pre.curl'), /Authorization: Bearer cs_agent_/);
    await open(page, `${server.baseUrl}/agents`);
    assert.doesNotMatch(await page.textContent('main'), /cs_agent_/, 'the key is not shown again');
    assert.match(await page.textContent('.agent-row'), /invoice-bot/);
  }));

test('a request appears live in the inbox, is approved with the passkey, and its grant redeems once', { timeout: 120_000 }, () =>
  withLogs(async () => {
    const { page, problems } = state.owner;
    await open(page, `${server.baseUrl}/`);
    await page.waitForSelector('.live[data-state="live"]');
    assert.match(await page.textContent('main'), /Nothing is waiting/);

    const asked = Date.now();
    const created = await agentCall('POST', '/api/v1/requests', transfer('25000.00'));
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const id = created.body.id;
    await page.waitForSelector(`.inbox-row[data-request-id="${id}"]`, { timeout: 5_000 });
    const latency = Date.now() - asked;
    console.log(`# figure: inbox latency (agent POST -> row visible, no reload): ${latency} ms`);
    assert.equal(await page.title(), '(1) Inbox · Countersign');
    const row = await page.textContent(`.inbox-row[data-request-id="${id}"]`);
    assert.match(row, /invoice-bot/);
    assert.match(row, /Production environment/);

    // The agent waits (long-wait) while the owner decides.
    const waiting = agentCall('GET', `/api/v1/requests/${id}?wait=50`);

    await page.click(`.inbox-row[data-request-id="${id}"] a`);
    await page.waitForURL(`${server.baseUrl}/requests/${id}`);
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    const main = await page.textContent('main');
    for (const text of ['Pay supplier invoice INV-1042', 'Large amount: 25000.00 EUR', 'Confidential data', 'planner-agent', 'INV-1042', 'hosting']) {
      assert.ok(main.includes(text), `the request page shows ${text}`);
    }
    const shownHash = await page.getAttribute('article.request', 'data-display-hash');

    for (const [width, height] of [[1280, 900], [360, 780]]) {
      await page.setViewportSize({ width, height });
      await page.screenshot({ path: path.join(artifactsDir(), `request-${width}.png`), fullPage: true });
    }
    // At 360 px nothing overflows sideways.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 360px screen`);
    await page.setViewportSize({ width: 1280, height: 900 });

    await page.click('button.approve');
    await page.waitForSelector('article.request[data-status="approved"]');
    assert.match(await page.textContent('.decide'), /approved/i);

    const answer = await waiting;
    assert.equal(answer.status, 200);
    assert.equal(answer.body.status, 'approved');
    assert.ok(answer.body.grant?.token, JSON.stringify(answer.body));

    const redeem = (token) =>
      fetch(`${server.baseUrl}/api/v1/grants/redeem`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token }),
      });
    const first = await redeem(answer.body.grant.token);
    assert.equal(first.status, 200);
    const claims = (await first.json()).claims;
    assert.equal(claims.request_id, id);
    assert.equal((await redeem(answer.body.grant.token)).status, 409, 'a grant redeems once');

    // The approval on the audit chain carries the hash of the page the owner saw.
    await open(page, `${server.baseUrl}/history`);
    await page.click(`.history-row[data-request-id="${id}"] summary`);
    const events = await page.textContent(`.history-row[data-request-id="${id}"]`);
    for (const kind of ['request.created', 'request.approved', 'grant.redeemed']) {
      assert.ok(events.includes(kind), `history shows ${kind}: ${events}`);
    }
    assert.ok(events.includes(shownHash), 'the recorded display hash is the one shown');
    assert.deepEqual(problems.pageErrors, [], problems.summary());
  }));

test('a denial with a reason reaches the agent', { timeout: 60_000 }, () =>
  withLogs(async () => {
    const { page } = state.owner;
    const created = await agentCall('POST', '/api/v1/requests', transfer('120.00'));
    assert.equal(created.status, 202);
    const id = created.body.id;
    await open(page, `${server.baseUrl}/requests/${id}`);
    await page.click('button:has-text("Deny…")');
    await page.selectOption('#reason_code', 'wrong_details');
    await page.fill('#reason', 'Wrong IBAN: use the one on file');
    await page.click('button:has-text("Deny with passkey")');
    await page.waitForSelector('article.request[data-status="denied"]');
    const state_ = await agentCall('GET', `/api/v1/requests/${id}`);
    assert.equal(state_.body.status, 'denied');
    assert.equal(state_.body.decision.reason_code, 'wrong_details');
    assert.equal(state_.body.decision.reason, 'Wrong IBAN: use the one on file');
  }));

test('a request that expires while its page is open says so', { timeout: 60_000 }, () =>
  withLogs(async () => {
    const { page } = state.owner;
    const created = await agentCall('POST', '/api/v1/requests', { ...transfer('40.00'), expires_in: 3 });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const id = created.body.id;
    await open(page, `${server.baseUrl}/requests/${id}`);
    // The countdown reaches zero in the open page...
    await page.waitForFunction(() => document.querySelector('.countdown')?.textContent === 'expired', null, { timeout: 10_000 });
    // ...and approving now says clearly that it is too late, and grants nothing.
    await page.click('button.approve');
    try {
      await page.waitForSelector('.error, article.request[data-status="expired"]');
    } catch (err) {
      await page.screenshot({ path: path.join(artifactsDir(), 'expired-failure.png'), fullPage: true });
      console.log(await page.textContent('main'));
      console.log(state.owner.problems.summary());
      throw err;
    }
    assert.match(await page.textContent('main'), /expired/i);
    const answer = await agentCall('GET', `/api/v1/requests/${id}`);
    assert.equal(answer.body.status, 'expired');
    assert.equal(answer.body.grant, undefined);
  }));

test('an authenticator without user verification is refused', { timeout: 60_000 }, () =>
  withLogs(async () => {
    // The owner's passkey answers from an authenticator that cannot verify the user.
    const { page, authenticator } = state.owner;
    await authenticator.cdp.send('WebAuthn.setUserVerified', {
      authenticatorId: authenticator.authenticatorId,
      isUserVerified: false,
    });
    const created = await agentCall('POST', '/api/v1/requests', transfer('60.00'));
    const id = created.body.id;
    await open(page, `${server.baseUrl}/requests/${id}`);
    await page.click('button.approve');
    await page.waitForSelector('.decide .error');
    assert.match(await page.textContent('.decide .error'), /Nothing was changed/);
    const answer = await agentCall('GET', `/api/v1/requests/${id}`);
    assert.equal(answer.body.status, 'pending', 'nothing was approved');
    await authenticator.cdp.send('WebAuthn.setUserVerified', {
      authenticatorId: authenticator.authenticatorId,
      isUserVerified: true,
    });
  }));
