// Helpers for the edge end-to-end test: a recording origin, `wrangler dev` through
// `cargo xtask serve edge`, plain HTTP requests, and HS256 session tokens minted
// independently of the Rust code (node's crypto), so the edge is checked against the
// contract itself.

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

const tempDirs = [];
process.on('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary directory, removed at process exit. */
export function tempDir() {
  const dir = mkdtempSync(path.join(tmpdir(), 'edge-gate-e2e-'));
  tempDirs.push(dir);
  return dir;
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * An HTTP origin on 127.0.0.1 (random free port) that records every request it sees
 * (method, path, query, headers, body) and answers with a JSON echo and two Set-Cookie
 * headers. `/origin-redirect` answers 302 to `/redirect-target`.
 */
export async function startOrigin() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url, 'http://origin.invalid');
      const body = Buffer.concat(chunks);
      requests.push({
        method: req.method,
        path: url.pathname,
        query: req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '',
        headers: req.headers,
        body,
      });
      if (url.pathname === '/origin-redirect') {
        res.writeHead(302, { Location: '/redirect-target', 'Cache-Control': 'no-store' });
        res.end();
        return;
      }
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Set-Cookie': ['first=1; Path=/', 'second=2; Path=/'],
        'X-Origin': 'recording',
      });
      res.end(JSON.stringify({ path: url.pathname, bytes: body.length }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    clear() {
      requests.length = 0;
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

const children = new Set();
function stopAll() {
  for (const child of children) child.kill('SIGTERM');
}
process.on('exit', stopAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopAll();
    process.exit(130);
  });
}

/**
 * Starts `wrangler dev` with the repository's wrangler.toml on 127.0.0.1:<free port>, with
 * `vars` as `--var` overrides and secrets from `envFile` (which replaces any developer
 * `.dev.vars`), through `cargo xtask serve edge` (testkit: the one way every harness starts
 * services; `cargo xtask e2e` sets TESTKIT_SERVE). Resolves once the worker answers;
 * rejects if it cannot start within `deadlineMs` (a time box, not an assertion about
 * speed). `args` are further `wrangler dev` flags. `edge.output` is what wrangler and the
 * worker printed so far.
 */
export async function startEdge({ vars, envFile, args: extraArgs = [], deadlineMs = 300_000 }) {
  const serve = process.env.TESTKIT_SERVE;
  if (!serve) throw new Error('TESTKIT_SERVE is not set: run the test with `cargo xtask e2e`');
  const args = ['serve', 'edge', '--env-file', envFile];
  for (const [name, value] of Object.entries(vars)) args.push('--var', `${name}=${value}`);
  for (const arg of extraArgs) args.push(`--wrangler-arg=${arg}`);
  const child = spawn(serve, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk) => { stderr += chunk.toString(); });
  const exited = once(child, 'exit');

  let info;
  try {
    info = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`wrangler dev not ready after ${deadlineMs} ms:\n${stderr}`)), deadlineMs);
      child.stdout.on('data', () => {
        const line = stdout.split('\n').find((l) => l.startsWith('{'));
        if (line && stdout.includes('\n')) {
          clearTimeout(timer);
          resolve(JSON.parse(line));
        }
      });
      exited.then(([code, signal]) => {
        clearTimeout(timer);
        reject(new Error(`wrangler dev exited (${code ?? signal}) before it was ready:\n${stderr}`));
      });
    });
  } catch (err) {
    child.kill('SIGTERM');
    children.delete(child);
    throw err;
  }
  const edge = {
    url: info.url,
    readyAfterMs: info.readyAfterMs,
    get output() { return readFileSync(info.log, 'utf8'); },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin.end();
        await exited;
      }
      children.delete(child);
    },
  };
  console.log(`# wrangler dev on ${edge.url} ready after ${(edge.readyAfterMs / 1000).toFixed(1)} s (includes its no-op rebuild)`);
  return edge;
}

/** Writes a dotenv file with `values` into a temporary directory; returns its path. */
export function envFile(values) {
  const file = path.join(tempDir(), 'edge.env');
  writeFileSync(file, Object.entries(values).map(([k, v]) => `${k}="${v}"\n`).join(''));
  return file;
}

/**
 * One HTTP request with node:http (no redirect following, no cookie jar). Resolves to
 * { status, headers, body } where headers keeps repeated Set-Cookie as an array.
 */
export function request(base, { method = 'GET', path: target = '/', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const url = new URL(target, base);
    const req = http.request(url, { method, headers, timeout: 30_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

const b64url = (value) => Buffer.from(value).toString('base64url');

/** A 32-byte random key, base64url. */
export const newKey = () => randomBytes(32).toString('base64url');

/** A session id: 32 random bytes, base64url without padding (43 characters). */
export const newSid = () => randomBytes(32).toString('base64url');

/** An HS256 JWT over `claims` with header `{alg, typ, kid}`; `alg: 'none'` leaves the signature empty. */
export function mint({ kid, key, claims, alg = 'HS256' }) {
  const signingInput = `${b64url(JSON.stringify({ alg, typ: 'JWT', kid }))}.${b64url(JSON.stringify(claims))}`;
  if (alg === 'none') return `${signingInput}.`;
  const signature = createHmac('sha256', Buffer.from(key, 'base64url')).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}
