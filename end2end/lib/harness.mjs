// Shared helpers for Countersign's browser tests (node:test + playwright-core).
//
// Why it looks like this:
// - Each test file starts its own release server on a free port with a fresh
//   temp data dir (SQLite), so files can run in parallel (node --test does)
//   and never see each other's state or the developer's ./data.
// - The browser is Debian's Chromium driven by playwright-core: playwright
//   cannot download its own browser on these machines. The extra flags stop
//   Chromium from calling Google services, which this network refuses.
// - WebAuthn is exercised with the DevTools protocol's virtual authenticator;
//   `http://localhost` is a secure context, so passkeys work without TLS, and
//   COUNTERSIGN_PUBLIC_URL uses `localhost` (not 127.0.0.1) because it sets the
//   WebAuthn RP id and origin.
// - The server's output is captured and only shown when something fails
//   (set E2E_SHOW_SERVER_LOGS=1 to always echo it), and written to
//   test-results/ for CI artifacts.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { chromium } from 'playwright-core';

/** Repository root: end2end/lib/ -> end2end/ -> repo. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const READY_TIMEOUT_MS = 30_000;
const READY_POLL_MS = 100;
const STOP_GRACE_MS = 5_000;
const MAX_LOG_BYTES = 8 * 1024 * 1024;

/** The release binary `cargo leptos build --release --split` produces. */
export function serverBinary() {
  if (process.env.COUNTERSIGN_BIN) return path.resolve(process.env.COUNTERSIGN_BIN);
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
    : path.join(repoRoot, 'target');
  return path.join(targetDir, 'release', 'countersign');
}

/** cargo-leptos's site-root ([[workspace.metadata.leptos]] site-root = "target/site"). */
export function siteRoot() {
  return path.join(repoRoot, 'target', 'site');
}

/** end2end/test-results/, created on first use: screenshots and server logs go here. */
export function artifactsDir() {
  const dir = path.join(repoRoot, 'end2end', 'test-results');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A port that was free a moment ago (bind port 0, read it, release it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/**
 * Starts `countersign serve` on a free port with a temp data dir and waits
 * until GET /readyz answers 200.
 *
 * @param {{ env?: Record<string, string | undefined>, args?: string[] }} [opts]
 *   env: extra/overriding environment (a value of undefined removes a variable);
 *   args: extra arguments after `serve`.
 * @returns {Promise<{ baseUrl: string, port: number, dataDir: string,
 *   logs: () => string, dumpLogs: (why?: string) => void, stop: () => Promise<void> }>}
 */
export async function startServer({ env = {}, args = [] } = {}) {
  const bin = serverBinary();
  if (!existsSync(bin)) {
    throw new Error(`${bin} does not exist: run \`cargo leptos build --release\` first (make test does)`);
  }
  if (!existsSync(siteRoot())) {
    throw new Error(`${siteRoot()} does not exist: run \`cargo leptos build --release\` first (make test does)`);
  }

  const port = await freePort();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'countersign-e2e-'));
  const baseUrl = `http://localhost:${port}`;

  // Start from the caller's environment minus anything that would point the
  // server somewhere else than this test's own SQLite file.
  const childEnv = { ...process.env };
  for (const key of Object.keys(childEnv)) {
    if (key.startsWith('COUNTERSIGN_') || key === 'DATABASE_URL' || key.startsWith('LEPTOS_')) {
      delete childEnv[key];
    }
  }
  Object.assign(childEnv, {
    COUNTERSIGN_LISTEN: `127.0.0.1:${port}`,
    COUNTERSIGN_PUBLIC_URL: baseUrl,
    COUNTERSIGN_DATA_DIR: dataDir,
    LEPTOS_SITE_ROOT: siteRoot(),
    RUST_LOG: 'info',
  });
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete childEnv[key];
    else childEnv[key] = String(value);
  }

  const child = spawn(bin, ['serve', ...args], {
    cwd: repoRoot,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  let logText = '';
  let logTruncated = false;
  const capture = (stream) => (chunk) => {
    const text = chunk.toString('utf8');
    if (process.env.E2E_SHOW_SERVER_LOGS === '1') process[stream].write(text);
    if (logText.length + text.length > MAX_LOG_BYTES) {
      logTruncated = true;
      return;
    }
    logText += text;
  };
  child.stdout.on('data', capture('stdout'));
  child.stderr.on('data', capture('stderr'));

  let exited = null; // { code, signal } once the process is gone
  let spawnError = null;
  const exitPromise = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.once('error', (err) => {
      // spawn failures (ENOENT, EACCES) emit 'error' and possibly no 'exit'.
      spawnError = err;
      exited ??= { code: null, signal: null };
      resolve(exited);
    });
  });

  // Never leave a server behind if the test process dies without stop().
  const killOnExit = () => {
    if (!exited) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const logs = () => logText + (logTruncated ? '\n[... server log truncated ...]\n' : '');
  const dumpLogs = (why = 'test failed') => {
    process.stderr.write(
      `\n----- countersign serve log (${baseUrl}, ${why}) -----\n${logs()}\n----- end of server log -----\n`,
    );
  };

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', killOnExit);
    if (!exited) {
      child.kill('SIGTERM');
      const timedOut = await Promise.race([exitPromise.then(() => false), sleep(STOP_GRACE_MS).then(() => true)]);
      if (timedOut) {
        child.kill('SIGKILL');
        await exitPromise;
      }
    }
    try {
      writeFileSync(path.join(artifactsDir(), `server-${port}.log`), logs());
    } catch {
      // artifacts are a convenience; never fail a test over them
    }
    if (process.env.E2E_KEEP_DATA !== '1') {
      await rm(dataDir, { recursive: true, force: true });
    }
  };

  // Poll /readyz on 127.0.0.1 (what the server binds) rather than on
  // `localhost`, which may resolve to ::1 first on some machines.
  const readyUrl = `http://127.0.0.1:${port}/readyz`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastProblem = 'no answer yet';
  while (true) {
    if (exited) {
      const why = spawnError
        ? `could not be started: ${spawnError.message}`
        : `exited before it was ready (code ${exited.code}, signal ${exited.signal})`;
      await stop();
      throw new Error(`countersign serve ${why}\n--- server log ---\n${logs()}`);
    }
    try {
      const res = await fetch(readyUrl, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
      lastProblem = `GET /readyz answered ${res.status}`;
    } catch (err) {
      lastProblem = `GET /readyz failed: ${err.cause?.code ?? err.cause?.message ?? err.message}`;
    }
    if (Date.now() >= deadline) {
      await stop();
      throw new Error(
        `countersign serve was not ready within ${READY_TIMEOUT_MS / 1000} s (${lastProblem})\n` +
          `--- server log ---\n${logs()}`,
      );
    }
    await sleep(READY_POLL_MS);
  }

  return { baseUrl, port, dataDir, logs, dumpLogs, stop };
}

