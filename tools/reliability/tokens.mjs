// The token corpus (corpus/tokens.json) against the origin directly and through the edge
// (the real worker under `wrangler dev`, started by the suite in front of the same
// origin), plus cookie-format and off-site-redirect cases at the edge. Run by the
// reliability suite's tokens-origin-edge scenario:
//
//   node tools/reliability/tokens.mjs <input.json>
//
// <input.json> names the origin and the edge (edgeUrl, null without one), the run's key, a
// live and a revoked session token and a login for the health checks. Prints one JSON
// line: {cases:[{target,name,status,ok,detail}], notes}. Tokens are minted here with
// node's crypto, independently of the Rust code. Loopback only.

import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const corpus = JSON.parse(readFileSync(input.corpus, 'utf8'));
const COOKIE = 'session'; // COOKIE_SECURE=false
// Times are taken when a token is minted: each target gets tokens minted just before use.
const now = () => Math.floor(Date.now() / 1000);
const b64 = (v) => Buffer.from(v).toString('base64url');
const key = Buffer.from(input.key, 'base64url');
const [liveHeader, liveClaims, liveSig] = input.liveToken.split('.');
const sidOf = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url')).sid;
const values = {
  $KID: input.kid,
  $LIVE_SID: sidOf(input.liveToken),
  $REVOKED_SID: sidOf(input.revokedToken),
  $RANDOM_SID: randomBytes(32).toString('base64url'),
};

function expand(value) {
  if (typeof value === 'string') {
    const time = /^\$NOW([+-]\d+)?$/.exec(value);
    if (time) return now() + Number(time[1] ?? 0);
    const repeat = /^\$REPEAT:(.):(\d+)$/.exec(value);
    if (repeat) return repeat[1].repeat(Number(repeat[2]));
    return value.replace(/\$(KID|LIVE_SID|REVOKED_SID|RANDOM_SID)/g, (m) => values[m]);
  }
  if (Array.isArray(value)) return value.map(expand);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expand(v)]));
  }
  return value;
}

function mint(c) {
  if (c.raw) {
    return c.raw
      .replace('$LIVE_TOKEN', input.liveToken)
      .replace('$LIVE_HEADER', liveHeader)
      .replace('$LIVE_CLAIMS', liveClaims)
      .replace('$LIVE_SIG', liveSig);
  }
  const signingInput = `${b64(JSON.stringify(expand(c.header)))}.${b64(JSON.stringify(expand(c.claims)))}`;
  const mac = (alg, k = key) => createHmac(alg, k).update(signingInput).digest('base64url');
  switch (c.sign) {
    case 'none': return `${signingInput}.`;
    case 'HS256': return `${signingInput}.${mac('sha256')}`;
    case 'HS384': return `${signingInput}.${mac('sha384')}`;
    case 'HS512': return `${signingInput}.${mac('sha512')}`;
    case 'wrong-key': return `${signingInput}.${mac('sha256', randomBytes(32))}`;
    case 'HS256-truncated': return `${signingInput}.${mac('sha256').slice(0, -2)}`;
    case 'HS256-noncanonical': {
      // 32 bytes → 43 characters; the last one carries 4 data bits and 2 spare bits.
      const sig = mac('sha256');
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const last = alphabet.indexOf(sig.at(-1));
      return `${signingInput}.${sig.slice(0, -1)}${alphabet[last ^ 1]}`;
    }
    default: throw new Error(`unknown sign ${c.sign}`);
  }
}

