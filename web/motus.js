// Motus panel of the web console: the signed-in player's game of the day
// (/motus/today), played from the physical or the on-screen keyboard. A guess
// that cannot count (too short, not in /motus/words, or refused by the server)
// is shaken with its reason and not sent or not counted. Once the game is over:
// the answer, the player's statistics (/score/me) and the leaderboards
// (/score/leaderboard). Not signed in, the panel asks to sign in and calls
// nothing.

import * as signin from './signin.js';

const $ = (id) => document.getElementById(id);

// What each mark means, in words: the tiles' and keys' accessible labels.
const MEANING = { correct: 'right place', present: 'elsewhere', absent: 'not in the word' };
const STRENGTH = { absent: 1, present: 2, correct: 3 };
const LAYOUTS = {
  azerty: ['AZERTYUIOP', 'QSDFGHJKLM', 'WXCVBN'],
  qwerty: ['QWERTYUIOP', 'ASDFGHJKL', 'ZXCVBNM'],
};
// How long to wait for the score service to count a finished game (it learns
// of it from the bus): the delays between tries, in ms.
const SCORE_POLL_MS = [250, 500, 750, 1000, 1000, 1500, 1500, 2000, 2000, 2000, 2000];

let api;
let h;
// Signed in through the auth service's session: its `auth_token` cookie,
// which /auth/session renews, stands for a token of the tab's own.
let session = false;

const state = {
  game: null, // the answer of GET /motus/today
  typed: '', // the letters of the current guess, its first letter included
  words: null, // Set of the accepted guesses of this game's length and first letter
  wordsFor: null, // which game `words` is for
  busy: false, // a guess is being sent
  scores: 0, // bumps to drop the answers of an older score load
};

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
const sentence = (text) => (/[.!?…]$/.test(text) ? text : `${text}.`);
const reason = (problem) => problem?.errors?.[0]?.detail ?? problem?.detail ?? problem?.title ?? 'the guess was refused';
const playing = () => state.game?.status === 'playing';

function showOnly(part) {
  $('motus-signin').hidden = part !== 'signin';
  $('motus-game').hidden = part !== 'game';
  if (part !== 'game') $('motus-end').hidden = true;
}

function setStatus(text) {
  $('motus-status').textContent = text;
  $('motus-status').hidden = !text;
}

// Sets the message under the grid; the same text twice is announced twice.
function say(text, kind = '') {
  const message = $('motus-message');
  message.textContent = '';
  message.className = `motus-message ${kind}`.trim();
  requestAnimationFrame(() => { message.textContent = text; });
}

function showSignIn() {
  state.game = null;
  showOnly('signin');
  setStatus('');
  $('motus-date').textContent = '';
}

// ---- Calls that need the player.

const signedIn = async () => Boolean(await signin.accessToken()) || session;

// `api` for a call that needs the player. Signed in by the session alone, a
// 401 means its cookie expired: /auth/session renews it, once, and the call
// is sent again. Still 401, the panel asks to sign in.
async function call(path, options) {
  let res = await api(path, options);
  if (res.status === 401 && session && !(await signin.accessToken())) {
    const renewed = await fetch('/auth/session', { headers: { accept: 'application/json' } }).catch(() => null);
    session = Boolean(renewed?.ok);
    if (session) res = await api(path, options);
  }
  if (res.status === 401) showSignIn();
  return res;
}

// ---- Loading the game of the day.

async function load() {
  if (!(await signedIn())) {
    showSignIn();
    return;
  }
  setStatus('Loading today’s game…');
  try {
    const { status, ok, body } = await call('/motus/today');
    if (status === 401) return;
    if (!ok) throw new Error(reason(body));
    setStatus('');
    setGame(body);
  } catch (err) {
    showOnly('none');
    setStatus(`Today’s game could not be loaded: ${sentence(err.message)} It is tried again in a moment.`);
    setTimeout(load, 5000);
  }
}

// The accepted guesses of the game, fetched once per game, so that an unknown
// word is refused before it is sent. Without them the server alone decides.
async function loadWords(game) {
  const key = `${game.date} ${game.length} ${game.first_letter}`;
  if (state.wordsFor === key) return;
  state.wordsFor = key;
  state.words = null;
  delete $('motus-game').dataset.words;
  try {
    const query = new URLSearchParams({ length: game.length, first: game.first_letter });
    const { ok, body } = await call(`/motus/words?${query}`);
    if (ok && Array.isArray(body?.words) && state.wordsFor === key) state.words = new Set(body.words);
  } catch {
    // The server checks every guess anyway.
  }
  if (state.wordsFor === key) $('motus-game').dataset.words = state.words ? 'checked here' : 'checked by the server';
}

