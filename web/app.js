// flotilla web console: calls the gateway's JSON API, keeps the kv live feed
// open over a websocket, and renders the panels of index.html (the Motus
// game is in motus.js).

import * as motus from './motus.js';
import * as signin from './signin.js';

const $ = (id) => document.getElementById(id);
const FEED_LIMIT = 100;
const HEALTH_EVERY_MS = 5000;
const DETAIL_ITEMS = 20;

// Builds an element; attributes that are null, undefined or false are skipped.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
  el.append(...children.flat().filter((c) => c != null && c !== false));
  return el;
}

const TIME = { hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3 };
const DATE_TIME = { dateStyle: 'medium', timeStyle: 'medium' };

// A <time> for an RFC 3339 stamp, shown in local time (to the millisecond when `precise`).
function timeEl(iso, precise = false) {
  const date = new Date(iso);
  const text = Number.isNaN(date.getTime())
    ? String(iso ?? '')
    : date.toLocaleString(undefined, precise ? TIME : DATE_TIME);
  return h('time', { datetime: iso, title: iso }, text);
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
const sentence = (text) => (/[.!?…]$/.test(text) ? text : `${text}.`);

// ---- The alert banner: one message per failing endpoint, cleared when it answers again.

const failures = new Map();

function setFailure(source, message) {
  if (message) failures.set(source, sentence(message));
  else failures.delete(source);
  $('alert').replaceChildren(...[...failures.values()].map((m) => h('p', {}, m)));
  $('alert').hidden = failures.size === 0;
}

// ---- HTTP: every call answers { status, ok, body } with a parsed JSON body, or throws.
// A network error or an unexpected answer (5xx not in `expect`, a body that is not JSON)
// raises the banner; a good answer lowers it.

async function api(path, { method = 'GET', json, expect = [] } = {}) {
  const source = `${method} ${path.split('?')[0]}`;
  const headers = { accept: 'application/json', ...(json !== undefined && { 'content-type': 'application/json' }) };
  const token = await signin.accessToken();
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
  } catch (err) {
    setFailure('network', 'The gateway cannot be reached. Check that flotilla is running; the page retries by itself.');
    throw new Error('the gateway cannot be reached', { cause: err });
  }
  setFailure('network', null);
  let body = null;
  if (/json/.test(res.headers.get('content-type') ?? '')) body = await res.json().catch(() => null);
  if (body === null || (res.status >= 500 && !expect.includes(res.status))) {
    const what = body?.detail ?? body?.title ?? (body === null ? 'the answer is not JSON' : 'server error');
    const message = `${source} failed with HTTP ${res.status}: ${what}`;
    setFailure(source, message);
    throw new Error(message);
  }
  setFailure(source, null);
  return { status: res.status, ok: res.ok, body };
}

const problemText = (p) => sentence([p?.title, p?.detail].filter(Boolean).join(': ') || 'The request failed');

// Shows (or clears, with '') the message under a field; false when the field has no slot for one.
function setFieldError(input, message) {
  const slot = input?.id && $(`${input.id}-error`);
  if (!slot) return false;
  slot.textContent = message;
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  return true;
}

// Puts the messages of a problem's `errors` next to their fields; returns the text of those that fit none.
const showFieldErrors = (form, problem) => (problem?.errors ?? [])
  .filter(({ field, detail }) => !setFieldError(form.elements.namedItem(String(field).replace(/^\//, '')), detail))
  .map(({ field, detail }) => `${field}: ${detail}`);

// Runs `send(form)` on submit once the browser's constraints pass (their messages shown inline),
// with the submit button disabled meanwhile.
function onSubmit(form, send) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const input of form.elements) setFieldError(input, '');
    const bad = [...form.elements].filter((input) => input.willValidate && !input.checkValidity());
    bad.forEach((input) => setFieldError(input, input.validationMessage));
    if (bad.length) {
      bad[0].focus();
      return;
    }
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await send(form);
    } finally {
      button.disabled = false;
    }
  });
}

// ---- Roundtrip and the live feed.

const pending = new Map(); // correlation id -> performance.now() when its POST started
const arrivedAt = new WeakMap(); // feed <li> -> performance.now() when it arrived

function markMine(li, sentAt) {
  const ms = Math.max(0, Math.round(arrivedAt.get(li) - sentAt));
  li.classList.add('mine');
  li.querySelector('.meta').append(h('span', { class: 'badge' }, 'yours'), h('span', { class: 'latency' }, `${ms} ms`));
  $('rt-status').textContent = `Back on the feed after ${ms} ms.`;
}

const feedItem = (id) => $('feed').querySelector(`li[data-correlation-id="${CSS.escape(id)}"]`);

