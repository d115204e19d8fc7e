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
const requests = []; // "METHOD /path" of every request the page made
const motus = {}; // what the Motus steps share as they go

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
    // shows, a 401 from /auth/session means nobody is signed in, a 404 from
    // /users/me that the profile is still on its way, and a 422 from a Motus guess
    // that the server refused it (the page shows why).
    const url = message.location().url;
    const expected = (url.endsWith('/health') && message.text().includes('503'))
      || (url.endsWith('/auth/session') && message.text().includes('401'))
      || (url.endsWith('/users/me') && message.text().includes('404'))
      || (url.endsWith('/motus/today/guesses') && message.text().includes('422'));
    if (message.type() === 'error' && !expected) problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('request', (request) => requests.push(`${request.method()} ${new URL(request.url()).pathname}`));
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

// GETs `path` in the page with the access token it holds, as the console does.
function signedInGet(path) {
  return page.evaluate(async (url) => {
    const { access } = JSON.parse(sessionStorage.getItem('flotilla.tokens'));
    const res = await fetch(url, { headers: { authorization: `Bearer ${access}` } });
    return { status: res.status, body: await res.json() };
  }, path);
}

// Presses Tab until `selector` has the focus, as a person with a keyboard would.
async function tabTo(selector, limit = 60) {
  for (let i = 0; i < limit; i += 1) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press('Tab');
  }
  assert.fail(`Tab never reached ${selector}`);
}

const guessesSent = () => requests.filter((r) => r === 'POST /motus/today/guesses').length;
const playedRows = () => page.locator('#motus-grid li.played').count();

// Types a word on the physical keyboard with the board focused, and plays it with Enter.
async function typeGuess(word) {
  await tabTo('#motus-board');
  await page.keyboard.type(word);
  await page.keyboard.press('Enter');
}

// Erases the row being typed with Backspace (on the board or an on-screen key).
async function eraseGuess() {
  for (let i = 0; i < motus.game.length; i += 1) await page.keyboard.press('Backspace');
  assert.equal(await page.locator('#motus-current .tile[data-state="typed"]').count(), 0, 'the row is erased');
}