function setGame(game, { finished = false } = {}) {
  const previous = state.game;
  state.game = game;
  if (previous?.date !== game.date) state.typed = '';
  showOnly('game');
  $('motus-date').textContent = `Word of ${game.date}`;
  $('motus-help').hidden = !playing();
  $('motus-keys').hidden = !playing();
  if (playing()) loadWords(game);
  render();
  if (game.status !== 'playing') showEnd(game, finished);
}

// ---- The grid and the keyboard.

// The best mark known for each letter, over every attempt.
function knownLetters() {
  const known = new Map();
  for (const { guess, feedback } of state.game.attempts) {
    [...guess].forEach((letter, i) => {
      const mark = feedback[i];
      if ((STRENGTH[mark] ?? 0) > (STRENGTH[known.get(letter)] ?? 0)) known.set(letter, mark);
    });
  }
  return known;
}

// The letters found in their place, by position: shown in the row being typed.
function foundPlaces() {
  const found = [];
  for (const { guess, feedback } of state.game.attempts) {
    feedback.forEach((mark, i) => { if (mark === 'correct') found[i] = guess[i]; });
  }
  found[0] = state.game.first_letter;
  return found;
}

function tile(letter, label, attrs = {}) {
  return h('span', { class: 'tile', role: 'img', 'aria-label': label, ...attrs }, letter);
}

function render() {
  const game = state.game;
  const grid = $('motus-grid');
  $('motus-board').style.setProperty('--len', game.length);
  const rows = [];
  const found = foundPlaces();
  for (let row = 0; row < game.max_attempts; row += 1) {
    const attempt = game.attempts[row];
    const head = h('span', { class: 'visually-hidden' }, `Attempt ${row + 1} of ${game.max_attempts}: `);
    if (attempt) {
      rows.push(h('li', { class: 'row played' }, head, [...attempt.guess].map((letter, i) => {
        const mark = attempt.feedback[i] ?? 'absent';
        return tile(letter, `${letter}, ${MEANING[mark]}`, { 'data-mark': mark });
      })));
    } else if (row === game.attempts.length && game.status === 'playing') {
      const cells = [];
      for (let i = 0; i < game.length; i += 1) {
        const letter = state.typed[i];
        if (letter) cells.push(tile(letter, letter, { 'data-state': 'typed' }));
        else if (found[i]) cells.push(tile(found[i], `empty, ${found[i]} ${i === 0 ? 'is the first letter' : 'found here'}`, { 'data-state': 'hint' }));
        else cells.push(tile('', 'empty'));
      }
      rows.push(h('li', { class: 'row current', id: 'motus-current' }, head, cells));
    } else {
      const cells = Array.from({ length: game.length }, () => h('span', { class: 'tile', 'aria-hidden': 'true' }));
      rows.push(h('li', { class: 'row' }, head, h('span', { class: 'visually-hidden' }, 'not played'), cells));
    }
  }
  grid.replaceChildren(...rows);
  renderKeys();
}

function key(name, label, content, wide = false) {
  return h('button', { type: 'button', class: `key${wide ? ' wide' : ''}`, 'data-key': name, 'aria-label': label }, content);
}

function buildKeys() {
  const layout = /^fr\b/i.test(navigator.language ?? '') ? LAYOUTS.azerty : LAYOUTS.qwerty;
  $('motus-keys').replaceChildren(...layout.map((letters, i) => h('div', { class: 'keys-row' },
    i === layout.length - 1 && key('Enter', 'Enter: play the word', 'Enter', true),
    [...letters].map((letter) => key(letter, letter, letter)),
    i === layout.length - 1 && key('Backspace', 'Erase a letter', '⌫', true))));
}

function renderKeys() {
  const known = knownLetters();
  const over = !playing();
  for (const button of $('motus-keys').querySelectorAll('button[data-key]')) {
    const name = button.dataset.key;
    button.disabled = over;
    if (name.length !== 1) continue;
    const mark = known.get(name);
    if (mark) {
      button.dataset.mark = mark;
      button.setAttribute('aria-label', `${name}, ${MEANING[mark]}`);
    } else {
      delete button.dataset.mark;
      button.setAttribute('aria-label', name);
    }
  }
}

// ---- Typing and playing.

function clearRefusal() {
  const row = $('motus-current');
  if (row?.hasAttribute('data-refused')) row.removeAttribute('data-refused');
}

function announceTyped() {
  $('motus-typed').textContent = state.typed ? [...state.typed].join(' ') : 'No letter typed';
}

