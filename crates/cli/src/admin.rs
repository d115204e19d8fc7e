//! `flotilla <service> <command> …`: the administrative commands that
//! services declare (`Configure::ADMIN`), one subcommand per such service,
//! run against its database with the same `--db`/`--data` as `serve`.

use anyhow::Context as _;
use clap::{ArgMatches, Args, FromArgMatches, Subcommand};
use flotilla_kit::db;

use crate::args::Backends;
use crate::registry::{Entry, SERVICES, ServiceSettings};

/// A service's command, as given.
#[derive(Debug, Clone)]
pub struct ServiceCommand {
    entry: &'static Entry,
    matches: ArgMatches,
    backends: Backends,
}

fn with_commands() -> impl Iterator<Item = (&'static Entry, flotilla_kit::Admin)> {
    SERVICES.iter().filter_map(|e| Some((e, e.admin?)))
}

impl FromArgMatches for ServiceCommand {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, matches)) = matches.subcommand() else {
            return Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand));
        };
        let Some((entry, _)) = with_commands().find(|(e, _)| e.name == name) else {
            return Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand));
        };
        Ok(Self {
            entry,
            matches: matches.clone(),
            backends: Backends::from_arg_matches(matches)?,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Subcommand for ServiceCommand {
    fn augment_subcommands(mut command: clap::Command) -> clap::Command {
        for (entry, admin) in with_commands() {
            // The storage settings may follow the service's command.
            let sub = Backends::augment_args(clap::Command::new(entry.name))
                .mut_args(|arg| arg.global(true))
                .about(format!(
                    "Commands of the {} service: {}",
                    entry.name, entry.about
                ));
            command = command.subcommand((admin.commands)(sub));
        }
        command
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        Self::augment_subcommands(command)
    }

    fn has_subcommand(name: &str) -> bool {
        with_commands().any(|(e, _)| e.name == name)
    }
}

/// Opens and migrates the service's database, then runs the command.
pub async fn run(command: &ServiceCommand) -> anyhow::Result<()> {
    let entry = command.entry;
    let admin = entry.admin.expect("only services with commands are parsed");
    let service = entry.build(&ServiceSettings::default(), &command.backends.shared())?;
    let storage = command.backends.storage()?;
    let pool = storage
        .open(entry.name)
        .await
        .with_context(|| format!("{}: cannot open its database", entry.name))?;
    db::migrate(&pool, service.migrator())
        .await
        .with_context(|| format!("{}: migrations failed", entry.name))?;
    let said = (admin.run)(&command.matches, &pool).await?;
    println!("{said}");
    Ok(())
}
