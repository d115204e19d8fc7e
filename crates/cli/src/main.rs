//! The `flotilla` binary: parse arguments, set up logs, run the command.

use std::process::ExitCode;

use clap::Parser;
use flotilla_cli::{Cli, Command, Stack};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    flotilla_kit::telemetry::init(cli.log_format);
    let threads = match &cli.command {
        Command::Serve(args) => args.threads,
        Command::Up(_) | Command::Deploy(_) | Command::Service(_) => None,
    };
    let runtime = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Up(args) => up(args).await,
            Command::Serve(args) => flotilla_cli::serve::run(args).await,
            Command::Deploy(args) => flotilla_cli::deploy::run(args),
            Command::Service(command) => flotilla_cli::admin::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            // Exit now: a broker client may still be retrying on its own
            // thread, and would complain about the runtime going away.
            std::process::exit(1)
        }
    }
}

async fn up(args: &flotilla_cli::UpArgs) -> anyhow::Result<()> {
    let stack = Stack::start(args, CancellationToken::new()).await?;
    // The database URL may hold a password: it is not printed.
    let data = match &args.backends.db {
        Some(_) => format!(
            "PostgreSQL, schemas {}<service>",
            args.backends.db_schema_prefix
        ),
        None => args.backends.data.display().to_string(),
    };
    println!(
        "flotilla {} ready in {} ms (data: {data})\n\n{}",
        env!("CARGO_PKG_VERSION"),
        stack.started_in.as_millis(),
        stack.table()
    );
    flotilla_cli::stop_signal().await;
    tracing::info!("stopping");
    stack.stop().await;
    Ok(())
}
