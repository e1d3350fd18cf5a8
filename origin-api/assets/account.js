// /account: profile, password change, active sessions (revoke one, revoke all others),
// log out, and the audit history. Any 401 turns the page into the session-ended state.
import {
  api,
  ApiError,
  clearFieldErrors,
  describeError,
  el,
  emptyState,
  errorState,
  fieldForMessage,
  fieldMessage,
  formatDate,
  formatDateTime,
  formatRelative,
  handlePageError,
  icon,
  initTopbar,
  loadingState,
  render,
  setBusy,
  setFieldError,
  showAlert,
  showRateLimit,
  wireLogout,
  url,
} from './common.js';

const $ = (id) => document.getElementById(id);
const AUDIT_PAGE_SIZE = 10;

let profile = null;

// ---------------------------------------------------------------- profile

const profileForm = $('profile-form');
const profileName = $('profile-name');
const profileEmail = $('profile-email');
const profileSave = $('profile-save');
const profileAlert = $('profile-alert');

function showProfile(next) {
  profile = next;
  profileName.value = profile.name ?? '';
  profileEmail.value = profile.email;
  $('password-username').value = profile.email;
  $('profile-role').textContent = profile.role;
  $('profile-created').textContent = formatDate(profile.createdAt);
  initTopbar(profile);
}

async function loadProfile() {
  const state = $('profile-state');
  profileForm.hidden = true;
  render(state, loadingState('Loading your profile…'));
  try {
    const data = await api('GET', '/account');
    showProfile(data.profile);
    render(state);
    profileForm.hidden = false;
  } catch (error) {
    if (handlePageError(error)) return;
    render(state, errorState(describeError(error), loadProfile));
  }
}

profileForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(profileForm);
  showAlert(profileAlert, '');
  const name = profileName.value.trim();
  const email = profileEmail.value.trim();
  if (!email) {
    setFieldError(profileEmail, 'Enter your email address.');
    profileEmail.focus();
    return;
  }
  const body = {};
  if (name !== (profile?.name ?? '')) body.name = name === '' ? null : name;
  if (email.toLowerCase() !== profile?.email) body.email = email;
  if (Object.keys(body).length === 0) {
    showAlert(profileAlert, 'Nothing to save: your profile is unchanged.', 'success');
    return;
  }
  setBusy(profileSave, true);
  try {
    const data = await api('PATCH', '/account', body);
    setBusy(profileSave, false);
    showProfile(data.profile);
    showAlert(profileAlert, 'Profile saved.', 'success');
    loadAudit(1);
  } catch (error) {
    setBusy(profileSave, false);
    if (handlePageError(error)) return;
    if (error instanceof ApiError && error.status === 409) {
      setFieldError(profileEmail, error.message);
      profileEmail.focus();
    } else if (error instanceof ApiError && error.status === 422) {
      const input = fieldForMessage(error.message, [
        ['email', profileEmail],
        ['name', profileName],
      ]);
      if (input) {
        setFieldError(input, fieldMessage(error.message));
        input.focus();
      } else {
        showAlert(profileAlert, error.message);
      }
    } else if (error instanceof ApiError && error.status === 429) {
      showRateLimit(profileAlert, error.retryAfter, profileSave);
    } else {
      showAlert(profileAlert, describeError(error));
    }
  }
});

// ---------------------------------------------------------------- password

const passwordForm = $('password-form');
const currentPassword = $('current-password');
const newPassword = $('new-password');
const confirmPassword = $('confirm-password');
const passwordSave = $('password-save');
const passwordAlert = $('password-alert');

passwordForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(passwordForm);
  showAlert(passwordAlert, '');
  let invalid = false;
  if (!currentPassword.value) {
    setFieldError(currentPassword, 'Enter your current password.');
    invalid = true;
  }
  if (new TextEncoder().encode(newPassword.value).length < 8) {
    setFieldError(newPassword, 'Use at least 8 characters.');
    invalid = true;
  } else if (newPassword.value !== confirmPassword.value) {
    setFieldError(confirmPassword, 'The two new passwords do not match.');
    invalid = true;
  }
  if (invalid) {
    passwordForm.querySelector('[aria-invalid="true"]').focus();
    return;
  }
  setBusy(passwordSave, true);
  try {
    const data = await api('POST', '/account/password', {
      currentPassword: currentPassword.value,
      newPassword: newPassword.value,
    });
    passwordForm.reset();
    const n = Number(data.revoked ?? 0);
    showAlert(
      passwordAlert,
      n > 0
        ? `Password changed. ${n} other ${n === 1 ? 'session was' : 'sessions were'} signed out.`
        : 'Password changed.',
      'success',
    );
    setBusy(passwordSave, false);
    loadSessions();
    loadAudit(1);
  } catch (error) {
    setBusy(passwordSave, false);
    if (handlePageError(error)) return;
    if (error instanceof ApiError && error.status === 403) {
      setFieldError(currentPassword, 'The current password is incorrect.');
      currentPassword.focus();
    } else if (error instanceof ApiError && error.status === 422) {
      const input = fieldForMessage(error.message, [
        ['currentpassword', currentPassword],
        ['newpassword', newPassword],
        ['password', newPassword],
      ]);
      if (input) {
        setFieldError(input, fieldMessage(error.message));
        input.focus();
      } else {
        showAlert(passwordAlert, error.message);
      }
    } else if (error instanceof ApiError && error.status === 429) {
      showRateLimit(passwordAlert, error.retryAfter, passwordSave);
    } else {
      showAlert(passwordAlert, describeError(error));
    }
  }
});

