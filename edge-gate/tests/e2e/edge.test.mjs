// End-to-end: the real worker (release wasm from wrangler.toml's build) under
// `wrangler dev` (local workerd), in front of a recording origin, checked with real HTTP
// against every rule of the contract's "Edge" section and the edge's part of gateway-v1
// (mount path, access rules, forwarding headers, HSTS).
//
// Run with `cargo xtask e2e` (builds first). Everything is loopback-only.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { envFile, freePort, mint, newKey, newSid, request, startEdge, startOrigin } from './support.mjs';

const COOKIE = '__Host-session'; // COOKIE_SECURE defaults to true
const now = () => Math.floor(Date.now() / 1000);

function assertNoStore(res) {
  assert.equal(res.headers['cache-control'], 'no-store');
}

function assertClearsCookie(res) {
  const cookies = res.headers['set-cookie'] ?? [];
  assert.equal(cookies.length, 1, `one Set-Cookie expected, got ${JSON.stringify(cookies)}`);
  const parts = cookies[0].split(';').map((p) => p.trim());
  assert.equal(parts[0], `${COOKIE}=`);
  for (const attribute of ['Max-Age=0', 'Path=/', 'HttpOnly', 'Secure', 'SameSite=Lax']) {
    assert.ok(parts.includes(attribute), `${attribute} in ${cookies[0]}`);
  }
}

