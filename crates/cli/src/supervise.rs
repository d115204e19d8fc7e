//! `flotilla up --processes`: every service instance as its own
//! `flotilla serve` process, registered with the gateway of this process,
//! restarted with back-off when it dies.

use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::stack::GRACE;
use crate::{Entry, UpArgs};

/// Longest wait before a crashed instance is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// An instance that lived this long did not crash at start-up: it is
/// started again after the shortest wait, whatever came before. Only
/// instances that keep dying young wait longer and longer.
const STARTED_FINE: Duration = Duration::from_secs(10);

/// The command line and environment of one instance of `entry`: the
/// backends, then every setting of the service that was given, forwarded
/// generically. Secrets (database and bus URLs, secret settings) go through
/// the environment, not the command line that `ps` shows.
pub fn command(args: &UpArgs, entry: &Entry, gateway: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    let (settings, secrets) = args.services.forward(entry);
    command
        .args([
            "serve",
            entry.name,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--gateway",
            gateway,
        ])
        .arg("--data")
        .arg(&args.backends.data)
        .args(["--db-schema-prefix", &args.backends.db_schema_prefix])
        .args(["--bus-namespace", &args.backends.bus_namespace])
        .args([
            "--bus-ack-wait-ms",
            &args.backends.bus_ack_wait_ms.to_string(),
        ])
        .args([
            "--bus-retention-hours",
            &args.backends.bus_retention_hours.to_string(),
        ])
        .args(settings)
        .envs(secrets)
        // The pipe closes when this process ends, even by SIGKILL: the
        // instance then stops rather than outlive the stack.
        .arg("--supervised")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(url) = &args.backends.public_url {
        command.args(["--public-url", url]);
    }
    for (name, value) in [
        ("FLOTILLA_DB", &args.backends.db),
        ("FLOTILLA_BUS", &args.backends.bus),
        ("FLOTILLA_REDIS", &args.backends.redis),
    ] {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    Ok(command)
}

/// Keeps one instance of `entry` running until `shutdown`, then stops it
/// with SIGTERM (SIGKILL after the grace period).
pub async fn supervise(
    args: UpArgs,
    entry: &'static Entry,
    gateway: String,
    shutdown: CancellationToken,
) {
    let service = entry.name;
    let mut backoff = Duration::from_secs(1);
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let spawned = command(&args, entry, &gateway).and_then(|mut c| Ok(c.spawn()?));
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(%service, %error, "cannot start an instance");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // Held open while the child lives (`wait` would close it).
        let _pipe = child.stdin.take();
        tokio::select! {
            status = child.wait() => {
                if started.elapsed() >= STARTED_FINE {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!(%service, status = ?status.ok(), ?backoff, "instance exited; restarting");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            () = shutdown.cancelled() => {
                if let Some(pid) = child.id() {
                    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
                }
                if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::{CommandFactory, Parser};

    use crate::{Cli, Command as Cmd, SERVICES};

    /// A value for `arg` other than its default, as it would be typed.
    fn other_value(arg: &clap::Arg) -> Option<String> {
        if !arg.get_action().takes_values() {
            return None; // a flag: given means on
        }
        let default = arg
            .get_default_values()
            .first()
            .map(|v| v.to_string_lossy().into_owned());
        if let Some(other) = arg
            .get_possible_values()
            .into_iter()
            .map(|v| v.get_name().to_owned())
            .find(|v| Some(v) != default.as_ref())
        {
            return Some(other);
        }
        Some(match default {
            Some(number) if number.parse::<u64>().is_ok() => {
                (number.parse::<u64>().unwrap() + 1).to_string()
            }
            Some(text) => format!("{text}-changed"),
            None => format!("https://example.test/{}", arg.get_id()),
        })
    }

    fn matches_of<'a>(matches: &'a clap::ArgMatches, subcommand: &str) -> &'a clap::ArgMatches {
        let (name, matches) = matches.subcommand().expect("a subcommand");
        assert_eq!(name, subcommand);
        matches
    }

    #[test]
    fn every_setting_of_every_service_reaches_its_child_processes() {
        // `flotilla up --processes` with every setting of every service
        // given a value other than its default.
        let mut line: Vec<String> = [
            "flotilla",
            "up",
            "--processes",
            "--bus",
            "nats://127.0.0.1:4222",
        ]
        .map(String::from)
        .to_vec();
        let mut settings = 0;
        for entry in SERVICES {
            for arg in entry.arguments() {
                let long = arg.get_long().expect("every setting has a --long name");
                assert!(
                    arg.get_env().is_some(),
                    "--{long} has no environment variable"
                );
                line.push(format!("--{long}"));
                line.extend(other_value(&arg));
                settings += 1;
            }
        }
        assert!(settings >= 7, "only {settings} settings found");
        let parent = Cli::command()
            .try_get_matches_from(&line)
            .expect("the parent's line parses");
        let parent = matches_of(&parent, "up");
        let Cmd::Up(args) = Cli::try_parse_from(&line).unwrap().command else {
            unreachable!()
        };

        for entry in SERVICES {
            let command = super::command(&args, entry, "http://127.0.0.1:1").unwrap();
            let command = command.as_std();
            let argv: Vec<OsString> = std::iter::once(OsString::from("flotilla"))
                .chain(command.get_args().map(OsString::from))
                .collect();
            let child = Cli::command()
                .try_get_matches_from(&argv)
                .expect("the child's line parses");
            let child = matches_of(&child, "serve");
            assert_eq!(
                child.get_one::<String>("service").map(String::as_str),
                Some(entry.name)
            );
            let env: Vec<(OsString, Option<OsString>)> = command
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(OsString::from)))
                .collect();
            for arg in entry.arguments() {
                let id = arg.get_id().as_str();
                let given: Vec<OsString> =
                    parent.get_raw(id).unwrap().map(OsString::from).collect();
                if arg.is_hide_env_values_set() {
                    // A secret: through the environment clap reads it from,
                    // never on the command line.
                    let var = arg.get_env().unwrap().to_owned();
                    assert!(
                        env.contains(&(var.clone(), Some(given[0].clone()))),
                        "{}: {var:?} not handed on",
                        entry.name
                    );
                    assert!(
                        !argv
                            .iter()
                            .any(|a| a.to_string_lossy().contains(&*given[0].to_string_lossy()))
                    );
                } else {
                    assert_eq!(
                        child.value_source(id),
                        Some(clap::parser::ValueSource::CommandLine),
                        "{}: --{id} not handed on",
                        entry.name
                    );
                    let received: Vec<OsString> =
                        child.get_raw(id).unwrap().map(OsString::from).collect();
                    assert_eq!(received, given, "{}: --{id}", entry.name);
                }
            }
        }
    }
}
