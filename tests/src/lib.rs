//! Helpers of the end-to-end tests: a real stack on a free port over a
//! temporary data directory, and a real HTTP server standing in for Slack.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use flotilla_cli::{Stack, UpArgs};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// A running stack and what a test needs to talk to it.
pub struct TestApp {
    /// The gateway's base URL.
    pub url: String,
    pub client: reqwest::Client,
    pub slack: FakeSlack,
    stack: Option<Stack>,
    _data: TempDir,
}

/// Starts the stack with a fake Slack that accepts everything, and fast retries.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the stack after `configure` has adjusted its arguments.
pub async fn spawn_app_with(configure: impl FnOnce(&mut UpArgs)) -> TestApp {
    let data = tempfile::tempdir().expect("temporary directory");
    let slack = FakeSlack::start().await;
    let mut args = UpArgs::ephemeral(data.path().to_owned());
    if let Some((db, bus)) = scale_out() {
        // Each stack in schemas and a stream of its own: tests run in parallel.
        let tag = format!("t{}", &uuid_like()[..12]);
        args.backends.db = Some(db);
        args.backends.db_schema_prefix = format!("{tag}_");
        args.backends.bus = Some(bus);
        args.backends.bus_namespace = tag;
    }
    args.services.set("slack-webhook-url", &slack.url);
    args.services.set("slack-retry-base-ms", "20");
    // Correctness here, not speed (bench/kv.sh measures that): a batch on a
    // busy machine may take more than the default 5 s to be confirmed.
    args.services.set("kv-batch-timeout-ms", "30000");
    configure(&mut args);
    let stack = Stack::start(&args, CancellationToken::new())
        .await
        .expect("the stack starts");
    TestApp {
        url: format!("http://{}", stack.gateway),
        client: reqwest::Client::new(),
        slack,
        stack: Some(stack),
        _data: data,
    }
}

/// The cookie `name` that `response` sets, as `name=value` (for a `Cookie`
/// header).
pub fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok()?.split(';').next())
        .find(|pair| pair.split_once('=').is_some_and(|(n, _)| n == name))
        .map(str::to_owned)
}

/// The PostgreSQL and bus URLs when the suite runs on the scale-out engines:
/// `FLOTILLA_TEST_BACKEND=scale-out` (NATS JetStream) or `scale-out-amqp`
/// (RabbitMQ).
pub fn scale_out() -> Option<(String, String)> {
    let bus = match std::env::var("FLOTILLA_TEST_BACKEND").as_deref() {
        Ok("scale-out") => "FLOTILLA_TEST_NATS_URL",
        Ok("scale-out-amqp") => "FLOTILLA_TEST_AMQP_URL",
        _ => return None,
    };
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("this FLOTILLA_TEST_BACKEND needs {name}"))
    };
    Some((var("FLOTILLA_TEST_POSTGRES_URL"), var(bus)))
}

