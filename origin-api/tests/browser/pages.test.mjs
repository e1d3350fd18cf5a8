// End-to-end test of the sessiongate pages in headless Chromium, through the edge only.
//
// Needs (`cargo xtask browser` provides them): EDGE_URL (the `wrangler dev` address in
// front of the origin), ADMIN_EMAIL and ADMIN_PASSWORD (an ADMIN bootstrapped with
// create-admin), and optionally SCREENSHOT_DIR and CHROMIUM (default /usr/bin/chromium).
//
// Every browser context plays one device. All of them reach the origin from the one
// address the edge knows (loopback under wrangler dev): a client cannot choose its IP by
// sending X-Forwarded-For. The rate-limit scenario therefore trips the per-account bucket
// (5 failures a minute in this harness), not the per-IP one.
//
// The scenarios run in order and build on each other (the same users and devices).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const EDGE = required('EDGE_URL').replace(/\/+$/, '');
const ADMIN_EMAIL = required('ADMIN_EMAIL');
const ADMIN_PASSWORD = required('ADMIN_PASSWORD');
const SHOTS = process.env.SCREENSHOT_DIR || path.join(here, 'screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const WAIT_MS = 20_000;
const COOKIE = 'session'; // COOKIE_SECURE=false: the name without the __Host- prefix

const PASSWORD = 'correct horse battery staple';
const run = Date.now().toString(36);
const ALICE = { email: `alice-${run}@example.test`, name: 'Alice Example' };
const VICTIM = { email: `victim-${run}@example.test`, name: 'Rate Limit' };
const NEWCOMER = { email: `newcomer-${run}@example.test`, name: 'New Comer' };
const MEMBERS = 23;
const member = (i) => ({ email: `member-${String(i).padStart(2, '0')}-${run}@example.test`, name: `Member ${i}` });

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run the test with cargo xtask browser)`);
  return value;
}

let browser;
// The address every device has at the origin: the edge forwards only CF-Connecting-IP,
// which wrangler dev sets to the socket's peer (see xtask/src/browser.rs for the limits).
const DEVICE_IP = '127.0.0.1';
const contexts = [];

/** A fresh device: its own cookies and its own client address. */
async function device(label) {
  const context = await browser.newContext({
    viewport: DESKTOP,
    // Headless Chromium says "HeadlessChrome"; present it as the Chrome it is.
    userAgent: `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${browser.version().split('.')[0]}.0.0.0 Safari/537.36`,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  contexts.push(context);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`${label}: page error: ${error.message}`));
  page.on('console', (message) => {
    // A CSP violation is reported on the console; fail on any.
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) {
      problems.push(`${label}: ${message.text()}`);
    }
  });
  return { context, page, ip: DEVICE_IP, problems };
}

/** A JSON call straight to the edge (test set-up only). */
async function apiCall(method, urlPath, body) {
  const response = await fetch(`${EDGE}/api/v1${urlPath}`, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function register(user) {
  const { status, body } = await apiCall('POST', '/auth/register', { ...user, password: PASSWORD });
  assert.equal(status, 201, `register ${user.email}: ${JSON.stringify(body)}`);
  return body.user;
}

function pathOf(page) {
  const url = new URL(page.url());
  return url.pathname + url.search;
}

async function signIn(page, email, password, landing) {
  await page.fill('#email', email);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((url) => url.pathname === landing), page.click('#submit')]);
}

async function sessionCount(page, n) {
  await page.waitForFunction(
    (want) => document.querySelectorAll('#sessions-list li').length === want,
    n,
    { timeout: WAIT_MS },
  );
}

async function cookieOf(context) {
  return (await context.cookies(EDGE)).find((c) => c.name === COOKIE);
}

/** Full-page screenshots at desktop and phone width. */
async function shoot(page, name) {
  const size = page.viewportSize();
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: path.join(SHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: path.join(SHOTS, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(size ?? DESKTOP);
}

async function sessionEnded(page) {
  const message = page.locator('#session-ended');
  await message.waitFor();
  assert.equal(await message.textContent(), 'Your session has ended. Please sign in again.');
  const link = page.getByRole('link', { name: 'Sign in again' });
  return link.getAttribute('href');
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  // Users for the scenarios.
  await register(ALICE);
  await register(VICTIM);
  for (let i = 1; i <= MEMBERS; i += 1) await register(member(i));
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
});

// Devices shared by the scenarios below.
let first;
let second;

test('an anonymous visit to /account lands on /login?next=/account, and signing in returns there', async () => {
  first = await device('first');
  const { page, context } = first;
  const response = await page.goto(`${EDGE}/account`);
  assert.equal(pathOf(page), '/login?next=/account');
  // The page's security headers arrive through the edge.
  const headers = response.headers();
  assert.equal(response.status(), 200);
  assert.match(headers['content-security-policy'], /script-src 'self'; style-src 'self';.*frame-ancestors 'none'/);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'same-origin');
  assert.equal(headers['cache-control'], 'no-store');
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.equal(await page.getAttribute('body', 'data-next'), '/account');
  await shoot(page, 'login');

  await signIn(page, ALICE.email, PASSWORD, '/account');
  assert.equal(pathOf(page), '/account');
  await sessionCount(page, 1);
  assert.equal(await page.locator('#sessions-list li[data-current="true"] .badge').textContent(), 'This device');
  assert.equal(await page.inputValue('#profile-email'), ALICE.email);
  const cookie = await cookieOf(context);
  assert.ok(cookie, 'the session cookie is set');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Lax');
  assert.deepEqual(first.problems, []);
});

test('a second device signs in; the first sees two sessions and revokes it; the second is told its session ended', async () => {
  second = await device('second');
  await second.page.goto(`${EDGE}/login?next=/account`);
  await signIn(second.page, ALICE.email, PASSWORD, '/account');
  await sessionCount(second.page, 2);

  const { page } = first;
  await page.reload();
  await sessionCount(page, 2);
  const other = page.locator('#sessions-list li[data-current="false"]');
  assert.match(await other.textContent(), new RegExp(`IP ${second.ip.replaceAll('.', '\\.')}`));
  assert.match(await other.textContent(), /Chrome/);
  await page.locator('#audit-list li').first().waitFor();
  await shoot(page, 'account');

  await other.getByRole('button', { name: /^Revoke/ }).click();
  await page.getByText('Session revoked. That device is signed out.').waitFor();
  await sessionCount(page, 1);

  // The second device's very next action: save its profile.
  await second.page.fill('#profile-name', 'Alice on the second device');
  await second.page.click('#profile-save');
  const href = await sessionEnded(second.page);
  assert.equal(href, '/login?next=/account');
  assert.equal(await second.page.locator('#login-form').count(), 0, 'no login form in place of the page');
  await shoot(second.page, 'session-ended');

  // The link goes to sign-in and back.
  await second.page.getByRole('link', { name: 'Sign in again' }).click();
  await second.page.waitForURL((url) => url.pathname === '/login');
  assert.equal(pathOf(second.page), '/login?next=/account');
  assert.deepEqual([...first.problems, ...second.problems], []);
});

test('log out all other devices from a third device; logout clears the cookie', async () => {
  const third = await device('third');
  // An off-site `next` is dropped by the server: signing in lands on /account.
  await third.page.goto(`${EDGE}/login?next=//evil.example/steal`);
  assert.equal(await third.page.getAttribute('body', 'data-next'), '');
  await signIn(third.page, ALICE.email, PASSWORD, '/account');
  assert.equal(new URL(third.page.url()).origin, EDGE);
  // first (still signed in) + third.
  await sessionCount(third.page, 2);

  // A 422 from the server is shown next to its field.
  await third.page.fill('#profile-email', 'not-an-email');
  await third.page.click('#profile-save');
  await third.page.locator('#profile-email-error').waitFor();
  assert.match(await third.page.textContent('#profile-email-error'), /^Email /);
  assert.equal(await third.page.getAttribute('#profile-email', 'aria-invalid'), 'true');

  // A section whose load fails (the origin answering 503, simulated for one request)
  // shows an error with Retry; Retry loads it for real.
  await third.page.route(
    '**/api/v1/account/audit?*',
    (route) =>
      route.fulfill({
        status: 503,
        headers: { 'Content-Type': 'application/json', 'Retry-After': '5' },
        body: JSON.stringify({ error: 'Service temporarily unavailable' }),
      }),
    { times: 1 },
  );
  await third.page.reload();
  const failed = third.page.locator('#audit-state [data-state="error"]');
  await failed.waitFor();
  assert.match(await failed.textContent(), /Service temporarily unavailable/);
  await failed.getByRole('button', { name: 'Retry' }).click();
  await third.page.locator('#audit-list li').first().waitFor();
  assert.equal(await failed.count(), 0);
  await third.page.getByRole('button', { name: 'Log out all other devices' }).click();
  await third.page.getByText('Signed out 1 other device.').waitFor();
  await sessionCount(third.page, 1);

  await first.page.reload();
  const href = await sessionEnded(first.page);
  assert.equal(href, '/login?next=/account');

  assert.ok(await cookieOf(third.context), 'signed in before logout');
  await Promise.all([
    third.page.waitForURL((url) => url.pathname === '/login'),
    third.page.locator('header').getByRole('button', { name: 'Log out' }).click(),
  ]);
  assert.equal(await cookieOf(third.context), undefined, 'logout clears the cookie');
  // Without the cookie the edge sends /account straight to sign-in.
  await third.page.goto(`${EDGE}/account`);
  assert.equal(pathOf(third.page), '/login?next=/account');
  assert.deepEqual(third.problems, []);
});

