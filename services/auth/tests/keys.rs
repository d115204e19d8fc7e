//! Signing-key rotation, as a verifier sees it: a new key is published
//! before it signs, the key it replaces stays published while the tokens it
//! signed live, then it is gone. Time passes by moving the stored keys'
//! timestamps back; the instances read the keys again every second.

use std::time::{Duration, Instant};

use flotilla_auth::Auth;
use flotilla_kit::testing::TestService;
use flotilla_kit::{Configure, Shared};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

const SITE: &str = "http://flotilla.test";
const SECRET: &str = "a-secret-for-the-reports-client";
const MINUTE: i64 = 60_000;

/// The provider, with a confidential client `reports` that gets tokens
/// with its secret and may introspect them.
async fn provider(dir: &tempfile::TempDir, args: &[&str]) -> TestService {
    let path = dir.path().join("clients.toml");
    let hash: String = Sha256::digest(SECRET)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "[[client]]\nid = \"reports\"\nsecret_sha256 = \"{hash}\"\n\
             grants = [\"client_credentials\"]\nscopes = [\"reports:read\"]\n"
        ),
    )
    .unwrap();
    let path = path.to_string_lossy().into_owned();
    let mut settings = vec![
        "--auth-clients-file",
        path.as_str(),
        "--auth-key-reload-secs",
        "1",
    ];
    settings.extend_from_slice(args);
    let shared = Shared {
        public_url: Some(SITE.to_owned()),
        ..Shared::default()
    };
    TestService::start_with::<Auth>(&settings, shared).await
}

async fn post_form(app: &TestService, path: &str, form: &[(&str, &str)]) -> Value {
    let response = app
        .client
        .post(app.at(path))
        .basic_auth("reports", Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn access_token(app: &TestService) -> String {
    let tokens = post_form(app, "/token", &[("grant_type", "client_credentials")]).await;
    tokens["access_token"].as_str().unwrap().to_owned()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn jwks(app: &TestService) -> JwkSet {
    app.get("/jwks.json").await.json().await.unwrap()
}

async fn published(app: &TestService) -> Vec<String> {
    let mut kids: Vec<String> = jwks(app)
        .await
        .keys
        .into_iter()
        .map(|jwk| jwk.common.key_id.unwrap())
        .collect();
    kids.sort();
    kids
}

/// Whether `token` is accepted: by the provider (`/introspect`), and by a
/// verifier that fetches the JWKS. Both say the same.
async fn accepted(app: &TestService, token: &str) -> bool {
    let by_provider = post_form(app, "/introspect", &[("token", token)]).await["active"] == true;
    let by_verifier = jwks(app).await.find(&kid(token)).is_some_and(|jwk| {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[format!("{SITE}/auth")]);
        validation.set_audience(&["flotilla"]);
        let key = DecodingKey::from_jwk(jwk).unwrap();
        jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok()
    });
    assert_eq!(by_provider, by_verifier, "the provider and the JWKS agree");
    by_provider
}

/// Moves every stored key's making `by` milliseconds into the past.
async fn age_keys(app: &TestService, by: i64) {
    sqlx::query("UPDATE signing_keys SET created_at_ms = created_at_ms - $1")
        .bind(by)
        .execute(app.db())
        .await
        .unwrap();
}

async fn stored_keys(app: &TestService) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys")
        .fetch_one(app.db())
        .await
        .unwrap()
}

/// Waits, at most ten seconds, for the instance to read the keys again
/// and `done` to hold.
async fn eventually<F: AsyncFn() -> bool>(what: &str, done: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `flotilla auth rotate-key`, against the service's database.
async fn rotate_key(app: &TestService) -> String {
    let admin = Auth::ADMIN.expect("auth has commands");
    let matches = (admin.commands)(clap::Command::new("auth"))
        .try_get_matches_from(["auth", "rotate-key"])
        .unwrap();
    (admin.run)(&matches, app.db()).await.unwrap()
}

#[tokio::test]
async fn a_rotated_key_signs_after_it_is_published_and_the_old_one_stays_while_its_tokens_live() {
    let dir = tempfile::tempdir().unwrap();
    let app = provider(&dir, &[]).await;
    let first = access_token(&app).await;
    let old = kid(&first);
    assert_eq!(published(&app).await, [old.as_str()]);

    let new = rotate_key(&app).await;
    assert_ne!(new, old);
    let mut both = vec![old.clone(), new.clone()];
    both.sort();
    eventually("the new key is published", async || {
        published(&app).await == both
    })
    .await;
    // Published, not signing yet: verifiers that cached the JWKS have not
    // seen it.
    let before = access_token(&app).await;
    assert_eq!(kid(&before), old);

    // Six minutes later (a reload interval, and the JWKS's five minutes).
    age_keys(&app, 6 * MINUTE).await;
    eventually("the new key signs", async || {
        kid(&access_token(&app).await) == new
    })
    .await;
    assert_eq!(published(&app).await, both);
    assert!(accepted(&app, &before).await, "the old key's token still");
    assert!(accepted(&app, &access_token(&app).await).await);

    // Ten minutes of token lifetime and a reload interval after that.
    age_keys(&app, 11 * MINUTE).await;
    eventually("the old key is retired", async || {
        published(&app).await == [new.clone()]
    })
    .await;
    assert!(!accepted(&app, &before).await, "its key is gone");
    assert!(!accepted(&app, &first).await);
    assert_eq!(stored_keys(&app).await, 1, "the private key is deleted");
    let after = access_token(&app).await;
    assert_eq!(kid(&after), new);
    assert!(accepted(&app, &after).await);
}

#[tokio::test]
async fn a_key_as_old_as_the_rotation_period_is_replaced_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let app = provider(&dir, &["--auth-key-rotation-days", "2"]).await;
    let token = access_token(&app).await;
    let old = kid(&token);
    age_keys(&app, 2 * 24 * 60 * MINUTE - MINUTE).await;
    // A day and 23 hours 59 minutes: not yet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(published(&app).await, [old.as_str()]);

    age_keys(&app, MINUTE).await;
    eventually("a new key is published", async || {
        published(&app).await.len() == 2
    })
    .await;
    assert_eq!(stored_keys(&app).await, 2, "one new key");
    assert_eq!(kid(&access_token(&app).await), old, "not signing yet");
    assert!(accepted(&app, &token).await);
}

#[tokio::test]
async fn the_rotation_settings_are_checked() {
    for (setting, value) in [
        ("--auth-key-rotation-days", "0"),
        ("--auth-key-reload-secs", "0"),
        ("--auth-key-reload-secs", "3601"),
    ] {
        let parsed = flotilla_kit::testing::parse::<Auth>(&[setting, value]);
        assert!(parsed.is_err(), "{setting} {value}");
    }
}