function type(letter) {
  if (!playing() || state.busy) return;
  const { length, first_letter: first } = state.game;
  if (state.typed.length >= length) return;
  // The first letter is given: typing the rest of the word is enough.
  state.typed += state.typed === '' && letter !== first ? first + letter : letter;
  render();
  announceTyped();
}

function erase() {
  if (!playing() || state.busy || !state.typed) return;
  state.typed = state.typed.slice(0, -1);
  render();
  announceTyped();
}

// A guess that does not count: the row shakes and the reason is shown and announced.
function refuse(guess, why) {
  const row = $('motus-current');
  if (row) {
    row.removeAttribute('data-refused');
    void row.offsetWidth; // restarts the animation
    row.setAttribute('data-refused', '');
  }
  say(`${guess || 'This guess'} does not count: ${sentence(why)}`, 'refused');
}

function describe({ guess, feedback }) {
  const count = (mark) => feedback.filter((m) => m === mark).length;
  return `${guess}: ${count('correct')} in the right place, ${count('present')} elsewhere.`;
}

async function submit() {
  if (!playing() || state.busy) return;
  const game = state.game;
  const guess = state.typed;
  if (guess.length < game.length) {
    refuse(guess, `the word has ${game.length} letters`);
    return;
  }
  if (state.words && !state.words.has(guess)) {
    refuse(guess, 'this word is not in the list');
    return;
  }
  state.busy = true;
  $('motus-board').setAttribute('aria-busy', 'true');
  try {
    const { status, ok, body } = await call('/motus/today/guesses', { method: 'POST', json: { guess } });
    if (ok) {
      state.typed = '';
      setGame(body, { finished: body.status !== 'playing' });
      const last = body.attempts[body.attempts.length - 1];
      const left = body.max_attempts - body.attempts.length;
      if (body.status === 'won') say(`${guess} is the word: found in ${plural(body.attempts.length, 'attempt')}!`, 'won');
      else if (body.status === 'lost') say(`${describe(last)} No attempt left: the word was ${body.answer}.`);
      else say(`${describe(last)} ${left} ${left === 1 ? 'attempt' : 'attempts'} left.`);
    } else if (status === 422) {
      refuse(guess, reason(body));
    } else if (status === 401) {
      // The panel asks to sign in.
    } else if (status === 409) {
      // Over (played elsewhere), or changed meanwhile: the game as it is now.
      say(sentence(reason(body)));
      await load();
    } else {
      say(`Not played: ${sentence(reason(body))}`, 'refused');
    }
  } catch (err) {
    say(`Not played: ${sentence(err.message)}`, 'refused');
  } finally {
    state.busy = false;
    $('motus-board').removeAttribute('aria-busy');
  }
}

