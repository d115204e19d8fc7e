//! The `flotilla` command: the composition root that puts the gateway and
//! the services together, in one process ([`stack`]) or one at a time
//! ([`serve`]).

pub mod args;
pub mod register;
pub mod serve;
pub mod stack;
pub mod supervise;

use std::sync::Arc;

use flotilla_kit::Service;

pub use args::{Cli, Command, ServeArgs, ServiceConfig, UpArgs};
pub use stack::Stack;

/// Every service flotilla runs, configured.
pub fn services(
    config: &ServiceConfig,
    redis: Option<&str>,
) -> anyhow::Result<Vec<Arc<dyn Service>>> {
    Ok(vec![
        Arc::new(flotilla_users::Users),
        Arc::new(flotilla_notifications::Notifications::new(
            config.notifications.clone(),
        )?),
        Arc::new(flotilla_kv::Kv::new(
            config.kv.clone(),
            redis.map(str::to_owned),
        )),
    ])
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
