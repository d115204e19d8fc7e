//! The one list of services. `up`, `serve`, `up --processes`, the deploy
//! files and `--help` all read [`SERVICES`]; adding a service is adding its
//! line there (and the crate to the workspace).

use std::ffi::OsString;
use std::sync::Arc;

use clap::{ArgMatches, Args, FromArgMatches};
use flotilla_kit::{Configure, Service, Shared};

/// Every service flotilla runs, in start-up order.
pub static SERVICES: &[Entry] = &[
    Entry::of::<flotilla_users::Users>(),
    Entry::of::<flotilla_notifications::Notifications>(),
    Entry::of::<flotilla_kv::Kv>(),
    Entry::of::<flotilla_auth::Auth>(),
    Entry::of::<flotilla_motus::Motus>(),
    Entry::of::<flotilla_score::Score>(),
];

/// A registered service: its name, and how its settings are declared and
/// turned into the service.
#[derive(Debug)]
pub struct Entry {
    pub name: &'static str,
    pub about: &'static str,
    pub deploy: flotilla_kit::Deploy,
    /// What the gateway asks of its callers.
    pub access: flotilla_kit::Access,
    /// Its administrative commands, if any.
    pub admin: Option<flotilla_kit::Admin>,
    /// Adds the service's settings to a command.
    settings: fn(clap::Command) -> clap::Command,
    build: fn(&ArgMatches, &Shared) -> anyhow::Result<Arc<dyn Service>>,
}

impl Entry {
    pub const fn of<S: Configure>() -> Self {
        Self {
            name: S::NAME,
            about: S::ABOUT,
            deploy: S::DEPLOY,
            access: S::ACCESS,
            admin: S::ADMIN,
            settings: S::Config::augment_args,
            build: build::<S>,
        }
    }

    /// The service's settings, as clap arguments.
    pub fn arguments(&self) -> Vec<clap::Arg> {
        (self.settings)(clap::Command::new(self.name))
            .get_arguments()
            .cloned()
            .collect()
    }

    /// The service, built from `settings`.
    pub fn build(
        &self,
        settings: &ServiceSettings,
        shared: &Shared,
    ) -> anyhow::Result<Arc<dyn Service>> {
        let command = (self.settings)(clap::Command::new(self.name).no_binary_name(true));
        let matches = command
            .try_get_matches_from(settings.command_line(self))
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.name))?;
        (self.build)(&matches, shared)
    }
}

fn build<S: Configure>(matches: &ArgMatches, shared: &Shared) -> anyhow::Result<Arc<dyn Service>> {
    let config = S::Config::from_arg_matches(matches)?;
    Ok(Arc::new(S::configure(config, shared)?))
}

/// The entry named `name`.
pub fn find(name: &str) -> Option<&'static Entry> {
    SERVICES.iter().find(|entry| entry.name == name)
}

/// What `flotilla serve` runs: the gateway or a service, with a line on each
/// for `--help`.
pub fn serve_targets() -> clap::builder::PossibleValuesParser {
    let gateway = clap::builder::PossibleValue::new("gateway").help("the edge gateway alone");
    let services = SERVICES
        .iter()
        .map(|e| clap::builder::PossibleValue::new(e.name).help(e.about));
    clap::builder::PossibleValuesParser::new(std::iter::once(gateway).chain(services))
}

/// The settings of every service that were given, on the command line or
/// in the environment: kept as their raw values, so that they can be handed
/// on to a child process as they came, whatever their type.
#[derive(Debug, Clone, Default)]
pub struct ServiceSettings {
    given: Vec<Given>,
}

#[derive(Debug, Clone)]
struct Given {
    service: &'static str,
    arg: clap::Arg,
    /// `true` for a flag that is on (one that is off is not kept).
    value: OsString,
}

impl Given {
    fn argument(&self) -> OsString {
        let long = self
            .arg
            .get_long()
            .expect("every setting has a --long name");
        let mut argument = OsString::from(format!("--{long}"));
        if self.arg.get_action().takes_values() {
            argument.push("=");
            argument.push(&self.value);
        }
        argument
    }
}

impl ServiceSettings {
    /// Sets the setting `--long` to `value`, as if it had been given on the
    /// command line (`"true"` turns a flag on).
    pub fn set(&mut self, long: &str, value: &str) {
        let (service, arg) = SERVICES
            .iter()
            .find_map(|e| {
                let arg = e
                    .arguments()
                    .into_iter()
                    .find(|a| a.get_long() == Some(long))?;
                Some((e.name, arg))
            })
            .unwrap_or_else(|| panic!("no service has a setting --{long}"));
        self.keep(service, arg, [value.into()]);
    }

    /// Replaces what was given of `arg` with `values`.
    fn keep(
        &mut self,
        service: &'static str,
        arg: clap::Arg,
        values: impl IntoIterator<Item = OsString>,
    ) {
        self.given
            .retain(|g| !(g.service == service && g.arg.get_id() == arg.get_id()));
        let flag = !arg.get_action().takes_values();
        for value in values {
            if flag && (value == "false" || value == "0") {
                continue;
            }
            self.given.push(Given {
                service,
                arg: arg.clone(),
                value,
            });
        }
    }

    /// What was given of `entry`'s settings, as command-line arguments.
    fn command_line(&self, entry: &Entry) -> Vec<OsString> {
        self.given
            .iter()
            .filter(|g| g.service == entry.name)
            .map(Given::argument)
            .collect()
    }

    /// How to hand `entry`'s settings to a child process: command-line
    /// arguments, and `(variable, value)` pairs for the secret ones (those
    /// with `hide_env_values`), which `ps` would otherwise show.
    pub fn forward(&self, entry: &Entry) -> (Vec<OsString>, Vec<(OsString, OsString)>) {
        let mut args = Vec::new();
        let mut env = Vec::new();
        for given in self.given.iter().filter(|g| g.service == entry.name) {
            match given
                .arg
                .get_env()
                .filter(|_| given.arg.is_hide_env_values_set())
            {
                Some(var) => env.push((var.to_owned(), given.value.clone())),
                None => args.push(given.argument()),
            }
        }
        (args, env)
    }
}

impl FromArgMatches for ServiceSettings {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut settings = Self::default();
        settings.update_from_arg_matches(matches)?;
        Ok(settings)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        use clap::parser::ValueSource;
        for entry in SERVICES {
            for arg in entry.arguments() {
                let id = arg.get_id().as_str();
                let explicit = matches!(
                    matches.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                );
                if let Some(raw) = matches.get_raw(id).filter(|_| explicit) {
                    let values: Vec<OsString> = raw.map(OsString::from).collect();
                    self.keep(entry.name, arg, values);
                }
            }
        }
        Ok(())
    }
}

impl Args for ServiceSettings {
    fn augment_args(mut command: clap::Command) -> clap::Command {
        for entry in SERVICES {
            command = (entry.settings)(command);
        }
        command
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}