// The physical keyboard: on the board, on the panel's keys, or when nothing
// has the focus. Enter on a focused on-screen key presses that key.
function onKeyDown(event) {
  if (!playing() || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
  const target = event.target;
  const here = target === document.body || target === document.documentElement
    || target === $('motus-board') || $('motus-keys').contains(target);
  if (!here) return;
  const letter = event.key.normalize('NFD').replace(/\p{M}/gu, '').toUpperCase();
  if (/^[A-Z]$/.test(letter)) {
    clearRefusal();
    type(letter);
  } else if (event.key === 'Backspace') {
    clearRefusal();
    erase();
  } else if (event.key === 'Enter' && !target.closest('button')) {
    submit();
  } else {
    return;
  }
  event.preventDefault();
}

function onKeyClick(event) {
  const button = event.target.closest('button[data-key]');
  if (!button) return;
  const name = button.dataset.key;
  clearRefusal();
  if (name === 'Enter') submit();
  else if (name === 'Backspace') erase();
  else type(name);
  // A pointer press gives the focus back to the board, so that the physical
  // Enter plays the word rather than pressing the key again.
  if (event.detail > 0) $('motus-board').focus({ preventScroll: true });
}

// ---- The end of the game: the answer, the statistics and the leaderboards.

const percent = (n) => `${Math.round(n)} %`;
const tries = (n) => (n == null ? '–' : n.toFixed(2));
const nameOf = (entry) => entry.name ?? 'A player';

function showEnd(game, finished) {
  $('motus-end').hidden = false;
  const count = game.attempts.length;
  $('motus-end-title').textContent = game.status === 'won'
    ? `Found in ${plural(count, 'attempt')}!`
    : 'Not found this time';
  $('motus-answer').replaceChildren('The word was ', h('strong', { class: 'answer' }, String(game.answer ?? '?')),
    '. A new word comes tomorrow.');
  if (finished) $('motus-end-title').focus();
  loadScores(game);
}

function renderStats(stats) {
  const items = [
    ['Games', stats.games],
    ['Win rate', percent(stats.win_rate ?? 0)],
    ['Current streak', stats.current_streak],
    ['Best streak', stats.best_streak],
    ['Tries per word found', tries(stats.tries_per_word)],
  ];
  $('motus-stats').replaceChildren(...items.map(([term, value]) =>
    h('div', { class: 'stat' }, h('dt', {}, term), h('dd', {}, String(value)))));
  $('motus-stats').dataset.games = stats.games;
  const distribution = stats.distribution ?? [];
  const most = Math.max(1, ...distribution);
  const won = state.game?.status === 'won' ? state.game.attempts.length : 0;
  $('motus-dist').replaceChildren(...distribution.map((n, i) => {
    const bar = h('span', { class: 'bar' }, String(n));
    bar.style.setProperty('--share', n / most);
    return h('li', { class: i + 1 === won ? 'today' : null },
      h('span', { class: 'tries', 'aria-hidden': 'true' }, String(i + 1)),
      h('span', { class: 'visually-hidden' }, `${i + 1} ${i === 0 ? 'attempt' : 'attempts'}: ${plural(n, 'win')}`),
      h('span', { class: 'track', 'aria-hidden': 'true' }, bar));
  }));
}

// One table of a leaderboard, the caller's line marked (added below when not in the top).
function renderBoard(table, board, cells, empty) {
  const mine = board.me?.player_id;
  const row = (entry) => h('tr', { class: entry.player_id === mine ? 'mine' : null, 'data-player-id': entry.player_id },
    h('td', { class: 'num' }, String(entry.rank)),
    h('td', {}, nameOf(entry), entry.player_id === mine && h('span', { class: 'badge' }, 'you')),
    ...cells(entry));
  const columns = table.tHead.rows[0].cells.length;
  const rows = (board.entries ?? []).map(row);
  if (board.me && !(board.entries ?? []).some((e) => e.player_id === mine)) {
    rows.push(h('tr', { class: 'gap', 'aria-hidden': 'true' }, h('td', { colspan: columns }, '…')), row(board.me));
  }
  if (!rows.length) rows.push(h('tr', {}, h('td', { colspan: columns, class: 'empty' }, empty)));
  table.tBodies[0].replaceChildren(...rows);
}

function renderBoards(day, all) {
  if (day) {
    $('motus-day-caption').textContent = `Today${day.date ? `, ${day.date}` : ''}`;
    renderBoard($('motus-day'), day, (e) => [h('td', {}, e.wins ? `won in ${e.score}` : 'lost')],
      'Nobody has finished today’s game yet.');
  }
  if (all) {
    renderBoard($('motus-all'), all, (e) => [h('td', { class: 'num' }, String(e.wins)), h('td', { class: 'num' }, tries(e.score))],
      'Nobody has finished a game yet.');
  }
}

// The score service counts a game when it hears of it on the bus: the day's
// leaderboard has the caller's line once it did, so that is waited for a
// little before the statistics are shown.
async function loadScores(game) {
  const run = ++state.scores;
  const current = () => run === state.scores;
  const day = new URLSearchParams({ period: 'day', date: game.date, limit: 10 });
  const status = $('motus-stats-status');
  status.textContent = 'Counting your game…';
  try {
    let board = null;
    for (const delay of [0, ...SCORE_POLL_MS]) {
      if (delay) await sleep(delay);
      if (!current()) return;
      const { ok, body } = await api(`/score/leaderboard?${day}`);
      if (ok) board = body;
      if (board?.me) break;
    }
    if (!current()) return;
    const [me, all] = await Promise.all([call('/score/me'), api('/score/leaderboard?period=all&limit=10')]);
    if (!current()) return;
    if (me.ok) renderStats(me.body);
    renderBoards(board, all.ok ? all.body : null);
    status.textContent = board?.me && me.ok
      ? ''
      : 'Today’s game is not counted yet: refresh in a moment.';
  } catch (err) {
    if (current()) status.textContent = `The statistics could not be loaded: ${sentence(err.message)}`;
  }
}

// ---- Start.

// `deps`: the console's `api` (JSON over fetch, the access token sent), `h`
// (builds elements) and `signedIn`, whether the auth service's session
// knows the person (who may have no token of the tab's).
export function start(deps) {
  ({ api, h } = deps);
  session = Boolean(deps.signedIn);
  buildKeys();
  $('motus-keys').addEventListener('click', onKeyClick);
  document.addEventListener('keydown', onKeyDown);
  $('motus-refresh').addEventListener('click', () => state.game && loadScores(state.game));
  $('motus-sign-in').addEventListener('click', (event) => {
    if (!signin.canSignIn()) return;
    event.preventDefault();
    signin.signIn();
  });
  load();
}
