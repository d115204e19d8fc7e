//! Settings of the kv service.

/// How the kv service stores and waits.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "kv")]
pub struct Config {
    /// How long `POST /kv/batch` waits for the batch's reply, in
    /// milliseconds, before answering 504.
    #[arg(
        long = "kv-batch-timeout-ms",
        env = "FLOTILLA_KV_BATCH_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub batch_timeout_ms: u64,
    /// Serve the API only: leave `kv.event` and `kv.batch` to the
    /// consumers of other instances.
    #[arg(long = "kv-no-consumer", env = "FLOTILLA_KV_NO_CONSUMER")]
    pub no_consumer: bool,
    /// Prefix of the Redis keys, when pairs and batches live in Redis
    /// (`--redis`).
    #[arg(
        long = "kv-redis-prefix",
        env = "FLOTILLA_KV_REDIS_PREFIX",
        default_value = "flotilla:kv:"
    )]
    pub redis_prefix: String,
}
