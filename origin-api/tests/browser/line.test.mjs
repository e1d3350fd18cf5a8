// The whole line in a real browser: headless Chromium → wrangler dev (edge-gate) → the
// origin in proxy mode (MOUNT_PATH=/auth, UPSTREAM_URL) → the example app.
//
// Needs (`cargo xtask browser` provides them): EDGE_URL (the edge in front of the proxying
// origin), MOUNT (the origin's and the edge's MOUNT_PATH, such as /auth), APP_USER_EMAIL
// and APP_USER_PASSWORD (a registered USER), and optionally CHROMIUM and SCREENSHOT_DIR.
// The rules, on the edge and the origin alike: `/ = public; /app = authenticated`.
//
// One user, two devices: the first signs in on the mounted login page, lands on the app's
// protected page showing the identity the app verified, and holds the page's WebSocket
// open; the second revokes the first's session from its account page. The first's socket
// is closed by sessiongate (within 5 s, the contract's bound) and its next navigation to
// the app is sent to the login page.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run the test with cargo xtask browser)`);
  return value;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const EDGE = required('EDGE_URL').replace(/\/+$/, '');
const MOUNT = required('MOUNT').replace(/\/+$/, '');
const EMAIL = required('APP_USER_EMAIL');
const PASSWORD = required('APP_USER_PASSWORD');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOT_DIR || path.join(here, 'screenshots');
const WAIT_MS = 20_000;
// The contract's bound for closing a revoked session's WebSocket, plus the browser's own
// time to notice the close.
const CLOSE_MS = 7_000;

let browser;
const contexts = [];

async function device() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  contexts.push(context);
  return context.newPage();
}

function pathOf(page) {
  const url = new URL(page.url());
  return url.pathname + url.search;
}

async function signIn(page, landing) {
  await page.fill('#email', EMAIL);
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForURL((url) => url.pathname === landing), page.click('#submit')]);
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'],
  });
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
});

test('a public path of the app answers anonymously, without an identity', async () => {
  const page = await device();
  const response = await page.goto(`${EDGE}/hello?from=browser`);
  assert.equal(response.status(), 200);
  const echo = JSON.parse(await page.locator('body').innerText());
  assert.equal(echo.path, '/hello');
  assert.equal(echo.identity, null);
  assert.equal(echo.identityError, 'no assertion: anonymous');
});

test('sign in on the mounted login page, use the app and its WebSocket; a revoke from another device closes both', async () => {
  const first = await device();
  // Anonymous: the edge sends the navigation to the mounted login page.
  await first.goto(`${EDGE}/app`);
  assert.equal(pathOf(first), `${MOUNT}/login?next=/app`);
  await signIn(first, '/app');

  // The app's page greets the identity it verified from the assertion.
  assert.equal(await first.locator('#identity').textContent(), `Signed in as ${EMAIL} (USER)`);
  await first.waitForFunction(() => document.querySelector('#socket')?.textContent === 'open: hello');
  await first.screenshot({ path: path.join(SHOTS, 'line-app-desktop.png') });

  // A second device of the same user revokes the first session from its account page.
  const second = await device();
  await second.goto(`${EDGE}${MOUNT}/login?next=${MOUNT}/account`);
  await signIn(second, `${MOUNT}/account`);
  await second.waitForFunction(() => document.querySelectorAll('#sessions-list li').length === 2);
  const other = second.locator('#sessions-list li[data-current="false"]');
  await other.getByRole('button', { name: /^Revoke/ }).click();
  await second.getByText('Session revoked. That device is signed out.').waitFor();

  // The first device's socket is closed by sessiongate, not by the page.
  await first.waitForFunction(() => document.querySelector('#socket')?.textContent === 'closed', null, {
    timeout: CLOSE_MS,
  });
  // Its next navigation to the app is refused: back to the login page.
  await first.goto(`${EDGE}/app`);
  assert.equal(pathOf(first), `${MOUNT}/login?next=/app`);
  // The second device still reaches the app.
  await second.goto(`${EDGE}/app`);
  assert.equal(pathOf(second), '/app');
  assert.equal(await second.locator('#identity').textContent(), `Signed in as ${EMAIL} (USER)`);
});
