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

pub use args::{Cli, Command, ServeArgs, UpArgs};
pub use stack::Stack;

/// Every service flotilla runs, configured.
pub fn services(
    notifications: &flotilla_notifications::Config,
) -> anyhow::Result<Vec<Arc<dyn Service>>> {
    Ok(vec![
        Arc::new(flotilla_users::Users),
        Arc::new(flotilla_notifications::Notifications::new(
            notifications.clone(),
        )?),
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
