// /login: sign in, then go to the sanitised `next` (embedded by the server) or /account.
import {
  api,
  ApiError,
  INVALID_CREDENTIALS,
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

const form = document.getElementById('login-form');
const email = document.getElementById('email');
const password = document.getElementById('password');
const submit = document.getElementById('submit');
const alertBox = document.getElementById('form-alert');
const next = pageNext();

if (document.body.dataset.next) {
  document.getElementById('register-link').href = `${url('/register')}?next=${encodeNext(next)}`;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  showAlert(alertBox, '');
  let invalid = false;
  if (!email.value.trim()) {
    setFieldError(email, 'Enter your email address.');
    invalid = true;
  }
  if (!password.value) {
    setFieldError(password, 'Enter your password.');
    invalid = true;
  }
  if (invalid) {
    form.querySelector('[aria-invalid="true"]').focus();
    return;
  }

  setBusy(submit, true);
  try {
    await api('POST', '/auth/login', { email: email.value.trim(), password: password.value });
    location.assign(next);
    return;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showAlert(alertBox, INVALID_CREDENTIALS);
      password.value = '';
      password.focus();
    } else if (error instanceof ApiError && error.status === 429) {
      setBusy(submit, false);
      showRateLimit(alertBox, error.retryAfter, submit);
      return;
    } else if (error instanceof ApiError && error.status === 422) {
      const input = fieldForMessage(error.message, [
        ['password', password],
        ['email', email],
      ]);
      if (input) setFieldError(input, fieldMessage(error.message));
      else showAlert(alertBox, error.message);
    } else {
      showAlert(alertBox, describeError(error));
    }
  }
  setBusy(submit, false);
});
