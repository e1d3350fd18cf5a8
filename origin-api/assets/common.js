// Shared by every page: the API client, the messages the contract fixes, and small DOM
// helpers. Text from the server is only ever set with textContent, never as HTML.

export const SESSION_ENDED = 'Your session has ended. Please sign in again.';
export const NO_ACCESS = "You don't have access to this page.";
export const INVALID_CREDENTIALS = 'Invalid credentials';

/**
 * Where sessiongate's routes live (`MOUNT_PATH` without its trailing `/`: `''` or
 * `/auth`), as the server wrote it on the page.
 */
export const MOUNT = document.documentElement.dataset.mount ?? '';

/** The full path of one of sessiongate's own routes: `url('/login')` → `/auth/login`. */
export function url(route) {
  return `${MOUNT}${route}`;
}

/** An API answer other than 2xx, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value) {
  if (value == null || value.trim() === '') return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const date = Date.parse(text);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

function fallbackMessage(status) {
  if (status === 401) return SESSION_ENDED;
  if (status === 403) return NO_ACCESS;
  if (status === 429) return 'Too many requests. Please try again later.';
  if (status === 503) return 'The service is temporarily unavailable. Please try again shortly.';
  if (status >= 500) return 'Something went wrong on our side. Please try again.';
  return `The request failed (HTTP ${status}).`;
}

/**
 * Calls `<MOUNT>/api/v1{path}`. Every state-changing call carries `Content-Type:
 * application/json` (a cross-site form cannot send it). Resolves with the parsed body;
 * rejects with an ApiError.
 */
export async function api(method, path, body) {
  const init = {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { Accept: 'application/json' },
  };
  if (method !== 'GET' && method !== 'HEAD') {
    init.headers['Content-Type'] = 'application/json';
    if (body !== undefined) init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(`/api/v1${path}`), init);
  } catch {
    throw new ApiError(0, 'Cannot reach the server. Check your connection and try again.', null);
  }
  let data = null;
  try {
    const text = await response.text();
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.ok) return data ?? {};
  const message =
    data && typeof data.error === 'string' && data.error ? data.error : fallbackMessage(response.status);
  throw new ApiError(response.status, message, parseRetryAfter(response.headers.get('Retry-After')));
}

/** "Too many attempts. Try again in N seconds." */
export function rateLimitMessage(seconds) {
  if (seconds == null) return 'Too many attempts. Please try again later.';
  const n = Math.max(1, seconds);
  return `Too many attempts. Try again in ${n} ${n === 1 ? 'second' : 'seconds'}.`;
}

/** A path-and-query for `?next=`: percent-encoded, slashes kept readable. */
export function encodeNext(pathAndQuery) {
  return encodeURIComponent(pathAndQuery).replace(/%2F/gi, '/');
}

/** `<MOUNT>/login?next=<here>` for the current page. */
export function loginHref() {
  return `${url('/login')}?next=${encodeNext(location.pathname + location.search)}`;
}

/**
 * The same rule as the server's `shared::paths::safe_next`: one leading `/`, no second
 * `/`, no backslash, space or control character, at most 2048 bytes. Returns the value or
 * null.
 */
export function safeNext(value) {
  if (typeof value !== 'string' || value === '') return null;
  if (new TextEncoder().encode(value).length > 2048) return null;
  if (value[0] !== '/' || value[1] === '/') return null;
  for (const ch of value) {
    const code = ch.codePointAt(0);
    if (ch === '\\' || ch === ' ' || code < 0x20 || code === 0x7f) return null;
  }
  return value;
}

/** The sanitised `next` the server embedded in the page, or `fallback`. */
export function pageNext(fallback = url('/account')) {
  return safeNext(document.body.dataset.next ?? '') ?? fallback;
}

// ---------------------------------------------------------------- DOM helpers

/** `el('div', {class: 'x', text: 'hi'}, child, ...)`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child == null || child === false) continue;
    node.append(child);
  }
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** A 24x24 stroke icon from path data. */
export function icon(paths) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '1.8');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  for (const d of paths) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

