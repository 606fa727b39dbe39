//! Logging through `tracing`: text for people, JSON for log pipelines; `RUST_LOG` filters.
//! The demo writes its log to a file so its own narration stays readable; errors still reach
//! stderr there, so a start that fails is seen.

use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,reqwest=warn"))
}

pub fn init(format: LogFormat) {
    // Colour only for a person at a terminal; piped logs (Kubernetes, tests) stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Everything to `path` (created afresh, never through a planted link), and errors to stderr
/// as well.
pub fn init_to_file(format: LogFormat, path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let file = std::sync::Mutex::new(file);
    let to_file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(file);
    let to_file = match format {
        LogFormat::Text => to_file.with_filter(filter()).boxed(),
        LogFormat::Json => to_file
            .json()
            .flatten_event(true)
            .with_filter(filter())
            .boxed(),
    };
    let errors = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::filter::LevelFilter::ERROR);
    tracing_subscriber::registry()
        .with(to_file)
        .with(errors)
        .init();
    Ok(())
}
