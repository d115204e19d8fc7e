//! The `flotilla` command: the composition root that puts the gateway and
//! the services together, in one process ([`stack`]) or one at a time
//! ([`serve`]).

pub mod admin;
pub mod args;
pub mod deploy;
pub mod register;
pub mod registry;
pub mod serve;
pub mod stack;
pub mod supervise;

use std::sync::Arc;

use flotilla_kit::Service;

pub use args::{Cli, Command, ServeArgs, UpArgs};
pub use registry::{Entry, SERVICES, ServiceSettings};
pub use stack::Stack;

/// Every service flotilla runs, built from its settings.
pub fn services(
    settings: &ServiceSettings,
    shared: &flotilla_kit::Shared,
) -> anyhow::Result<Vec<(&'static Entry, Arc<dyn Service>)>> {
    registry::SERVICES
        .iter()
        .map(|entry| Ok((entry, entry.build(settings, shared)?)))
        .collect()
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