// ---------------------------------------------------------------- sessions

const ICONS = {
  desktop: ['M3 4.5h18v11.5H3z', 'M8.5 20h7', 'M12 16v4'],
  phone: ['M7.5 2.5h9v19h-9z', 'M11 18.5h2'],
  tablet: ['M5 3h14v18H5z', 'M11 18h2'],
  other: ['M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z', 'M3 12h18', 'M12 3c3 3.5 3 14.5 0 18', 'M12 3c-3 3.5-3 14.5 0 18'],
};

/** Device kind and label from the server's device type (woothee's categories or plain words). */
function device(type) {
  const t = String(type ?? '').toLowerCase();
  if (t === 'pc' || t === 'desktop') return ['desktop', 'Desktop'];
  if (t === 'smartphone' || t === 'mobile' || t === 'phone') return ['phone', 'Phone'];
  if (t === 'mobilephone') return ['phone', 'Mobile phone'];
  if (t === 'tablet') return ['tablet', 'Tablet'];
  if (!t || t === 'unknown' || t === 'misc') return ['other', 'Unknown device'];
  return ['other', t.charAt(0).toUpperCase() + t.slice(1)];
}

function known(value, fallback) {
  return value && String(value).toUpperCase() !== 'UNKNOWN' ? String(value) : fallback;
}

function timeEl(iso, text) {
  return el('time', { datetime: iso, title: formatDateTime(iso), text });
}

const sessionsList = $('sessions-list');
const sessionsState = $('sessions-state');
const sessionsAlert = $('sessions-alert');
const revokeOthers = $('revoke-others');

function sessionItem(session) {
  const [kind, label] = device(session.deviceType);
  const title = `${known(session.browser, 'Unknown browser')} on ${known(session.os, 'unknown OS')}`;
  const actions = el('div', { class: 'session-actions' });
  if (session.current) {
    actions.append(
      el('button', {
        type: 'button',
        class: 'btn btn-secondary btn-small',
        text: 'Log out',
        onclick: (event) => logout(event.currentTarget),
      }),
    );
  } else {
    actions.append(
      el('button', {
        type: 'button',
        class: 'btn btn-danger btn-small',
        text: 'Revoke',
        'aria-label': `Revoke ${title} (${session.ipAddress ?? 'unknown IP'})`,
        dataset: { revoke: session.id },
        onclick: (event) => revokeOne(session.id, event.currentTarget),
      }),
    );
  }
  return el(
    'li',
    { class: session.current ? 'session current' : 'session', dataset: { sessionId: session.id, current: String(!!session.current) } },
    el('div', { class: 'session-icon' }, icon(ICONS[kind])),
    el(
      'div',
      { class: 'session-title' },
      el('span', { text: title }),
      session.current ? el('span', { class: 'badge badge-success', text: 'This device' }) : null,
    ),
    el(
      'div',
      { class: 'session-meta' },
      el('span', { text: label }),
      el('span', { text: `IP ${session.ipAddress ?? 'unknown'}` }),
      el('span', {}, 'Last used ', timeEl(session.lastUsedAt, formatRelative(session.lastUsedAt))),
      el('span', {}, 'Signed in ', timeEl(session.createdAt, formatDateTime(session.createdAt))),
    ),
    actions,
  );
}

async function loadSessions() {
  sessionsList.replaceChildren();
  revokeOthers.hidden = true;
  render(sessionsState, loadingState('Loading sessions…'));
  try {
    const data = await api('GET', '/account/sessions');
    const sessions = Array.isArray(data.sessions) ? data.sessions : [];
    if (sessions.length === 0) {
      render(sessionsState, emptyState('No active sessions', 'Sign in on a device and it will show up here.'));
      return;
    }
    render(sessionsState);
    sessionsList.replaceChildren(...sessions.map(sessionItem));
    revokeOthers.hidden = !sessions.some((s) => !s.current);
  } catch (error) {
    if (handlePageError(error)) return;
    render(sessionsState, errorState(describeError(error), loadSessions));
  }
}

async function revokeOne(id, button) {
  showAlert(sessionsAlert, '');
  setBusy(button, true);
  try {
    await api('DELETE', `/account/sessions/${encodeURIComponent(id)}`);
    showAlert(sessionsAlert, 'Session revoked. That device is signed out.', 'success');
    loadSessions();
    loadAudit(1);
  } catch (error) {
    setBusy(button, false);
    if (handlePageError(error)) return;
    if (error instanceof ApiError && error.status === 403) {
      showAlert(sessionsAlert, 'That session no longer exists.', 'warning');
      loadSessions();
    } else {
      showAlert(sessionsAlert, describeError(error));
    }
  }
}