describe('edge-gate under wrangler dev', () => {
  const newKid = 'k2';
  const oldKid = 'k1';
  const newKeyValue = newKey();
  const oldKeyValue = newKey();
  let origin;
  let edge;

  const token = ({ kid = newKid, key = newKeyValue, iat = now() - 5, exp = now() + 3600, alg } = {}) =>
    mint({ kid, key, alg, claims: { sid: newSid(), iat, exp } });

  before(async () => {
    origin = await startOrigin();
    edge = await startEdge({
      vars: { ORIGIN_URL: origin.url },
      // The new key first (it signs), the old one second (still verifies): a rotation.
      envFile: envFile({ SESSION_KEYS: `${newKid}:${newKeyValue},${oldKid}:${oldKeyValue}` }),
    });
  }, { timeout: 330_000 });

  after(async () => {
    await edge?.stop();
    await origin?.close();
  });

  test('anonymous /account redirects to login, no-store, origin untouched', async () => {
    origin.clear();
    const res = await request(edge.url, { path: '/account' });
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, '/login?next=/account');
    assertNoStore(res);
    assert.equal(res.headers['set-cookie'], undefined);
    assert.equal(origin.requests.length, 0);
  });

  test('the redirect keeps the query, percent-encoded, in next', async () => {
    const res = await request(edge.url, { path: '/account?x=1&tab=a%20b' });
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, '/login?next=/account%3Fx%3D1%26tab%3Da%2520b');
    const sub = await request(edge.url, { path: '/users/42' });
    assert.equal(sub.status, 302);
    assert.equal(sub.headers.location, '/login?next=/users/42');
  });

  describe('invalid cookies are bounced and cleared', () => {
    const cases = {
      'forged signature': () => token({ key: newKey() }),
      expired: () => token({ iat: now() - 7200, exp: now() - 3600 }),
      'unknown kid': () => token({ kid: 'k9' }),
      'alg none': () => token({ alg: 'none' }),
      'not a token': () => 'garbage',
    };
    for (const [name, make] of Object.entries(cases)) {
      test(`${name}: page → 302 clearing the cookie`, async () => {
        origin.clear();
        const res = await request(edge.url, { path: '/account', headers: { Cookie: `${COOKIE}=${make()}` } });
        assert.equal(res.status, 302);
        assert.equal(res.headers.location, '/login?next=/account');
        assertNoStore(res);
        assertClearsCookie(res);
        assert.equal(origin.requests.length, 0);
      });
    }
    test('forged signature: API → 401 clearing the cookie', async () => {
      origin.clear();
      const res = await request(edge.url, {
        path: '/api/v1/auth/me',
        headers: { Cookie: `${COOKIE}=${token({ key: newKey() })}` },
      });
      assert.equal(res.status, 401);
      assertClearsCookie(res);
      assert.equal(origin.requests.length, 0);
    });
  });

  test('anonymous protected API → 401 JSON, origin saw nothing', async () => {
    origin.clear();
    for (const path of ['/api/v1/account', '/api/v1/account/sessions', '/api/v1/users?page=2', '/api/v1/auth/me']) {
      const res = await request(edge.url, { path });
      assert.equal(res.status, 401, path);
      assert.match(res.headers['content-type'], /^application\/json/);
      assertNoStore(res);
      assert.deepEqual(JSON.parse(res.body.toString()), { error: 'Unauthorized' });
      assert.equal(res.headers['set-cookie'], undefined);
    }
    assert.equal(origin.requests.length, 0);
  });

  test('anonymous POST /api/v1/auth/login is proxied with its body', async () => {
    origin.clear();
    const body = JSON.stringify({ email: 'a@example.com', password: 'correct horse' });
    const res = await request(edge.url, {
      method: 'POST',
      path: '/api/v1/auth/login',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      body,
    });
    assert.equal(res.status, 200);
    assert.equal(origin.requests.length, 1);
    const seen = origin.requests[0];
    assert.equal(seen.method, 'POST');
    assert.equal(seen.path, '/api/v1/auth/login');
    assert.equal(seen.headers['content-type'], 'application/json');
    assert.equal(seen.body.toString(), body);
  });

  test('a valid cookie is proxied with method, path, query, body and cookie; forwarding headers are the edge\'s own', async () => {
    origin.clear();
    const cookie = `theme=dark; ${COOKIE}=${token()}; lang=en`;
    const body = JSON.stringify({ name: 'Ada' });
    const res = await request(edge.url, {
      method: 'PATCH',
      path: '/api/v1/account?x=1&y=a%20b&x=2',
      headers: {
        Cookie: cookie,
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body),
        'X-Custom': 'kept',
        // A client's forwarding headers are never passed on.
        'X-Forwarded-For': '198.51.100.7',
        'X-Forwarded-Proto': 'https',
        'X-Forwarded-Host': 'evil.example',
        'X-Forwarded-Port': '443',
        Forwarded: 'for=198.51.100.7;proto=https',
        'X-Sessiongate-Edge': 'forged',
      },
      body,
    });
    assert.equal(res.status, 200);
    // The origin's response comes back unchanged, both Set-Cookie headers included.
    assert.deepEqual(res.headers['set-cookie'], ['first=1; Path=/', 'second=2; Path=/']);
    assert.equal(res.headers['x-origin'], 'recording');
    assert.deepEqual(JSON.parse(res.body.toString()), { path: '/api/v1/account', bytes: Buffer.byteLength(body) });

    assert.equal(origin.requests.length, 1);
    const seen = origin.requests[0];
    assert.equal(seen.method, 'PATCH');
    assert.equal(seen.path, '/api/v1/account');
    assert.equal(seen.query, 'x=1&y=a%20b&x=2');
    assert.equal(seen.body.toString(), body);
    assert.equal(seen.headers.cookie, cookie);
    assert.equal(seen.headers['content-type'], 'application/json');
    assert.equal(seen.headers['x-custom'], 'kept');
    // Replaced by what the edge knows: the URL's scheme and host, the connecting address.
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], new URL(edge.url).host);
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-port'], undefined);
    assert.equal(seen.headers.forwarded, undefined);
    // No EDGE_SECRET here: a client's claim to be the edge is dropped, not passed on.
    assert.equal(seen.headers['x-sessiongate-edge'], undefined);
  });

  test('metrics and readyz are never proxied, however spelled, cookie or not', async () => {
    origin.clear();
    for (const path of ['/metrics', '/readyz', '/metrics/', '/%6detrics', '/ready%7A?x=1', '/x/../metrics']) {
      for (const headers of [{}, { Cookie: `${COOKIE}=${token()}` }]) {
        const res = await request(edge.url, { path, headers });
        assert.equal(res.status, 404, path);
        assert.match(res.headers['content-type'], /^application\/json/);
        assertNoStore(res);
        assert.deepEqual(JSON.parse(res.body.toString()), { error: 'Not found' });
      }
    }
    assert.equal(origin.requests.length, 0);
  });

  test('no Strict-Transport-Security over plain http', async () => {
    for (const path of ['/account', '/api/v1/auth/me', '/metrics', '/login']) {
      const res = await request(edge.url, { path });
      assert.equal(res.headers['strict-transport-security'], undefined, path);
    }
  });

  test('a valid cookie opens protected pages', async () => {
    origin.clear();
    const res = await request(edge.url, { path: '/account?tab=sessions', headers: { Cookie: `${COOKIE}=${token()}` } });
    assert.equal(res.status, 200);
    assert.equal(origin.requests.length, 1);
    assert.equal(origin.requests[0].path, '/account');
    assert.equal(origin.requests[0].query, 'tab=sessions');
    const ip = origin.requests[0].headers['x-forwarded-for'];
    assert.equal(ip, '127.0.0.1');
  });

  test('/accounting is not protected by /account', async () => {
    origin.clear();
    const res = await request(edge.url, { path: '/accounting' });
    assert.equal(res.status, 200);
    assert.equal(origin.requests.length, 1);
    assert.equal(origin.requests[0].path, '/accounting');
  });

  test('a cookie signed with the second listed key is accepted', async () => {
    origin.clear();
    const old = token({ kid: oldKid, key: oldKeyValue });
    const res = await request(edge.url, { path: '/api/v1/auth/me', headers: { Cookie: `${COOKIE}=${old}` } });
    assert.equal(res.status, 200);
    assert.equal(origin.requests.length, 1);
    assert.equal(origin.requests[0].path, '/api/v1/auth/me');
  });

  test('an origin redirect is passed through, not followed', async () => {
    origin.clear();
    const res = await request(edge.url, { path: '/origin-redirect' });
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, '/redirect-target');
    assert.equal(origin.requests.length, 1);
    assert.equal(origin.requests[0].path, '/origin-redirect');
  });

  test('a large body is streamed to the origin intact', async () => {
    origin.clear();
    const body = randomBytes(3 * 1024 * 1024);
    const res = await request(edge.url, {
      method: 'PUT',
      path: '/upload',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length },
      body,
    });
    assert.equal(res.status, 200);
    assert.equal(origin.requests.length, 1);
    const digest = (b) => createHash('sha256').update(b).digest('hex');
    assert.equal(origin.requests[0].body.length, body.length);
    assert.equal(digest(origin.requests[0].body), digest(body));
  });
});