test('an ADMIN searches and pages /users and changes a role', async () => {
  const admin = await device('admin');
  const { page } = admin;
  await page.goto(`${EDGE}/users`);
  assert.equal(pathOf(page), '/login?next=/users');
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, '/users');

  await page.locator('#users-body tr').first().waitFor();
  assert.match(await page.textContent('#users-status'), /^Page 1 of \d+$/);

  // Search (debounced): only this run's members, 10 per page.
  await page.fill('#search', `-${run}@`);
  await page.fill('#search', `member-`);
  await page.fill('#search', `-${run}@example`);
  await page.waitForFunction(
    () => document.querySelector('#users-count')?.textContent === '25 matches',
    null,
    { timeout: WAIT_MS },
  );
  await page.waitForFunction(() => document.querySelector('#users-status')?.textContent === 'Page 1 of 3');
  assert.equal(await page.locator('#users-body tr').count(), 10);
  assert.equal(new URL(page.url()).searchParams.get('search'), `-${run}@example`);
  await shoot(page, 'users');

  await page.getByRole('button', { name: 'Next' }).click();
  await page.waitForFunction(() => document.querySelector('#users-status')?.textContent === 'Page 2 of 3');
  await page.getByRole('button', { name: 'Next' }).click();
  await page.waitForFunction(() => document.querySelector('#users-status')?.textContent === 'Page 3 of 3');
  assert.equal(await page.locator('#users-body tr').count(), 5);
  assert.equal(await page.locator('#users-next').isDisabled(), true);
  await page.getByRole('button', { name: 'Previous' }).click();
  await page.waitForFunction(() => document.querySelector('#users-status')?.textContent === 'Page 2 of 3');

  // Narrow to one member and promote them.
  const target = member(7);
  await page.fill('#search', target.email.toUpperCase());
  await page.waitForFunction(() => document.querySelector('#users-count')?.textContent === '1 match');
  const row = page.locator(`#users-body tr[data-email="${target.email}"]`);
  const select = row.getByRole('combobox');
  assert.equal(await select.inputValue(), 'USER');
  await select.selectOption('ADMIN');
  await row.getByText('Saved: now ADMIN').waitFor();

  // The change is real: reload shows it from the server.
  await page.reload();
  await page.locator(`#users-body tr[data-email="${target.email}"]`).waitFor();
  assert.equal(await page.locator(`#users-body tr[data-email="${target.email}"] select`).inputValue(), 'ADMIN');
  assert.deepEqual(admin.problems, []);
});

