//! The auth service's commands: `flotilla auth grant-role EMAIL ROLE`, how
//! the first admin is made, and `flotilla auth rotate-key`.

use anyhow::Context as _;
use clap::{Arg, ArgMatches, Command};
use flotilla_kit::AdminFuture;
use sqlx::AnyPool;

use crate::domain::Role;
use crate::{keys, store};

pub fn commands(command: Command) -> Command {
    command
        .subcommand_required(true)
        .subcommand(
            Command::new("grant-role")
                .about("Grants a role to the account of an email (the first admin, say)")
                .arg(Arg::new("email").required(true).help("The account's email"))
                .arg(
                    Arg::new("role")
                        .required(true)
                        .help("`admin`, `commercial`, or a service's own"),
                ),
        )
        .subcommand(Command::new("rotate-key").about(
            "Makes a new signing key and prints its kid: published by every instance \
             at its next reload, it signs once verifiers can have fetched it, and \
             the old key stays published until its tokens have expired",
        ))
}

pub fn run<'a>(matches: &'a ArgMatches, db: &'a AnyPool) -> AdminFuture<'a> {
    Box::pin(async move {
        match matches.subcommand() {
            Some(("grant-role", args)) => grant_role(args, db).await,
            Some(("rotate-key", _)) => keys::rotate(db).await,
            _ => anyhow::bail!("expected a command: grant-role, rotate-key"),
        }
    })
}

async fn grant_role(args: &ArgMatches, db: &AnyPool) -> anyhow::Result<String> {
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
}
