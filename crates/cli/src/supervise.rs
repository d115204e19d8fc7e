//! `flotilla up --processes`: every service instance as its own
//! `flotilla serve` process, registered with the gateway of this process,
//! restarted with back-off when it dies.

use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::UpArgs;
use crate::stack::GRACE;

/// Longest wait before a crashed instance is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The command line and environment of one instance of `service`. Secrets
/// (database and bus URLs, the webhook) go through the environment, not
/// the command line that `ps` shows.
fn command(args: &UpArgs, service: &str, gateway: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "serve",
            service,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--gateway",
            gateway,
        ])
        .arg("--data")
        .arg(&args.backends.data)
        .args(["--db-schema-prefix", &args.backends.db_schema_prefix])
        .args(["--bus-namespace", &args.backends.bus_namespace])
        .args([
            "--bus-ack-wait-ms",
            &args.backends.bus_ack_wait_ms.to_string(),
        ])
        .args([
            "--bus-retention-hours",
            &args.backends.bus_retention_hours.to_string(),
        ])
        .args([
            "--slack-max-attempts",
            &args.services.notifications.max_attempts.to_string(),
        ])
        .args([
            "--slack-retry-base-ms",
            &args.services.notifications.retry_base_ms.to_string(),
        ])
        .args([
            "--slack-timeout-ms",
            &args.services.notifications.timeout_ms.to_string(),
        ])
        .args([
            "--kv-batch-timeout-ms",
            &args.services.kv.batch_timeout_ms.to_string(),
        ])
        .args(["--kv-redis-prefix", &args.services.kv.redis_prefix])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, value) in [
        ("FLOTILLA_DB", &args.backends.db),
        ("FLOTILLA_BUS", &args.backends.bus),
        ("FLOTILLA_REDIS", &args.backends.redis),
        (
            "FLOTILLA_SLACK_WEBHOOK_URL",
            &args.services.notifications.webhook_url,
        ),
    ] {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    Ok(command)
}

/// Keeps one instance of `service` running until `shutdown`, then stops it
/// with SIGTERM (SIGKILL after the grace period).
pub async fn supervise(
    args: UpArgs,
    service: &'static str,
    gateway: String,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let spawned = command(&args, service, &gateway).and_then(|mut c| Ok(c.spawn()?));
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(%service, %error, "cannot start an instance");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tokio::select! {
            status = child.wait() => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!(%service, status = ?status.ok(), ?backoff, "instance exited; restarting");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            () = shutdown.cancelled() => {
                if let Some(pid) = child.id() {
                    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
                }
                if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}