// Waits for a refusal to show `reason` on the shaken row, and checks that nothing was counted.
async function checkRefused(reason) {
  await waitForText('#motus-message', reason);
  assert.equal(await page.getAttribute('#motus-message', 'aria-live'), 'assertive', 'the reason is announced');
  assert.equal(await page.locator('#motus-current[data-refused]').count(), 1, 'the row being typed is shaken');
  assert.equal(await playedRows(), 0, 'no attempt is shown');
  const { body } = await signedInGet('/motus/today');
  assert.deepEqual(body.attempts, [], 'the guess did not count');
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

step('the Motus panel asks to sign in, and calls nothing, when nobody is signed in', async () => {
  await page.locator('#motus-signin').waitFor();
  assert.equal(await page.locator('#motus-game').isHidden(), true, 'no game is shown');
  await page.locator('#motus-signin a[href^="/auth/login"]', { hasText: 'Sign in' }).waitFor();
  assert.deepEqual(requests.filter((r) => /\/(motus|score)\//.test(r)), [], 'no Motus or score call was made');
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

step('a person signs up, signs in through the code flow from the keyboard and sees their name', async () => {
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
});

step('signed in, the Motus panel shows today\'s grid with its first letter, and a keyboard', async () => {
  const { status, body: game } = await signedInGet('/motus/today');
  assert.equal(status, 200, JSON.stringify(game));
  assert.equal(game.status, 'playing', 'a new player has not played today');
  motus.game = game;
  const words = await signedInGet(`/motus/words?length=${game.length}&first=${game.first_letter}`);
  assert.equal(words.status, 200);
  motus.words = words.body.words;
  assert.ok(motus.words.length >= game.max_attempts, `enough words to play: ${motus.words.length}`);

  await page.locator('#motus-game[data-words="checked here"]').waitFor();
  assert.equal(await page.locator('#motus-grid > li').count(), game.max_attempts, 'a row per attempt');
  for (const row of await page.locator('#motus-grid > li').all()) {
    assert.equal(await row.locator('.tile').count(), game.length, 'a tile per letter');
  }
  const first = page.locator('#motus-current .tile').first();
  assert.equal(await first.innerText(), game.first_letter, 'the first letter is shown');
  assert.match(await first.getAttribute('aria-label'), /first letter/);
  assert.equal(await page.locator('#motus-keys button[data-key]').count(), 28, '26 letters, Enter and erase');
});

step('Motus: a guess refused before it is sent shakes with its reason and does not count', async () => {
  const sent = guessesSent();
  // Too short.
  await typeGuess(motus.game.first_letter + motus.words[0][1]);
  await checkRefused(`the word has ${motus.game.length} letters`);
  await eraseGuess();
  // Not in the list of words.
  const letters = 'QXZWKJ';
  const nonWord = Array.from({ length: motus.game.length }, (_, i) => (i ? letters[i % letters.length] : motus.game.first_letter)).join('');
  assert.ok(!motus.words.includes(nonWord), `${nonWord} is not a word`);
  await typeGuess(nonWord);
  await checkRefused('not in the list');
  assert.equal(guessesSent(), sent, 'nothing was sent');
  await eraseGuess();

  // The on-screen keys work from the keyboard: Enter presses the focused key.
  await tabTo('#motus-keys button[data-key="Q"]');
  await page.keyboard.press('Enter');
  const typed = motus.game.first_letter === 'Q' ? 'Q' : `${motus.game.first_letter}Q`;
  assert.equal((await page.locator('#motus-current .tile[data-state="typed"]').allInnerTexts()).join(''), typed);
  await tabTo('#motus-keys button[data-key="Backspace"]');
  await page.keyboard.press(' ');
  assert.equal(await page.locator('#motus-current .tile[data-state="typed"]').count(), typed.length - 1, 'the erase key erases');
  await eraseGuess();
  assert.equal(guessesSent(), sent, 'the on-screen keys sent nothing');
});

step('Motus: a guess the server refuses (422) shakes with its reason and does not count', async () => {
  // The page checks guesses against /motus/words: a list that has one more word lets it send that one.
  const fake = `${motus.game.first_letter}${'QZXWKJQZX'.slice(0, motus.game.length - 1)}`;
  assert.ok(!motus.words.includes(fake));
  const list = (url) => url.pathname === '/motus/words';
  await page.route(list, async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    await route.fulfill({ response, json: { words: [...body.words, fake] } });
  });
  try {
    await page.reload();
    await page.locator('#motus-game[data-words="checked here"]').waitFor();
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/motus/today/guesses') && r.request().method() === 'POST'),
      typeGuess(fake),
    ]);
    assert.equal(response.status(), 422);
    await checkRefused('not in the list');
  } finally {
    await page.unroute(list);
  }
  await page.reload();
  await page.locator('#motus-game[data-words="checked here"]').waitFor();
});

step('Motus: a game is played to its end from the keyboard alone', async () => {
  const pool = [...motus.words];
  for (let attempt = 1; attempt <= motus.game.max_attempts; attempt += 1) {
    const word = pool.splice(Math.floor(Math.random() * pool.length), 1)[0];
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/motus/today/guesses') && r.request().method() === 'POST'),
      typeGuess(word),
    ]);
    assert.equal(response.status(), 200, `${word}: ${await response.text()}`);
    const game = await response.json();
    assert.equal(game.attempts.length, attempt);
    const row = page.locator('#motus-grid li.played').nth(attempt - 1);
    await row.waitFor();
    const tiles = row.locator('.tile');
    assert.equal((await tiles.allInnerTexts()).join(''), word, 'the row shows the guess');
    const labels = await tiles.evaluateAll((els) => els.map((el) => `${el.getAttribute('aria-label')}|${el.dataset.mark}`));
    labels.forEach((label, i) => {
      const mark = game.attempts[attempt - 1].feedback[i];
      const words = { correct: 'right place', present: 'elsewhere', absent: 'not in the word' }[mark];
      assert.equal(label, `${word[i]}, ${words}|${mark}`, 'each tile says its mark in words');
    });
    if (game.status !== 'playing') break;
  }
  const { body: game } = await signedInGet('/motus/today');
  assert.notEqual(game.status, 'playing', 'the game is over');
  assert.ok(game.answer, 'the answer is given once the game is over');
  motus.game = game;
});

step('Motus: the end panel shows the answer, the player\'s statistics and the leaderboards', async () => {
  await page.locator('#motus-end').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'motus-end-title', 'the result has the focus');
  await waitForText('#motus-answer', motus.game.answer);
  await waitForText('#motus-end-title', motus.game.status === 'won' ? 'Found' : 'Not found');
  // The score service counts the game when it hears of it on the bus: the page waits for it.
  await page.waitForFunction(() => Number(document.getElementById('motus-stats')?.dataset.games) >= 1, null, { timeout: 30_000 });
  const stats = await text('#motus-stats');
  assert.ok(Number(stats.match(/Games\s+(\d+)/)?.[1]) >= 1, `the statistics count the game: ${stats}`);
  assert.match(stats, /Win rate/);
  assert.match(stats, /Best streak/);
  assert.equal(await page.locator('#motus-dist li').count(), 6, 'wins by 1 to 6 attempts');
  for (const table of ['#motus-day', '#motus-all']) {
    const mine = page.locator(`${table} tr.mine`);
    await mine.waitFor();
    const line = await mine.innerText();
    assert.ok(line.includes('Ada Browser'), `${table} lists the player: ${line}`);
    assert.match(line, /you/, `${table} marks the player's own line`);
  }
  const { body: me } = await signedInGet('/score/me');
  assert.ok(me.games >= 1, JSON.stringify(me));

  await page.setViewportSize({ width: 375, height: 800 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `the page with the end of a game is ${width} px wide`);
  await page.setViewportSize({ width: 1280, height: 720 });
});

step('the person signs out', async () => {
  await page.click('#account >> text=Sign out');
  await page.waitForURL(/\/auth\/end_session\?/);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/`);
  await page.locator('#account >> text=Sign in').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('flotilla.tokens')), null);
  await page.locator('#motus-signin').waitFor();
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
