//! Entry point: parse the command line, start logging, hand over to `app`.

use std::process::ExitCode;

use clap::Parser;
use vapi_reconciler::config::{Cli, Command};
use vapi_reconciler::{app, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
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
