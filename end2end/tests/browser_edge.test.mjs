// The browser edge, in Chromium against the release build: every page works under its
// Content Security Policy, and no page can be framed by another site.
//
//   an admin enrols -> signs out and back in with the passkey -> registers an agent
//   -> a request appears live in the inbox -> is opened and approved with the passkey
//   -> every other page is visited, by link (lazy route chunks) and by address
//   -> an admin page does its work (an invitation)
//
// with not one policy violation reported on any page (the documents' own
// `securitypolicyviolation` events, and the console), every page answered with a policy that
// names a nonce, and an inline script added without the nonce refused: the policy is really
// in force. Then a page inside a frame on another origin: the browser refuses to show it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';

import {
  addVirtualAuthenticator,
  artifactsDir,
  collectCspViolations,
  collectPageProblems,
  freePort,
  launchBrowser,
  startServer,
} from '../lib/harness.mjs';

const HYDRATED = '[data-hydrated="true"]';
const UI_TIMEOUT_MS = 20_000;

let server;
let browser;
const state = {};

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

/** A browser profile that records every policy violation and every page's policy header. */
async function person() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const csp = await collectCspViolations(context);
  const page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  const problems = collectPageProblems(page);
  const documents = [];
  page.on('response', async (res) => {
    if (res.request().resourceType() !== 'document' || !res.url().startsWith(server.baseUrl)) return;
    documents.push({ url: res.url(), csp: await res.headerValue('content-security-policy') });
  });
  await addVirtualAuthenticator(page);
  return { context, page, problems, csp, documents };
}

async function open(page, url) {
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector(HYDRATED, { state: 'attached' });
}

/** Follows a link in the header (client-side navigation: the route's chunk loads now). */
async function follow(page, link, title) {
  await page.click(`header nav a:text-is("${link}")`);
  await page.waitForFunction((t) => document.title === `${t} · Countersign`, title);
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
    action: { type: 'payments.transfer', target: 'bank-api', params: { to: 'DE89 3704 0044 0532 0130 00', amount } },
    intent: { goal: `Pay ${amount} EUR` },
    context: { environment: 'production', amount: { value: amount, currency: 'EUR' } },
  };
}

async function withLogs(fn) {
  try {
    await fn();
  } catch (err) {
    server?.dumpLogs('browser edge test failed');
    await state.admin?.page
      .screenshot({ path: path.join(artifactsDir(), 'browser-edge-failure.png'), fullPage: true })
      .catch(() => {});
    throw err;
  }
}

/** Nothing refused by the policy, nothing broken, on any page so far. */
function assertClean(who) {
  assert.deepEqual(who.csp.violations, [], who.csp.summary());
  assert.deepEqual(who.problems.pageErrors, [], who.problems.summary());
  const cspErrors = who.problems.consoleErrors.filter((e) => /security policy|refused/i.test(e));
  assert.deepEqual(cspErrors, [], who.problems.summary());
}