/** Marks a button busy (disabled, spinner) or idle again. */
export function setBusy(button, busy) {
  if (!button) return;
  button.disabled = busy;
  if (busy) button.setAttribute('aria-busy', 'true');
  else button.removeAttribute('aria-busy');
}

/** Shows `message` in the alert element (kind: error | success | warning), or hides it. */
export function showAlert(node, message, kind = 'error') {
  if (!node) return;
  if (!message) {
    node.hidden = true;
    node.textContent = '';
    return;
  }
  node.className = `alert alert-${kind}`;
  node.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  node.textContent = message;
  node.hidden = false;
}

/** Puts `message` next to the input `input` (its `#<id>-error` element) and marks it invalid. */
export function setFieldError(input, message) {
  if (!input) return;
  const box = document.getElementById(`${input.id}-error`);
  if (message) {
    input.setAttribute('aria-invalid', 'true');
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
  } else {
    input.removeAttribute('aria-invalid');
    if (box) {
      box.textContent = '';
      box.hidden = true;
    }
  }
}

/**
 * A server validation message for display next to its field: `"email: is not a valid
 * email address"` becomes `"Email is not a valid email address"`.
 */
export function fieldMessage(message) {
  const match = /^([A-Za-z]+): (.+)$/.exec(String(message));
  if (!match) return String(message);
  const words = match[1].replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
  return `${words.charAt(0).toUpperCase()}${words.slice(1)} ${match[2]}`;
}

/** Clears every field error inside `form`. */
export function clearFieldErrors(form) {
  for (const input of form.querySelectorAll('input, select')) setFieldError(input, '');
}

/**
 * The input a 409/422 message is about, found by the field names it mentions
 * (`fields` maps a lower-case word to an input, most specific first), or null.
 */
export function fieldForMessage(message, fields) {
  const text = String(message).toLowerCase().replace(/[\s_-]+/g, '');
  for (const [word, input] of fields) {
    if (text.includes(word)) return input;
  }
  return null;
}

/**
 * Shows a rate-limit wait in `node`, counting down each second, and keeps `button`
 * disabled until the wait is over.
 */
export function showRateLimit(node, seconds, button) {
  if (node._countdown) clearInterval(node._countdown);
  showAlert(node, rateLimitMessage(seconds), 'warning');
  if (seconds == null) return;
  let left = Math.max(1, seconds);
  if (button) button.disabled = true;
  node._countdown = setInterval(() => {
    left -= 1;
    if (left <= 0) {
      clearInterval(node._countdown);
      node._countdown = null;
      showAlert(node, '');
      if (button) button.disabled = false;
      return;
    }
    node.textContent = rateLimitMessage(left);
  }, 1000);
}

// ---------------------------------------------------------------- section states

/** Loading state for a section body. */
export function loadingState(label = 'Loading…') {
  return el(
    'div',
    { class: 'state', role: 'status', 'aria-live': 'polite' },
    el('div', { class: 'spinner', 'aria-hidden': 'true' }),
    el('p', { text: label }),
  );
}

/** Empty state for a section body. */
export function emptyState(title, detail) {
  return el(
    'div',
    { class: 'state', dataset: { state: 'empty' } },
    el('p', { class: 'state-title', text: title }),
    detail ? el('p', { text: detail }) : null,
  );
}

/** Error state with a Retry button for a section body. */
export function errorState(message, retry) {
  return el(
    'div',
    { class: 'state error', role: 'alert', dataset: { state: 'error' } },
    el('p', { class: 'state-title', text: "Couldn't load this." }),
    el('p', { text: message }),
    retry
      ? el('button', { type: 'button', class: 'btn btn-secondary btn-small', text: 'Retry', onclick: retry })
      : null,
  );
}

/** Replaces a node's children. */
export function render(node, ...children) {
  node.replaceChildren(...children.filter((c) => c != null));
}

// ---------------------------------------------------------------- page-wide states

