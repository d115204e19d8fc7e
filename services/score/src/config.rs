//! Settings of the score service: none yet.

/// The score service has no settings of its own.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "score")]
pub struct Config {}