function addFeedItem({ key = '', value = '', stored_at: storedAt, correlation_id: correlationId }) {
  const id = String(correlationId ?? '');
  const feed = $('feed');
  if (id && feedItem(id)) return; // a redelivery
  const li = h('li', { 'data-correlation-id': id },
    h('div', { class: 'entry' },
      h('code', { class: 'key' }, String(key)),
      h('span', { class: 'value' }, String(value))),
    h('div', { class: 'meta' }, timeEl(storedAt, true)));
  arrivedAt.set(li, performance.now());
  feed.prepend(li);
  while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
  if (pending.has(id)) {
    markMine(li, pending.get(id));
    pending.delete(id);
  }
}

async function sendRoundtrip(form) {
  const status = $('rt-status');
  const sentAt = performance.now();
  try {
    const { ok, body } = await api('/kv/roundtrip', {
      method: 'POST',
      json: { key: $('rt-key').value, value: $('rt-value').value },
    });
    if (!ok) {
      status.textContent = [problemText(body), ...showFieldErrors(form, body)].join(' ');
      return;
    }
    const id = String(body.correlation_id);
    status.textContent = `Sent (correlation id ${id}); waiting for the feed…`;
    // The feed may have delivered it before the POST answered.
    const li = feedItem(id);
    if (li) markMine(li, sentAt);
    else pending.set(id, sentAt);
  } catch (err) {
    status.textContent = `Not sent: ${sentence(err.message)}`;
  }
}

function setWsState(state) {
  $('ws-state').dataset.state = state;
  $('ws-state').textContent = state === 'connecting' ? 'connecting…' : state;
}

let retries = 0;
function connectFeed() {
  setWsState('connecting');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/kv/ws`);
  ws.addEventListener('open', () => {
    retries = 0;
    setWsState('connected');
  });
  ws.addEventListener('message', ({ data }) => {
    let item = null;
    try { item = JSON.parse(data); } catch { /* not JSON: nothing to show */ }
    if (item && typeof item === 'object') addFeedItem(item);
  });
  ws.addEventListener('close', () => {
    setWsState('disconnected');
    // Exponential back-off with jitter, from 0.5 s up to 30 s.
    const delay = Math.min(30000, 500 * 2 ** retries++) * (0.5 + Math.random() / 2);
    setTimeout(connectFeed, delay);
  });
}

// ---- Batches.

let nextPage = null;

async function sendBatch(form) {
  const result = $('batch-result');
  const show = (kind, ...content) => {
    result.className = `result ${kind}`;
    result.replaceChildren(...content);
  };
  const id = $('batch-id').value.trim();
  const started = performance.now();
  show('pending', 'Storing…');
  try {
    const { status, body } = await api('/kv/batch', {
      method: 'POST',
      json: { size: Number($('batch-size').value), ...(id && { id }) },
      expect: [504],
    });
    const ms = Math.round(performance.now() - started);
    if (status === 200) {
      show('ok', 'Batch ', h('code', {}, String(body.id)), ` done: ${plural(body.size, 'item')} stored in ${ms} ms.`);
      await loadBatches();
    } else if (status === 504) {
      const retryId = body.batch_id ?? id;
      if (retryId) $('batch-id').value = retryId;
      show('warn', `No reply after ${ms} ms, but the batch may still complete. `, retryId
        ? `Press “Store batch” again with the same id (${retryId}, filled in above): `
          + 'it returns the result without storing twice.'
        : 'Look for it in the stored batches below in a moment.');
    } else {
      show('error', [problemText(body), ...showFieldErrors(form, body)].join(' '));
    }
  } catch (err) {
    show('error', `Not stored: ${sentence(err.message)}`);
  }
}

const emptyRow = (text) => h('tr', {}, h('td', { colspan: 3, class: 'empty' }, text));

async function loadBatches(more = false) {
  const query = new URLSearchParams({ limit: 20, ...(more && nextPage && { after: nextPage }) });
  const tbody = $('batches').tBodies[0];
  try {
    const { ok, body } = await api(`/kv/batches?${query}`);
    if (!ok) throw new Error(problemText(body));
    if (!more) tbody.replaceChildren();
    for (const batch of body.items ?? []) {
      tbody.append(h('tr', {},
        h('td', {}, h('button', { type: 'button', class: 'link', 'data-batch-id': batch.id }, String(batch.id))),
        h('td', { class: 'num' }, String(batch.size)),
        h('td', {}, timeEl(batch.stored_at))));
    }
    if (!tbody.children.length) tbody.append(emptyRow('No batches stored yet.'));
    nextPage = body.next ?? null;
  } catch (err) {
    tbody.replaceChildren(emptyRow(`Batches could not be loaded: ${sentence(err.message)}`));
    nextPage = null;
  }
  $('batches-more').hidden = !nextPage;
}

async function showBatch(id) {
  const summary = $('batch-detail-summary');
  const tbody = $('batch-items').tBodies[0];
  $('batch-detail').hidden = false;
  $('batch-detail-title').textContent = `Batch ${id}`;
  summary.textContent = 'Loading…';
  tbody.replaceChildren();
  try {
    const { ok, body } = await api(`/kv/batches/${encodeURIComponent(id)}`);
    if (!ok) throw new Error(problemText(body));
    const items = body.items ?? [];
    summary.replaceChildren(`${plural(items.length, 'item')}, stored `, timeEl(body.stored_at),
      items.length > DETAIL_ITEMS ? `; the first ${DETAIL_ITEMS} are shown.` : '.');
    for (const item of items.slice(0, DETAIL_ITEMS)) {
      tbody.append(h('tr', {}, h('td', {}, h('code', {}, String(item.key))), h('td', {}, String(item.value))));
    }
  } catch (err) {
    summary.textContent = `The batch could not be loaded: ${sentence(err.message)}`;
  }
}

// ---- Health and services.

let healthLoading = false;

async function loadHealth() {
  if (healthLoading) return;
  healthLoading = true;
  try {
    const { body } = await api('/health', { expect: [503] });
    const services = Object.entries(body.services ?? {});
    $('health').replaceChildren(...services.map(([name, s]) => {
      const instances = s.instances ?? [];
      const passing = instances.filter((i) => i.status === 'pass').length;
      const count = plural(instances.length, 'instance');
      const status = s.status === 'pass' ? 'pass' : 'fail';
      return h('li', { 'data-service': name, 'data-status': status },
        h('span', { class: 'name' }, name),
        h('span', { class: `pill ${status}` }, status === 'pass' ? '✓ pass' : '✕ fail'),
        h('span', { class: 'meta' }, s.time != null && `${s.time} ms · `,
          passing === instances.length ? count : `${passing} of ${count} passing`));
    }));
    const overall = body.status === 'pass' ? 'pass' : 'fail';
    $('health-summary').textContent = `Overall: ${overall} · checked ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $('health').replaceChildren();
    $('health-summary').textContent = `Health unknown: ${sentence(err.message)}`;
  } finally {
    healthLoading = false;
  }
}

