// Sign-in of the web console: the OpenID authorization code flow with PKCE
// (S256), as the public client `flotilla-console`. No secret is in the page:
// the code verifier, state and nonce live in sessionStorage for the round
// trip to the login page; the tokens live in sessionStorage for the tab.
// Where the page is not a secure context (no WebCrypto), the plain login
// link stays, which signs in with the auth service's own cookies.

const CLIENT = 'flotilla-console';
const SCOPE = 'openid profile email offline_access';
const PENDING = 'flotilla.signin';
const TOKENS = 'flotilla.tokens';

const redirectUri = () => `${location.origin}/callback`;

function base64url(bytes) {
  let text = '';
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const random = () => base64url(crypto.getRandomValues(new Uint8Array(32)));

// The claims of a JWT, unverified: the page only reads what the token
// endpoint, on this origin, has just answered.
function claims(jwt) {
  const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  const json = decodeURIComponent(Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''));
  return JSON.parse(json);
}

export const canSignIn = () => Boolean(globalThis.crypto?.subtle);

// Sends the browser to the authorization endpoint.
export async function signIn() {
  const verifier = random();
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const pending = { verifier, state: random(), nonce: random() };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT,
    redirect_uri: redirectUri(),
    scope: SCOPE,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  location.assign(`/auth/authorize?${query}`);
}

async function tokenRequest(form) {
  const res = await fetch('/auth/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ client_id: CLIENT, ...form }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error_description ?? body.error ?? `HTTP ${res.status}`);
  return body;
}

function keep(body, previous = {}) {
  const tokens = {
    access: body.access_token,
    refresh: body.refresh_token ?? previous.refresh,
    id: body.id_token ?? previous.id,
    expires: Date.now() + body.expires_in * 1000,
  };
  sessionStorage.setItem(TOKENS, JSON.stringify(tokens));
  return tokens;
}

// On /callback: exchanges the code for tokens, then goes back to `/`.
// Throws with a reason a person can read when the answer is not ours.
export async function completeSignIn() {
  const params = new URLSearchParams(location.search);
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', '/');
  if (params.get('error')) throw new Error(params.get('error_description') ?? params.get('error'));
  if (!pending || params.get('state') !== pending.state) throw new Error('the sign-in answer does not match a sign-in started here');
  const body = await tokenRequest({
    grant_type: 'authorization_code',
    code: params.get('code') ?? '',
    redirect_uri: redirectUri(),
    code_verifier: pending.verifier,
  });
  if (claims(body.id_token).nonce !== pending.nonce) throw new Error('the ID token is not for this sign-in');
  keep(body);
}

const stored = () => JSON.parse(sessionStorage.getItem(TOKENS) ?? 'null');

let refreshing = null; // the refresh under way: calls meanwhile share it

// The current access token, refreshed (the refresh token rotates) when it
// is about to expire; null when signed out or the refresh is refused. One
// refresh at a time: a rotated refresh token used twice revokes them all.
export async function accessToken() {
  const tokens = stored();
  if (!tokens) return null;
  if (tokens.expires - Date.now() > 30_000) return tokens.access;
  refreshing ??= tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh })
    .then((body) => keep(body, tokens).access)
    .catch(() => {
      sessionStorage.removeItem(TOKENS);
      return null;
    })
    .finally(() => { refreshing = null; });
  return refreshing;
}

// Who is signed in through this tab's tokens: the ID token's claims.
export function person() {
  const tokens = stored();
  return tokens ? claims(tokens.id) : null;
}

// Where "Sign out" goes: RP-initiated logout, back to the console.
export function signOutUrl() {
  const query = new URLSearchParams({ client_id: CLIENT, post_logout_redirect_uri: `${location.origin}/` });
  const tokens = stored();
  if (tokens?.id) query.set('id_token_hint', tokens.id);
  return `/auth/end_session?${query}`;
}

// Signing out: the tokens are dropped, and the refresh token revoked.
export function forget() {
  const tokens = stored();
  sessionStorage.removeItem(TOKENS);
  if (!tokens?.refresh) return;
  fetch('/auth/revoke', {
    method: 'POST',
    keepalive: true,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: CLIENT, token: tokens.refresh, token_type_hint: 'refresh_token' }),
  }).catch(() => {});
}
