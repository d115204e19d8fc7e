//! Configuration of the notifications service.

/// Where and how persistently messages are delivered.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "notifications")]
pub struct Config {
    /// Slack incoming-webhook URL. Without one, messages are stored, not sent.
    /// A secret: it is handed to child processes through the environment.
    #[arg(
        long = "slack-webhook-url",
        env = "FLOTILLA_SLACK_WEBHOOK_URL",
        hide_env_values = true
    )]
    pub webhook_url: Option<String>,
    /// Delivery attempts before a message is marked failed.
    #[arg(
        long = "slack-max-attempts",
        env = "FLOTILLA_SLACK_MAX_ATTEMPTS",
        default_value_t = 10
    )]
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; it doubles with each
    /// attempt, up to five minutes.
    #[arg(
        long = "slack-retry-base-ms",
        env = "FLOTILLA_SLACK_RETRY_BASE_MS",
        default_value_t = 1000
    )]
    pub retry_base_ms: u64,
    /// How long one webhook call may take, in milliseconds. (A message whose
    /// sender died mid-call is taken up again within two seconds, whatever
    /// this is.)
    #[arg(
        long = "slack-timeout-ms",
        env = "FLOTILLA_SLACK_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub timeout_ms: u64,
}
