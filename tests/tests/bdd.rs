//! The Gherkin features in `features/`, run against a real stack.

use std::fmt;
use std::time::Duration;

use cucumber::{World, given, then, when};
use flotilla_tests::{Feed, TestApp, cookie, spawn_app, spawn_app_with};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Default, World)]
struct Flotilla {
    app: Option<TestApp>,
    /// Status and body of the last response.
    last: Option<(u16, Value)>,
    /// The last user created.
    user_id: Option<String>,
    /// The kv live feed, once connected.
    feed: Option<Feed>,
    /// The session cookie (`name=value`), once signed in.
    session: Option<String>,
    /// Each signed-in player's `auth_token` cookie, by name.
    players: std::collections::HashMap<String, String>,
    /// Today's word, once a game revealed it.
    answer: Option<String>,
}

impl fmt::Debug for Flotilla {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flotilla")
            .field("last", &self.last)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl Flotilla {
    fn app(&self) -> &TestApp {
        self.app.as_ref().expect("the stack is running")
    }

    fn last(&self) -> &(u16, Value) {
        self.last.as_ref().expect("a request was made")
    }

    async fn record(&mut self, response: reqwest::Response) {
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        if status == 201 {
            self.user_id = body["id"].as_str().map(str::to_owned);
        }
        self.last = Some((status, body));
    }

    fn token(&self, player: &str) -> &str {
        self.players.get(player).expect("the player is signed in")
    }

    async fn game(&self, player: &str) -> Value {
        let response = self.app().get_as(self.token(player), "/motus/today").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    fn expected_text(&self, template: &str) -> String {
        template.replace("<id>", self.user_id.as_deref().expect("a user was created"))
    }
}

#[given("the stack is running")]
async fn stack_running(world: &mut Flotilla) {
    world.app = Some(spawn_app().await);
}

#[given("Slack is down")]
async fn slack_down(world: &mut Flotilla) {
    world.app().slack.set_down(true);
}

#[when("Slack is back")]
async fn slack_back(world: &mut Flotilla) {
    world.app().slack.set_down(false);
}

#[given(expr = "a user with email {string} exists")]
async fn user_exists(world: &mut Flotilla, email: String) {
    world.app().create_user("someone", &email).await;
}

#[when(expr = "I create a user named {string} with email {string}")]
async fn create_user(world: &mut Flotilla, name: String, email: String) {
    let response = world
        .app()
        .post_json("/users", &json!({ "name": name, "email": email }))
        .await;
    world.record(response).await;
}

#[when(expr = "I ask the gateway for {string}")]
async fn ask(world: &mut Flotilla, path: String) {
    let response = world.app().get(&path).await;
    world.record(response).await;
}

#[then(expr = "the response status is {int}")]
async fn status_is(world: &mut Flotilla, status: u16) {
    assert_eq!(world.last().0, status, "{:#}", world.last().1);
}

#[then(expr = "the response is a problem of type {string}")]
async fn problem_type(world: &mut Flotilla, kind: String) {
    assert_eq!(world.last().1["type"], kind.as_str());
}

#[then(expr = "Slack receives {string} on channel {string}")]
async fn slack_receives(world: &mut Flotilla, text: String, channel: String) {
    let text = world.expected_text(&text);
    let accepted = world.app().slack.wait_for(1, WAIT).await;
    assert!(
        accepted
            .iter()
            .any(|d| d.body == json!({ "channel": channel, "text": text })),
        "{accepted:?}"
    );
}

#[then(expr = "Slack received exactly {int} message(s)")]
async fn slack_count(world: &mut Flotilla, n: usize) {
    // Long enough for a retry or a second sender to deliver a duplicate.
    world
        .app()
        .slack
        .settled(n, Duration::from_millis(500))
        .await;
}

#[then("Slack was called but has accepted nothing")]
async fn slack_nothing(world: &mut Flotilla) {
    assert!(world.app().slack.refused() >= 1, "no attempt reached Slack");
    assert!(world.app().slack.accepted().is_empty());
}

#[then(expr = "the notification is listed as {string}")]
async fn listed_as(world: &mut Flotilla, status: String) {
    let text = world.expected_text("User <id> created");
    world
        .app()
        .wait_for_messages(WAIT, |m| {
            m.iter()
                .any(|m| m["message"] == text.as_str() && m["status"] == status.as_str())
        })
        .await;
}

#[then(expr = "the notification is listed as {string} with the error recorded")]
async fn listed_with_error(world: &mut Flotilla, status: String) {
    let text = world.expected_text("User <id> created");
    world
        .app()
        .wait_for_messages(WAIT, |m| {
            m.iter().any(|m| {
                m["message"] == text.as_str()
                    && m["status"] == status.as_str()
                    && m["attempts"].as_i64() >= Some(1)
                    && m["last_error"].is_string()
            })
        })
        .await;
}

#[then(expr = "every service answers {string} with its time in milliseconds")]
async fn every_service_pongs(world: &mut Flotilla, pong: String) {
    let services = world.last().1["services"].as_object().expect("services");
    assert!(services.contains_key("users") && services.contains_key("notifications"));
    for (name, entry) in services {
        assert_eq!(entry["response"], pong.as_str(), "{name}");
        assert!(entry["time"].is_u64(), "{name}");
    }
}

#[given("the stack is running without a kv consumer, waiting 200 ms for batches")]
async fn stack_without_kv_consumer(world: &mut Flotilla) {
    let app = spawn_app_with(|args| {
        args.services.set("kv-no-consumer", "true");
        args.services.set("kv-batch-timeout-ms", "200");
    })
    .await;
    world.app = Some(app);
}

#[given("I am connected to the live feed")]
async fn connect_feed(world: &mut Flotilla) {
    world.feed = Some(world.app().websocket("/kv/ws").await);
}

#[when(expr = "I send the key {string} with the value {string} on a roundtrip")]
async fn send_roundtrip(world: &mut Flotilla, key: String, value: String) {
    let response = world
        .app()
        .post_json("/kv/roundtrip", &json!({ "key": key, "value": value }))
        .await;
    world.record(response).await;
}

#[then(expr = "{string} = {string} arrives on my websocket with my correlation id")]
async fn arrives(world: &mut Flotilla, key: String, value: String) {
    let id = world.last().1["correlation_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let feed = world.feed.as_mut().expect("connected to the feed");
    let frame = feed.wait_for(&id, WAIT).await;
    assert_eq!(
        (frame["key"].as_str(), frame["value"].as_str()),
        (Some(&*key), Some(&*value))
    );
}

#[then(expr = "the key {string} is stored with the value {string}")]
async fn stored(world: &mut Flotilla, key: String, value: String) {
    let pair: Value = world
        .app()
        .get(&format!("/kv/pairs/{key}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pair["value"], value.as_str());
}

#[given(expr = "I sent a batch of {int} items with the id {string}")]
#[when(expr = "I send a batch of {int} items with the id {string}")]
async fn send_batch(world: &mut Flotilla, size: u64, id: String) {
    let response = world
        .app()
        .post_json("/kv/batch", &json!({ "id": id, "size": size }))
        .await;
    world.record(response).await;
}

#[then(expr = "the batch is {string} with {int} items")]
async fn batch_is(world: &mut Flotilla, status: String, size: i64) {
    let body = &world.last().1;
    assert_eq!(
        (body["status"].as_str(), body["size"].as_i64()),
        (Some(&*status), Some(size))
    );
}

#[then(expr = "the stored batches list {string} once, with {int} items")]
async fn listed_once(world: &mut Flotilla, id: String, size: i64) {
    let list: Value = world.app().get("/kv/batches").await.json().await.unwrap();
    let matching: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["id"] == id.as_str())
        .collect();
    assert_eq!(matching.len(), 1, "{list}");
    assert_eq!(matching[0]["size"], size);
}

#[then(expr = "batch {string} holds {int} items")]
async fn holds(world: &mut Flotilla, id: String, size: usize) {
    let batch: Value = world
        .app()
        .get(&format!("/kv/batches/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(batch["items"].as_array().map(Vec::len), Some(size));
}

#[when(expr = "I sign up as {string} with email {string} and password {string}")]
async fn sign_up(world: &mut Flotilla, name: String, email: String, password: String) {
    let body = json!({ "email": email, "name": name, "password": password });
    let response = world.app().post_json("/auth/signup", &body).await;
    world.record(response).await;
}

#[given(expr = "an account {string} with password {string}")]
async fn account_exists(world: &mut Flotilla, email: String, password: String) {
    let body = json!({ "email": email, "name": "someone", "password": password });
    let response = world.app().post_json("/auth/signup", &body).await;
    assert_eq!(response.status(), 201);
}

#[then(expr = "a user profile exists for {string}")]
async fn profile_exists(world: &mut Flotilla, email: String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let users: Value = world.app().get("/users").await.json().await.unwrap();
        let found = users["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["email"] == email.as_str());
        if let Some(user) = found {
            world.user_id = user["id"].as_str().map(str::to_owned);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no profile for {email}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[when(expr = "I sign in as {string} with password {string}")]
async fn sign_in(world: &mut Flotilla, email: String, password: String) {
    sign_in_times(world, email, password, 1).await;
}

#[when(expr = "I sign in as {string} with password {string} {int} times")]
async fn sign_in_times(world: &mut Flotilla, email: String, password: String, times: usize) {
    for _ in 0..times {
        let response = world.app().sign_in(&email, &password, &[]).await;
        world.session = cookie(&response, "flotilla_session");
        world.last = Some((response.status().as_u16(), Value::Null));
    }
}

async fn signed_in_as(world: &Flotilla) -> Option<String> {
    let session = world.session.as_ref()?;
    let response = world
        .app()
        .client
        .get(format!("{}/auth/session", world.app().url))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    let me: Value = response.json().await.unwrap();
    me["email"].as_str().map(str::to_owned)
}

#[then(expr = "I am signed in as {string}")]
async fn am_signed_in(world: &mut Flotilla, email: String) {
    assert_eq!(signed_in_as(world).await, Some(email));
}

#[then("I am not signed in")]
async fn not_signed_in(world: &mut Flotilla) {
    assert_eq!(signed_in_as(world).await, None);
}

#[given(expr = "{string} and {string} are signed in")]
async fn players_signed_in(world: &mut Flotilla, first: String, second: String) {
    for name in [first, second] {
        let token = world.app().player(&name).await;
        world.players.insert(name, token);
    }
}

#[when(expr = "{string} plays six accepted guesses that are not the word")]
async fn six_misses(world: &mut Flotilla, player: String) {
    let words = world.app().motus_words(world.token(&player)).await;
    for word in words.iter().take(6) {
        let body = json!({ "guess": word });
        let app = world.app();
        let response = app
            .post_as(world.token(&player), "/motus/today/guesses", &body)
            .await;
        assert_eq!(response.status(), 200, "{word}");
        let game: Value = response.json().await.unwrap();
        if game["status"] != "playing" {
            break;
        }
    }
}

#[when(expr = "{string} guesses {string}")]
async fn guesses(world: &mut Flotilla, player: String, word: String) {
    let body = json!({ "guess": word });
    let response = world
        .app()
        .post_as(world.token(&player), "/motus/today/guesses", &body)
        .await;
    world.record(response).await;
}

#[when(expr = "{string} guesses the revealed word")]
async fn guesses_the_word(world: &mut Flotilla, player: String) {
    let word = world.answer.clone().expect("a game revealed the word");
    guesses(world, player, word).await;
}

#[then(expr = "the game of {string} is over and the word is revealed")]
async fn game_over(world: &mut Flotilla, player: String) {
    let game = world.game(&player).await;
    assert_ne!(game["status"], "playing", "{game}");
    world.answer = Some(
        game["answer"]
            .as_str()
            .expect("the word, once over")
            .to_owned(),
    );
}

#[then(expr = "the game of {string} is won in {int} attempt(s)")]
async fn game_won(world: &mut Flotilla, player: String, attempts: usize) {
    let game = world.game(&player).await;
    assert_eq!(game["status"], "won", "{game}");
    assert_eq!(game["attempts"].as_array().unwrap().len(), attempts);
}

#[then(expr = "{string} has made no attempt")]
async fn no_attempt(world: &mut Flotilla, player: String) {
    assert_eq!(world.game(&player).await["attempts"], json!([]));
}

#[then(expr = "the day's leaderboard lists {string} then {string}")]
async fn leaderboard(world: &mut Flotilla, first: String, second: String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let board: Value = world
            .app()
            .get("/score/leaderboard?period=day")
            .await
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = board["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str())
            .collect();
        if names.len() == 2 {
            assert_eq!(names, [first.as_str(), second.as_str()]);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leaderboard: {board}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    // A step that matches no definition fails the run instead of being
    // skipped in silence.
    // Each scenario starts a stack; on PostgreSQL, a few at a time stay
    // within the server's connections (100 by default).
    let at_once = if flotilla_tests::scale_out().is_some() {
        4
    } else {
        16
    };
    // `cargo test -- --include-ignored` passes the flag to every test
    // binary; this one has no ignored scenario, and takes it as a no-op.
    let args = std::env::args().filter(|a| a != "--include-ignored" && a != "--ignored");
    let cli = cucumber::cli::Parser::parse_from(args);
    Flotilla::cucumber()
        .with_cli::<cucumber::cli::Empty>(cli)
        .max_concurrent_scenarios(at_once)
        .fail_on_skipped()
        .run_and_exit(concat!(env!("CARGO_MANIFEST_DIR"), "/features"))
        .await;
}
