//! `flotilla up --processes`: every service instance as its own
//! `flotilla serve` process, registered with the gateway of this process,
//! restarted with back-off when it dies.

use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::stack::GRACE;
use crate::{Entry, UpArgs};

/// Longest wait before a crashed instance is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The command line and environment of one instance of `entry`: the
/// backends, then every setting of the service that was given, forwarded
/// generically. Secrets (database and bus URLs, secret settings) go through
/// the environment, not the command line that `ps` shows.
pub fn command(args: &UpArgs, entry: &Entry, gateway: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    let (settings, secrets) = args.services.forward(entry);
    command
        .args([
            "serve",
            entry.name,
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
        .args(settings)
        .envs(secrets)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, value) in [
        ("FLOTILLA_DB", &args.backends.db),
        ("FLOTILLA_BUS", &args.backends.bus),
        ("FLOTILLA_REDIS", &args.backends.redis),
    ] {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    Ok(command)
}

/// Keeps one instance of `entry` running until `shutdown`, then stops it
/// with SIGTERM (SIGKILL after the grace period).
pub async fn supervise(
    args: UpArgs,
    entry: &'static Entry,
    gateway: String,
    shutdown: CancellationToken,
) {
    let service = entry.name;
    let mut backoff = Duration::from_secs(1);
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let spawned = command(&args, entry, &gateway).and_then(|mut c| Ok(c.spawn()?));
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
