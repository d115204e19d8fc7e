//! The auth service alone: sign-up, the login and logout forms, sessions,
//! failed-login limits and roles.

use std::time::Duration;

mod common;

use common::{Browser, PASSWORD, signup};
use flotilla_auth::Auth;
use flotilla_contracts::AccountCreatedV1;
use flotilla_kit::testing::TestService;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

#[tokio::test]
async fn a_new_account_is_stored_and_announced() {
    let mut app = TestService::start::<Auth>(&[]).await;
    let response = signup(&app, "ada@example.com").await;
    assert_eq!(response.status(), 201);
    let account: Value = response.json().await.unwrap();
    assert_eq!(account["email"], "ada@example.com");
    assert_eq!(account["roles"], json!([]));
    assert!(account.get("password").is_none() && account.get("password_hash").is_none());
    let event: AccountCreatedV1 = app.published().await;
    assert_eq!(event.id, account["id"].as_str().unwrap());
    assert_eq!(
        (event.email.as_str(), event.name.as_str()),
        ("ada@example.com", "Ada")
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("auth_signups_total{service=\"auth\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn sign_up_refuses_weak_passwords_bad_fields_and_a_taken_email() {
    let app = TestService::start::<Auth>(&[]).await;
    assert_eq!(signup(&app, "ada@example.com").await.status(), 201);
    let taken = signup(&app, "ADA@example.com").await;
    assert_eq!(taken.status(), 409);
    assert_eq!(taken.headers()["content-type"], "application/problem+json");
    for (body, field) in [
        (
            json!({ "email": "b@example.com", "name": "B", "password": "short" }),
            "password",
        ),
        (
            json!({ "email": "b@example.com", "name": "B", "password": "password123" }),
            "password",
        ),
        (
            json!({ "email": "b@example.com", "name": "B", "password": "1234567890" }),
            "password",
        ),
        (
            json!({ "email": "nope", "name": "B", "password": PASSWORD }),
            "email",
        ),
        (
            json!({ "email": "b@example.com", "name": " ", "password": PASSWORD }),
            "name",
        ),
    ] {
        let response = app.post("/signup", &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn the_login_form_signs_in_with_a_session_cookie() {
    let app = TestService::start::<Auth>(&[]).await;
    signup(&app, "ada@example.com").await;
    let mut browser = Browser::new();
    let page = browser.get(app.at("/login?return_to=/motus/")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for input in [
        "name=\"email\"",
        "name=\"password\"",
        "name=\"csrf\"",
        "value=\"/motus/\"",
    ] {
        assert!(html.contains(input), "{input} missing from {html}");
    }
    assert!(!html.contains("<script"), "the form needs no script");

    let csrf = browser.csrf(app.at("/login")).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("email", "Ada@Example.com"),
        ("password", PASSWORD),
        ("return_to", "/motus/"),
    ];
    let response = browser.post_form(app.at("/login"), &form).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/motus/");
    let set = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("flotilla_session="))
        .expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "not over TLS here: {set}");

    let me: Value = browser.get(app.at("/session")).await.json().await.unwrap();
    assert_eq!(me["email"], "ada@example.com");

    // Signing out ends the session, on the server too.
    let session = browser
        .cookies
        .iter()
        .find(|(n, _)| n == "flotilla_session")
        .unwrap()
        .1
        .clone();
    let csrf = browser.csrf(app.at("/login")).await;
    let out = browser
        .post_form(app.at("/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status(), 200);
    assert_eq!(browser.get(app.at("/session")).await.status(), 401);
    let replayed = reqwest::Client::new()
        .get(app.at("/session"))
        .header(COOKIE, format!("flotilla_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);
}

#[tokio::test]
async fn a_login_without_the_csrf_token_is_refused() {
    let app = TestService::start::<Auth>(&[]).await;
    signup(&app, "ada@example.com").await;
    let mut browser = Browser::new();
    let form = [("email", "ada@example.com"), ("password", PASSWORD)];
    let response = browser.post_form(app.at("/login"), &form).await;
    assert_eq!(response.status(), 403);
    // A token of its own making, without the cookie, is refused too.
    let forged = [
        ("csrf", "ab".repeat(32)),
        ("email", "ada@example.com".into()),
        ("password", PASSWORD.into()),
    ];
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        browser.post_form(app.at("/login"), &forged).await.status(),
        403
    );
    assert!(browser.cookies.iter().all(|(n, _)| n != "flotilla_session"));
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_get_the_same_answer() {
    let app = TestService::start::<Auth>(&[]).await;
    signup(&app, "ada@example.com").await;
    let mut browser = Browser::new();
    let wrong = browser
        .login(&app, "ada@example.com", "not the password")
        .await;
    let wrong_status = wrong.status();
    let wrong_page = wrong.text().await.unwrap();
    let unknown = browser
        .login(&app, "bob@example.com", "not the password")
        .await;
    assert_eq!(
        (wrong_status, unknown.status()),
        (
            reqwest::StatusCode::UNAUTHORIZED,
            reqwest::StatusCode::UNAUTHORIZED
        )
    );
    let unknown_page = unknown.text().await.unwrap();
    assert_eq!(
        wrong_page.replace("ada@example.com", "EMAIL"),
        unknown_page.replace("bob@example.com", "EMAIL")
    );
}

#[tokio::test]
async fn repeated_failures_are_limited_per_account() {
    let app = TestService::start::<Auth>(&["--auth-login-attempts", "3"]).await;
    signup(&app, "ada@example.com").await;
    let mut browser = Browser::new();
    for _ in 0..3 {
        let response = browser
            .login(&app, "ada@example.com", "wrong password!")
            .await;
        assert_eq!(response.status(), 401);
    }
    // Over the limit, even the right password waits.
    let limited = browser.login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("auth_logins_total{service=\"auth\",result=\"failure\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("auth_logins_total{service=\"auth\",result=\"limited\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn repeated_failures_are_limited_per_address_across_accounts() {
    let app = TestService::start::<Auth>(&[
        "--auth-login-attempts",
        "2",
        "--auth-login-window-secs",
        "1",
    ])
    .await;
    signup(&app, "ada@example.com").await;
    let mut browser = Browser::new();
    assert_eq!(
        browser
            .login(&app, "x@example.com", "wrong password!")
            .await
            .status(),
        401
    );
    assert_eq!(
        browser
            .login(&app, "y@example.com", "wrong password!")
            .await
            .status(),
        401
    );
    assert_eq!(
        browser
            .login(&app, "ada@example.com", PASSWORD)
            .await
            .status(),
        429
    );
    // The window ends, and with it the limit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        browser
            .login(&app, "ada@example.com", PASSWORD)
            .await
            .status(),
        303
    );
    // The next failure clears the windows that are over: made-up emails
    // do not pile up.
    assert_eq!(
        browser
            .login(&app, "z@example.com", "wrong password!")
            .await
            .status(),
        401
    );
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM login_failures ORDER BY key")
        .fetch_all(app.db())
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.contains(&"account:z@example.com".to_owned()),
        "{keys:?}"
    );
}

#[tokio::test]
async fn the_sign_up_form_creates_the_account_and_leads_to_the_login_page() {
    let app = TestService::start::<Auth>(&[]).await;
    let mut browser = Browser::new();
    let csrf = browser.csrf(app.at("/signup")).await;
    let weak = [
        ("csrf", csrf.as_str()),
        ("email", "ada@example.com"),
        ("name", "Ada"),
        ("password", "short"),
    ];
    let refused = browser.post_form(app.at("/signup"), &weak).await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("role=\"alert\""));
    let form = [
        ("csrf", csrf.as_str()),
        ("email", "ada@example.com"),
        ("name", "Ada"),
        ("password", PASSWORD),
    ];
    let created = browser.post_form(app.at("/signup"), &form).await;
    assert_eq!(created.status(), 303);
    assert_eq!(created.headers()["location"], "login?signed_up=1");
    assert_eq!(
        browser
            .login(&app, "ada@example.com", PASSWORD)
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn only_an_admin_grants_roles() {
    let app = TestService::start::<Auth>(&[]).await;
    let ada: Value = signup(&app, "ada@example.com").await.json().await.unwrap();
    let bob: Value = signup(&app, "bob@example.com").await.json().await.unwrap();
    let grant = |browser: &Browser, id: &str, role: &str| {
        let request = browser
            .client
            .put(app.at(&format!("/accounts/{id}/roles/{role}")))
            .header(COOKIE, browser.cookie_header());
        async move { request.send().await.unwrap().status() }
    };
    let anonymous = Browser::new();
    assert_eq!(
        grant(&anonymous, ada["id"].as_str().unwrap(), "admin").await,
        401
    );
    let mut bobs = Browser::new();
    bobs.login(&app, "bob@example.com", PASSWORD).await;
    assert_eq!(
        grant(&bobs, bob["id"].as_str().unwrap(), "admin").await,
        403
    );

    // The first admin is made from the command line's side: straight in the database.
    sqlx::query(
        "INSERT INTO account_roles (account_id, role, granted_at) VALUES ($1, 'admin', 'now')",
    )
    .bind(ada["id"].as_str().unwrap())
    .execute(app.db())
    .await
    .unwrap();
    let mut adas = Browser::new();
    adas.login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(
        grant(&adas, bob["id"].as_str().unwrap(), "commercial").await,
        201
    );
    assert_eq!(
        grant(&adas, bob["id"].as_str().unwrap(), "commercial").await,
        204
    );
    assert_eq!(
        grant(&adas, bob["id"].as_str().unwrap(), "Not A Role").await,
        422
    );
    assert_eq!(grant(&adas, "nobody", "commercial").await, 404);
    let me: Value = bobs.get(app.at("/session")).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["commercial"]));
}

#[tokio::test]
async fn forms_that_do_not_parse_are_problems() {
    let app = TestService::start::<Auth>(&[]).await;
    let client = reqwest::Client::new();
    let json = client
        .post(app.at("/login"))
        .json(&json!({"email": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    assert_eq!(json.headers()["content-type"], "application/problem+json");
    let garbage = client
        .post(app.at("/signup"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=%ZZ&&=")
        .send()
        .await
        .unwrap();
    assert!(garbage.status().is_client_error(), "{}", garbage.status());
    assert_eq!(
        garbage.headers()["content-type"],
        "application/problem+json"
    );
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let content = &doc["paths"]["/signup"]["post"]["requestBody"]["content"];
    assert!(
        content["application/json"].is_object()
            && content["application/x-www-form-urlencoded"].is_object(),
        "{content}"
    );
}

#[tokio::test]
async fn the_document_says_what_the_handlers_take_and_answer() {
    let app = TestService::start::<Auth>(&[]).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let parameters = |path: &str, method: &str| -> Vec<(String, String, bool)> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap().to_owned();
                let place = p["in"].as_str().unwrap().to_owned();
                (name, place, p["required"] == true)
            })
            .collect()
    };
    let authorize = parameters("/authorize", "get");
    assert!(authorize.iter().all(|(_, place, _)| place == "query"));
    assert!(authorize.contains(&("client_id".into(), "query".into(), true)));
    assert!(authorize.contains(&("state".into(), "query".into(), false)));
    let end_session = parameters("/end_session", "get");
    assert!(
        end_session
            .iter()
            .all(|(name, place, required)| { name != "csrf" && place == "query" && !required })
    );
    assert!(
        parameters("/login", "get")
            .iter()
            .all(|(_, place, _)| place == "query")
    );

    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["TokenRequest"]["properties"]["grant_type"]["enum"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(schemas["Password"]["minLength"], 10);
    for path in ["/token", "/revoke", "/introspect"] {
        let error = &doc["paths"][path]["post"]["responses"]["400"]["content"];
        assert_eq!(
            error["application/json"]["schema"]["$ref"], "#/components/schemas/OAuthError",
            "{path}"
        );
    }
    assert!(doc["paths"]["/userinfo"]["post"].is_object());
    let token_url =
        &doc["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["tokenUrl"];
    assert!(
        token_url.as_str().unwrap().ends_with("/auth/token"),
        "{token_url}"
    );
}
