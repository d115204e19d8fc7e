//! Settings of the kv service.

/// How the kv service stores and waits.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "kv")]
pub struct Config {
    /// How long `POST /kv/batch` waits for the batch's reply, in
    /// milliseconds, before answering 504: under the gateway's 30 s, and
    /// enough for 100,000 items.
    #[arg(
        long = "kv-batch-timeout-ms",
        env = "FLOTILLA_KV_BATCH_TIMEOUT_MS",
        default_value_t = 25_000
    )]
    pub batch_timeout_ms: u64,
    /// The most items a batch may have (at most 100000); the OpenAPI
    /// document says so.
    #[arg(
        long = "kv-batch-max-items",
        env = "FLOTILLA_KV_BATCH_MAX_ITEMS",
        default_value_t = 100_000
    )]
    pub batch_max_items: u32,
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
