//! Settings of the motus service.

/// The words' language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Fr,
    En,
}

/// Which words, and when a day begins.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "motus")]
pub struct Config {
    /// The language of the words.
    #[arg(
        long = "motus-lang",
        env = "FLOTILLA_MOTUS_LANG",
        value_enum,
        default_value = "fr"
    )]
    pub lang: Lang,
    /// The time zone whose midnight brings a new word (an IANA name such as
    /// Europe/Paris).
    #[arg(
        long = "motus-time-zone",
        env = "FLOTILLA_MOTUS_TIME_ZONE",
        default_value = "UTC"
    )]
    pub time_zone: String,
    /// Fixes the order in which the days draw the words; every instance
    /// must have the same.
    #[arg(
        long = "motus-seed",
        env = "FLOTILLA_MOTUS_SEED",
        default_value_t = 2024
    )]
    pub seed: u64,
}
