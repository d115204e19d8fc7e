//! The `flotilla` binary: parse arguments, set up logs, run the command.

use std::process::ExitCode;

use clap::Parser;
use flotilla_cli::{Cli, Command, Stack};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    flotilla_kit::telemetry::init(cli.log_format);
    let result = match &cli.command {
        Command::Up(args) => up(args).await,
        Command::Serve(args) => flotilla_cli::serve::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(args: &flotilla_cli::UpArgs) -> anyhow::Result<()> {
    let stack = Stack::start(args, CancellationToken::new()).await?;
    println!(
        "flotilla {} ready in {} ms (data: {})\n\n{}",
        env!("CARGO_PKG_VERSION"),
        stack.started_in.as_millis(),
        args.data.display(),
        stack.table()
    );
    flotilla_cli::stop_signal().await;
    tracing::info!("stopping");
    stack.stop().await;
    Ok(())
}
