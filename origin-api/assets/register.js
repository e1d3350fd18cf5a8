// /register: create an account, sign in with it, then go to `next` or /account.
import {
  api,
  ApiError,
  clearFieldErrors,
  describeError,
  encodeNext,
  fieldForMessage,
  fieldMessage,
  pageNext,
  setBusy,
  setFieldError,
  showAlert,
  showRateLimit,
  url,
} from './common.js';

const form = document.getElementById('register-form');
const name = document.getElementById('name');
const email = document.getElementById('email');
const password = document.getElementById('password');
const submit = document.getElementById('submit');
const alertBox = document.getElementById('form-alert');
const next = pageNext();
const loginHref = document.body.dataset.next
  ? `${url('/login')}?next=${encodeNext(next)}`
  : url('/login');

document.getElementById('login-link').href = loginHref;

function validate() {
  let ok = true;
  const value = email.value.trim();
  if (!value) {
    setFieldError(email, 'Enter your email address.');
    ok = false;
  } else if (!/^[^\s@]+@[^\s@]+$/.test(value)) {
    setFieldError(email, 'Enter a valid email address, like name@example.com.');
    ok = false;
  }
  if (new TextEncoder().encode(password.value).length < 8) {
    setFieldError(password, 'Use at least 8 characters.');
    ok = false;
  }
  return ok;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  showAlert(alertBox, '');
  if (!validate()) {
    form.querySelector('[aria-invalid="true"]').focus();
    return;
  }
  const body = { email: email.value.trim(), password: password.value };
  if (name.value.trim()) body.name = name.value.trim();

  setBusy(submit, true);
  try {
    await api('POST', '/auth/register', body);
  } catch (error) {
    setBusy(submit, false);
    if (error instanceof ApiError && error.status === 409) {
      setFieldError(email, error.message);
      email.focus();
    } else if (error instanceof ApiError && error.status === 422) {
      const input = fieldForMessage(error.message, [
        ['password', password],
        ['email', email],
        ['name', name],
      ]);
      if (input) {
        setFieldError(input, fieldMessage(error.message));
        input.focus();
      } else {
        showAlert(alertBox, error.message);
      }
    } else if (error instanceof ApiError && error.status === 429) {
      showRateLimit(alertBox, error.retryAfter, submit);
    } else {
      showAlert(alertBox, describeError(error));
    }
    return;
  }

  // The account exists; sign in with it so the user lands where they were going.
  try {
    await api('POST', '/auth/login', body);
    location.assign(next);
  } catch {
    setBusy(submit, false);
    showAlert(alertBox, 'Your account was created. Please sign in.', 'success');
    const link = document.createElement('a');
    link.href = loginHref;
    link.textContent = ' Go to sign in';
    alertBox.append(link);
  }
});
