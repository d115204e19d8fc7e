//! The Docker Compose target: `compose.yaml`, the gateway's routes
//! (`gateway.toml`) and Prometheus' scrape configuration.

use super::{File, comment, gateway_config, list, redis_users, secrets};
use crate::registry::Entry;

/// `compose.yaml`, `gateway.toml` and `prometheus/prometheus.yml`.
pub(super) fn files(services: &[Entry]) -> Vec<File> {
    vec![
        File::new("compose.yaml", compose(services)),
        File::new("gateway.toml", gateway(services)),
        File::new("prometheus/prometheus.yml", prometheus(services)),
    ]
}

/// `compose.yaml`: the backends, every service, the gateway and Prometheus.
fn compose(services: &[Entry]) -> String {
    let redis = redis_users(services);
    let mut out = header(&redis);
    out.push_str(ANCHORS);
    out.push_str("services:\n");
    out.push_str(POSTGRES_AND_NATS);
    if !redis.is_empty() {
        let users = if redis.len() == services.len() {
            "Used by every service.".to_owned()
        } else {
            format!("Used by {} only (see below).", list(&redis))
        };
        out.push_str(&format!("\n  redis:\n{}{REDIS}", comment(4, &users)));
    }
    for entry in services {
        out.push_str(&service(entry));
    }
    out.push_str(&gateway_service(services));
    out.push_str(PROMETHEUS_AND_CONFIGS);
    out.push_str("\nvolumes:\n  postgres-data:\n  nats-data:\n");
    if !redis.is_empty() {
        out.push_str("  redis-data:\n");
    }
    out
}

/// The comment at the top of `compose.yaml`.
fn header(redis: &[&str]) -> String {
    let (with_redis, backends) = match redis {
        [] => (String::new(), "PostgreSQL and NATS"),
        _ => (
            format!(" (and Redis for {})", list(redis)),
            "PostgreSQL, NATS and Redis",
        ),
    };
    let what = format!(
        "The scaled-out stack on one machine: every service in processes of its own, \
         on PostgreSQL and NATS JetStream{with_redis}, behind the gateway, scraped by \
         Prometheus."
    );
    let order = format!(
        "The gateway is on http://localhost:8080, Prometheus on http://localhost:9090. \
         Start-up is ordered by health: {backends} first, then the services (each \
         creates its schema and its JetStream consumer), then the gateway once every \
         replica answers /health."
    );
    format!(
        "{}#\n#   docker compose -f deploy/compose.yaml up --build\n#\n{}\n",
        comment(0, &what),
        comment(0, &order)
    )
}

/// A service's Compose service: `replicas` processes of `flotilla serve
/// <name>`, with its secrets passed through from the shell.
fn service(entry: &Entry) -> String {
    let name = entry.name;
    let mut environment = String::new();
    for secret in secrets(entry) {
        let text = format!(
            "{} A secret: left empty here, the value comes from the shell that runs \
             Compose (or deploy/.env).",
            secret.about
        );
        environment.push_str(&format!("{}      {}:\n", comment(6, &text), secret.var));
    }
    let mut depends_on = String::from(" *service-dependencies\n");
    if entry.deploy.redis {
        let text = format!("{name} can keep data in Redis: the redis service above.");
        environment.push_str(&format!(
            "{}      FLOTILLA_REDIS: redis://redis:6379\n",
            comment(6, &text)
        ));
        depends_on = "\n      <<: *service-dependencies\n      redis:\n        \
                      condition: service_healthy\n"
            .to_owned();
    }
    format!(
        "\n{about}  {name}:\n    <<: *flotilla\n    command: [\"serve\", \"{name}\"]\n    \
         environment:\n      <<: *service-environment\n{environment}    \
         expose: [\"8080\"]\n    healthcheck: *healthcheck\n    depends_on:{depends_on}    \
         deploy:\n      replicas: {replicas}\n",
        about = comment(2, &format!("{name}: {}.", entry.about)),
        replicas = entry.deploy.replicas,
    )
}

/// The gateway, started once every replica of every service is healthy.
fn gateway_service(services: &[Entry]) -> String {
    let mut out = String::from(GATEWAY);
    for entry in services {
        out.push_str(&format!(
            "      {}:\n        condition: service_healthy\n",
            entry.name
        ));
    }
    out
}

/// `gateway.toml`: routes to each service's Compose name.
fn gateway(services: &[Entry]) -> String {
    let example = services.first().map_or("users", |e| e.name);
    format!(
        "# Gateway routes for compose.yaml. Each upstream is a Compose service name:
# Docker's DNS answers it with the address of every replica, and the gateway
# balances over all of them, resolving the name again every dns_refresh_ms
# (so `docker compose up --scale {example}=4` needs no change here).
#
# The file is watched: edit it while the stack runs and the gateway applies
# the change without dropping connections.

{}",
        gateway_config(services, |name| format!("http://{name}:8080"))
    )
}