test('a USER on /users sees the no-access message, not a login prompt', async () => {
  const user = await device('user');
  const { page } = user;
  await page.goto(`${EDGE}/login?next=/users`);
  await signIn(page, member(3).email, PASSWORD, '/users');
  const message = page.locator('#no-access');
  await message.waitFor();
  assert.equal(await message.textContent(), "You don't have access to this page.");
  assert.equal(pathOf(page), '/users');
  assert.equal(await page.locator('#login-form, #session-ended').count(), 0);
  assert.equal(await page.locator('#users-table').isVisible(), false);
  await shoot(page, 'no-access');
  assert.deepEqual(user.problems, []);
});

test('the register page creates an account and signs it in', async () => {
  const newcomer = await device('newcomer');
  const { page } = newcomer;
  await page.goto(`${EDGE}/register`);
  await page.getByRole('heading', { name: 'Create an account' }).waitFor();
  await shoot(page, 'register');

  // A taken email: the server's 409 message next to the field.
  await page.fill('#name', NEWCOMER.name);
  await page.fill('#email', ALICE.email);
  await page.fill('#password', PASSWORD);
  await page.click('#submit');
  await page.locator('#email-error').waitFor();
  assert.equal(await page.getAttribute('#email', 'aria-invalid'), 'true');

  await page.fill('#email', NEWCOMER.email);
  await Promise.all([page.waitForURL((url) => url.pathname === '/account'), page.click('#submit')]);
  await sessionCount(page, 1);
  assert.equal(await page.inputValue('#profile-name'), NEWCOMER.name);
  assert.deepEqual(newcomer.problems, []);
});

