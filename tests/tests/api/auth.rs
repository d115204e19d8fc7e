//! Accounts through the gateway: a sign-up becomes a user profile and the
//! seed's Slack message; the login form signs in for the whole site.

use std::time::Duration;

use flotilla_tests::{cookie, spawn_app};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_sign_up_gets_a_user_profile_and_its_slack_message() {
    let app = spawn_app().await;
    let body =
        json!({ "email": "ada@example.com", "name": "Ada", "password": "correct horse battery" });
    let response = app.post_json("/auth/signup", &body).await;
    assert_eq!(response.status(), 201);

    let accepted = app.slack.wait_for(1, WAIT).await;
    let users: Value = app.get("/users").await.json().await.unwrap();
    let user = &users["items"][0];
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["name"], "Ada");
    assert_eq!(
        accepted[0].body,
        json!({ "channel": "#user", "text": format!("User {} created", user["id"].as_str().unwrap()) })
    );
}

#[tokio::test]
async fn an_account_whose_email_has_a_profile_gets_no_second_one() {
    let app = spawn_app().await;
    app.create_user("Ada Lovelace", "ada@example.com").await;
    let body =
        json!({ "email": "ADA@example.com", "name": "Ada", "password": "correct horse battery" });
    assert_eq!(app.post_json("/auth/signup", &body).await.status(), 201);
    // The profile made first keeps its name; only its own Slack message went out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let users: Value = app.get("/users").await.json().await.unwrap();
    assert_eq!(users["items"].as_array().unwrap().len(), 1);
    assert_eq!(users["items"][0]["name"], "Ada Lovelace");
    assert_eq!(app.slack.wait_for(1, WAIT).await.len(), 1);
}

#[tokio::test]
async fn the_login_form_through_the_gateway_returns_to_the_site() {
    let app = spawn_app().await;
    let body =
        json!({ "email": "ada@example.com", "name": "Ada", "password": "correct horse battery" });
    app.post_json("/auth/signup", &body).await;
    let html = app.get("/auth/login").await.text().await.unwrap();
    assert!(
        html.contains("action=\"login\""),
        "the form posts back to /auth/login"
    );
    let response = app
        .sign_in(
            "ada@example.com",
            "correct horse battery",
            &[("return_to", "/kv/")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("{}/kv/", app.url));
    let session = cookie(&response, "flotilla_session").expect("a session cookie");
    let me: Value = app
        .client
        .get(format!("{}/auth/session", app.url))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "ada@example.com");
}

#[tokio::test]
async fn with_two_instances_a_sign_in_started_on_one_finishes_on_the_other() {
    let app = flotilla_tests::spawn_app_with(|args| args.replicas = 2).await;
    assert_eq!(app.instances("auth").len(), 2);
    let body =
        json!({ "email": "ada@example.com", "name": "Ada", "password": "correct horse battery" });
    assert_eq!(app.post_json("/auth/signup", &body).await.status(), 201);
    // Round robin: the login page and the form go to different instances,
    // and so do the session checks that follow; each must accept what the
    // other issued.
    for _ in 0..4 {
        let response = app
            .sign_in("ada@example.com", "correct horse battery", &[])
            .await;
        assert_eq!(response.status(), 303);
        let session = cookie(&response, "flotilla_session").expect("a session cookie");
        for _ in 0..2 {
            let me = app
                .client
                .get(format!("{}/auth/session", app.url))
                .header("cookie", &session)
                .send()
                .await
                .unwrap();
            assert_eq!(me.status(), 200);
        }
    }
}

#[tokio::test]
async fn the_code_flow_works_through_the_gateway() {
    let app = spawn_app().await;
    let issuer = format!("{}/auth", app.url);
    let discovery: Value = app
        .get("/auth/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    let body =
        json!({ "email": "ada@example.com", "name": "Ada", "password": "correct horse battery" });
    app.post_json("/auth/signup", &body).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // PKCE: the challenge is BASE64URL(SHA-256(verifier)).
    let verifier = "a-verifier-for-the-gateway-test-0123456789-abcdef";
    let challenge = "3WD_y2RCXi-3ZGqJ9OOvpUEE-B9RQz9xv7JC5QpYkwo";
    let redirect = format!("{}/callback", app.url);
    let authorize = format!(
        "{}/auth/authorize?response_type=code&client_id=flotilla-console&redirect_uri={redirect}&scope=openid%20email&state=xyz&code_challenge={challenge}&code_challenge_method=S256",
        app.url
    );
    // Not signed in: to the login page, which is to come back to /auth/authorize.
    let first = client.get(&authorize).send().await.unwrap();
    let location = first.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("login?return_to=%2Fauth%2Fauthorize%3F"),
        "{location}"
    );

    let signed_in = app
        .sign_in("ada@example.com", "correct horse battery", &[])
        .await;
    let session = cookie(&signed_in, "flotilla_session").unwrap();
    let back = client
        .get(&authorize)
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 303);
    let location = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{redirect}?code=")),
        "{location}"
    );
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let tokens: Value = client
        .post(format!("{}/auth/token", app.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "flotilla-console"),
            ("code", code),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().expect("an access token");
    let info: Value = client
        .get(format!("{}/auth/userinfo", app.url))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(info["sub"].is_string(), "{info}");

    // The gateway verifies the token and tells the users service who calls.
    let me = wait_for_profile(&app, |request| request.bearer_auth(access)).await;
    assert_eq!(me["email"], "ada@example.com");
    let mut tampered = access.to_owned();
    tampered.pop();
    tampered.push(if access.ends_with('A') { 'B' } else { 'A' });
    let refused = client
        .get(format!("{}/users/me", app.url))
        .bearer_auth(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

/// `GET /users/me` with `auth` until the account's profile exists.
async fn wait_for_profile(
    app: &flotilla_tests::TestApp,
    auth: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = auth(reqwest::Client::new().get(format!("{}/users/me", app.url)))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => return response.json().await.unwrap(),
            404 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            status => panic!(
                "GET /users/me answered {status}: {}",
                response.text().await.unwrap()
            ),
        }
    }
}

#[tokio::test]
async fn a_clients_own_identity_headers_never_reach_a_service() {
    let app = spawn_app().await;
    app.create_user("Ada Lovelace", "ada@example.com").await;
    let forged = reqwest::Client::new()
        .get(format!("{}/users/me", app.url))
        .header("x-user-id", "0190")
        .header("x-user-email", "ada@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        401,
        "the gateway removed the forged caller"
    );
    let problem: Value = forged.json().await.unwrap();
    assert_eq!(problem["status"], 401);
}

#[tokio::test]
async fn signing_in_at_the_login_page_sets_seed_000s_auth_token_cookie() {
    let app = spawn_app().await;
    let body =
        json!({ "email": "ada@example.com", "name": "Ada", "password": "correct horse battery" });
    app.post_json("/auth/signup", &body).await;
    let signed_in = app
        .sign_in("ada@example.com", "correct horse battery", &[])
        .await;
    let set_cookie: Vec<&str> = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let token_cookie = set_cookie
        .iter()
        .find(|c| c.starts_with("auth_token="))
        .expect("an auth_token cookie");
    assert!(token_cookie.contains("HttpOnly"), "{token_cookie}");
    assert!(token_cookie.contains("Max-Age=600"), "{token_cookie}");
    let token = cookie(&signed_in, "auth_token").unwrap();
    let me = wait_for_profile(&app, |request| request.header("cookie", &token)).await;
    assert_eq!(me["name"], "Ada");
}
