//! Settings of the users service: none yet.

/// The users service has no settings of its own.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "users")]
pub struct Config {}
