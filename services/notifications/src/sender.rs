//! Delivers pending messages to the Slack webhook, retrying failures with
//! back-off until the attempts are spent. State lives in the database, so a
//! restart resumes where the last run stopped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use sqlx::AnyPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::retry_delay;
use crate::store::{self, Claimed};

/// Messages sent concurrently at most.
const BATCH: i64 = 16;
/// Longest idle sleep between checks for due messages.
const IDLE: Duration = Duration::from_secs(5);
/// How long a claimed message is held without being renewed: how soon the
/// messages of a sender that died are sent by another (or after a restart).
const LEASE: Duration = Duration::from_secs(2);

pub struct Sender {
    pool: AnyPool,
    http: Client,
    webhook: ::http::Uri,
    config: Config,
    wake: Arc<Notify>,
}

/// The webhook client: HTTP/1.1 over TLS or plain TCP, pooled.
type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// The outcome of one attempt.
enum Outcome {
    Sent,
    Retry(String),
    Fatal(String),
}

impl Sender {
    pub fn new(pool: AnyPool, webhook: ::http::Uri, config: Config, wake: Arc<Notify>) -> Self {
        // HTTPS (Slack's webhooks) with the system's trusted roots, or plain HTTP.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map(|builder| builder.https_or_http().enable_http1().build());
        let https = match https {
            Ok(connector) => connector,
            Err(error) => {
                tracing::warn!(%error, "no trusted TLS roots found; only http:// webhooks will work");
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(
                        rustls::ClientConfig::builder_with_provider(Arc::new(
                            rustls::crypto::ring::default_provider(),
                        ))
                        .with_safe_default_protocol_versions()
                        .expect("ring supports the default versions")
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                    )
                    .https_or_http()
                    .enable_http1()
                    .build()
            }
        };
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Self {
            pool,
            http,
            webhook,
            config,
            wake,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let woken = self.wake.notified();
            let idle = match self.pass().await {
                Ok(true) => continue,
                Ok(false) => self.until_next_due().await,
                Err(error) => {
                    tracing::warn!(%error, "notification sender pass failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = woken => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// Sends one batch of due messages; true when there was any.
    ///
    /// A claimed message is leased for [`LEASE`], renewed while its call is
    /// under way, so that the messages of a sender that died are taken up
    /// again within [`LEASE`]. A sender that cannot renew its leases drops
    /// its calls before the leases end: two senders never send one message
    /// at once.
    async fn pass(&self) -> Result<bool, sqlx::Error> {
        let now = flotilla_bus::now_ms();
        let lease = LEASE.as_millis() as i64;
        let claimed = store::claim_due(&self.pool, now, now + lease, BATCH).await?;
        if claimed.is_empty() {
            return Ok(false);
        }
        let ids: Vec<String> = claimed.iter().map(|m| m.id.clone()).collect();
        let sends = claimed.into_iter().map(|message| async move {
            let outcome = self.send(&message).await;
            self.record(&message, outcome).await
        });
        let renewing = async {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                let now = flotilla_bus::now_ms();
                let renewed = tokio::time::timeout(
                    LEASE / 3,
                    store::renew(&self.pool, &ids, now, now + lease),
                )
                .await;
                match renewed {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return error,
                    Err(_) => return sqlx::Error::PoolTimedOut,
                }
            }
        };
        tokio::select! {
            results = futures::future::join_all(sends) => {
                for result in results {
                    result?;
                }
            }
            error = renewing => {
                tracing::warn!(%error, "cannot renew the leases of notifications being sent; dropping the calls");
                return Err(error);
            }
        }
        Ok(true)
    }

    async fn until_next_due(&self) -> Duration {
        match store::next_due(&self.pool).await {
            Ok(Some(due)) => {
                let wait = (due - flotilla_bus::now_ms()).max(0) as u64;
                Duration::from_millis(wait).min(IDLE)
            }
            _ => IDLE,
        }
    }

    async fn send(&self, message: &Claimed) -> Outcome {
        let body = serde_json::json!({ "channel": message.channel, "text": message.text });
        let request = ::http::Request::post(self.webhook.clone())
            .header(::http::header::CONTENT_TYPE, "application/json")
            .header("x-flotilla-message-id", &message.id)
            .body(Full::new(Bytes::from(body.to_string())));
        let Ok(request) = request else {
            return Outcome::Fatal("the message id cannot be sent as a header".to_owned());
        };
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let sent = tokio::time::timeout(timeout, async {
            let response = self.http.request(request).await?;
            let status = response.status();
            // Read the answer to the end, so the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        })
        .await;
        let sent = match sent {
            Ok(sent) => sent,
            Err(_) => return Outcome::Retry(format!("webhook did not answer within {timeout:?}")),
        };
        match sent {
            Ok(status) if status.is_success() => Outcome::Sent,
            Ok(status) => {
                let error = format!("webhook answered {status}");
                // Slack answers 4xx for a payload or URL it will never accept.
                if status.is_client_error() && status != 408 && status != 429 {
                    Outcome::Fatal(error)
                } else {
                    Outcome::Retry(error)
                }
            }
            Err(error) => Outcome::Retry(format!("webhook unreachable: {}", chain(&error))),
        }
    }

    async fn record(&self, message: &Claimed, outcome: Outcome) -> Result<(), sqlx::Error> {
        let attempts = message.attempts as u32 + 1;
        match outcome {
            Outcome::Sent => store::mark_sent(&self.pool, &message.id).await,
            Outcome::Retry(error) if attempts < self.config.max_attempts => {
                let delay = retry_delay(Duration::from_millis(self.config.retry_base_ms), attempts);
                tracing::warn!(id = %message.id, attempts, %error, ?delay, "notification not delivered; will retry");
                let at = flotilla_bus::now_ms() + delay.as_millis() as i64;
                store::mark_attempt_failed(&self.pool, &message.id, &error, Some(at)).await
            }
            Outcome::Retry(error) | Outcome::Fatal(error) => {
                tracing::error!(id = %message.id, attempts, %error, "notification failed");
                store::mark_attempt_failed(&self.pool, &message.id, &error, None).await
            }
        }
    }
}

/// An error with its causes, `outer: inner: innermost`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
