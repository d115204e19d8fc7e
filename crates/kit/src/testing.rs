//! A harness for a service's own tests: ONE service started on port 0 over a
//! temporary SQLite file and the in-process bus, with what it publishes in
//! view and a way to hand its consumers deliveries. With
//! `FLOTILLA_TEST_BACKEND=scale-out…` and `FLOTILLA_TEST_POSTGRES_URL` set,
//! its database is a schema of its own in that PostgreSQL instead.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::consumer::DeadLetter;
use flotilla_bus::outbox::Relay;
use flotilla_bus::{Bus, MemoryBus, Message, Subscription};
use flotilla_contracts::Event;
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runtime::{self, Prepared};
use crate::{Configure, Shared, db};

/// How long [`TestService::published`] waits for a message.
const WAIT: Duration = Duration::from_secs(5);

/// A running service, stopped when dropped.
pub struct TestService {
    /// The service's base URL, e.g. `http://127.0.0.1:41231`.
    pub url: String,
    pub client: reqwest::Client,
    prepared: Prepared,
    bus: MemoryBus,
    /// Everything published on the bus, in order, as the service's relay
    /// publishes it.
    published: Subscription,
    /// Messages seen by [`TestService::published`] but not asked for yet.
    unclaimed: VecDeque<Message>,
    /// Ids of what the test delivered itself, left out of `published`.
    delivered: Vec<String>,
    shutdown: CancellationToken,
    _tasks: JoinSet<()>,
    _data: TempDir,
}

impl TestService {
    /// Starts `S` with `args` as its settings would be given on the command
    /// line (`["--kv-batch-timeout-ms", "300"]`).
    pub async fn start<S: Configure>(args: &[&str]) -> Self {
        Self::start_with::<S>(args, Shared::default()).await
    }

    /// Starts `S` with `args` and the stack's `shared` settings.
    pub async fn start_with<S: Configure>(args: &[&str], shared: Shared) -> Self {
        let config = parse::<S>(args).unwrap_or_else(|e| panic!("{} settings: {e}", S::NAME));
        let service = S::configure(config, &shared).expect("the service configures");
        let data = tempfile::tempdir().expect("temporary directory");
        let storage = storage(&data);
        let bus = MemoryBus::new(Duration::from_secs(30));
        let published = bus.listen(">").await.expect("the in-process bus listens");
        let shutdown = CancellationToken::new();
        let prepared = runtime::prepare(
            S::NAME,
            Arc::new(service),
            &storage,
            Arc::new(bus.clone()),
            shutdown.clone(),
        )
        .await
        .expect("the service prepares");
        let mut tasks = JoinSet::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = prepared
            .start_instance(listener, &mut tasks)
            .await
            .expect("the service starts");
        // A relay that reads the outbox only when woken (or hourly): an event
        // staged without waking it is not seen within `WAIT`, and a test
        // fails rather than being slow.
        let ctx = prepared.context();
        let relay = Relay::new(ctx.db.clone(), ctx.bus.clone(), ctx.outbox.clone())
            .poll(Duration::from_secs(3600));
        tasks.spawn(relay.run(shutdown.clone()));
        Self {
            url: format!("http://{addr}"),
            client: reqwest::Client::new(),
            prepared,
            bus,
            published,
            unclaimed: VecDeque::new(),
            delivered: Vec::new(),
            shutdown,
            _tasks: tasks,
            _data: data,
        }
    }

