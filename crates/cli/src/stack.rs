//! `flotilla up`: the gateway and every service in one process, each service
//! instance on its own loopback port with its own SQLite database, joined by
//! the in-process bus.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flotilla_gateway::{Config, Gateway, service_routes};
use flotilla_kit::runtime;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::args::Backends;
use crate::{SERVICES, UpArgs};

/// How long in-flight work may take to finish once shutdown begins.
pub const GRACE: Duration = Duration::from_secs(10);

/// A running stack.
pub struct Stack {
    /// Where the gateway listens.
    pub gateway: SocketAddr,
    /// Each service with the addresses of its instances.
    pub services: Vec<(&'static str, Vec<SocketAddr>)>,
    /// Time from the call to `start` until every instance was listening.
    pub started_in: Duration,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Stack {
    /// Starts everything; returns once every server is listening.
    pub async fn start(args: &UpArgs, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let started = Instant::now();
        let gateway_listener = bind(SocketAddr::new(args.host, args.port)).await?;
        let args = &with_public_url(args, gateway_listener.local_addr()?);
        if args.processes {
            return Self::start_processes(args, gateway_listener, shutdown, started).await;
        }
        let storage = args.backends.storage()?;

        let bus = args.backends.bus().await?;
        let mut tasks = JoinSet::new();
        let mut prepared = Vec::new();
        for (entry, service) in crate::services(&args.services, &args.backends.shared())? {
            let service =
                runtime::prepare(entry.name, service, &storage, bus.clone(), shutdown.clone());
            prepared.push(service.await?);
        }
        let mut services = Vec::new();
        for service in &prepared {
            let mut addrs = Vec::new();
            for _ in 0..args.replicas {
                let listener = bind(SocketAddr::new([127, 0, 0, 1].into(), 0)).await?;
                addrs.push(service.start_instance(listener, &mut tasks).await?);
            }
            services.push((service.name(), addrs));
        }
        // Every consumer has subscribed: messages staged before a crash can go.
        for service in &prepared {
            service.start_relay(&mut tasks);
        }

        let gateway = gateway_listener.local_addr()?;
        let mut config = gateway_config(&args.backends);
        for (name, addrs) in &services {
            let urls = addrs.iter().map(|a| format!("http://{a}")).collect();
            config.routes.extend(service_routes(name, urls));
        }
        let gateway_app = Gateway::new(config, None).await?;
        tasks.spawn(gateway_app.serve(gateway_listener, shutdown.clone()));
        Ok(Self {
            gateway,
            services,
            started_in: started.elapsed(),
            shutdown,
            tasks,
        })
    }

    /// The gateway here, each service instance a supervised child process
    /// that registers with it.
    async fn start_processes(
        args: &UpArgs,
        gateway_listener: TcpListener,
        shutdown: CancellationToken,
        started: Instant,
    ) -> anyhow::Result<Self> {
        if args.backends.bus.is_none() {
            anyhow::bail!("--processes needs a shared bus: --bus nats://… or amqp://…");
        }
        args.backends.storage()?;
        let gateway = gateway_listener.local_addr()?;
        let gateway_url = format!("http://127.0.0.1:{}", gateway.port());
        let gateway_app = Gateway::new(gateway_config(&args.backends), None).await?;
        let mut tasks = JoinSet::new();
        tasks.spawn(
            gateway_app
                .clone()
                .serve(gateway_listener, shutdown.clone()),
        );
        // Each service's settings are checked here, once, rather than by
        // every child process that would exit on them.
        crate::services(&args.services, &args.backends.shared())?;
        let names: Vec<&'static str> = SERVICES.iter().map(|e| e.name).collect();
        for entry in SERVICES {
            for _ in 0..args.replicas {
                let supervised = crate::supervise::supervise(
                    args.clone(),
                    entry,
                    gateway_url.clone(),
                    shutdown.clone(),
                );
                tasks.spawn(supervised);
            }
        }
        // Ready once every instance has registered.
        let deadline = Instant::now() + Duration::from_secs(60);
        while names
            .iter()
            .any(|name| gateway_app.registered(name) < usize::from(args.replicas))
        {
            if Instant::now() > deadline {
                shutdown.cancel();
                anyhow::bail!("the service processes did not all register within a minute");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            gateway,
            services: names.into_iter().map(|n| (n, Vec::new())).collect(),
            started_in: started.elapsed(),
            shutdown,
            tasks,
        })
    }

    /// The table `flotilla up` prints.
    pub fn table(&self) -> String {
        let base = format!("http://{}", self.gateway);
        let mut out = format!("{:<15} {}\n", "SERVICE", "URL");
        out += &format!("{:<15} {base}   (health: {base}/health)\n", "gateway");
        for (name, addrs) in &self.services {
            let instances: Vec<String> = if addrs.is_empty() {
                vec!["separate processes".to_owned()]
            } else {
                addrs.iter().map(|a| format!("http://{a}")).collect()
            };
            out += &format!(
                "{name:<15} {base}/{name}   (docs: {base}/{name}/docs/; instances: {})\n",
                instances.join(", ")
            );
        }
        out
    }

    /// Stops everything and waits for in-flight work, at most [`GRACE`].
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some work did not finish within the grace period");
            self.tasks.abort_all();
        }
    }
}

/// The gateway's settings from the stack's: Redis for rate limits, access
/// tokens verified with the auth service's keys, and each service's routes
/// as it asks (`Configure::ACCESS`, `Deploy::sticky`), refusing bodies over
/// the kit's limit before they reach an instance.
pub fn gateway_config(backends: &Backends) -> Config {
    use flotilla_gateway::config::{AuthMode, AuthSettings, Balance, ServiceDefaults};
    let mut config = Config::default();
    config.gateway.redis_url = backends.redis.clone();
    config.gateway.auth = Some(AuthSettings::new(
        format!("{}/auth", backends.shared().gateway_url()),
        "/auth/jwks.json".to_owned(),
    ));
    config.gateway.services = SERVICES
        .iter()
        .map(|entry| {
            let defaults = ServiceDefaults {
                auth: match entry.access.auth {
                    flotilla_kit::Auth::None => AuthMode::None,
                    flotilla_kit::Auth::Optional => AuthMode::Optional,
                    flotilla_kit::Auth::Required => AuthMode::Required,
                },
                scopes: entry.access.scopes.iter().map(|&s| s.to_owned()).collect(),
                balance: entry.deploy.sticky.then_some(Balance::Sticky),
                body_limit: Some(flotilla_kit::http::BODY_LIMIT as u64),
            };
            (entry.name.to_owned(), defaults)
        })
        .collect();
    config
}

/// `args` with `--public-url` defaulted to the gateway's own address.
fn with_public_url(args: &UpArgs, gateway: SocketAddr) -> UpArgs {
    let mut args = args.clone();
    if args.backends.public_url.is_none() {
        let mut reachable = gateway;
        if gateway.ip().is_unspecified() {
            reachable.set_ip([127, 0, 0, 1].into());
        }
        args.backends.public_url = Some(format!("http://{reachable}"));
    }
    args
}

/// Binds `addr`, with an error that says what to do when it is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "port {} is already in use on {}; stop what holds it or pick another with --port",
                addr.port(),
                addr.ip()
            )
        } else {
            anyhow::anyhow!("cannot listen on {addr}: {error}")
        }
    })
}