function pageState(...children) {
  const app = document.getElementById('app');
  const panel = document.getElementById('page-state');
  if (app) app.hidden = true;
  for (const node of document.querySelectorAll('[data-signed-in]')) node.hidden = true;
  render(panel, el('div', { class: 'card state state-page' }, ...children));
  panel.hidden = false;
  const title = panel.querySelector('h1');
  if (title) {
    title.setAttribute('tabindex', '-1');
    title.focus();
  }
}

/** The whole page becomes "Your session has ended" with a sign-in link back here. */
export function showSessionEnded() {
  document.body.dataset.pageState = 'session-ended';
  pageState(
    el('h1', { class: 'state-title', text: 'Signed out' }),
    el('p', { role: 'alert', id: 'session-ended', text: SESSION_ENDED }),
    el('a', { class: 'btn btn-primary', href: loginHref(), text: 'Sign in again' }),
  );
}

/** The whole page becomes "You don't have access" (a 403: signed in, not allowed). */
export function showNoAccess() {
  document.body.dataset.pageState = 'no-access';
  pageState(
    el('h1', { class: 'state-title', text: 'No access' }),
    el('p', { role: 'alert', id: 'no-access', text: NO_ACCESS }),
    el('p', { text: 'This page is for administrators. Ask an administrator if you need access.' }),
    el('a', { class: 'btn btn-secondary', href: url('/account'), text: 'Go to your account' }),
  );
  for (const node of document.querySelectorAll('[data-signed-in]')) node.hidden = false;
}

/**
 * Handles the answers that end the page as a whole; true when it did. A 401 always
 * does; a 403 does when `forbiddenEndsPage` (page-level loads, where it means "not
 * allowed here").
 */
export function handlePageError(error, { forbiddenEndsPage = false } = {}) {
  if (error instanceof ApiError && error.status === 401) {
    showSessionEnded();
    return true;
  }
  if (forbiddenEndsPage && error instanceof ApiError && error.status === 403) {
    showNoAccess();
    return true;
  }
  return false;
}

/** A one-line description of a failed call for an error state or alert. */
export function describeError(error) {
  if (error instanceof ApiError) {
    if (error.status === 429) return rateLimitMessage(error.retryAfter);
    return error.message;
  }
  return 'Something went wrong. Please try again.';
}

// ---------------------------------------------------------------- signed-in chrome

/** Fills the top bar (who is signed in, the Users link for admins) and wires Log out. */
export function initTopbar(user) {
  const who = document.getElementById('who');
  if (who && user) {
    who.textContent = user.name ? `${user.name} · ${user.email}` : user.email;
    who.title = user.email;
  }
  const usersLink = document.getElementById('nav-users');
  if (usersLink && user) usersLink.hidden = user.role !== 'ADMIN';
}

/** Wires every `[data-logout]` button: POST logout, then go to the sign-in page. */
export function wireLogout(onError) {
  for (const button of document.querySelectorAll('[data-logout]')) {
    button.addEventListener('click', async () => {
      setBusy(button, true);
      try {
        await api('POST', '/auth/logout');
        location.assign(url('/login'));
      } catch (error) {
        setBusy(button, false);
        onError(describeError(error));
      }
    });
  }
}

// ---------------------------------------------------------------- formatting

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

export function formatDateTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? '') : dateTime.format(date);
}

export function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? '') : dateOnly.format(date);
}

/** "just now", "5 minutes ago", "yesterday", … */
export function formatRelative(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? '');
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return 'just now';
  const steps = [
    [60, 'second'],
    [3600, 'minute'],
    [86400, 'hour'],
    [604800, 'day'],
    [2629800, 'week'],
    [31557600, 'month'],
  ];
  let unit = 'year';
  let size = 31557600;
  for (let i = 0; i < steps.length; i += 1) {
    if (abs < steps[i][0]) {
      [size, unit] = i === 0 ? [1, 'second'] : [steps[i - 1][0], steps[i][1]];
      break;
    }
  }
  return relative.format(Math.round(seconds / size), unit);
}
