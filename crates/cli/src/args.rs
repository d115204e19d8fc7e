//! Command-line arguments; each can also come from a `FLOTILLA_*` variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use flotilla_bus::Bus;
use flotilla_bus::nats::{NatsBus, NatsConfig};
use flotilla_kit::db::Storage;
use flotilla_kit::telemetry::LogFormat;

use crate::registry::ServiceSettings;

#[derive(Debug, Parser)]
#[command(
    name = "flotilla",
    version,
    about = "A microservice stack in one binary"
)]
pub struct Cli {
    /// Log format; logs go to stderr.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        env = "FLOTILLA_LOG_FORMAT",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the gateway and every service in this process.
    Up(UpArgs),
    /// Runs one service, or the gateway, alone.
    Serve(ServeArgs),
    /// Writes the Compose and Kubernetes files for every service.
    Deploy(DeployArgs),
    /// A service's own commands (`flotilla auth grant-role …`).
    #[command(flatten)]
    Service(crate::admin::ServiceCommand),
}

/// Where the services keep their data and exchange their events.
#[derive(Debug, Clone, Args)]
pub struct Backends {
    /// Directory of the services' SQLite databases.
    #[arg(long, default_value = "./data", env = "FLOTILLA_DATA")]
    pub data: PathBuf,
    /// PostgreSQL URL (`postgres://…`): each service gets its own schema
    /// there instead of a SQLite file under --data.
    #[arg(long, value_name = "URL", env = "FLOTILLA_DB")]
    pub db: Option<String>,
    /// Prefix of the services' schema names on PostgreSQL.
    #[arg(long, default_value = "", env = "FLOTILLA_DB_SCHEMA_PREFIX")]
    pub db_schema_prefix: String,
    /// The bus: `nats://…` (JetStream) or `amqp://…` (RabbitMQ); the
    /// in-process bus by default.
    #[arg(long, value_name = "URL", env = "FLOTILLA_BUS")]
    pub bus: Option<String>,
    /// NATS stream name (upper-cased) and subject prefix; RabbitMQ exchange
    /// and queue prefix.
    #[arg(long, default_value = "flotilla", env = "FLOTILLA_BUS_NAMESPACE")]
    pub bus_namespace: String,
    /// How long a delivery may go unacknowledged before the bus redelivers
    /// it (to another instance if its consumer died), in milliseconds.
    #[arg(long, default_value_t = 30_000, env = "FLOTILLA_BUS_ACK_WAIT_MS")]
    pub bus_ack_wait_ms: u64,
    /// NATS: how long the stream keeps a message, in hours, consumed or not
    /// (a stream without a limit grows for ever with subjects only listened to).
    #[arg(long, default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..), env = "FLOTILLA_BUS_RETENTION_HOURS")]
    pub bus_retention_hours: u64,
    /// Redis URL (`redis://…`): the gateway's rate-limit buckets, shared
    /// with every other gateway using the same Redis.
    #[arg(long, value_name = "URL", env = "FLOTILLA_REDIS")]
    pub redis: Option<String>,
    /// The URL clients reach the gateway at (`https://flotilla.example.com`):
    /// the base of the auth service's issuer and redirect URIs. `up`
    /// defaults it to its own gateway's address.
    #[arg(long, value_name = "URL", env = "FLOTILLA_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl Backends {
    /// SQLite files under `data` and the in-process bus.
    pub fn local(data: PathBuf) -> Self {
        Self {
            data,
            db: None,
            db_schema_prefix: String::new(),
            bus: None,
            bus_namespace: "flotilla".to_owned(),
            bus_ack_wait_ms: 30_000,
            bus_retention_hours: 168,
            redis: None,
            public_url: None,
        }
    }

    /// What services may use of these settings.
    pub fn shared(&self) -> flotilla_kit::Shared {
        flotilla_kit::Shared {
            redis: self.redis.clone(),
            public_url: self
                .public_url
                .as_deref()
                .map(|url| url.trim_end_matches('/').to_owned()),
        }
    }