/** Headless Debian Chromium, with the flags this closed network needs. */
export function launchBrowser(options = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', // we run as root
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
    ...options,
  });
}

/**
 * Adds a DevTools-protocol virtual authenticator (a platform passkey
 * authenticator with user verification) to the page's browser context.
 * @returns {Promise<{ cdp: import('playwright-core').CDPSession, authenticatorId: string }>}
 */
export async function addVirtualAuthenticator(page, { isUserVerified = true, hasUserVerification = true } = {}) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification,
      isUserVerified,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

/**
 * Collects what a page reports as broken: uncaught exceptions, console
 * errors and failed requests. Attach before navigating.
 */
export function collectPageProblems(page) {
  const pageErrors = [];
  const consoleErrors = [];
  const failedRequests = [];
  page.on('pageerror', (err) => pageErrors.push(err.stack || String(err)));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const loc = msg.location();
    consoleErrors.push(loc?.url ? `${msg.text()} (at ${loc.url}:${loc.lineNumber})` : msg.text());
  });
  page.on('requestfailed', (req) => {
    failedRequests.push(`${req.method()} ${req.url()}: ${req.failure()?.errorText ?? 'failed'}`);
  });
  const summary = () =>
    [
      `page errors (${pageErrors.length}):${pageErrors.map((e) => `\n  ${e}`).join('')}`,
      `console errors (${consoleErrors.length}):${consoleErrors.map((e) => `\n  ${e}`).join('')}`,
      `failed requests (${failedRequests.length}):${failedRequests.map((e) => `\n  ${e}`).join('')}`,
    ].join('\n');
  return { pageErrors, consoleErrors, failedRequests, summary };
}

/**
 * Collects every Content Security Policy violation in a browser context, on every page and
 * frame it opens: the `securitypolicyviolation` events documents fire, and console messages
 * that mention the policy (Chromium also reports a refused frame and a refused inline script
 * there). Attach before the first navigation.
 * @returns {Promise<{ violations: object[], summary: () => string }>}
 */
export async function collectCspViolations(context) {
  const violations = [];
  await context.exposeBinding('__countersignCspViolation', ({ frame }, report) => {
    violations.push({ frame: frame?.url(), ...report });
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__countersignCspViolation?.({
        document: e.documentURI,
        directive: e.effectiveDirective,
        blocked: e.blockedURI,
        source: `${e.sourceFile}:${e.lineNumber}`,
        sample: e.sample,
      });
    });
  });
  context.on('console', (msg) => {
    if (/content.security.policy/i.test(msg.text())) {
      violations.push({ page: msg.page()?.url(), console: msg.text() });
    }
  });
  const summary = () =>
    `CSP violations (${violations.length}):${violations.map((v) => `\n  ${JSON.stringify(v)}`).join('')}`;
  return { violations, summary };
}