describe('a misconfigured edge stays shut', () => {
  let origin;
  before(async () => {
    origin = await startOrigin();
  });
  after(async () => {
    await origin?.close();
  });

  const shortKey = Buffer.from('sixteen byte key').toString('base64url');
  const goodKeys = { SESSION_KEYS: `k1:${newKey()}` };
  const configs = {
    'missing SESSION_KEYS': { secrets: {}, mentions: 'SESSION_KEYS' },
    'SESSION_KEYS with a short key': { secrets: { SESSION_KEYS: `k1:${shortKey}` }, mentions: 'SESSION_KEYS' },
    'ACCESS_RULES with a bad rule': {
      secrets: goodKeys,
      vars: { ACCESS_RULES: '/ = public; /x = nobody' },
      mentions: 'ACCESS_RULES: rule `/x = nobody`',
    },
    'MOUNT_PATH that is not a path': { secrets: goodKeys, vars: { MOUNT_PATH: 'auth' }, mentions: 'MOUNT_PATH' },
  };
  for (const [name, { secrets, vars = {}, mentions }] of Object.entries(configs)) {
    test(`${name} → 500 on every path, nothing proxied, a log line naming the variable`, { timeout: 330_000 }, async () => {
      const edge = await startEdge({ vars: { ORIGIN_URL: origin.url, ...vars }, envFile: envFile(secrets) });
      try {
        origin.clear();
        for (const path of ['/api/v1/auth/login', '/account', '/api/v1/account', '/']) {
          const res = await request(edge.url, { path });
          assert.equal(res.status, 500, path);
          assert.match(res.headers['content-type'], /^application\/json/);
          assert.deepEqual(JSON.parse(res.body.toString()), { error: 'Edge misconfigured' });
        }
        assert.equal(origin.requests.length, 0);
        // workerd forwards console output to wrangler's; wait for the line (time-boxed).
        const deadline = Date.now() + 20_000;
        while (!edge.output.includes('edge-gate misconfigured') && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
        }
        const line = edge.output.split('\n').find((l) => l.includes('edge-gate misconfigured')) ?? '';
        assert.ok(line.includes(mentions), `log line naming ${mentions}: ${JSON.stringify(line)}`);
        assert.ok(!edge.output.includes(shortKey), 'the key never appears in logs');
      } finally {
        await edge.stop();
      }
    });
  }
});