    /// The storage that `--db`, `--data` and `--db-schema-prefix` describe.
    pub fn storage(&self) -> anyhow::Result<Storage> {
        let storage = Storage::new(
            self.db.as_deref(),
            self.data.clone(),
            &self.db_schema_prefix,
        )
        .map_err(anyhow::Error::msg)?;
        if let Storage::Sqlite(dir) = &storage {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create the data directory {}: {e}", dir.display())
            })?;
        }
        Ok(storage)
    }

    /// The bus that `--bus` names: NATS JetStream, RabbitMQ, or in-process.
    pub async fn bus(&self) -> anyhow::Result<Arc<dyn Bus>> {
        let ack_wait = Duration::from_millis(self.bus_ack_wait_ms);
        let Some(url) = self.bus.as_deref() else {
            return Ok(Arc::new(flotilla_bus::MemoryBus::new(ack_wait)));
        };
        let namespace = &self.bus_namespace;
        if namespace.is_empty()
            || !namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            anyhow::bail!("--bus-namespace {namespace}: letters, digits and _ only");
        }
        if url.starts_with("amqp://") || url.starts_with("amqps://") {
            let bus = flotilla_bus::amqp::AmqpBus::connect(url, namespace)
                .await
                .map_err(|e| anyhow::anyhow!("cannot use the RabbitMQ bus: {e}"))?;
            return Ok(Arc::new(bus));
        }
        if !url.starts_with("nats://") {
            anyhow::bail!(
                "--bus: expected a nats:// or amqp:// URL (the in-process bus is the default)"
            );
        }
        let config = NatsConfig {
            stream: namespace.to_uppercase(),
            prefix: namespace.to_owned(),
            ack_wait,
            max_age: Duration::from_secs(self.bus_retention_hours * 3600),
            ..NatsConfig::default()
        };
        let bus = NatsBus::connect(url, config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot use the NATS bus: {e}"))?;
        Ok(Arc::new(bus))
    }
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Port of the gateway; 0 picks a free one.
    #[arg(long, default_value_t = 8080, env = "FLOTILLA_PORT")]
    pub port: u16,
    /// Address the gateway listens on. Services always listen on loopback.
    #[arg(long, default_value = "127.0.0.1", env = "FLOTILLA_HOST")]
    pub host: IpAddr,
    #[command(flatten)]
    pub backends: Backends,
    /// Instances of each service.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16), env = "FLOTILLA_REPLICAS")]
    pub replicas: u16,
    /// Run every service instance as its own process (`flotilla serve`),
    /// restarted when it dies; needs a shared bus (--bus).
    #[arg(long, env = "FLOTILLA_PROCESSES")]
    pub processes: bool,
    #[command(flatten)]
    pub services: ServiceSettings,
}

impl UpArgs {
    /// Defaults for a stack on a free port over `data`, as tests start it.
    pub fn ephemeral(data: PathBuf) -> Self {
        Self {
            port: 0,
            host: [127, 0, 0, 1].into(),
            backends: Backends::local(data),
            replicas: 1,
            processes: false,
            services: ServiceSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// `gateway`, or the name of a service.
    #[arg(value_parser = crate::registry::serve_targets())]
    pub service: String,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0, env = "FLOTILLA_PORT")]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "FLOTILLA_HOST")]
    pub host: IpAddr,
    #[command(flatten)]
    pub backends: Backends,
    /// For the gateway: a service and one of its instances, as
    /// `users=http://127.0.0.1:9001`; repeat for more.
    #[arg(long = "upstream", value_name = "SERVICE=URL")]
    pub upstreams: Vec<String>,
    /// For a service: the gateway to register with and heartbeat to.
    #[arg(long, value_name = "URL", env = "FLOTILLA_GATEWAY_URL")]
    pub gateway: Option<String>,
    /// For a service: the URL the gateway reaches it at (default: http://HOST:PORT).
    #[arg(long, value_name = "URL", env = "FLOTILLA_ADVERTISE_URL")]
    pub advertise: Option<String>,
    /// For the gateway: a TOML file of routes, watched and reloaded.
    #[arg(long, value_name = "FILE", env = "FLOTILLA_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Run by `flotilla up --processes`: stop when standard input closes,
    /// which it does when that process ends, however it ends.
    #[arg(long, hide = true)]
    pub supervised: bool,
    /// Worker threads; 1 runs everything on one thread. Default: one per core.
    #[arg(long, env = "FLOTILLA_THREADS")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub services: ServiceSettings,
}

/// What `flotilla deploy` writes, and where.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Directory to write the files into (created if missing); files of the
    /// same names are replaced.
    #[arg(long, value_name = "DIR", default_value = "deploy")]
    pub out: PathBuf,
    /// Which files: Docker Compose, Kubernetes, or both.
    #[arg(long, value_enum, default_value = "all")]
    pub target: crate::deploy::Target,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