async function loadServices() {
  try {
    const { body } = await api('/_flotilla/api/services');
    // Link text names the service for screen readers, which list links out of context.
    const link = (href, label, name) =>
      href && h('a', { href }, label, h('span', { class: 'visually-hidden' }, ` of ${name}`));
    $('services').replaceChildren(...Object.entries(body.services ?? {}).map(([name, s]) =>
      h('li', { 'data-service': name },
        h('span', { class: 'name' }, name),
        h('span', { class: 'meta' }, plural(s.instances ?? 0, 'instance')),
        h('span', { class: 'links' }, link(s.docs, 'API docs', name), link(s.openapi, 'OpenAPI', name)))));
    const links = [['dashboard', 'Dashboard'], ['metrics', 'Metrics'], ['health', 'Health JSON']];
    $('gateway-links').replaceChildren(...links.filter(([key]) => body[key]).map(([key, label]) =>
      h('a', { href: body[key] }, label)));
  } catch (err) {
    const message = `Services could not be loaded: ${sentence(err.message)}`;
    $('services').replaceChildren(h('li', { class: 'empty' }, message));
  }
}

// ---- Who is signed in: this tab's tokens from the code flow (signin.js),
// or else the auth service's session cookie. Not signed in (401), the
// header keeps its sign-in and sign-up links. Answers the name, if any.

async function loadAccount() {
  if (location.pathname === '/callback') {
    try {
      await signin.completeSignIn();
      setFailure('signin', null);
    } catch (err) {
      setFailure('signin', `Signing in failed: ${err.message}`);
    }
  }
  let name = signin.person()?.name;
  if (!name) {
    let res;
    try {
      res = await fetch('/auth/session', { headers: { accept: 'application/json' } });
    } catch {
      return; // the banner of the other calls says the gateway is unreachable
    }
    const me = res.ok ? await res.json().catch(() => null) : null;
    name = me?.name;
  }
  if (!name) return;
  const signOut = h('a', { href: signin.signOutUrl() }, 'Sign out');
  signOut.addEventListener('click', signin.forget);
  $('account').replaceChildren('Signed in as ', h('strong', {}, name), ' · ', signOut);
  return name;
}

// "Sign in" starts the code flow where the page can (a secure context);
// elsewhere the link goes to the login page itself.
$('sign-in').addEventListener('click', (event) => {
  if (!signin.canSignIn()) return;
  event.preventDefault();
  signin.signIn();
});

// ---- Wiring.

onSubmit($('roundtrip-form'), sendRoundtrip);
onSubmit($('batch-form'), sendBatch);
$('batches-more').addEventListener('click', () => loadBatches(true));
$('batches').addEventListener('click', (event) => {
  const button = event.target.closest('button[data-batch-id]');
  if (button) showBatch(button.dataset.batchId);
});
$('health-refresh').addEventListener('click', loadHealth);
setInterval(() => document.hidden || loadHealth(), HEALTH_EVERY_MS);
document.addEventListener('visibilitychange', () => document.hidden || loadHealth());

connectFeed();
// Motus starts once a sign-in coming back on /callback has kept its tokens.
loadAccount().then((name) => motus.start({ api, h, signedIn: Boolean(name) }));
loadHealth();
loadServices();
loadBatches();
