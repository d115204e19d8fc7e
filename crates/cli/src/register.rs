//! Self-registration of a service instance with a gateway: register, renew
//! well within the TTL, deregister on shutdown.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The registration TTL asked for; renewed every third of it.
const TTL: Duration = Duration::from_secs(10);

/// Keeps `service` at `url` registered with the gateway at `gateway` until
/// `shutdown`, then deregisters it. An unreachable gateway is retried.
pub async fn heartbeat(gateway: String, service: String, url: String, shutdown: CancellationToken) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client builds");
    let endpoint = format!("{gateway}/_flotilla/registry/instances");
    let body = json!({ "service": service, "url": url, "ttl_ms": TTL.as_millis() as u64 });
    let mut id = None;
    loop {
        match client.post(&endpoint).json(&body).send().await {
            Ok(response) if response.status().is_success() => {
                if id.is_none() {
                    tracing::info!(%gateway, %service, %url, "registered with the gateway");
                }
                id = response
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned))
                    .or(id);
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), %gateway, "the gateway refused the registration")
            }
            Err(error) => tracing::warn!(%error, %gateway, "cannot reach the gateway; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(TTL / 3) => {}
        }
    }
    if let Some(id) = id {
        let _ = client.delete(format!("{endpoint}/{id}")).send().await;
    }
}