describe('configured vars: COOKIE_SECURE=false and custom prefixes', () => {
  const kid = 'dev';
  const key = newKey();
  let origin;
  let edge;
  const token = (claims = {}) => mint({ kid, key, claims: { sid: newSid(), iat: now() - 5, exp: now() + 600, ...claims } });

  before(async () => {
    origin = await startOrigin();
    edge = await startEdge({
      vars: {
        ORIGIN_URL: origin.url,
        COOKIE_SECURE: 'false',
        PROTECTED_PATHS: '/private',
        PROTECTED_API_PATHS: '/api/private',
      },
      envFile: envFile({ SESSION_KEYS: `${kid}:${key}` }),
    });
  }, { timeout: 330_000 });

  after(async () => {
    await edge?.stop();
    await origin?.close();
  });

  test('the cookie is `session`, and clearing it omits Secure', async () => {
    origin.clear();
    const ok = await request(edge.url, { path: '/private/x', headers: { Cookie: `session=${token()}` } });
    assert.equal(ok.status, 200);
    assert.equal(origin.requests.length, 1);

    const hostCookie = await request(edge.url, { path: '/private/x', headers: { Cookie: `__Host-session=${token()}` } });
    assert.equal(hostCookie.status, 302, 'the __Host- name is not the cookie when COOKIE_SECURE=false');
    assert.equal(hostCookie.headers['set-cookie'], undefined);

    const bad = await request(edge.url, { path: '/private', headers: { Cookie: `session=${token({ exp: now() - 3600 })}` } });
    assert.equal(bad.status, 302);
    assert.equal(bad.headers.location, '/login?next=/private');
    const cleared = bad.headers['set-cookie'];
    assert.equal(cleared.length, 1);
    const parts = cleared[0].split(';').map((p) => p.trim());
    assert.equal(parts[0], 'session=');
    assert.ok(parts.includes('Max-Age=0'));
    assert.ok(!parts.includes('Secure'));
    assert.equal(origin.requests.length, 1);
  });

  test('the configured prefixes replace the defaults', async () => {
    origin.clear();
    assert.equal((await request(edge.url, { path: '/api/private/x' })).status, 401);
    assert.equal(origin.requests.length, 0);
    assert.equal((await request(edge.url, { path: '/account' })).status, 200);
    assert.equal((await request(edge.url, { path: '/api/v1/account' })).status, 200);
    assert.equal(origin.requests.length, 2);
  });
});

