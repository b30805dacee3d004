// The admin's side, end to end, in Chromium with DevTools virtual authenticators:
//
//   the first admin enrols -> builds a policy in the rule editor (a problem is shown next to
//   its field; the draft's diff and a dry run) -> applies it -> an agent's next requests take
//   the three paths (allowed, needs two, denied) -> the admin moves a threshold in the editor
//   -> the next request takes the new path.
//
// Then: a quorum of two from two groups (finance and sre), approved by two people in two
// browser contexts; and deactivating a person on /admin/people ends their open session.

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
const state = {};

before(async () => {
  // Identical pending requests would collapse into one; this file asks for distinct ones.
  server = await startServer({ env: { COUNTERSIGN_COLLAPSE_IDENTICAL: 'false' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

async function person({ width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  const problems = collectPageProblems(page);
  await addVirtualAuthenticator(page);
  return { context, page, problems };
}

async function open(page, url) {
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector(HYDRATED, { state: 'attached' });
}

/** Calls a server function from the page, as its own scripts would (same origin, cookies). */
async function serverFn(page, name, args) {
  return page.evaluate(
    async ([name, args]) => {
      const res = await fetch(`/api/app/${name}`, { method: 'POST', body: new URLSearchParams(args) });
      return { status: res.status, body: await res.json() };
    },
    [name, args],
  );
}

async function agentCall(method, pathname, body) {
  const res = await fetch(`${server.baseUrl}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${state.apiKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

function transfer(amount) {
  return {
    action: { type: 'payments.transfer', target: 'bank-api', params: { amount } },
    intent: { goal: `Pay ${amount} EUR` },
    context: { environment: 'production', amount: { value: amount, currency: 'EUR' } },
  };
}

async function enrol(link, name) {
  const p = await person();
  await open(p.page, link);
  await p.page.fill('#display_name', name);
  await p.page.fill('#passkey_name', 'Laptop');
  await p.page.click('button[type=submit]');
  await p.page.waitForURL(`${server.baseUrl}/`);
  await p.page.waitForSelector(HYDRATED, { state: 'attached' });
  return p;
}

async function invite(email, role, groups) {
  const r = await serverFn(state.admin.page, 'invite', { email, role, groups });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.link;
}

async function withLogs(fn) {
  try {
    await fn();
  } catch (err) {
    server?.dumpLogs('admin flow failed');
    for (const who of ['admin', 'fin', 'sre']) {
      await state[who]?.page
        .screenshot({ path: path.join(artifactsDir(), `admin-flow-${who}-failure.png`), fullPage: true })
        .catch(() => {});
    }
    throw err;
  }
}

/** The rule card at `index` (0-based) in the editor. */
const rule = (page, index) => page.locator('.rule-card').nth(index);

async function fillRule(page, index, fields) {
  const card = rule(page, index);
  for (const [name, value] of Object.entries(fields)) {
    if (name === 'outcome') {
      await card.locator('select[name=outcome]').selectOption(value);
    } else if (typeof value === 'boolean') {
      await card.locator(`input[name=${name}]`).setChecked(value);
    } else {
      await card.locator(`input[name=${name}]`).fill(value);
    }
  }
}

test('an admin builds a policy in the editor and the next requests take its paths', { timeout: 180_000 }, () =>
  withLogs(async () => {
    const link = server.logs().match(/https?:\/\/\S+\/enrol\/\S+/)?.[0];
    assert.ok(link, 'serve printed a first-admin link');
    const admin = await person();
    await open(admin.page, link);
    await admin.page.fill('#email', 'admin@example.com');
    await admin.page.fill('#display_name', 'Ada Admin');
    await admin.page.fill('#passkey_name', 'Laptop');
    await admin.page.click('button[type=submit]');
    await admin.page.waitForURL(`${server.baseUrl}/`);
    await admin.page.waitForSelector(HYDRATED, { state: 'attached' });
    state.admin = admin;
    const agent = await serverFn(admin.page, 'create_agent', { name: 'payments-bot' });
    assert.equal(agent.status, 200, JSON.stringify(agent.body));
    state.apiKey = agent.body.api_key;

    const { page } = admin;
    await open(page, `${server.baseUrl}/admin/policy`);
    assert.match(await page.textContent('.policy-editor'), /No rules/);
    // Three rules: very large transfers are refused, small ones run, the rest need two people.
    for (let i = 0; i < 3; i++) await page.click('button:has-text("Add a rule")');
    await fillRule(page, 0, { id: 'huge', action: 'payments.*', amount_at_least: '10000', amount_currency: 'EUR', outcome: 'deny' });
    await fillRule(page, 0, { reason: 'Too large for an agent' });
    await fillRule(page, 1, { id: 'small', action: 'payments.*', amount_below: '100', amount_currency: 'EUR', outcome: 'allow' });
    await fillRule(page, 2, { id: 'two-people', action: 'payments.*', approvals: '0', approvers: 'group:finance, group:sre', all_groups: true });

    // A problem is shown next to its field, and nothing can be applied yet.
    await page.click('button:has-text("Check draft")');
    await rule(page, 2).locator('.field-error').waitFor();
    assert.match(await rule(page, 2).textContent(), /between 1 and 10/);
    assert.ok(await page.isDisabled('button:has-text("Apply as a new version")'));
    await fillRule(page, 2, { approvals: '2' });

    // The draft's diff and a dry run of a sample.
    await page.fill('input[name=sample_action_type]', 'payments.transfer');
    await page.fill('input[name=sample_amount]', '500');
    await page.fill('input[name=sample_currency]', 'EUR');
    await page.click('button:has-text("Check and dry-run")');
    await page.waitForSelector('.dry-run-result');
    assert.equal((await page.textContent('.matched-rule')).trim(), 'two-people');
    assert.match(await page.textContent('.passed-over'), /huge[\s\S]*small/);
    assert.match(await page.textContent('.draft-diff'), /\+ id = "two-people"/);
    await page.click('button:has-text("Apply as a new version")');
    await page.waitForSelector('.version-row[data-version="1"]');

    // The next requests take the three paths.
    let r = await agentCall('POST', '/api/v1/requests', transfer('50.00'));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, 'approved');
    r = await agentCall('POST', '/api/v1/requests', transfer('500.00'));
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.policy.approvals_required, 2);
    state.quorumRequest = r.body.id;
    r = await agentCall('POST', '/api/v1/requests', transfer('20000.00'));
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(r.body.error, 'denied_by_policy');

    // Move the threshold: up to 1000 EUR now runs on its own.
    await open(page, `${server.baseUrl}/admin/policy`);
    await fillRule(page, 1, { amount_below: '1000' });
    // Reorder: the rule moved up keeps its fields.
    await rule(page, 1).locator('button[aria-label="Move up"]').click();
    await page.waitForSelector('.rule-card:nth-child(1)[data-rule="small"]');
    assert.equal(await rule(page, 0).locator('input[name=amount_below]').inputValue(), '1000');
    await rule(page, 0).locator('button[aria-label="Move down"]').click();
    await page.waitForSelector('.rule-card:nth-child(1)[data-rule="huge"]');
    await page.click('button:has-text("Check draft")');
    await page.waitForSelector('.draft-diff');
    const diff = await page.textContent('.draft-diff');
    assert.match(diff, /- amount_below = \{ value = "100"/);
    assert.match(diff, /\+ amount_below = \{ value = "1000"/);
    await page.click('button:has-text("Apply as a new version")');
    await page.waitForSelector('.version-row[data-version="2"]');
    r = await agentCall('POST', '/api/v1/requests', transfer('600.00'));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.policy.rule, 'small');
    assert.deepEqual(admin.problems.pageErrors, [], admin.problems.summary());
  }));

test('a quorum of two from two groups, approved in two browsers', { timeout: 180_000 }, () =>
  withLogs(async () => {
    const finLink = await invite('fin@example.com', 'owner', 'finance');
    const sreLink = await invite('sre@example.com', 'owner', 'sre');
    state.fin = await enrol(finLink, 'Fiona Finance');
    state.sre = await enrol(sreLink, 'Sam SRE');
    const id = state.quorumRequest;
    const waiting = agentCall('GET', `/api/v1/requests/${id}?wait=50`);

    const { page: fin } = state.fin;
    await open(fin, `${server.baseUrl}/requests/${id}`);
    await fin.click('button.approve');
    await fin.waitForSelector('text=more approvals are needed');
    let now = await agentCall('GET', `/api/v1/requests/${id}`);
    assert.equal(now.body.status, 'pending', 'one group is not enough');
    assert.equal(now.body.approvals.received, 1);

    const { page: sre } = state.sre;
    await open(sre, `${server.baseUrl}/requests/${id}`);
    assert.match(await sre.textContent('main'), /1 of 2 approvals received/);
    await sre.click('button.approve');
    await sre.waitForSelector('article.request[data-status="approved"]');
    const answer = await waiting;
    assert.equal(answer.body.status, 'approved');
    assert.ok(answer.body.grant?.token, 'the waiting agent gets its grant');
  }));

test('an admin reads the quorum approval on the audit trail and rotates the agent key', { timeout: 120_000 }, () =>
  withLogs(async () => {
    const { page, problems } = state.admin;
    const id = state.quorumRequest;
    // Reached from the header, in the page: the audit page's code is its own wasm chunk,
    // loaded by the router on the way.
    await open(page, `${server.baseUrl}/`);
    await page.click('header a[href="/admin/audit"]');
    await page.waitForURL(`${server.baseUrl}/admin/audit`);
    assert.match(await page.textContent('.chain.ok'), /verified/i);
    await open(page, `${server.baseUrl}/admin/audit/request/${id}`);
    const kinds = await page.$$eval('.timeline .step', (steps) => steps.map((s) => s.dataset.kind));
    // intent -> policy decision (on creation) -> each approval -> approved -> grant, in order.
    const at = (kind) => kinds.indexOf(kind);
    assert.equal(kinds.filter((k) => k === 'approval.recorded').length, 2, kinds.join(' '));
    assert.ok(at('request.created') === 0, kinds.join(' '));
    assert.ok(at('approval.recorded') < at('request.approved'), kinds.join(' '));
    assert.ok(at('request.approved') < at('grant.issued'), kinds.join(' '));
    const timeline = await page.textContent('.timeline');
    for (const who of ['Fiona Finance', 'Sam SRE']) assert.ok(timeline.includes(who), `the timeline names ${who}`);
    assert.match(timeline, /Laptop/, 'and the passkey each used');

    await open(page, `${server.baseUrl}/admin/agents`);
    const card = page.locator('.agent-card', { hasText: 'payments-bot' });
    await card.locator('button:has-text("Rotate API key")').click();
    await card.locator('.confirm button.danger').click();
    const fresh = (await page.textContent('#api-key')).trim();
    assert.match(fresh, /^cs_agent_/);
    assert.notEqual(fresh, state.apiKey);
    const old = await agentCall('GET', `/api/v1/requests/${id}`);
    assert.equal(old.status, 401, 'the old key stops working');
    state.apiKey = fresh;
    const now = await agentCall('GET', `/api/v1/requests/${id}`);
    assert.equal(now.status, 200, 'the new one works');
    assert.deepEqual(problems.pageErrors, [], problems.summary());
  }));

test('deactivating a person ends their open session', { timeout: 120_000 }, () =>
  withLogs(async () => {
    const { page: sre } = state.sre;
    await open(sre, `${server.baseUrl}/`);
    await sre.waitForSelector('.live[data-state="live"]');

    const { page } = state.admin;
    await open(page, `${server.baseUrl}/admin/people`);
    const card = page.locator('.person-card[data-email="sre@example.com"]');
    assert.match(await card.textContent(), /1 passkey/);
    await card.locator('button:has-text("Deactivate")').click();
    await card.locator('button:has-text("Yes, deactivate")').click();
    await page.waitForSelector('.person-card[data-email="sre@example.com"] .status.denied');

    // The server closes the open inbox's live stream; its reconnect is refused, and the page
    // goes to sign in without Sam doing anything.
    await sre.waitForURL(/\/sign-in\?next=/, { timeout: 30_000 });
    await sre.waitForSelector(HYDRATED, { state: 'attached' });
    // Every page sends him there, and his passkey no longer signs him in.
    await sre.goto(`${server.baseUrl}/history`);
    await sre.waitForURL(/\/sign-in\?next=(%2F|\/)history/);
    await sre.waitForSelector(HYDRATED, { state: 'attached' });
    // The virtual authenticator still holds Sam's passkey and answers the passkey picker.
    await sre.click('button[type=submit]');
    await sre.waitForSelector('.error');
    assert.ok(sre.url().includes('/sign-in'), 'still signed out');
  }));