revokeOthers.addEventListener('click', async () => {
  showAlert(sessionsAlert, '');
  setBusy(revokeOthers, true);
  try {
    const data = await api('DELETE', '/account/sessions');
    const n = Number(data.revoked ?? 0);
    showAlert(
      sessionsAlert,
      n === 0 ? 'No other devices were signed in.' : `Signed out ${n} other ${n === 1 ? 'device' : 'devices'}.`,
      'success',
    );
    setBusy(revokeOthers, false);
    loadSessions();
    loadAudit(1);
  } catch (error) {
    setBusy(revokeOthers, false);
    if (handlePageError(error)) return;
    showAlert(sessionsAlert, describeError(error));
  }
});

// ---------------------------------------------------------------- audit

const ACTIONS = {
  register: 'Account created',
  login: 'Signed in',
  login_failed: 'Failed sign-in attempt',
  logout: 'Signed out',
  session_revoke: 'Session revoked',
  sessions_revoke: 'Sessions revoked',
  sessions_revoke_all: 'Other sessions revoked',
  session_revoke_all: 'Other sessions revoked',
  password_change: 'Password changed',
  profile_update: 'Profile updated',
  role_change: 'Role changed',
  user_delete: 'Account deleted',
};

function actionLabel(action) {
  const known = ACTIONS[action];
  if (known) return known;
  const words = String(action ?? 'event').replace(/[_.]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

const REASONS = {
  user: 'revoked by you',
  others: 'signed out of other devices',
  limit: 'too many sessions: the least recently used one ended',
  admin: 'by an administrator',
  password_change: 'after a password change',
};

/** A readable summary of an audit item's metadata; ids are left out. */
function metadataText(metadata) {
  if (!metadata || typeof metadata !== 'object') return '';
  const parts = [];
  const { reason, revoked, fields, oldRole, newRole } = metadata;
  if (typeof reason === 'string') parts.push(REASONS[reason] ?? reason.replace(/_/g, ' '));
  if (Number.isFinite(revoked)) parts.push(`${revoked} ${revoked === 1 ? 'session' : 'sessions'} ended`);
  if (Array.isArray(fields) && fields.length) parts.push(`changed: ${fields.join(', ')}`);
  if (oldRole && newRole) parts.push(`${oldRole} → ${newRole}`);
  return parts.join(' · ');
}

const auditList = $('audit-list');
const auditState = $('audit-state');
const auditPager = $('audit-pager');
const auditPrev = $('audit-prev');
const auditNext = $('audit-next');
const auditStatus = $('audit-status');
let auditPage = 1;
let auditSeq = 0;

function auditItem(item) {
  const details = [item.ipAddress ? `IP ${item.ipAddress}` : '', metadataText(item.metadata)]
    .filter(Boolean)
    .join(' · ');
  return el(
    'li',
    { class: 'audit-item', dataset: { action: item.action } },
    el(
      'div',
      {},
      el('div', { class: 'audit-action', text: actionLabel(item.action) }),
      details ? el('div', { class: 'audit-detail', text: details }) : null,
      item.userAgent ? el('div', { class: 'audit-agent', title: item.userAgent, text: item.userAgent }) : null,
    ),
    el('div', { class: 'audit-time' }, timeEl(item.createdAt, formatDateTime(item.createdAt))),
  );
}

async function loadAudit(page = auditPage) {
  const seq = ++auditSeq;
  auditPage = page;
  render(auditState, loadingState('Loading activity…'));
  auditList.replaceChildren();
  auditPager.hidden = true;
  try {
    const data = await api('GET', `/account/audit?page=${page}&pageSize=${AUDIT_PAGE_SIZE}`);
    if (seq !== auditSeq) return;
    const items = Array.isArray(data.items) ? data.items : [];
    const p = data.pagination ?? {};
    if (items.length === 0) {
      render(auditState, emptyState('No activity yet'));
      return;
    }
    render(auditState);
    auditList.replaceChildren(...items.map(auditItem));
    const totalPages = Math.max(1, Number(p.totalPages ?? 1));
    auditPage = Number(p.page ?? page);
    auditStatus.textContent = `Page ${auditPage} of ${totalPages}`;
    auditPrev.disabled = !p.hasPrev;
    auditNext.disabled = !p.hasNext;
    auditPager.hidden = totalPages <= 1;
  } catch (error) {
    if (seq !== auditSeq) return;
    if (handlePageError(error)) return;
    render(auditState, errorState(describeError(error), () => loadAudit(auditPage)));
  }
}

auditPrev.addEventListener('click', () => loadAudit(Math.max(1, auditPage - 1)));
auditNext.addEventListener('click', () => loadAudit(auditPage + 1));

// ---------------------------------------------------------------- logout

async function logout(button) {
  setBusy(button, true);
  try {
    await api('POST', '/auth/logout');
    location.assign(url('/login'));
  } catch (error) {
    setBusy(button, false);
    showAlert($('page-alert'), describeError(error));
  }
}

wireLogout((message) => showAlert($('page-alert'), message));

loadProfile();
loadSessions();
loadAudit(1);
