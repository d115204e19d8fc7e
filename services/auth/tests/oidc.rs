//! The OpenID provider: the code flow with PKCE from discovery to userinfo,
//! refresh-token rotation and reuse, and the requests it must refuse.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Browser, PASSWORD, signup};
use flotilla_auth::Auth;
use flotilla_kit::Shared;
use flotilla_kit::testing::TestService;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SITE: &str = "http://flotilla.test";
const CLIENT: &str = "flotilla-console";
const REDIRECT: &str = "http://flotilla.test/callback";
const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-0123456789";

async fn provider() -> TestService {
    provider_with(&[]).await
}

async fn provider_with(args: &[&str]) -> TestService {
    let shared = Shared {
        public_url: Some(SITE.to_owned()),
        ..Shared::default()
    };
    TestService::start_with::<Auth>(args, shared).await
}

/// A confidential client `reports`, secret `SECRET`, that may use
/// `client_credentials` for `reports:read` and `reports:write`.
const SECRET: &str = "a-secret-for-the-reports-client";

fn clients_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("clients.toml");
    std::fs::write(
        &path,
        "[[client]]\nid = \"reports\"\nsecret_sha256 = \"d552b8ff8c0a1b7175f989667028a5996a6c329a79444140d467fead7a9e4729\"\n\
         grants = [\"client_credentials\"]\nscopes = [\"reports:read\", \"reports:write\"]\n",
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

async fn post_form(
    app: &TestService,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(app.at(path)).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_path(extra: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={}&scope=openid%20email%20profile%20offline_access&state=s1&nonce=n1&code_challenge={}&code_challenge_method=S256{extra}",
        REDIRECT.replace(':', "%3A").replace('/', "%2F"),
        challenge(VERIFIER)
    )
}

/// The query parameters of a redirection to the client.
fn callback(response: &reqwest::Response) -> Vec<(String, String)> {
    let location = response.headers()["location"].to_str().unwrap();
    let query = location
        .strip_prefix(&format!("{REDIRECT}?"))
        .unwrap_or_else(|| panic!("not a redirection to the client: {location}"));
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_owned(), v.replace("%20", " "))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Signs up and in, then asks for a code: the browser's part of the flow.
async fn code(app: &TestService, browser: &mut Browser) -> String {
    signup(app, "ada@example.com").await;
    // Not signed in yet: to the login page, which comes back here.
    let first = browser.get(app.at(&authorize_path(""))).await;
    assert_eq!(first.status(), 303);
    let to_login = first.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to_login.starts_with("login?return_to=%2Fauthorize%3F"),
        "{to_login}"
    );
    let csrf = browser.csrf(app.at("/login")).await;
    let return_to = authorize_path("");
    let form = [
        ("csrf", csrf.as_str()),
        ("email", "ada@example.com"),
        ("password", PASSWORD),
        ("return_to", return_to.as_str()),
    ];
    let signed_in = browser.post_form(app.at("/login"), &form).await;
    assert_eq!(signed_in.headers()["location"], return_to.as_str());
    let back = browser.get(app.at(&return_to)).await;
    assert_eq!(back.status(), 303);
    let params = callback(&back);
    assert_eq!(param(&params, "state"), Some("s1"));
    assert_eq!(
        param(&params, "iss").map(|i| i.replace("%3A", ":").replace("%2F", "/")),
        Some(format!("{SITE}/auth"))
    );
    param(&params, "code").expect("a code").to_owned()
}

async fn token(app: &TestService, form: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(app.at("/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn exchange(app: &TestService, code: &str, verifier: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    token(app, &form).await
}

async fn refresh(app: &TestService, refresh_token: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT),
        ("refresh_token", refresh_token),
    ];
    token(app, &form).await
}

