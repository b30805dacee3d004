// An agent in an MCP host, with the official TypeScript MCP SDK (`@modelcontextprotocol/sdk`)
// as its client, against the release server: it lists the tools, asks for approval, gets
// `pending` with the approval page, the owner approves on that page with a passkey (Chromium's
// virtual authenticator), `wait_for_approval` hands over the grant, which redeems once; a
// denial reaches the model as a tool result with the person's reason; a bad key is refused.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { addVirtualAuthenticator, launchBrowser, startServer } from '../lib/harness.mjs';

const HYDRATED = '[data-hydrated="true"]';
const UI_TIMEOUT_MS = 20_000;

let server;
let browser;
let page; // the owner's, with a passkey
let apiKey;

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
    server?.dumpLogs('MCP with the TypeScript SDK failed');
    throw err;
  }
}

/** An MCP client for the agent, configured as a host would: the URL and one header. */
async function connect(key = apiKey) {
  const transport = new StreamableHTTPClientTransport(new URL(`${server.baseUrl}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  const client = new Client({ name: 'e2e-host', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}

function payment(amount) {
  return {
    action: {
      type: 'payments.transfer',
      target: 'bank-api',
      operation: 'POST /v2/transfers',
      params: { amount, currency: 'EUR', to: 'DE89 3704 0044 0532 0130 00' },
    },
    intent: { goal: 'Pay supplier invoice INV-2291', rationale: 'Due today' },
    wait_seconds: 0,
  };
}

test('the owner enrols and registers the agent', { timeout: 60_000 }, () =>
  withLogs(async () => {
    const link = server.logs().match(/https?:\/\/\S+\/enrol\/\S+/)?.[0];
    assert.ok(link, `serve printed no first-admin link:\n${server.logs()}`);
    const context = await browser.newContext();
    page = await context.newPage();
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    await addVirtualAuthenticator(page);
    await page.goto(link, { waitUntil: 'load' });
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    await page.fill('#email', 'admin@example.com');
    await page.fill('#display_name', 'Ada Admin');
    await page.fill('#passkey_name', 'Laptop');
    await page.click('button[type=submit]');
    await page.waitForURL(`${server.baseUrl}/`);

    await page.goto(`${server.baseUrl}/agents`, { waitUntil: 'load' });
    await page.waitForSelector(HYDRATED, { state: 'attached' });
    await page.fill('#agent-name', 'mcp-bot');
    await page.click('#register-agent button[type=submit]');
    apiKey = (await page.textContent('#api-key')).trim();
    assert.match(apiKey, /^cs_agent_/);
  }));

test('the tools are listed, and an approval on the page reaches wait_for_approval as a grant that redeems once', { timeout: 90_000 }, () =>
  withLogs(async () => {
    const { client, transport } = await connect();
    try {
      assert.equal(transport.protocolVersion, '2025-11-25');
      assert.equal(client.getServerVersion()?.name, 'countersign');
      const { tools } = await client.listTools();
      assert.deepEqual(
        tools.map((t) => t.name).sort(),
        ['cancel_approval', 'report_outcome', 'request_approval', 'wait_for_approval'],
      );
      const ask = tools.find((t) => t.name === 'request_approval');
      assert.deepEqual(ask.inputSchema.required, ['action']);
      assert.match(ask.description, /BEFORE you perform it/);

      const asked = await client.callTool({ name: 'request_approval', arguments: payment('420.00') });
      assert.equal(asked.isError ?? false, false, JSON.stringify(asked));
      assert.equal(asked.structuredContent.status, 'pending');
      const { request_id: id, approval_url: url } = asked.structuredContent;
      assert.equal(url, `${server.baseUrl}/requests/${id}`);
      assert.match(asked.content[0].text, /wait_for_approval/);

      await page.goto(url, { waitUntil: 'load' });
      await page.waitForSelector(HYDRATED, { state: 'attached' });
      await page.click('button.approve');
      await page.waitForSelector('article.request[data-status="approved"]');

      const waited = await client.callTool({ name: 'wait_for_approval', arguments: { request_id: id } });
      assert.equal(waited.structuredContent.status, 'approved', JSON.stringify(waited));
      const { token, jti } = waited.structuredContent.grant;
      const redeem = () =>
        fetch(`${server.baseUrl}/api/v1/grants/redeem`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token }),
        });
      const first = await redeem();
      assert.equal(first.status, 200);
      assert.equal((await first.json()).claims.request_id, id);
      assert.equal((await redeem()).status, 409, 'a grant redeems once');

      const reported = await client.callTool({
        name: 'report_outcome',
        arguments: { grant_id: jti, outcome: 'succeeded', detail: 'Transfer sent' },
      });
      assert.equal(reported.isError ?? false, false, JSON.stringify(reported));
    } finally {
      await client.close();
    }
  }));

test('a denial on the page reaches the model as a result with the reason', { timeout: 60_000 }, () =>
  withLogs(async () => {
    const { client } = await connect();
    try {
      const asked = await client.callTool({ name: 'request_approval', arguments: payment('9100.00') });
      const id = asked.structuredContent.request_id;
      await page.goto(asked.structuredContent.approval_url, { waitUntil: 'load' });
      await page.waitForSelector(HYDRATED, { state: 'attached' });
      await page.click('button:has-text("Deny…")');
      await page.selectOption('#reason_code', 'wrong_details');
      await page.fill('#reason', 'Wrong IBAN: use the one on file');
      await page.click('button:has-text("Deny with passkey")');
      await page.waitForSelector('article.request[data-status="denied"]');

      const denied = await client.callTool({ name: 'wait_for_approval', arguments: { request_id: id } });
      assert.equal(denied.isError ?? false, false, 'a denial is an answer, not a failed call');
      assert.equal(denied.structuredContent.status, 'denied');
      assert.equal(denied.structuredContent.reason_code, 'wrong_details');
      assert.match(denied.content[0].text, /Wrong IBAN: use the one on file/);
      assert.match(denied.content[0].text, /Do not perform this action/);
    } finally {
      await client.close();
    }
  }));

test('a bad key is refused before any session starts', { timeout: 30_000 }, () =>
  withLogs(async () => {
    await assert.rejects(connect('cs_agent_not-a-key'), (err) => {
      assert.match(String(err), /401|Unauthorized|invalid_token/i);
      return true;
    });
  }));