/// `prometheus/prometheus.yml`: a job for the gateway and for each service.
fn prometheus(services: &[Entry]) -> String {
    let mut out = String::from(
        "# Prometheus for compose.yaml. Every Compose service name resolves to the
# addresses of all its replicas, so DNS service discovery (type A) scrapes each
# replica on its own rather than whichever one a single name would reach.
global:
  scrape_interval: 15s
  evaluation_interval: 15s

scrape_configs:
",
    );
    let names = std::iter::once("gateway").chain(services.iter().map(|e| e.name));
    for (i, name) in names.enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "  - job_name: {name}
    metrics_path: /metrics
    dns_sd_configs:
      - names: [{name}]
        type: A
        port: 8080
        refresh_interval: 15s
"
        ));
    }
    out
}

/// From `name:` to the services: the image and what every service shares.
const ANCHORS: &str = r#"name: flotilla

# The image, built once from the repository root and shared by the gateway and
# the services.
x-flotilla: &flotilla
  image: flotilla:local
  build:
    context: ..
    dockerfile: deploy/Dockerfile
  restart: unless-stopped
  stop_grace_period: 15s

# GET /health on the container's own port through bash's /dev/tcp (the image
# has no curl); healthy on a 200. A service answers 503 while its database is
# down; the gateway answers 503 while a service has no instance that answers.
# `$$` keeps Compose from interpolating the variable: the container's shell
# expands it.
x-healthcheck: &healthcheck
  test:
    - CMD
    - bash
    - -c
    - >-
      exec 3<>/dev/tcp/127.0.0.1/$${FLOTILLA_PORT:-8080}
      && printf 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
      && head -n 1 <&3 | grep -q ' 200 '
  interval: 5s
  timeout: 3s
  retries: 3
  start_period: 30s

# What every service process needs. The credentials are for this local stack
# only (they match the postgres service below). The database client has no TLS,
# hence sslmode=disable. FLOTILLA_PUBLIC_URL is where browsers reach the
# gateway (the OpenID issuer and redirect URIs are built on it).
x-service-environment: &service-environment
  FLOTILLA_HOST: 0.0.0.0
  FLOTILLA_PORT: "8080"
  FLOTILLA_LOG_FORMAT: json
  FLOTILLA_PUBLIC_URL: &public-url http://localhost:8080
  FLOTILLA_DB: postgres://flotilla:flotilla@postgres:5432/flotilla?sslmode=disable
  FLOTILLA_BUS: nats://nats:4222

x-service-dependencies: &service-dependencies
  postgres:
    condition: service_healthy
  nats:
    condition: service_healthy

"#;

const POSTGRES_AND_NATS: &str = r#"  postgres:
    image: postgres:16
    environment:
      POSTGRES_USER: flotilla
      POSTGRES_PASSWORD: flotilla
      POSTGRES_DB: flotilla
    volumes:
      - postgres-data:/var/lib/postgresql/data
    healthcheck:
      # Over TCP: during first-time initialisation the image runs a temporary
      # server on the Unix socket only, which must not count as ready.
      test: ["CMD-SHELL", "pg_isready -U flotilla -d flotilla -h 127.0.0.1"]
      interval: 2s
      timeout: 3s
      retries: 30
      start_period: 10s
    restart: unless-stopped

  nats:
    # The Alpine variant, for the wget of the health check (the default image
    # is built from scratch).
    image: nats:2.10-alpine
    command: ["nats-server", "--jetstream", "--store_dir", "/data", "--http_port", "8222"]
    volumes:
      - nats-data:/data
    healthcheck:
      # /healthz answers 200 once JetStream is ready.
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8222/healthz"]
      interval: 2s
      timeout: 3s
      retries: 30
      start_period: 5s
    restart: unless-stopped
"#;

/// The redis service after its name and comment.
const REDIS: &str = r#"    image: redis:7-alpine
    command: ["redis-server", "--appendonly", "yes", "--dir", "/data"]
    volumes:
      - redis-data:/data
    healthcheck:
      test: ["CMD", "redis-cli", "-h", "127.0.0.1", "ping"]
      interval: 2s
      timeout: 3s
      retries: 30
      start_period: 5s
    restart: unless-stopped
"#;

/// The gateway service, up to the services it waits for.
const GATEWAY: &str = r#"
  gateway:
    <<: *flotilla
    command: ["serve", "gateway"]
    environment:
      FLOTILLA_HOST: 0.0.0.0
      FLOTILLA_PORT: "8080"
      FLOTILLA_LOG_FORMAT: json
      FLOTILLA_GATEWAY_CONFIG: /etc/flotilla/gateway.toml
      # The issuer of the access tokens it verifies: the services' own.
      FLOTILLA_PUBLIC_URL: *public-url
    configs:
      - source: gateway
        target: /etc/flotilla/gateway.toml
    ports:
      - "8080:8080"
    healthcheck: *healthcheck
    depends_on:
"#;

const PROMETHEUS_AND_CONFIGS: &str = r#"
  prometheus:
    image: prom/prometheus:v3.1.0
    configs:
      - source: prometheus
        target: /etc/prometheus/prometheus.yml
    ports:
      - "9090:9090"
    restart: unless-stopped

configs:
  gateway:
    file: ./gateway.toml
  prometheus:
    file: ./prometheus/prometheus.yml
"#;
