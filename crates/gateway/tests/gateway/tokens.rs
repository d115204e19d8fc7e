//! Access tokens at the edge: verified against an issuer's JWK set served by
//! a real upstream, the caller forwarded as `x-user-*` headers, and every
//! forged token refused before it reaches a service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::{TestGateway, Upstream, gateway};

const ISSUER: &str = "https://issuer.example/auth";

/// A P-256 signing key with its id.
struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Key {
    fn new(kid: &str) -> Self {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = secret.to_pkcs8_der().unwrap();
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    fn sign(&self, typ: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// A valid access token with `changes` applied to its claims.
    fn token(&self, changes: Value) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({
            "iss": ISSUER, "sub": "0190-ada", "aud": "flotilla",
            "exp": now + 600, "iat": now, "jti": "j1", "client_id": "console",
            "scope": "openid email orders", "roles": ["admin", "commercial"],
            "email": "ada@example.com",
        });
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        self.sign("at+jwt", &claims)
    }
}

/// An issuer that serves a JWK set it can be told to change, and counts
/// how often it was fetched.
struct Issuer {
    _upstream: tokio::task::JoinHandle<()>,
    url: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

type IssuerState = (Arc<Mutex<Vec<Jwk>>>, Arc<AtomicUsize>);

impl Issuer {
    async fn start(keys: &[&Key]) -> Self {
        let keys = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route(
                "/jwks",
                axum::routing::get(|State((keys, fetches)): State<IssuerState>| async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = keys.lock().unwrap().clone();
                    axum::Json(JwkSet { keys })
                }),
            )
            .with_state((keys.clone(), fetches.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            _upstream: server,
            url,
            keys,
            fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A gateway with the issuer routed at `/idp`, and the app at `/open`
/// (token optional) and `/orders` (token with the `orders` scope required).
async fn stack(issuer: &Issuer, app: &Upstream, refetch_ms: u64) -> TestGateway {
    gateway(&format!(
        r#"
        [gateway]
        access_log = false
        [gateway.auth]
        issuer = "{ISSUER}"
        jwks = "/idp/jwks"
        refetch_ms = {refetch_ms}
        [[route]]
        prefix = "/idp"
        strip_prefix = true
        upstreams = ["{idp}"]
        health = {{ path = "" }}
        [[route]]
        prefix = "/open"
        strip_prefix = true
        upstreams = ["{app}"]
        health = {{ path = "" }}
        auth = "optional"
        [[route]]
        prefix = "/orders"
        strip_prefix = true
        upstreams = ["{app}"]
        health = {{ path = "" }}
        auth = "required"
        scopes = ["orders"]
        "#,
        idp = issuer.url,
        app = app.url,
    ))
    .await
}

/// GET `path` with `token` as a bearer token (if any) and `headers`.
async fn get(gw: &TestGateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(format!("{}{path}", gw.url))
        .header("x-user-id", "forged-admin")
        .header("x-user-roles", "admin");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn seen_headers(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_valid_token_reaches_the_service_as_its_caller_and_forged_headers_never_do() {
    let key = Key::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let app = Upstream::start("app").await;
    let gw = stack(&issuer, &app, 10_000).await;
    let token = key.token(json!({}));

    let seen = seen_headers(get(&gw, "/orders/headers", Some(&token)).await).await;
    assert_eq!(
        seen["x-user-id"], "0190-ada",
        "the token's sub, not the forged header"
    );
    assert_eq!(seen["x-user-email"], "ada@example.com");
    assert_eq!(seen["x-user-scopes"], "openid email orders");
    assert_eq!(seen["x-user-roles"], "admin commercial");

    // Seed 000's cookie is as good as a bearer token.
    let by_cookie = reqwest::Client::new()
        .get(format!("{}/orders/headers", gw.url))
        .header("cookie", format!("theme=dark; auth_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(seen_headers(by_cookie).await["x-user-id"], "0190-ada");

    // Anonymous on an optional route: through, without any identity.
    let anonymous = seen_headers(get(&gw, "/open/headers", None).await).await;
    assert!(anonymous.get("x-user-id").is_none(), "{anonymous}");
    assert!(anonymous.get("x-user-roles").is_none(), "{anonymous}");
    let signed_in = seen_headers(get(&gw, "/open/headers", Some(&token)).await).await;
    assert_eq!(signed_in["x-user-id"], "0190-ada");
    assert_eq!(issuer.fetches(), 1, "the keys are fetched once and cached");
}

#[tokio::test]
async fn a_required_route_without_a_token_is_401_with_a_bearer_challenge() {
    let key = Key::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let app = Upstream::start("app").await;
    let gw = stack(&issuer, &app, 10_000).await;
    let response = get(&gw, "/orders/anything", None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="flotilla""#
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let basic = reqwest::Client::new()
        .get(format!("{}/orders/anything", gw.url))
        .basic_auth("ada", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401, "a password is not a token");
    assert_eq!(app.hits(), 0);
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_refused_on_every_route_that_looks() {
    let key = Key::new("k1");
    let stranger = Key::new("k2");
    let issuer = Issuer::start(&[&key]).await;
    let app = Upstream::start("app").await;
    let gw = stack(&issuer, &app, 10_000).await;

    let valid = key.token(json!({}));
    let parts: Vec<&str> = valid.split('.').collect();
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();

    let mut tampered_claims = payload.clone();
    tampered_claims["sub"] = json!("0190-eve");
    let tampered = format!("{}.{}.{}", parts[0], encode(&tampered_claims), parts[2]);
    let unsigned = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "at+jwt", "kid": "k1"})),
        parts[1]
    );
    // The classic confusion: HMAC keyed with the issuer's public key.
    let public = serde_json::to_vec(&key.jwk).unwrap();
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some("k1".to_owned());
    hs256.typ = Some("at+jwt".to_owned());
    let hmac = jsonwebtoken::encode(&hs256, &payload, &EncodingKey::from_secret(&public)).unwrap();
    let now = payload["iat"].as_u64().unwrap();

    let forged = [
        ("alg none", unsigned),
        ("HS256 with the public key", hmac),
        (
            "expired",
            key.token(json!({"exp": now - 120, "iat": now - 720})),
        ),
        ("another audience", key.token(json!({"aud": "elsewhere"}))),
        (
            "another issuer",
            key.token(json!({"iss": "https://evil.example/auth"})),
        ),
        ("tampered payload", tampered),
        ("unknown kid", stranger.token(json!({}))),
        ("an ID token", key.sign("JWT", &payload)),
        ("no subject", {
            let mut claims = payload.clone();
            claims.as_object_mut().unwrap().remove("sub");
            key.sign("at+jwt", &claims)
        }),
        ("not a JWT", "hello".to_owned()),
    ];
    for (what, token) in &forged {
        for path in ["/orders/x", "/open/x"] {
            let response = get(&gw, path, Some(token)).await;
            assert_eq!(response.status(), 401, "{what} on {path}");
            let challenge = response.headers()["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.contains(r#"error="invalid_token""#),
                "{what}: {challenge}"
            );
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["status"], 401, "{what}: {problem}");
        }
    }
    assert_eq!(app.hits(), 0, "no forged token reached the service");
    // The valid token still works: the refusals did not poison the cache.
    assert_eq!(get(&gw, "/orders/x", Some(&valid)).await.status(), 200);
}

#[tokio::test]
async fn a_token_without_the_routes_scope_is_403() {
    let key = Key::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let app = Upstream::start("app").await;
    let gw = stack(&issuer, &app, 10_000).await;
    let token = key.token(json!({"scope": "openid email"}));
    let response = get(&gw, "/orders/x", Some(&token)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="flotilla", error="insufficient_scope", scope="orders""#
    );
    assert_eq!(get(&gw, "/open/headers", Some(&token)).await.status(), 200);
    assert_eq!(
        app.hits(),
        0,
        "/headers is not a hit; /orders/x never arrived"
    );
}

#[tokio::test]
async fn a_new_key_is_fetched_on_its_first_token_and_unknown_kids_cannot_hammer_the_issuer() {
    let old = Key::new("old");
    let new = Key::new("new");
    let issuer = Issuer::start(&[&old]).await;
    let app = Upstream::start("app").await;
    let gw = stack(&issuer, &app, 500).await;
    assert_eq!(
        get(&gw, "/orders/x", Some(&old.token(json!({}))))
            .await
            .status(),
        200
    );
    assert_eq!(issuer.fetches(), 1);

    // The issuer rotates; the gateway learns the new key from the first
    // token it signed, once the last fetch is old enough.
    issuer.keys.lock().unwrap().push(new.jwk.clone());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        get(&gw, "/orders/x", Some(&new.token(json!({}))))
            .await
            .status(),
        200
    );
    assert_eq!(issuer.fetches(), 2);

    // Made-up kids, many at once: at most one more fetch in the window.
    let stranger = Key::new("made-up");
    let token = stranger.token(json!({}));
    let statuses =
        futures::future::join_all((0..30).map(|_| get(&gw, "/orders/x", Some(&token)))).await;
    assert!(statuses.iter().all(|r| r.status() == 401));
    assert!(issuer.fetches() <= 3, "fetched {} times", issuer.fetches());
    assert_eq!(
        get(&gw, "/orders/x", Some(&old.token(json!({}))))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn without_the_issuers_keys_a_token_cannot_be_verified_and_is_not_let_through() {
    let key = Key::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    let app = Upstream::start("app").await;
    let toml = format!(
        "[gateway]\naccess_log = false\n[gateway.auth]\nissuer = \"{ISSUER}\"\njwks = \"http://127.0.0.1:9/jwks\"\n\
         [[route]]\nprefix = \"/\"\nupstreams = [\"{}\"]\nhealth = {{ path = \"\" }}\nauth = \"optional\"\n",
        app.url
    );
    let gw = gateway(&toml).await;
    let response = get(&gw, "/x", Some(&key.token(json!({})))).await;
    assert_eq!(response.status(), 503);
    assert_eq!(app.hits(), 0);
    assert_eq!(issuer.fetches(), 0);
    assert_eq!(
        get(&gw, "/x", None).await.status(),
        200,
        "anonymous calls still pass"
    );
}
