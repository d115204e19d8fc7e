//! Settings of the auth service.

/// How long sessions last, how failed logins are limited, more clients,
/// and how often the signing key changes.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "auth")]
pub struct Config {
    /// How long a browser stays signed in, in hours.
    #[arg(
        long = "auth-session-hours",
        env = "FLOTILLA_AUTH_SESSION_HOURS",
        default_value_t = 12,
        value_parser = clap::value_parser!(u64).range(1..=24 * 90)
    )]
    pub session_hours: u64,
    /// Failed logins allowed per account, and per client address, within
    /// --auth-login-window-secs; more answer 429 until the window ends.
    #[arg(
        long = "auth-login-attempts",
        env = "FLOTILLA_AUTH_LOGIN_ATTEMPTS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub login_attempts: u32,
    /// The window in which failed logins are counted, in seconds.
    #[arg(
        long = "auth-login-window-secs",
        env = "FLOTILLA_AUTH_LOGIN_WINDOW_SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub login_window_secs: u64,
    /// A TOML file of more OpenID clients (`[[client]]` with `id`,
    /// `secret_sha256`, `redirect_uris`, `grants`, `scopes`), besides the
    /// web console and motus_app, which every stack has.
    #[arg(
        long = "auth-clients-file",
        env = "FLOTILLA_AUTH_CLIENTS_FILE",
        value_name = "FILE"
    )]
    pub clients_file: Option<std::path::PathBuf>,
    /// How often a new signing key is made, in days. The old one stays
    /// published until every token it signed has expired.
    #[arg(
        long = "auth-key-rotation-days",
        env = "FLOTILLA_AUTH_KEY_ROTATION_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub key_rotation_days: u64,
    /// How often each instance reads the signing keys again, in seconds: a
    /// new key is published within this, and signs after this and the
    /// JWKS's five minutes of caching.
    #[arg(
        long = "auth-key-reload-secs",
        env = "FLOTILLA_AUTH_KEY_RELOAD_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub key_reload_secs: u64,
}