    /// The URL of `path` on the service.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.at(path))
            .send()
            .await
            .expect("the service answers")
    }

    /// `POST path` with a JSON `body`.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        let request = self.client.post(self.at(path)).json(body);
        request.send().await.expect("the service answers")
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.at(path))
            .send()
            .await
            .expect("the service answers")
    }

    /// The service's database.
    pub fn db(&self) -> &sqlx::AnyPool {
        &self.prepared.context().db
    }

    /// The next event the service published on `E`'s subject, decoded;
    /// panics after five seconds without one.
    pub async fn published<E: Event + DeserializeOwned>(&mut self) -> E {
        let message = self.published_on(E::SUBJECT).await;
        crate::consume::decode::<E>(&message)
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", E::SUBJECT))
    }

    /// The payload of the next message the service published on `subject`,
    /// as JSON.
    pub async fn published_json(&mut self, subject: &str) -> serde_json::Value {
        let message = self.published_on(subject).await;
        serde_json::from_slice(&message.payload)
            .unwrap_or_else(|e| panic!("{subject} is not JSON: {e}"))
    }

    /// The next message the service published on `subject`.
    pub async fn published_on(&mut self, subject: &str) -> Message {
        if let Some(at) = self.unclaimed.iter().position(|m| m.subject == subject) {
            return self.unclaimed.remove(at).expect("found");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.published.next()).await;
            let Ok(Some(delivery)) = next else {
                panic!("nothing published on {subject} within {WAIT:?}");
            };
            let message = delivery.message;
            if self.delivered.contains(&message.id) {
                continue;
            }
            if message.subject == subject {
                return message;
            }
            self.unclaimed.push_back(message);
        }
    }

    /// Whether the service published anything on `subject` within `wait`
    /// (what it published on other subjects stays to be claimed).
    pub async fn publishes_on(&mut self, subject: &str, wait: Duration) -> bool {
        if self.unclaimed.iter().any(|m| m.subject == subject) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(delivery)) =
            tokio::time::timeout_at(deadline, self.published.next()).await
        {
            let message = delivery.message;
            if self.delivered.contains(&message.id) {
                continue;
            }
            let found = message.subject == subject;
            self.unclaimed.push_back(message);
            if found {
                return true;
            }
        }
        false
    }

    /// Hands `event` to the service's consumers as the bus would, and
    /// returns once they settled it (applied or dead-lettered).
    pub async fn deliver<E: Event>(&mut self, event: &E) -> String {
        self.deliver_message(crate::tx::message(event)).await
    }

    /// Hands the service's consumers a message on `subject` with the schema
    /// header `schema` and `payload`, as another service would publish it.
    pub async fn deliver_json(
        &mut self,
        subject: &str,
        schema: &str,
        payload: &serde_json::Value,
    ) -> String {
        let message = Message::new(subject, serde_json::to_vec(payload).expect("JSON"))
            .with_header(flotilla_contracts::SCHEMA_HEADER, schema);
        self.deliver_message(message).await
    }

    /// Hands a raw `message` to the service's consumers; returns its id once
    /// they settled it.
    pub async fn deliver_message(&mut self, message: Message) -> String {
        let id = message.id.clone();
        self.delivered.push(id.clone());
        tokio::time::timeout(WAIT, self.bus.publish(message))
            .await
            .expect("the consumers settle the delivery in time")
            .expect("the in-process bus accepts it");
        id
    }

    /// Why the service's consumers gave up on the message `id`; panics if
    /// they did not.
    pub async fn dead_letter_reason(&self, id: &str) -> String {
        let dead = self.dead_letters().await;
        let letter = dead.into_iter().find(|d| d.message_id == id);
        letter
            .unwrap_or_else(|| panic!("message {id} was not dead-lettered"))
            .error
    }

    /// The messages the service's consumers gave up on, newest first.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        flotilla_bus::consumer::dead_letters(self.db())
            .await
            .expect("dead letters are readable")
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A SQLite file in `data`, or a fresh schema on the PostgreSQL of the
/// scale-out test run.
fn storage(data: &TempDir) -> db::Storage {
    let scale_out =
        std::env::var("FLOTILLA_TEST_BACKEND").is_ok_and(|b| b.starts_with("scale-out"));
    match std::env::var("FLOTILLA_TEST_POSTGRES_URL") {
        Ok(url) if scale_out => {
            let tag = uuid::Uuid::now_v7().simple().to_string();
            let prefix = format!("t{}_", &tag[tag.len() - 12..]);
            db::Storage::new(Some(&url), data.path().to_owned(), &prefix)
                .expect("FLOTILLA_TEST_POSTGRES_URL is a postgres:// URL")
        }
        _ => db::Storage::Sqlite(data.path().to_owned()),
    }
}

/// Parses `args` as `S`'s settings.
pub fn parse<S: Configure>(args: &[&str]) -> Result<S::Config, clap::Error> {
    use clap::{Args, FromArgMatches};
    let command = S::Config::augment_args(clap::Command::new(S::NAME).no_binary_name(true));
    S::Config::from_arg_matches(&command.try_get_matches_from(args)?)
}
