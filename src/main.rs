//! Entry point: parse the command line, start logging, hand over to `app`.

use std::process::ExitCode;

use clap::Parser;
use vapi_reconciler::config::{Cli, Command};
use vapi_reconciler::{app, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo narrates on stdout; its controller's log goes to a file it names (or, with
    // --verbose, to stderr as for every other command).
    match vapi_reconciler::demo::log_file(&cli.command) {
        Some(path) => {
            if let Err(e) = telemetry::init_to_file(cli.log_format, &path) {
                eprintln!("cannot write the demo's log to {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        None => telemetry::init(cli.log_format),
    }
    // Settings that are wrong together stop the start before anything is connected.
    if let Err(e) = cli.validate() {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Migrate(args) => app::migrate(args).await.map(|()| ExitCode::SUCCESS),
        Command::Run(args) => app::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Reconcile(args) => app::reconcile_once(args).await,
        Command::Simulate(args) => app::simulate(args).await.map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => vapi_reconciler::demo::run(args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Guard(args) => app::guard(args).await.map(|()| ExitCode::SUCCESS),
        Command::Plan(args) => app::plan(args).await,
        Command::Breaker(args) => app::breaker(args).await.map(|()| ExitCode::SUCCESS),
        Command::OrgKey(args) => app::org_key(args).await.map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