test('every page works under its Content Security Policy', { timeout: 240_000 }, () =>
  withLogs(async () => {
    const link = server.logs().match(/https?:\/\/\S+\/enrol\/\S+/)?.[0];
    assert.ok(link, `serve printed no first-admin link:\n${server.logs()}`);

    // Enrol (the enrolment page and its passkey chunk).
    const admin = await person();
    state.admin = admin;
    const { page } = admin;
    await open(page, link);
    await page.fill('#email', 'admin@example.com');
    await page.fill('#display_name', 'Ada Admin');
    await page.fill('#passkey_name', 'Laptop');
    await page.click('button[type=submit]');
    await page.waitForURL(`${server.baseUrl}/`);
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    assert.match(await page.textContent('header'), /Ada Admin/);

    // Sign out, and back in with the passkey picker.
    await page.click('header button:has-text("Sign out")');
    await page.waitForURL(`${server.baseUrl}/sign-in`);
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    await page.click('button[type=submit]');
    await page.waitForURL(`${server.baseUrl}/`);
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    assert.match(await page.textContent('header'), /Ada Admin/);

    // Register an agent (its key is shown once).
    await follow(page, 'Agents', 'Agents');
    await page.fill('#agent-name', 'invoice-bot');
    await page.click('form button[type=submit]');
    state.apiKey = (await page.textContent('#api-key')).trim();
    assert.match(state.apiKey, /^cs_agent_/);

    // The inbox, live (its event stream), then the request page and the passkey.
    await open(page, `${server.baseUrl}/`);
    await page.waitForSelector('.live[data-state="live"]');
    const created = await agentCall('POST', '/api/v1/requests', transfer('25000.00'));
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const id = created.body.id;
    await page.waitForSelector(`.inbox-row[data-request-id="${id}"]`);
    await page.click(`.inbox-row[data-request-id="${id}"] a`);
    await page.waitForURL(`${server.baseUrl}/requests/${id}`);
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    await page.click('button.approve');
    await page.waitForSelector('article.request[data-status="approved"]');
    const answer = await agentCall('GET', `/api/v1/requests/${id}`);
    assert.equal(answer.body.status, 'approved');
    assert.ok(answer.body.grant?.token, 'the agent has its grant');

    // Every other page, by link and by address.
    for (const [link, title] of [
      ['History', 'History'],
      ['People', 'People'],
      ['Guards', 'Guards'],
      ['Policy', 'Policy'],
      ['Audit', 'Audit'],
      ['All agents', 'All agents'],
      ['Ada Admin', 'Account'],
    ]) {
      await follow(page, link, title);
    }
    for (const address of ['/history', '/account', '/admin/policy', '/admin/guards', '/admin/agents', '/admin/audit', `/admin/audit/request/${id}`]) {
      await open(page, `${server.baseUrl}${address}`);
    }

    // An admin page at work: an invitation.
    await open(page, `${server.baseUrl}/admin/people`);
    await page.fill('#invite-email', 'owner@example.com');
    await page.selectOption('#invite-role', 'owner');
    await page.click('form button[type=submit]');
    assert.match((await page.textContent('#invite-link')).trim(), /\/enrol\//);

    assertClean(admin);

    // Every page came with a policy naming a nonce and refusing every frame...
    assert.ok(admin.documents.length >= 10, `pages loaded: ${admin.documents.length}`);
    for (const { url, csp } of admin.documents) {
      assert.match(csp ?? '', /script-src [^;]*'nonce-[A-Za-z0-9_-]{22,}'/, `${url}: ${csp}`);
      assert.match(csp ?? '', /frame-ancestors 'none'/, `${url}: ${csp}`);
    }
    // ...and the policy is in force: a script added without the nonce does not run. (An
    // inline script runs as it is inserted, or is refused and reported.)
    const outcome = await page.evaluate(
      () =>
        new Promise((resolve) => {
          document.addEventListener('securitypolicyviolation', (e) => resolve(`refused by ${e.effectiveDirective}`), { once: true });
          const script = document.createElement('script');
          script.textContent = 'window.__injected = true;';
          document.head.append(script);
          if (window.__injected) resolve('ran');
        }),
    );
    assert.equal(outcome, 'refused by script-src-elem');
  }));

test('another site cannot show a page in a frame', { timeout: 60_000 }, () =>
  withLogs(async () => {
    // A page on another origin (127.0.0.1 is not localhost) that frames the sign-in page.
    const port = await freePort();
    const framer = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!DOCTYPE html><title>framer</title><iframe id="target" src="${server.baseUrl}/sign-in"></iframe>`);
    });
    await new Promise((resolve) => framer.listen(port, '127.0.0.1', resolve));
    try {
      const context = await browser.newContext();
      const csp = await collectCspViolations(context);
      const page = await context.newPage();
      // `load` waits for the frame's own load, refused or not.
      await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: 'load' });
      const frame = await (await page.$('#target')).contentFrame();
      assert.ok(frame, 'the frame exists');
      // A refused frame holds the browser's error page (which may not even be scriptable).
      const shown = await frame.evaluate(() => document.querySelector('main') !== null).catch(() => false);
      assert.equal(shown, false, `the page was shown inside another site's frame (${frame.url()})`);
      assert.ok(
        csp.violations.some((v) => /frame-ancestors/.test(v.console ?? v.directive ?? '')),
        `the browser says why: ${csp.summary()}`,
      );
      await context.close();
    } finally {
      await new Promise((resolve) => framer.close(resolve));
    }
  }));