describe('gateway: MOUNT_PATH, ACCESS_RULES, EDGE_SECRET and HSTS behind an https URL', () => {
  const kid = 'g1';
  const key = newKey();
  const secret = `edge-${randomBytes(12).toString('hex')}`;
  const rules = '/ = public; /app = authenticated; /admin = role:ADMIN; GET,HEAD /app/status = public';
  const html = 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8';
  let origin;
  let edge;
  const token = (claims = {}) => mint({ kid, key, claims: { sid: newSid(), iat: now() - 5, exp: now() + 600, ...claims } });
  const get = (path, headers = {}) => request(edge.url, { path, headers });

  function assertHsts(res, what) {
    assert.equal(res.headers['strict-transport-security'], 'max-age=7200', what);
  }

  before(async () => {
    origin = await startOrigin();
    edge = await startEdge({
      vars: { ORIGIN_URL: origin.url, MOUNT_PATH: '/auth', ACCESS_RULES: rules, HSTS_MAX_AGE: '2h' },
      envFile: envFile({ SESSION_KEYS: `${kid}:${key}`, EDGE_SECRET: secret }),
      // wrangler dev then hands the worker https://app.example.test/… URLs, as Cloudflare
      // would for an https visitor (its own local TLS is not visible to the worker).
      args: ['--local-upstream', 'app.example.test', '--upstream-protocol', 'https'],
    });
  }, { timeout: 330_000 });

  after(async () => {
    await edge?.stop();
    await origin?.close();
  });

  test('sessiongate\'s protected routes live under the mount; the login redirect too', async () => {
    origin.clear();
    const page = await get('/auth/account?tab=sessions');
    assert.equal(page.status, 302);
    assert.equal(page.headers.location, '/auth/login?next=/auth/account%3Ftab%3Dsessions');
    assertNoStore(page);
    assertHsts(page, 'redirect');
    const api = await get('/auth/api/v1/auth/me');
    assert.equal(api.status, 401);
    assert.deepEqual(JSON.parse(api.body.toString()), { error: 'Unauthorized' });
    assertHsts(api, '401');
    assert.equal(origin.requests.length, 0);
    // The mount's own pages are proxied; so is a valid session's protected page.
    assert.equal((await get('/auth/login')).status, 200);
    assert.equal((await get('/auth/account', { Cookie: `${COOKIE}=${token()}` })).status, 200);
    assert.deepEqual(origin.requests.map((r) => r.path), ['/auth/login', '/auth/account']);
    const notFound = await get('/auth/metrics');
    assert.equal(notFound.status, 404);
    assertHsts(notFound, '404');
    assert.equal(origin.requests.length, 2);
  });

  test('ACCESS_RULES: public paths pass, anonymous requests elsewhere are bounced by the contract\'s rows', async () => {
    origin.clear();
    for (const path of ['/', '/docs/x', '/app/status', '/metrics']) {
      const res = await get(path, { Accept: html });
      assert.equal(res.status, 200, path);
    }
    const head = await request(edge.url, { method: 'HEAD', path: '/app/status' });
    assert.equal(head.status, 200);
    assert.deepEqual(origin.requests.map((r) => r.path), ['/', '/docs/x', '/app/status', '/metrics', '/app/status']);

    origin.clear();
    const navigation = await get('/app/reports?q=1', { Accept: html });
    assert.equal(navigation.status, 302);
    assert.equal(navigation.headers.location, '/auth/login?next=/app/reports%3Fq%3D1');
    assertNoStore(navigation);
    assert.equal(navigation.headers['set-cookie'], undefined);
    const admin = await get('/admin', { Accept: html });
    assert.equal(admin.status, 302);
    assert.equal(admin.headers.location, '/auth/login?next=/admin');
    const tricked = await get('/public/%2e%2e/admin', { Accept: html });
    assert.equal(tricked.status, 302, 'an encoded .. is resolved before the rules match');

    const notNavigations = [
      { method: 'GET', path: '/app/data', headers: { Accept: 'application/json' } },
      { method: 'GET', path: '/app/data', headers: { Accept: html, 'X-Requested-With': 'XMLHttpRequest' } },
      { method: 'POST', path: '/app/status', headers: { Accept: html, 'Content-Length': '0' } },
      { method: 'DELETE', path: '/admin/users/1', headers: {} },
    ];
    for (const { method, path, headers } of notNavigations) {
      const res = await request(edge.url, { method, path, headers });
      assert.equal(res.status, 401, `${method} ${path}`);
      assert.match(res.headers['content-type'], /^application\/json/);
      assertNoStore(res);
      assert.deepEqual(JSON.parse(res.body.toString()), { error: 'Unauthorized' });
    }
    assert.equal(origin.requests.length, 0);
  });

  test('ACCESS_RULES: an invalid cookie is cleared; a valid signature goes to the origin, which decides', async () => {
    origin.clear();
    const expired = await get('/app', { Accept: html, Cookie: `${COOKIE}=${token({ exp: now() - 3600 })}` });
    assert.equal(expired.status, 302);
    assert.equal(expired.headers.location, '/auth/login?next=/app');
    assertClearsCookie(expired);
    assert.equal(origin.requests.length, 0);
    for (const path of ['/app', '/admin']) {
      const res = await get(path, { Accept: 'application/json', Cookie: `${COOKIE}=${token()}` });
      assert.equal(res.status, 200, path);
    }
    assert.deepEqual(origin.requests.map((r) => r.path), ['/app', '/admin']);
  });

  test('ACCESS_RULES: encoded separators and NUL are refused with 400, cookie or not', async () => {
    origin.clear();
    for (const path of ['/docs/a%2Fb', '/public%2F..%2Fadmin', '/docs%5Cx', '/docs/%00']) {
      for (const headers of [{}, { Cookie: `${COOKIE}=${token()}` }]) {
        const res = await get(path, headers);
        assert.equal(res.status, 400, path);
        assert.match(res.headers['content-type'], /^application\/json/);
        assert.equal(typeof JSON.parse(res.body.toString()).error, 'string');
        assertHsts(res, '400');
      }
    }
    assert.equal(origin.requests.length, 0);
  });

  test('the origin gets EDGE_SECRET, never a client\'s; https forwarding headers; HSTS on proxied responses', async () => {
    origin.clear();
    const res = await get('/docs', { 'X-Sessiongate-Edge': 'forged', 'X-Forwarded-Proto': 'http' });
    assert.equal(res.status, 200);
    assertHsts(res, 'proxied');
    // Re-wrapping the origin's response for HSTS keeps every Set-Cookie.
    assert.deepEqual(res.headers['set-cookie'], ['first=1; Path=/', 'second=2; Path=/']);
    assert.equal(res.headers['x-origin'], 'recording');
    const seen = origin.requests[0];
    assert.equal(seen.headers['x-sessiongate-edge'], secret);
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-host'], 'app.example.test');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.ok(!edge.output.includes(secret), 'the secret never appears in logs');
  });
});

test('an unreachable origin → 502 JSON, not an open error page', { timeout: 330_000 }, async () => {
  const closedPort = await freePort();
  const key = newKey();
  const edge = await startEdge({
    vars: { ORIGIN_URL: `http://127.0.0.1:${closedPort}` },
    envFile: envFile({ SESSION_KEYS: `k:${key}` }),
  });
  try {
    const res = await request(edge.url, { path: '/login' });
    assert.equal(res.status, 502);
    assert.match(res.headers['content-type'], /^application\/json/);
    assertNoStore(res);
    assert.ok(typeof JSON.parse(res.body.toString()).error === 'string');
    // The gate still answers by itself where it needs no origin.
    assert.equal((await request(edge.url, { path: '/account' })).status, 302);
  } finally {
    await edge.stop();
  }
});