#[tokio::test]
async fn the_code_flow_with_pkce_from_discovery_to_userinfo() {
    let app = provider().await;
    let discovery: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    let issuer = format!("{SITE}/auth");
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );

    let mut browser = Browser::new();
    let code = code(&app, &mut browser).await;
    let (status, tokens) = exchange(&app, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");

    // The ID token, checked as a client would: signature through the JWKS.
    let jwks: JwkSet = app.get("/jwks.json").await.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let key = DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&[CLIENT]);
    let id: Value = jsonwebtoken::decode(id_token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(id["nonce"], "n1");
    assert_eq!(id["email"], "ada@example.com");
    assert_eq!(id["name"], "Ada");

    // The access token: RFC 9068's header and claims.
    let access_token = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(access_token)
            .unwrap()
            .typ
            .as_deref(),
        Some("at+jwt")
    );
    validation.set_audience(&["flotilla"]);
    let access: Value = jsonwebtoken::decode(access_token, &key, &validation)
        .unwrap()
        .claims;
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
    ] {
        assert!(!access[claim].is_null(), "{claim} missing from {access}");
    }
    assert_eq!(access["sub"], id["sub"]);

    let info: Value = reqwest::Client::new()
        .get(app.at("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], id["sub"]);
    assert_eq!(info["email"], "ada@example.com");
    let posted = reqwest::Client::new()
        .post(app.at("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.json::<Value>().await.unwrap(), info);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains("auth_tokens_issued_total{service=\"auth\",grant=\"authorization_code\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let app = provider().await;
    let code = code(&app, &mut Browser::new()).await;
    let (_, first) = exchange(&app, &code, VERIFIER).await;
    let first_refresh = first["refresh_token"].as_str().unwrap();
    let (status, second) = refresh(&app, first_refresh).await;
    assert_eq!(status, 200, "{second}");
    let second_refresh = second["refresh_token"].as_str().unwrap();
    assert_ne!(second_refresh, first_refresh);

    // The rotated token again: refused, and the token that replaced it too.
    let (status, error) = refresh(&app, first_refresh).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, error) = refresh(&app, second_refresh).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn a_code_presented_twice_is_refused_and_revokes_what_it_gave() {
    let app = provider().await;
    let code = code(&app, &mut Browser::new()).await;
    let (status, tokens) = exchange(&app, &code, VERIFIER).await;
    assert_eq!(status, 200);
    let (status, error) = exchange(&app, &code, VERIFIER).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = refresh(&app, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400, "the first exchange's refresh token is revoked");
}

#[tokio::test]
async fn a_missing_or_wrong_verifier_is_invalid_grant() {
    let app = provider().await;
    let code = code(&app, &mut Browser::new()).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    let (status, error) = token(&app, &form).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let code = {
        let mut browser = Browser::new();
        browser.login(&app, "ada@example.com", PASSWORD).await;
        let back = browser.get(app.at(&authorize_path(""))).await;
        param(&callback(&back), "code").unwrap().to_owned()
    };
    let (status, error) = exchange(
        &app,
        &code,
        "another-verifier-of-at-least-forty-three-characters",
    )
    .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn requests_that_cannot_be_trusted_are_refused() {
    let app = provider().await;
    let mut browser = Browser::new();
    // An unregistered redirect URI: an error page, never a redirection.
    let elsewhere = authorize_path("").replace("flotilla.test%2Fcallback", "evil.test%2Fcallback");
    let refused = browser.get(app.at(&elsewhere)).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().get("location").is_none());
    let unknown = browser
        .get(app.at(&authorize_path("").replace(CLIENT, "nobody")))
        .await;
    assert_eq!(unknown.status(), 400);
    assert!(unknown.headers().get("location").is_none());

    // Not signed in and told not to ask: back to the client with the error.
    let none = browser.get(app.at(&authorize_path("&prompt=none"))).await;
    assert_eq!(param(&callback(&none), "error"), Some("login_required"));
    // Without PKCE.
    let plain = authorize_path("").replace("&code_challenge_method=S256", "");
    let no_pkce = browser.get(app.at(&plain)).await;
    assert_eq!(param(&callback(&no_pkce), "error"), Some("invalid_request"));
    // Without openid.
    let no_openid = authorize_path("").replace("scope=openid%20", "scope=");
    assert_eq!(
        param(&callback(&browser.get(app.at(&no_openid)).await), "error"),
        Some("invalid_scope")
    );
}

#[tokio::test]
async fn userinfo_refuses_tokens_it_did_not_sign_as_they_are() {
    let app = provider().await;
    let code = code(&app, &mut Browser::new()).await;
    let (_, tokens) = exchange(&app, &code, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap();
    let parts: Vec<&str> = access.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("someone-else");
    let tampered_payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    let jwks: Value = app.get("/jwks.json").await.json().await.unwrap();
    // HS256 "signed" with the public key, the classic confusion.
    let public = jwks["keys"][0].to_string();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    for (what, token) in [
        (
            "tampered",
            format!("{}.{tampered_payload}.{}", parts[0], parts[2]),
        ),
        ("alg none", format!("{none_header}.{}.", parts[1])),
        ("HS256 with the public key", hs256),
        (
            "the ID token",
            tokens["id_token"].as_str().unwrap().to_owned(),
        ),
        ("garbage", "not.a.token".to_owned()),
    ] {
        let response = reqwest::Client::new()
            .get(app.at("/userinfo"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\"",
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_confidential_client_gets_its_own_token_with_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let app = provider_with(&["--auth-clients-file", &clients_file(&dir)]).await;
    let grant = [
        ("grant_type", "client_credentials"),
        ("scope", "reports:read"),
    ];
    let (status, tokens) = post_form(&app, "/token", Some(("reports", SECRET)), &grant).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens.get("refresh_token").is_none() && tokens.get("id_token").is_none());
    let jwks: JwkSet = app.get("/jwks.json").await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let kid = jsonwebtoken::decode_header(access).unwrap().kid.unwrap();
    let key = DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["flotilla"]);
    let claims: Value = jsonwebtoken::decode(access, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(
        (claims["sub"].as_str(), claims["scope"].as_str()),
        (Some("reports"), Some("reports:read"))
    );

    // The secret in the form works too; a wrong one does not.
    let in_form = [
        ("grant_type", "client_credentials"),
        ("client_id", "reports"),
        ("client_secret", SECRET),
    ];
    assert_eq!(post_form(&app, "/token", None, &in_form).await.0, 200);
    let (status, error) =
        post_form(&app, "/token", Some(("reports", "not-the-secret")), &grant).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, error) = post_form(
        &app,
        "/token",
        None,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let other = [("grant_type", "client_credentials"), ("scope", "admin")];
    let (status, error) = post_form(&app, "/token", Some(("reports", SECRET)), &other).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, error) = post_form(&app, "/token", None, &[("grant_type", "password")]).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    // A public client may not.
    let public = [("grant_type", "client_credentials"), ("client_id", CLIENT)];
    let (status, error) = post_form(&app, "/token", None, &public).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains("auth_tokens_issued_total{service=\"auth\",grant=\"client_credentials\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_form_the_token_endpoints_cannot_read_is_invalid_request() {
    let app = provider().await;
    for (path, form) in [
        ("/token", [("client_id", CLIENT)]),
        ("/revoke", [("client_id", CLIENT)]),
        ("/introspect", [("client_id", CLIENT)]),
    ] {
        let (status, error) = post_form(&app, path, None, &form).await;
        assert_eq!(
            (status, error["error"].as_str()),
            (400, Some("invalid_request")),
            "{path}: {error}"
        );
    }
    let json = reqwest::Client::new()
        .post(app.at("/token"))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    assert_eq!(json.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn introspection_is_for_confidential_clients_and_revocation_ends_a_family() {
    let dir = tempfile::tempdir().unwrap();
    let app = provider_with(&["--auth-clients-file", &clients_file(&dir)]).await;
    let code = code(&app, &mut Browser::new()).await;
    let (_, tokens) = exchange(&app, &code, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let reports = Some(("reports", SECRET));

    let (status, info) = post_form(&app, "/introspect", reports, &[("token", access)]).await;
    assert_eq!(status, 200);
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], CLIENT);
    let (_, info) = post_form(&app, "/introspect", reports, &[("token", refresh_token)]).await;
    assert_eq!(
        (info["active"].as_bool(), info["token_type"].as_str()),
        (Some(true), Some("refresh_token"))
    );
    let (_, info) = post_form(&app, "/introspect", reports, &[("token", "garbage")]).await;
    assert_eq!(info, json!({ "active": false }));
    let (status, _) = post_form(
        &app,
        "/introspect",
        None,
        &[("token", access), ("client_id", CLIENT)],
    )
    .await;
    assert_eq!(status, 401, "a public client may not introspect");

    // The console revokes its refresh token: the family is over.
    let revoke = [("token", refresh_token), ("client_id", CLIENT)];
    assert_eq!(post_form(&app, "/revoke", None, &revoke).await.0, 200);
    let (_, info) = post_form(&app, "/introspect", reports, &[("token", refresh_token)]).await;
    assert_eq!(info, json!({ "active": false }));
    let (status, error) = refresh(&app, refresh_token).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Unknown tokens are not an error (RFC 7009).
    assert_eq!(
        post_form(
            &app,
            "/revoke",
            None,
            &[("token", "unknown"), ("client_id", CLIENT)]
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn an_application_signs_the_person_out_and_gets_them_back() {
    let app = provider().await;
    let mut browser = Browser::new();
    code(&app, &mut browser).await;
    let back_to = format!("{SITE}/");
    let query = format!(
        "/end_session?client_id={CLIENT}&post_logout_redirect_uri={}&state=bye",
        back_to.replace(':', "%3A").replace('/', "%2F")
    );
    let page = browser.get(app.at(&query)).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("action=\"end_session\"") && !html.contains("<script"),
        "{html}"
    );
    let csrf = browser.csrf(app.at(&query)).await;
    let form = [
        ("client_id", CLIENT),
        ("post_logout_redirect_uri", back_to.as_str()),
        ("state", "bye"),
    ];
    // Without the form's token, nothing happens.
    assert_eq!(
        browser
            .post_form(app.at("/end_session"), &form)
            .await
            .status(),
        403
    );
    assert_eq!(browser.get(app.at("/session")).await.status(), 200);
    let mut confirmed = form.to_vec();
    confirmed.push(("csrf", &csrf));
    let out = browser.post_form(app.at("/end_session"), &confirmed).await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], format!("{back_to}?state=bye"));
    assert_eq!(browser.get(app.at("/session")).await.status(), 401);

    // Somewhere not registered: an error page, no redirection.
    let elsewhere = query.replace("flotilla.test", "evil.test");
    let refused = browser.get(app.at(&elsewhere)).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().get("location").is_none());
    let discovery: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["end_session_endpoint"],
        format!("{SITE}/auth/end_session")
    );
}
