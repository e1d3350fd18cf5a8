// /users (ADMIN): debounced search, pagination ("Page X of Y") and role changes.
// A 403 means "signed in but not an administrator": the page says so and never asks the
// user to sign in; a 401 is the session-ended state.
import {
  api,
  ApiError,
  describeError,
  el,
  emptyState,
  errorState,
  formatDate,
  formatDateTime,
  handlePageError,
  initTopbar,
  loadingState,
  render,
  showAlert,
  wireLogout,
  url,
} from './common.js';

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 10;
const DEBOUNCE_MS = 300;
const ROLES = ['USER', 'ADMIN'];

const search = $('search');
const table = $('users-table');
const tbody = $('users-body');
const state = $('users-state');
const count = $('users-count');
const pager = $('users-pager');
const prev = $('users-prev');
const next = $('users-next');
const status = $('users-status');

const params = new URLSearchParams(location.search);
let page = Math.max(1, Number.parseInt(params.get('page') ?? '1', 10) || 1);
let query = (params.get('search') ?? '').trim();
let seq = 0;
let me = null;
search.value = query;

function syncUrl() {
  const out = new URLSearchParams();
  if (query) out.set('search', query);
  if (page > 1) out.set('page', String(page));
  const qs = out.toString();
  history.replaceState(null, '', qs ? `${url('/users')}?${qs}` : url('/users'));
}

function roleCell(user) {
  const select = el(
    'select',
    {
      id: `role-${user.id}`,
      'aria-label': `Role of ${user.email}`,
      dataset: { userId: user.id, role: user.role },
    },
    ...ROLES.map((role) => el('option', { value: role, text: role, selected: role === user.role })),
  );
  const note = el('span', { class: 'inline-status', id: `role-${user.id}-status`, 'aria-live': 'polite' });
  select.setAttribute('aria-describedby', note.id);
  select.addEventListener('change', () => changeRole(user, select, note));
  return el('div', { class: 'role-cell' }, select, note);
}

function row(user) {
  const you = me && me.id === user.id;
  return el(
    'tr',
    { dataset: { userId: user.id, email: user.email } },
    el(
      'td',
      { class: 'cell-user', 'data-label': 'User' },
      el('div', { class: 'user-email' }, user.email, you ? el('span', { class: 'badge', text: 'you' }) : null),
      el('div', { class: 'user-name', text: user.name ?? 'No name' }),
    ),
    el('td', { 'data-label': 'Role' }, roleCell(user)),
    el(
      'td',
      { 'data-label': 'Created' },
      el('time', { datetime: user.createdAt, title: formatDateTime(user.createdAt), text: formatDate(user.createdAt) }),
    ),
  );
}

async function load() {
  const mine = ++seq;
  syncUrl();
  render(state, loadingState('Loading users…'));
  table.hidden = true;
  pager.hidden = true;
  const qs = new URLSearchParams({ page: String(page), pageSize: String(PAGE_SIZE) });
  if (query) qs.set('search', query);
  try {
    const data = await api('GET', `/users?${qs}`);
    if (mine !== seq) return;
    const items = Array.isArray(data.items) ? data.items : [];
    const p = data.pagination ?? {};
    const total = Number(p.total ?? items.length);
    const totalPages = Math.max(1, Number(p.totalPages ?? 1));
    page = Number(p.page ?? page);
    count.textContent = query
      ? `${total} ${total === 1 ? 'match' : 'matches'}`
      : `${total} ${total === 1 ? 'user' : 'users'}`;
    if (items.length === 0 && total > 0 && page > 1) {
      // The list shrank under us: go back to the last page that has rows.
      page = totalPages;
      load();
      return;
    }
    if (items.length === 0) {
      render(state, query ? emptyState(`No users match “${query}”.`, 'Try another email or name.') : emptyState('No users yet'));
      return;
    }
    render(state);
    tbody.replaceChildren(...items.map(row));
    table.hidden = false;
    status.textContent = `Page ${page} of ${totalPages}`;
    prev.disabled = !p.hasPrev;
    next.disabled = !p.hasNext;
    pager.hidden = false;
  } catch (error) {
    if (mine !== seq) return;
    if (handlePageError(error, { forbiddenEndsPage: true })) return;
    count.textContent = '';
    render(state, errorState(describeError(error), load));
  }
}

async function changeRole(user, select, note) {
  const role = select.value;
  const previous = select.dataset.role;
  note.className = 'inline-status';
  note.textContent = 'Saving…';
  select.removeAttribute('aria-invalid');
  select.disabled = true;
  try {
    const data = await api('PATCH', `/users/${encodeURIComponent(user.id)}`, { role });
    const saved = data.user?.role ?? role;
    select.value = saved;
    select.dataset.role = saved;
    note.className = 'inline-status ok';
    note.textContent = `Saved: now ${saved}`;
  } catch (error) {
    select.value = previous;
    if (handlePageError(error, { forbiddenEndsPage: true })) return;
    note.className = 'inline-status error';
    select.setAttribute('aria-invalid', 'true');
    if (error instanceof ApiError && error.status === 404) {
      note.textContent = 'This user no longer exists.';
    } else {
      note.textContent = describeError(error);
    }
  } finally {
    select.disabled = false;
  }
}

let timer = null;
search.addEventListener('input', () => {
  clearTimeout(timer);
  timer = setTimeout(() => {
    const value = search.value.trim();
    if (value === query) return;
    query = value;
    page = 1;
    load();
  }, DEBOUNCE_MS);
});

prev.addEventListener('click', () => {
  page = Math.max(1, page - 1);
  load();
});
next.addEventListener('click', () => {
  page += 1;
  load();
});

wireLogout((message) => showAlert($('page-alert'), message));

async function loadMe() {
  try {
    const data = await api('GET', '/auth/me');
    me = data.user;
    initTopbar(me);
    const mine = document.querySelector(`tr[data-user-id="${CSS.escape(me.id)}"] .user-email`);
    if (mine && !mine.querySelector('.badge')) mine.append(el('span', { class: 'badge', text: 'you' }));
  } catch (error) {
    handlePageError(error);
  }
}

loadMe();
load();