fn uuid_like() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "{:016x}",
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Opens a websocket to `path` through the gateway.
    pub async fn websocket(&self, path: &str) -> Feed {
        let url = format!("{}{path}", self.url.replacen("http", "ws", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket opened");
        Feed(socket)
    }

    /// `POST /kv/roundtrip`, asserting 202; returns its correlation id.
    pub async fn roundtrip(&self, key: &str, value: &str) -> String {
        let response = self
            .post_json(
                "/kv/roundtrip",
                &serde_json::json!({ "key": key, "value": value }),
            )
            .await;
        assert_eq!(response.status(), 202, "roundtrip of {key}");
        let body: Value = response.json().await.expect("JSON body");
        body["correlation_id"].as_str().expect("an id").to_owned()
    }

    /// Signs up `name` (email `<name>@example.com`, lower case) and signs
    /// in: the `auth_token` cookie the login page sets, as `name=value`.
    pub async fn player(&self, name: &str) -> String {
        let email = format!("{}@example.com", name.to_lowercase());
        let body = json!({ "email": email, "name": name, "password": "correct horse battery" });
        assert_eq!(self.post_json("/auth/signup", &body).await.status(), 201);
        let signed_in = self.sign_in(&email, "correct horse battery", &[]).await;
        cookie(&signed_in, "auth_token").expect("the login page sets auth_token")
    }

    /// GET `path` with `token` (a `Cookie` header).
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .header("cookie", token)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// POST `body` as JSON to `path` with `token` (a `Cookie` header).
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .header("cookie", token)
            .json(body)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// The accepted Motus guesses of the day's length and first letter.
    pub async fn motus_words(&self, token: &str) -> Vec<String> {
        let today: Value = self
            .get_as(token, "/motus/today")
            .await
            .json()
            .await
            .unwrap();
        let path = format!(
            "/motus/words?length={}&first={}",
            today["length"],
            today["first_letter"].as_str().expect("a game of the day")
        );
        let list: Value = self.get_as(token, &path).await.json().await.unwrap();
        list["words"]
            .as_array()
            .expect("a word list")
            .iter()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect()
    }

    /// Signs in through `/auth/login` as a browser does: the login page for
    /// its CSRF cookie, then the form with `fields` added; the form's
    /// response, not followed.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let page = client
            .get(format!("{}/auth/login", self.url))
            .send()
            .await
            .expect("the login page answers");
        let csrf = cookie(&page, "flotilla_csrf").expect("the login page sets a CSRF cookie");
        let mut form = vec![
            ("csrf", csrf.split_once('=').map_or("", |(_, v)| v)),
            ("email", email),
            ("password", password),
        ];
        form.extend_from_slice(fields);
        client
            .post(format!("{}/auth/login", self.url))
            .header("cookie", &csrf)
            .form(&form)
            .send()
            .await
            .expect("the login form answers")
    }

    /// `POST /users`, asserting 201; returns the user.
    pub async fn create_user(&self, name: &str, email: &str) -> Value {
        let response = self
            .post_json(
                "/users",
                &serde_json::json!({ "name": name, "email": email }),
            )
            .await;
        assert_eq!(response.status(), 201, "creating {email}");
        response.json().await.expect("JSON body")
    }

    /// Every notification message, following pages.
    pub async fn messages(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page: Value = self
                .get(&format!("/notifications/messages?limit=1000&after={after}"))
                .await
                .json()
                .await
                .expect("JSON body");
            all.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => after = next.to_owned(),
                None => return all,
            }
        }
    }

    /// Waits until `done` holds for the messages, or panics after `timeout`.
    pub async fn wait_for_messages(
        &self,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages().await;
            if done(&messages) {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "condition not met within {timeout:?}; messages: {messages:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The base URLs of the instances of `service`.
    pub fn instances(&self, service: &str) -> Vec<String> {
        let stack = self.stack.as_ref().expect("running");
        stack
            .services
            .iter()
            .filter(|(name, _)| *name == service)
            .flat_map(|(_, addrs)| addrs.iter().map(|a| format!("http://{a}")))
            .collect()
    }

    /// Stops the stack gracefully.
    pub async fn stop(mut self) {
        if let Some(stack) = self.stack.take() {
            stack.stop().await;
        }
    }
}

/// The JSON frames of a websocket.
pub struct Feed(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Feed {
    /// Sends a text frame.
    pub async fn send_text(
        &mut self,
        text: String,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        use futures::SinkExt;
        self.0
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
    }

    /// Whether the server closes the websocket within `timeout`.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        use futures::StreamExt;
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline.into(), self.0.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next JSON text frame, or panics after `timeout`.
    pub async fn next_json(&mut self, timeout: Duration) -> Value {
        use futures::StreamExt;
        let deadline = Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline.into(), self.0.next())
                .await
                .expect("a frame in time")
                .expect("the websocket is open")
                .expect("a valid frame");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                return serde_json::from_str(&text).expect("a JSON frame");
            }
        }
    }

    /// Reads frames until every roundtrip of `ids` has arrived, each once.
    pub async fn wait_for_all(&mut self, ids: &[String], timeout: Duration) {
        let mut missing: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let deadline = Instant::now() + timeout;
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.next_json(left).await;
            let id = frame["correlation_id"].as_str().unwrap_or_default();
            let ours = ids.iter().any(|i| i == id);
            assert!(missing.remove(id) || !ours, "roundtrip {id} arrived twice");
        }
    }

    /// Reads frames until the one of roundtrip `correlation_id`.
    pub async fn wait_for(&mut self, correlation_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.next_json(left).await;
            if frame["correlation_id"] == correlation_id {
                return frame;
            }
        }
    }
}

/// A webhook receiver standing in for Slack: records what it accepted, and
/// answers 503 while it is down.
#[derive(Clone)]
pub struct FakeSlack {
    pub url: String,
    state: Arc<SlackState>,
}

#[derive(Default)]
struct SlackState {
    down: AtomicBool,
    /// Every request, in order, whether it was accepted or not.
    attempts: Mutex<Vec<Delivery>>,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub body: Value,
    /// The `x-flotilla-message-id` header.
    pub message_id: String,
    /// False when the fake was down and answered 503.
    pub accepted: bool,
}

impl FakeSlack {
    pub async fn start() -> Self {
        let state = Arc::new(SlackState::default());
        let app = axum::Router::new()
            .route("/webhook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/webhook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// The requests it accepted.
    pub fn accepted(&self) -> Vec<Delivery> {
        let attempts = self.state.attempts.lock().unwrap();
        attempts.iter().filter(|d| d.accepted).cloned().collect()
    }

    /// How many requests it answered 503 while down.
    pub fn refused(&self) -> usize {
        let attempts = self.state.attempts.lock().unwrap();
        attempts.iter().filter(|d| !d.accepted).count()
    }

    /// The accepted messages once `n` arrived and no other came within
    /// `quiet` after them: a late duplicate would show.
    pub async fn settled(&self, n: usize, quiet: Duration) -> Vec<Delivery> {
        self.wait_for(n, Duration::from_secs(10)).await;
        tokio::time::sleep(quiet).await;
        let accepted = self.accepted();
        assert_eq!(accepted.len(), n, "Slack got more than {n}: {accepted:?}");
        accepted
    }

    /// Waits until at least `n` messages were accepted, or panics.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= n {
                return accepted;
            }
            assert!(
                Instant::now() < deadline,
                "Slack got {} of {n} messages within {timeout:?}",
                accepted.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> StatusCode {
    let accepted = !state.down.load(Ordering::SeqCst);
    let message_id = headers
        .get("x-flotilla-message-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    state.attempts.lock().unwrap().push(Delivery {
        body,
        message_id,
        accepted,
    });
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
