// Conformance test of the auth service's OpenID provider (services/auth) with a
// third-party client library, openid-client: discovery, the authorization code
// flow with PKCE S256, userinfo, refresh-token rotation and reuse detection,
// client_credentials, revocation (RFC 7009) and introspection (RFC 7662).
// No browser: it signs in by posting the login form, carrying the cookies
// itself. Base URL in FLOTILLA_URL; the stack must be started with
// `--auth-clients-file tests/browser/clients.toml` for the confidential client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';

const base = process.env.FLOTILLA_URL?.replace(/\/+$/, '');
const skip = base ? false : 'FLOTILLA_URL is not set (e.g. http://127.0.0.1:8080): nothing to test against';
const unique = (prefix) => `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const SCOPE = 'openid profile email offline_access';
// The web console: a built-in public client.
const CONSOLE = 'flotilla-console';
// The confidential client of tests/browser/clients.toml, and its secret.
const CLIENTS_FILE = 'tests/browser/clients.toml';
const SERVICE = { id: 'flotilla-conformance', secret: '2e2b77208efd1a1408fadad5326161fe998b2020887c4a21' };

// The person who signs in, and what the tests share as they go.
const person = { email: `${unique('oidc')}@example.com`, name: 'Ada Conformance', password: 'correct horse battery staple' };
const jar = new Map(); // cookie name -> value, as a browser would keep them
const state = {};

// Tests that share `state` run in order; a test that needs what an earlier one made says so.
function need(name, what) {
  assert.ok(state[name], `${what} is missing: an earlier test failed`);
  return state[name];
}

// --- HTTP by hand, for what a browser would do ---

function cookieHeader() {
  return [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
}

function keepCookies(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const at = pair.indexOf('=');
    const name = pair.slice(0, at).trim();
    const value = pair.slice(at + 1).trim();
    if (value === '' || /;\s*max-age=0\b/i.test(line)) jar.delete(name);
    else jar.set(name, value);
  }
}

// One request with the jar's cookies, redirects not followed.
async function browse(url, init = {}) {
  const headers = { ...init.headers };
  if (jar.size) headers.cookie = cookieHeader();
  const response = await fetch(url, { ...init, headers, redirect: 'manual' });
  keepCookies(response);
  return response;
}

// Where a redirection goes, resolved against the URL that answered it.
function redirection(response, from) {
  assert.ok([302, 303, 307].includes(response.status), `${from} redirects (status ${response.status})`);
  const location = response.headers.get('location');
  assert.ok(location, `${from} answers with a Location`);
  return new URL(location, from);
}

function unescapeHtml(text) {
  const named = { amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" };
  return text.replace(/&(amp|lt|gt|quot|#39);/g, (_, name) => named[name]);
}

// The action and the hidden fields of the (only) form of a page.
function parseForm(html, pageUrl) {
  const form = html.match(/<form\b[^>]*\baction="([^"]*)"/);
  assert.ok(form, `the page at ${pageUrl} has a form`);
  const hidden = {};
  for (const [input] of html.matchAll(/<input\b[^>]*>/g)) {
    const attribute = (name) => input.match(new RegExp(`\\b${name}="([^"]*)"`))?.[1];
    if (attribute('type') === 'hidden') hidden[unescapeHtml(attribute('name'))] = unescapeHtml(attribute('value') ?? '');
  }
  return { action: new URL(unescapeHtml(form[1]), pageUrl), hidden };
}

// --- The OpenID client side ---

// A client configuration from the provider's discovery document. The stack is
// plain HTTP: that is the only check relaxed. Without TLS to vouch for the
// issuer, ID token signatures are checked too, against the provider's JWKS.
function discover(clientId, metadata, authentication) {
  return oidc.discovery(new URL(`${base}/auth`), clientId, metadata, authentication, {
    execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
  });
}

// What the console would keep for one authorization request, and its URL.
async function authorizationRequest(config) {
  const verifier = oidc.randomPKCECodeVerifier();
  const request = { verifier, state: oidc.randomState(), nonce: oidc.randomNonce() };
  request.url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: `${base}/callback`,
    scope: SCOPE,
    state: request.state,
    nonce: request.nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
  return request;
}

// Asserts that a redirection from /authorize comes back to the console's
// redirect URI, and returns it (not followed: nobody listens there).
function assertCallback(url, from) {
  assert.equal(`${url.origin}${url.pathname}`, `${base}/callback`, `${from} sends the browser back to the redirect URI: ${url}`);
  assert.equal(url.searchParams.get('error'), null, `no error comes back: ${url.searchParams.get('error_description')}`);
  return url;
}