test('a wrong password shows the generic message; the sixth rapid attempt shows the rate-limit wait', async () => {
  const attacker = await device('attacker');
  const { page } = attacker;
  await page.goto(`${EDGE}/login`);
  const alertBox = page.locator('#form-alert');
  for (let attempt = 1; attempt <= 5; attempt += 1) {
    await page.fill('#email', VICTIM.email);
    await page.fill('#password', `wrong password ${attempt}`);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/login')),
      page.click('#submit'),
    ]);
    assert.equal(response.status(), 401, `attempt ${attempt}`);
    await page.waitForFunction(() => document.querySelector('#submit')?.disabled === false);
    assert.equal(await alertBox.textContent(), 'Invalid credentials');
  }
  await page.fill('#email', VICTIM.email);
  await page.fill('#password', 'wrong password 6');
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/login')),
    page.click('#submit'),
  ]);
  assert.equal(response.status(), 429);
  const retryAfter = Number(response.headers()['retry-after']);
  assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  await page.waitForFunction(() => /^Too many attempts\./.test(document.querySelector('#form-alert')?.textContent ?? ''));
  const text = await alertBox.textContent();
  const match = /^Too many attempts\. Try again in (\d+) seconds?\.$/.exec(text);
  assert.ok(match, `rate-limit message: ${text}`);
  assert.ok(Number(match[1]) >= 1 && Number(match[1]) <= retryAfter, `${match[1]} within Retry-After ${retryAfter}`);
  assert.equal(await page.locator('#submit').isDisabled(), true, 'no retry before the wait is over');
  await shoot(page, 'login-rate-limited');
  assert.deepEqual(attacker.problems, []);
});
