//! `flotilla serve <service>`: one service, or the gateway, alone.

use std::net::SocketAddr;

use anyhow::bail;
use flotilla_gateway::{Gateway, service_routes};
use flotilla_kit::runtime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::stack::{GRACE, bind, gateway_config};
use crate::{ServeArgs, register};

pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let listener = bind(SocketAddr::new(args.host, args.port)).await?;
    let addr = listener.local_addr()?;
    if args.service == "gateway" {
        let mut config = gateway_config(&args.backends);
        for (service, urls) in parse_upstreams(&args.upstreams)? {
            config.routes.extend(service_routes(&service, urls));
        }
        let gateway = Gateway::new(config, args.config.clone()).await?;
        tasks.spawn(gateway.serve(listener, shutdown.clone()));
    } else {
        // clap accepts only the registered names.
        let entry = crate::registry::find(&args.service).expect("a registered service");
        let service = entry.build(&args.services, &args.backends.shared())?;
        let storage = args.backends.storage()?;
        let bus = args.backends.bus().await?;
        let shared_bus = args.backends.bus.is_some();
        let prepared =
            runtime::prepare(entry.name, service, &storage, bus, shutdown.clone()).await?;
        prepared.start_instance(listener, &mut tasks).await?;
        if let Some(gateway) = &args.gateway {
            let url = args
                .advertise
                .clone()
                .unwrap_or_else(|| format!("http://{addr}"));
            tasks.spawn(register::heartbeat(
                gateway.trim_end_matches('/').to_owned(),
                args.service.clone(),
                url,
                shutdown.clone(),
            ));
        }
        if shared_bus {
            prepared.start_relay(&mut tasks);
        } else {
            // Alone in its process, the in-process bus has no other service
            // to deliver to: events stay in the outbox until a shared bus is used.
            tracing::info!("no shared bus configured: events are kept in the outbox");
        }
    }
    println!("{} listening on http://{addr}", args.service);
    if args.supervised {
        tokio::select! {
            () = crate::stop_signal() => {}
            () = supervisor_gone() => tracing::warn!("the supervising process is gone; stopping"),
        }
    } else {
        crate::stop_signal().await;
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    Ok(())
}

/// Returns when standard input, the supervisor's pipe, is closed.
async fn supervisor_gone() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buffer).await
        && n > 0
    {}
}

/// `users=http://127.0.0.1:9001` pairs, grouped by service.
fn parse_upstreams(pairs: &[String]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut upstreams: Vec<(String, Vec<String>)> = Vec::new();
    for pair in pairs {
        let Some((service, url)) = pair.split_once('=') else {
            bail!("--upstream {pair}: expected SERVICE=URL");
        };
        match upstreams.iter_mut().find(|(s, _)| s == service) {
            Some((_, urls)) => urls.push(url.to_owned()),
            None => upstreams.push((service.to_owned(), vec![url.to_owned()])),
        }
    }
    Ok(upstreams)
}