// The code grant of the callback URL, with every check of the library: state,
// iss of the response, PKCE, and the ID token (signature, iss, aud, nonce).
function exchange(config, request, callback) {
  return oidc.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: request.verifier,
    expectedState: request.state,
    expectedNonce: request.nonce,
    idTokenExpected: true,
  });
}

// The OAuth error answer (RFC 6749 section 5.2) behind an error of the
// library: `{ status, error, description }`, or undefined for anything else.
// A 401 comes as a WWW-Authenticate challenge, its JSON body left unread.
async function oauthError(thrown) {
  if (thrown instanceof oidc.ResponseBodyError) {
    return { status: thrown.status, error: thrown.error, description: thrown.error_description };
  }
  if (thrown instanceof oidc.WWWAuthenticateChallengeError) {
    const body = await thrown.response.json().catch(() => ({}));
    return { status: thrown.status, error: body.error, description: body.error_description };
  }
  return undefined;
}

// Asserts that `promise` fails with the OAuth error `error`.
async function assertOAuthError(promise, error, what) {
  let thrown;
  try {
    await promise;
  } catch (caught) {
    thrown = caught;
  }
  assert.ok(thrown, `${what} is refused`);
  const answer = await oauthError(thrown);
  assert.ok(answer, `${what}: an OAuth error answer, not ${thrown}`);
  assert.equal(answer.error, error, `${what}: ${answer.status} ${answer.error} (${answer.description})`);
}

// The confidential client, after making sure the stack knows it: an
// `invalid_client` here means it was started without the clients file.
async function confidentialClient() {
  if (!state.service) {
    const config = await discover(SERVICE.id, SERVICE.secret, oidc.ClientSecretPost(SERVICE.secret));
    try {
      await oidc.clientCredentialsGrant(config, { scope: 'conformance:read' });
    } catch (thrown) {
      const answer = await oauthError(thrown);
      if (answer?.error === 'invalid_client') {
        assert.fail(`the provider refuses client ${SERVICE.id} (${answer.status} invalid_client: ${answer.description}): `
          + `the server needs \`flotilla up --auth-clients-file ${CLIENTS_FILE}\``);
      }
      throw thrown;
    }
    state.service = config;
  }
  return state.service;
}

// --- The tests ---

test('discovery: the provider describes itself at <base>/auth', { skip }, async () => {
  const config = await discover(CONSOLE, undefined, oidc.None());
  const metadata = config.serverMetadata();
  assert.equal(metadata.issuer, `${base}/auth`, 'the issuer is the gateway address and /auth');
  for (const endpoint of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri',
    'revocation_endpoint', 'introspection_endpoint', 'end_session_endpoint']) {
    assert.ok(metadata[endpoint]?.startsWith(`${base}/auth/`), `${endpoint} is under the issuer: ${metadata[endpoint]}`);
  }
  assert.ok(metadata.supportsPKCE('S256'), 'PKCE S256 is supported');
  assert.ok(metadata.response_types_supported.includes('code'), 'the code flow is supported');
  for (const grant of ['authorization_code', 'refresh_token', 'client_credentials']) {
    assert.ok(metadata.grant_types_supported.includes(grant), `the ${grant} grant is supported`);
  }
  for (const scope of SCOPE.split(' ')) {
    assert.ok(metadata.scopes_supported.includes(scope), `the ${scope} scope is supported`);
  }
  state.console = config;
});

