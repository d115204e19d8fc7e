// Browser test of the web console: drives the page a running gateway serves at /
// (base URL in FLOTILLA_URL) through headless Chromium.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const base = process.env.FLOTILLA_URL?.replace(/\/+$/, '');
const skip = base ? false : 'FLOTILLA_URL is not set (e.g. http://127.0.0.1:8080): nothing to test against';
const screenshot = fileURLToPath(new URL('./failure.png', import.meta.url));
const unique = (prefix) => `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

let browser;
let page;
const problems = []; // console errors and uncaught page errors

before(async () => {
  if (skip) return;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
  page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  page.on('console', (message) => {
    // The browser logs every HTTP error status; a 503 from /health is an answer the page
    // shows, a 401 from /auth/session means nobody is signed in, and a 404 from
    // /users/me that the profile is still on its way.
    const url = message.location().url;
    const expected = (url.endsWith('/health') && message.text().includes('503'))
      || (url.endsWith('/auth/session') && message.text().includes('401'))
      || (url.endsWith('/users/me') && message.text().includes('404'));
    if (message.type() === 'error' && !expected) problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  await page.goto(`${base}/`);
});

after(async () => {
  await browser?.close();
});

// Runs a step of the test; on failure, keeps a screenshot of the page for the post-mortem.
function step(name, body) {
  test(name, { skip }, async () => {
    try {
      await body();
    } catch (error) {
      await page?.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
      throw error;
    }
  });
}

const text = (selector) => page.locator(selector).innerText();

// Waits for `selector` to show `expected`; a timeout reports what it shows instead.
async function waitForText(selector, expected) {
  try {
    await page.locator(selector, { hasText: expected }).waitFor();
  } catch {
    assert.fail(`${selector} never showed "${expected}"; it shows: ${await text(selector).catch(() => '(nothing)')}`);
  }
}

// Submits a roundtrip with `submit` and checks it comes back on the feed as this page's own.
async function roundtrip(submit) {
  const key = unique('ui-key');
  const value = unique('ui-value');
  await page.fill('#rt-key', key);
  await page.fill('#rt-value', value);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/kv/roundtrip') && r.request().method() === 'POST'),
    submit(),
  ]);
  assert.equal(response.status(), 202);
  const { correlation_id: id } = await response.json();
  assert.ok(id, 'the roundtrip answer carries a correlation id');
  const item = page.locator(`#feed li.mine[data-correlation-id=${JSON.stringify(id)}]`);
  await item.waitFor();
  const shown = await item.innerText();
  assert.ok(shown.includes(key), `the feed entry shows the key: ${shown}`);
  assert.ok(shown.includes(value), `the feed entry shows the value: ${shown}`);
  assert.match(shown, /\d+ ms/, 'the feed entry shows the roundtrip time');
}

step('the page opens and its live feed connects', async () => {
  assert.equal(await page.title(), 'flotilla console');
  await page.waitForFunction(() => document.getElementById('ws-state')?.textContent === 'connected');
  assert.equal(await page.locator('#alert').isHidden(), true, 'no alert is shown');
});

step('a roundtrip comes back on the feed, marked as this page\'s own', async () => {
  await roundtrip(() => page.click('#roundtrip-form button[type=submit]'));
});

step('the roundtrip form works from the keyboard', async () => {
  await roundtrip(async () => {
    await page.focus('#rt-key');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'rt-value', 'Tab moves from key to value');
    await page.keyboard.press('Enter');
  });
});

step('a batch is stored and listed, and its items open from the keyboard', async () => {
  const id = unique('ui-batch');
  await page.fill('#batch-size', '50');
  await page.fill('#batch-id', id);
  await page.click('#batch-form button[type=submit]');
  await waitForText('#batch-result', 'done');
  const result = await text('#batch-result');
  assert.ok(result.includes(id), `the result names the batch: ${result}`);
  assert.match(result, /\d+ ms/, 'the result shows the elapsed time');

  const row = page.locator('#batches tbody tr', { has: page.locator(`button[data-batch-id=${JSON.stringify(id)}]`) });
  await row.waitFor();
  const cells = await row.locator('td').allInnerTexts();
  assert.equal(cells[0], id);
  assert.equal(cells[1], '50');

  await row.locator('button').focus();
  await page.keyboard.press('Enter');
  await waitForText('#batch-detail-summary', '50 items');
  assert.equal(await page.locator('#batch-items tbody tr').count(), 20, 'the first 20 items are shown');
});

step('health shows kv and users passing', async () => {
  for (const service of ['kv', 'users']) {
    const item = page.locator(`#health li[data-service="${service}"][data-status="pass"]`);
    await item.waitFor();
    assert.match(await item.innerText(), /pass/, 'the status is spelled out, not only coloured');
  }
  await page.click('#health-refresh');
  await page.locator('#health li[data-service="kv"][data-status="pass"]').waitFor();
});

step('each service links to its docs and OpenAPI document', async () => {
  const index = await (await page.request.get(`${base}/_flotilla/api/services`)).json();
  assert.ok(index.services?.kv?.docs && index.services?.users?.docs, 'the gateway lists the docs of kv and users');
  for (const [name, service] of Object.entries(index.services)) {
    for (const href of [service.docs, service.openapi].filter(Boolean)) {
      await page.locator(`#services li[data-service="${name}"] a[href="${href}"]`).waitFor();
    }
  }
  await page.locator(`#gateway-links a[href="${index.dashboard}"]`).waitFor();
  await page.locator(`#gateway-links a[href="${index.metrics}"]`).waitFor();
});

step('a person signs up, signs in through the code flow from the keyboard, sees their name and signs out', async () => {
  const email = `${unique('ada')}@example.com`;
  await page.click('#account >> text=Sign up');
  await page.fill('#name', 'Ada Browser');
  await page.fill('#email', email);
  await page.fill('#password', 'correct horse battery');
  await page.click('button[type=submit]');
  await page.waitForURL(/\/auth\/login\?signed_up=1$/);
  await page.locator('[role=status]', { hasText: 'Your account is ready' }).waitFor();

  // Back at the console, "Sign in" goes through /auth/authorize (PKCE) to the login page.
  await page.goto(`${base}/`);
  await page.click('#account >> text=Sign in');
  await page.waitForURL(/\/auth\/login\?return_to=%2Fauth%2Fauthorize/);
  await page.fill('#email', email);
  await page.fill('#password', 'correct horse battery');
  await page.press('#password', 'Enter');
  await page.waitForURL(`${base}/`);
  await waitForText('#account', 'Signed in as Ada Browser');

  // The page holds an access token the gateway accepts: the users service knows the caller.
  const me = await page.evaluate(async () => {
    const { access } = JSON.parse(sessionStorage.getItem('flotilla.tokens'));
    for (let i = 0; i < 100; i += 1) {
      const res = await fetch('/users/me', { headers: { authorization: `Bearer ${access}` } });
      if (res.status !== 404) return { status: res.status, body: await res.json() };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { status: 404 };
  });
  assert.equal(me.status, 200, JSON.stringify(me));
  assert.equal(me.body.email, email);

  await page.click('#account >> text=Sign out');
  await page.waitForURL(/\/auth\/end_session\?/);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/`);
  await page.locator('#account >> text=Sign in').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('flotilla.tokens')), null);
});

step('the page fits a 375 px wide screen', async () => {
  await page.setViewportSize({ width: 375, height: 800 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `the page is ${width} px wide`);
});

step('no console or page errors occurred', async () => {
  assert.equal(await page.locator('#alert').isHidden(), true, `no alert is shown: ${await text('#alert')}`);
  assert.deepEqual(problems, []);
});
