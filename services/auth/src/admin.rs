//! The auth service's commands: `flotilla auth grant-role EMAIL ROLE`, how
//! the first admin is made.

use anyhow::Context as _;
use clap::{Arg, ArgMatches, Command};
use flotilla_kit::AdminFuture;
use sqlx::AnyPool;

use crate::domain::Role;
use crate::store;

pub fn commands(command: Command) -> Command {
    command.subcommand_required(true).subcommand(
        Command::new("grant-role")
            .about("Grants a role to the account of an email (the first admin, say)")
            .arg(Arg::new("email").required(true).help("The account's email"))
            .arg(
                Arg::new("role")
                    .required(true)
                    .help("`admin`, `commercial`, or a service's own"),
            ),
    )
}

pub fn run<'a>(matches: &'a ArgMatches, db: &'a AnyPool) -> AdminFuture<'a> {
    Box::pin(async move {
        let Some(("grant-role", args)) = matches.subcommand() else {
            anyhow::bail!("expected a command: grant-role");
        };
        let arg = |name| {
            args.get_one::<String>(name)
                .map(String::as_str)
                .unwrap_or_default()
        };
        let role = Role::parse(arg("role")).map_err(|e| anyhow::anyhow!("role {e}"))?;
        let email = arg("email").trim().to_lowercase();
        let id = store::account_id_by_email(db, &email)
            .await
            .context("cannot read the accounts")?
            .with_context(|| format!("no account has the email {email}"))?;
        let granted = store::grant_role(db, &id, role.as_str())
            .await
            .context("cannot grant the role")?;
        Ok(if granted {
            format!("{email} is now {}", role.as_str())
        } else {
            format!("{email} was {} already", role.as_str())
        })
    })
}