test('authorization code flow with PKCE: sign up, sign in through the form, get validated tokens', { skip }, async () => {
  const config = need('console', 'the discovered configuration');

  const signup = await fetch(`${base}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(person),
  });
  assert.equal(signup.status, 201, `the account is created: ${await signup.clone().text()}`);
  const account = await signup.json();

  const request = await authorizationRequest(config);

  // Not signed in: /authorize sends the browser to the login page.
  const toLogin = redirection(await browse(request.url), request.url);
  assert.equal(toLogin.pathname, '/auth/login', `not signed in, /authorize sends to the login page: ${toLogin}`);
  const page = await browse(toLogin);
  assert.equal(page.status, 200, 'the login page opens');
  assert.ok(jar.has('flotilla_csrf'), 'the login page sets the CSRF cookie');
  const form = parseForm(await page.text(), toLogin);
  assert.equal(form.hidden.csrf, jar.get('flotilla_csrf'), 'the form carries the CSRF cookie\'s token');

  // Signed in: back to /authorize, which now sends back to the console with a code.
  const login = await browse(form.action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ ...form.hidden, email: person.email, password: person.password }),
  });
  const back = redirection(login, form.action);
  assert.ok(jar.has('flotilla_session'), 'signing in sets the session cookie');
  assert.equal(`${back.origin}${back.pathname}`, request.url.href.split('?')[0], `signing in goes back to /authorize: ${back}`);
  const callback = assertCallback(redirection(await browse(back), back), '/authorize once signed in');
  assert.equal(callback.searchParams.get('state'), request.state, 'the state comes back unchanged');
  assert.ok(callback.searchParams.get('code'), 'a code comes back');

  const tokens = await exchange(config, request, callback);
  assert.equal(tokens.token_type.toLowerCase(), 'bearer', 'a bearer access token');
  assert.ok(tokens.access_token, 'an access token');
  assert.ok(tokens.refresh_token, 'a refresh token, for offline_access');
  assert.ok(tokens.expiresIn() > 0, `the access token has a lifetime: ${tokens.expires_in}`);
  assert.deepEqual(tokens.scope.split(' ').sort(), SCOPE.split(' ').sort(), 'the scope asked for is granted');
  const claims = tokens.claims();
  assert.equal(claims.iss, `${base}/auth`, 'the ID token\'s issuer');
  assert.equal(claims.sub, account.id, 'the ID token\'s subject is the new account');
  assert.equal(claims.nonce, request.nonce, 'the ID token carries the nonce');
  assert.equal(claims.email, person.email, 'the ID token carries the email');
  assert.equal(claims.name, person.name, 'the ID token carries the name');
  assert.equal(typeof claims.auth_time, 'number', 'the ID token says when the person signed in');
  const jwks = oidc.getJwksCache(config)?.jwks;
  assert.ok(jwks?.keys?.some((key) => key.kty === 'EC' && key.crv === 'P-256'),
    'the ID token\'s ES256 signature was checked with a key of the provider\'s JWKS');
  state.tokens = tokens;
  state.sub = claims.sub;
});

test('userinfo: the signed-in person as signed up', { skip }, async () => {
  const config = need('console', 'the discovered configuration');
  const tokens = need('tokens', 'the tokens of the code flow');
  const info = await oidc.fetchUserInfo(config, tokens.access_token, state.sub);
  assert.equal(info.sub, state.sub, 'userinfo\'s subject is the ID token\'s');
  assert.equal(info.email, person.email, 'userinfo has the email signed up with');
  assert.equal(info.name, person.name, 'userinfo has the name signed up with');
});

test('refresh: tokens rotate, and a rotated refresh token used again revokes its family', { skip }, async () => {
  const config = need('console', 'the discovered configuration');
  const first = need('tokens', 'the tokens of the code flow');

  const second = await oidc.refreshTokenGrant(config, first.refresh_token);
  assert.ok(second.access_token, 'a new access token');
  assert.notEqual(second.access_token, first.access_token, 'the access token is new');
  assert.ok(second.refresh_token, 'a new refresh token');
  assert.notEqual(second.refresh_token, first.refresh_token, 'the refresh token is rotated');
  assert.equal(second.claims()?.sub, state.sub, 'the refreshed ID token is of the same person');
  const info = await oidc.fetchUserInfo(config, second.access_token, state.sub);
  assert.equal(info.email, person.email, 'the new access token works at userinfo');

  await assertOAuthError(oidc.refreshTokenGrant(config, first.refresh_token), 'invalid_grant',
    'the rotated refresh token used again');
  await assertOAuthError(oidc.refreshTokenGrant(config, second.refresh_token), 'invalid_grant',
    'the newest refresh token, once its family is revoked');
});

test('a second authorization goes straight back to the console while the browser is signed in', { skip }, async () => {
  const config = need('console', 'the discovered configuration');
  assert.ok(jar.has('flotilla_session'), 'the session cookie of the code flow is missing: an earlier test failed');
  const request = await authorizationRequest(config);
  const callback = assertCallback(redirection(await browse(request.url), request.url), '/authorize while signed in');
  const tokens = await exchange(config, request, callback);
  assert.equal(tokens.claims()?.sub, state.sub, 'the same person');
  assert.ok(tokens.refresh_token, 'a refresh token of a new family');
  state.fresh = tokens;
});

test('client_credentials: a confidential client gets its own access token', { skip }, async () => {
  const config = await confidentialClient();
  const tokens = await oidc.clientCredentialsGrant(config, { scope: 'conformance:read' });
  assert.equal(tokens.token_type.toLowerCase(), 'bearer', 'a bearer access token');
  assert.ok(tokens.access_token, 'an access token');
  assert.equal(tokens.scope, 'conformance:read', 'the scope asked for, and only it');
  assert.equal(tokens.refresh_token, undefined, 'no refresh token for client_credentials');
  assert.equal(tokens.id_token, undefined, 'no ID token: nobody signed in');

  const all = await oidc.clientCredentialsGrant(config);
  assert.deepEqual(all.scope.split(' ').sort(), ['conformance:read', 'conformance:write'], 'without a scope, all the client\'s scopes');

  const introspected = await oidc.tokenIntrospection(config, tokens.access_token);
  assert.equal(introspected.active, true, 'the client\'s token is active');
  assert.equal(introspected.sub, SERVICE.id, 'its subject is the client');
  assert.equal(introspected.client_id, SERVICE.id, 'its client is the client');
  assert.equal(introspected.scope, 'conformance:read', 'its scope is the one granted');
  assert.ok(introspected.exp > Date.now() / 1000, `it expires in the future: ${introspected.exp}`);

  await assertOAuthError(oidc.clientCredentialsGrant(config, { scope: 'openid' }), 'invalid_scope',
    'a scope the client was not given');
  const wrong = await discover(SERVICE.id, 'not-the-secret', oidc.ClientSecretPost('not-the-secret'));
  await assertOAuthError(oidc.clientCredentialsGrant(wrong), 'invalid_client', 'a wrong client secret');
});

test('client_credentials with client_secret_basic (RFC 6749 section 2.3.1)', { skip }, async () => {
  await confidentialClient(); // the stack knows the client: a refusal below is about HTTP Basic
  const config = await discover(SERVICE.id, SERVICE.secret, oidc.ClientSecretBasic(SERVICE.secret));
  let tokens;
  try {
    tokens = await oidc.clientCredentialsGrant(config, { scope: 'conformance:write' });
  } catch (thrown) {
    const answer = await oauthError(thrown);
    if (!answer) throw thrown;
    assert.fail(`client_secret_basic, advertised by discovery, is refused: ${answer.status} ${answer.error} `
      + `(${answer.description}); RFC 6749 section 2.3.1 has the client form-urlencode its id and secret `
      + 'before Base64, and the provider decode them');
  }
  assert.equal(tokens.scope, 'conformance:write', 'the scope asked for, and only it');
});

test('introspection and revocation of a person\'s tokens', { skip }, async () => {
  const service = await confidentialClient();
  const config = need('console', 'the discovered configuration');
  const tokens = need('fresh', 'the tokens of the second authorization');

  const access = await oidc.tokenIntrospection(service, tokens.access_token);
  assert.equal(access.active, true, 'the access token is active');
  assert.equal(access.sub, state.sub, 'the access token is the person\'s');
  assert.equal(access.client_id, CONSOLE, 'the access token was issued to the console');
  assert.deepEqual(access.scope.split(' ').sort(), SCOPE.split(' ').sort(), 'the access token has the scope granted');

  const refresh = await oidc.tokenIntrospection(service, tokens.refresh_token, { token_type_hint: 'refresh_token' });
  assert.equal(refresh.active, true, 'the refresh token is active');
  assert.equal(refresh.sub, state.sub, 'the refresh token is the person\'s');
  assert.equal(refresh.client_id, CONSOLE, 'the refresh token was issued to the console');
  assert.deepEqual(refresh.scope.split(' ').sort(), SCOPE.split(' ').sort(), 'the refresh token has the scope granted');

  // Only the client a token was issued to may revoke it.
  await oidc.tokenRevocation(service, tokens.refresh_token, { token_type_hint: 'refresh_token' });
  const untouched = await oidc.tokenIntrospection(service, tokens.refresh_token);
  assert.equal(untouched.active, true, 'another client\'s revocation leaves the refresh token active');

  await oidc.tokenRevocation(config, tokens.refresh_token, { token_type_hint: 'refresh_token' });
  const revoked = await oidc.tokenIntrospection(service, tokens.refresh_token);
  assert.equal(revoked.active, false, 'the revoked refresh token is no longer active');
  await assertOAuthError(oidc.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant',
    'refreshing with the revoked refresh token');
  // RFC 7009 section 2.2: an unknown or already revoked token is not an error.
  await oidc.tokenRevocation(config, tokens.refresh_token);
});

test('introspection is for confidential clients only', { skip }, async () => {
  const config = need('console', 'the discovered configuration');
  const tokens = need('fresh', 'the tokens of the second authorization');
  await assertOAuthError(oidc.tokenIntrospection(config, tokens.access_token), 'invalid_client',
    'introspection by the public console');
});