/** One request to 127.0.0.1 with the request target exactly as given (never resolved). */
function send(base, { method = 'GET', path = '/', headers = {}, body } = {}) {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, timeout: 30_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

const cases = [];
const notes = [];
function record(target, name, ok, status, detail) {
  cases.push({ target, name, ok: Boolean(ok), status: status ?? null, detail });
}
const cookie = (token) => ({ cookie: `${COOKIE}=${token}` });
const fromOrigin = (res) => typeof res.headers['x-request-id'] === 'string';
const describe = (res) => `${res.status}${fromOrigin(res) ? ' (origin)' : ' (edge)'}`;

async function tryCase(target, name, fn) {
  try {
    await fn();
  } catch (err) {
    record(target, name, false, null, `no answer: ${err.message}`);
  }
}

async function health(target, base) {
  await tryCase(target, 'healthy afterwards: /healthz 200 and a login 200', async () => {
    const h = await send(base, { path: '/healthz' });
    const l = await send(base, {
      method: 'POST', path: '/api/v1/auth/login',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': `10.77.${randomBytes(1)[0]}.${1 + randomBytes(1)[0] % 250}` },
      body: JSON.stringify({ email: input.loginEmail, password: input.loginPassword }),
    });
    record(target, 'healthy afterwards: /healthz 200 and a login 200', h.status === 200 && l.status === 200,
      l.status, `healthz ${h.status}, login ${l.status}`);
  });
}

const mintAll = () => corpus.cases.map((c) => ({ ...c, token: mint(c) }));

// ---- the origin, directly ----
for (const c of mintAll()) {
  await tryCase('origin', c.name, async () => {
    const res = await send(input.originUrl, { path: '/api/v1/auth/me', headers: cookie(c.token) });
    const want = c.expect === 'accept' ? 200 : 401;
    let ok = res.status === want;
    if (ok && want === 401) ok = JSON.parse(res.body).error === 'Unauthorized';
    record('origin', c.name, ok, res.status, `${res.status}, expected ${want}`);
  });
}
await health('origin', input.originUrl);

// ---- the edge ----
const edge = input.edgeUrl ? { url: input.edgeUrl } : null;

if (edge) {
  for (const c of mintAll()) {
    await tryCase('edge', `${c.name}: API`, async () => {
      const res = await send(edge.url, { path: '/api/v1/auth/me', headers: cookie(c.token) });
      const ok = {
        accept: res.status === 200 && fromOrigin(res),
        reject: res.status === 401 && !fromOrigin(res),
        'origin-reject': res.status === 401 && fromOrigin(res),
      }[c.expect];
      const want = { accept: '200 (origin)', reject: '401 (edge)', 'origin-reject': '401 (origin)' }[c.expect];
      record('edge', `${c.name}: API`, ok, res.status, `${describe(res)}, expected ${want}`);
    });
    if (c.expect === 'reject') {
      await tryCase('edge', `${c.name}: page`, async () => {
        const res = await send(edge.url, { path: '/account', headers: cookie(c.token) });
        const cleared = (res.headers['set-cookie'] ?? []).some((v) => v.startsWith(`${COOKIE}=;`) && /Max-Age=0/i.test(v));
        const ok = res.status === 302 && res.headers.location === '/login?next=/account' && cleared && !fromOrigin(res);
        record('edge', `${c.name}: page`, ok, res.status,
          `${describe(res)} → ${res.headers.location ?? '-'}, cookie cleared: ${cleared}`);
      });
    }
  }

  // The cookie formats the origin is checked with, through the edge.
  const live = input.liveToken;
  const junk = Array.from({ length: 100 }, (_, i) => `junk${i}=${'j'.repeat(90)}; `).join('');
  const many = Array.from({ length: 199 }, (_, i) => `c${i}=v${i}; `).join('');
  for (const [name, header, want] of [
    ['10 KiB Cookie header, session last', `${junk}${COOKIE}=${live}`, 200],
    ['200 cookies in one header, session last', `${many}${COOKIE}=${live}`, 200],
    ['quoted value', `${COOKIE}="${live}"`, 200],
    ['garbage duplicate first', `${COOKIE}=garbage; ${COOKIE}=${live}`, 200],
    ['opening quote only', `${COOKIE}="${live}`, 401],
    ['10 KiB session cookie value', `${COOKIE}=${'A'.repeat(10240)}`, 401],
  ]) {
    await tryCase('edge', `cookie: ${name}`, async () => {
      const res = await send(edge.url, { path: '/api/v1/auth/me', headers: { cookie: header } });
      record('edge', `cookie: ${name}`, res.status === want, res.status, `${describe(res)}, expected ${want}`);
    });
  }

  // Redirects never leave the site and never carry raw control characters.
  for (const path of [
    '/account?next=//evil.example',
    '/account/..%2F..%2F%2F%2Fevil.example',
    '/account%0d%0aSet-Cookie:%20evil=1',
    '/account/%5C%5Cevil.example',
    '//evil.example/account',
    '/\\evil.example/account',
    '/users?next=https://evil.example/',
  ]) {
    await tryCase('edge', `no off-site redirect: GET ${path}`, async () => {
      const res = await send(edge.url, { path });
      const location = res.headers.location;
      let ok = true;
      let detail = `${res.status}${location ? ` → ${location}` : ''}`;
      if (location !== undefined) {
        const resolved = new URL(location, edge.url);
        ok = resolved.host === new URL(edge.url).host && location.startsWith('/login') && !/[\r\n\s]/.test(location);
      }
      if (res.headers['set-cookie']?.some((v) => v.startsWith('evil'))) {
        ok = false;
        detail += ' (an injected Set-Cookie)';
      }
      record('edge', `no off-site redirect: GET ${path}`, ok, res.status, detail);
    });
  }
  await health('edge', edge.url);
}

console.log(JSON.stringify({ cases, notes }));
