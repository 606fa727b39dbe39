//! Command line and environment: every knob is a flag with an environment fallback, parsed and
//! validated once at start. Secrets are never flags: the Vapi key comes from a file or the
//! environment, and `--help` hides environment values.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::settings::defaults;

mod validate;
pub use validate::{ConfigError, MAX_DURATION, RETRY_AFTER_MIN};

#[derive(Debug, Parser)]
#[command(
    name = "vapi-reconciler",
    version,
    about = "Keeps Vapi assistants equal to the agents stored in Postgres."
)]
pub struct Cli {
    /// Log output: human-readable text or one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate(DatabaseArgs),
    /// Run the controller: a pass at start, then every resync interval, until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Run one pass and exit: 0 when every agent is synced, 1 otherwise.
    Reconcile(ReconcileArgs),
    /// Serve the Vapi API simulator (the same wire format, plus fault injection under /_sim).
    Simulate(SimulateArgs),
    /// Create a demo database, seed clinics and agents, and watch them converge against the simulator.
    Demo(DemoArgs),
    /// Show what a pass would do, writing nothing. Exit code: 0 nothing to do, 2 changes
    /// pending, 1 error (Terraform's -detailed-exitcode).
    Plan(PlanArgs),
    /// Inspect and confirm passes the blast-radius guard blocked.
    Guard(GuardArgs),
    /// Inspect keys' circuit breakers and quarantine; reset a breaker.
    Breaker(BreakerArgs),
    /// Set, clear, list and rotate per-organization Vapi private keys (encrypted in Postgres).
    OrgKey(OrgKeyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct GuardArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(subcommand)]
    pub command: GuardCommand,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Only this organization's agents.
    #[arg(long)]
    pub org: Option<uuid::Uuid>,
    /// Only this agent.
    #[arg(long)]
    pub agent: Option<uuid::Uuid>,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BreakerArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(subcommand)]
    pub command: BreakerCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BreakerCommand {
    /// Every key the leader uses, with its breaker and quarantine state, as JSON.
    List,
    /// Close a key's breaker; the leader applies it after its current pass.
    Reset {
        /// The key's fingerprint (from `breaker list`, a status message or the logs).
        fingerprint: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum GuardCommand {
    /// List recent blocks, newest first, as JSON.
    List {
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// Allow passes that delete and recreate at most this block's counts, for a while.
    Confirm {
        /// The block's id (from the log line, `guard list` or the pass report).
        id: i64,
        /// How long the confirmation holds.
        #[arg(long, default_value = "1h", value_parser = positive_duration)]
        valid_for: humantime::Duration,
        /// Who confirms, for the record.
        #[arg(long, env = "USER", default_value = "operator", value_parser = name)]
        by: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL (may hold a password: kept secret, never logged).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = PostgresUrlParser)]
    pub database_url: SecretString,
    /// Connections the pool may hold.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = defaults::DATABASE_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_max_connections: u32,
    /// How long a query waits for a pooled connection before it fails.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value_t = defaults::DATABASE_ACQUIRE_TIMEOUT.into(), value_parser = positive_duration)]
    pub database_acquire_timeout: humantime::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct VapiArgs {
    /// Vapi API base URL.
    #[arg(long, env = "VAPI_BASE_URL", default_value = defaults::VAPI_BASE_URL, value_parser = HttpUrlParser)]
    pub vapi_base_url: String,
    /// File holding the Vapi private key (wins over the VAPI_PRIVATE_KEY environment variable).
    #[arg(long, env = "VAPI_PRIVATE_KEY_FILE")]
    pub vapi_private_key_file: Option<PathBuf>,
    /// Bound on connecting to Vapi.
    #[arg(long, env = "VAPI_CONNECT_TIMEOUT", default_value_t = defaults::VAPI_CONNECT_TIMEOUT.into(), value_parser = positive_duration)]
    pub vapi_connect_timeout: humantime::Duration,
    /// Bound on one whole Vapi call.
    #[arg(long, env = "VAPI_REQUEST_TIMEOUT", default_value_t = defaults::VAPI_REQUEST_TIMEOUT.into(), value_parser = positive_duration)]
    pub vapi_request_timeout: humantime::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct PassArgs {
    /// Vapi writes in flight at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = defaults::CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Compute and report drift, write nothing to Vapi.
    #[arg(long, env = "DRY_RUN")]
    pub dry_run: bool,
    /// How long a create with an unknown outcome is waited for before creating again. Must
    /// exceed the request timeout plus the leader lease.
    #[arg(long, env = "CREATE_GRACE", default_value_t = defaults::CREATE_GRACE.into(), value_parser = positive_duration)]
    pub create_grace: humantime::Duration,
    /// What happens to marked assistants whose agent no longer exists.
    #[arg(long, env = "ORPHAN_POLICY", value_enum, default_value_t = OrphanPolicyArg::Delete)]
    pub orphan_policy: OrphanPolicyArg,
    /// How long an orphan must have been seen before it is deleted.
    #[arg(long, env = "ORPHAN_GRACE", default_value_t = defaults::ORPHAN_GRACE.into(), value_parser = duration)]
    pub orphan_grace: humantime::Duration,
    /// Blast-radius guard: the share of the fleet one pass may delete or recreate...
    #[arg(long, env = "GUARD_MAX_SHARE", default_value_t = defaults::GUARD_MAX_SHARE, value_parser = share)]
    pub guard_max_share: f64,
    /// ...or this many assistants, whichever is larger.
    #[arg(long, env = "GUARD_MIN_COUNT", default_value_t = defaults::GUARD_MIN_COUNT)]
    pub guard_min_count: u64,
    /// A JSON file overriding the voice rules (retired voices, aliases, Azure names, removed
    /// providers, the fallback voice); see the README.
    #[arg(long, env = "VOICE_RULES_FILE")]
    pub voice_rules: Option<PathBuf>,
    /// How long journal entries are kept.
    #[arg(long, env = "JOURNAL_RETENTION", default_value = "90d", value_parser = positive_duration)]
    pub journal_retention: humantime::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PacingArg {
    Adaptive,
    Fixed,
}

impl PacingArg {
    pub fn pacing(self) -> crate::resilience::Pacing {
        match self {
            Self::Adaptive => crate::resilience::Pacing::Adaptive,
            Self::Fixed => crate::resilience::Pacing::Fixed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrphanPolicyArg {
    Delete,
    Keep,
}

/// Leader election: one replica reconciles, the others stand by.
#[derive(Debug, Clone, Args)]
pub struct LeaderArgs {
    /// The lease's name; replicas with the same name elect one leader.
    #[arg(long, env = "LEADER_ELECTION_NAME", default_value = defaults::LEADER_ELECTION_NAME, value_parser = name)]
    pub leader_election_name: String,
    /// This replica's identity in the lease and journal (default: hostname/pid).
    #[arg(long, env = "POD_NAME", value_parser = name)]
    pub holder: Option<String>,
    /// How long one proof of holding the lock stays valid; a new leader waits this long before
    /// its first write unless the previous one released gracefully.
    #[arg(long, env = "LEADER_LEASE", default_value_t = defaults::LEADER_LEASE.into(), value_parser = positive_duration)]
    pub leader_lease: humantime::Duration,
    /// How often the leader proves it holds the lock.
    #[arg(long, env = "LEADER_RENEW_INTERVAL", default_value_t = defaults::LEADER_RENEW_INTERVAL.into(), value_parser = positive_duration)]
    pub leader_renew_interval: humantime::Duration,
    /// How often a standby tries to take the lock (and a replica rebalances shards).
    #[arg(long, env = "LEADER_POLL_INTERVAL", default_value_t = defaults::LEADER_POLL_INTERVAL.into(), value_parser = positive_duration)]
    pub leader_poll_interval: humantime::Duration,
    /// Organizations are divided into this many shards, each with one writer; replicas share
    /// them. 1 = a single leader. Every replica must use the same value.
    #[arg(long, env = "SHARDS", default_value_t = defaults::SHARDS, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
}

/// What every command that reconciles needs: the database, Vapi, and how a pass runs.
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub vapi: VapiArgs,
    #[command(flatten)]
    pub pass: PassArgs,
    #[command(flatten)]
    pub leader: LeaderArgs,
    #[command(flatten)]
    pub resilience: ResilienceArgs,
    #[command(flatten)]
    pub vault: VaultArgs,
}

/// How calls to Vapi are paced, retried and stopped, per key.
#[derive(Debug, Clone, Args)]
pub struct ResilienceArgs {
    /// How often VAPI_PRIVATE_KEY_FILE is re-read; a changed key is used at once.
    #[arg(long, env = "KEY_RELOAD_INTERVAL", default_value_t = defaults::KEY_RELOAD_INTERVAL.into(), value_parser = positive_duration)]
    pub key_reload_interval: humantime::Duration,
    /// Read calls (GET) per second, per key.
    #[arg(long, env = "VAPI_READ_RATE", default_value_t = defaults::VAPI_READ_RATE, value_parser = positive_rate)]
    pub vapi_read_rate: f64,
    #[arg(long, env = "VAPI_READ_BURST", default_value_t = defaults::VAPI_READ_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub vapi_read_burst: u32,
    /// Write calls (POST, PATCH, DELETE) per second, per key.
    #[arg(long, env = "VAPI_WRITE_RATE", default_value_t = defaults::VAPI_WRITE_RATE, value_parser = positive_rate)]
    pub vapi_write_rate: f64,
    #[arg(long, env = "VAPI_WRITE_BURST", default_value_t = defaults::VAPI_WRITE_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub vapi_write_burst: u32,
    /// How the per-key rates are set: `adaptive` starts at VAPI_READ_RATE / VAPI_WRITE_RATE,
    /// grows while calls queue and slows down on 429s, up to the max; `fixed` keeps the
    /// configured rates (for a known limit).
    #[arg(long, env = "VAPI_PACING", value_enum, default_value_t = PacingArg::Adaptive)]
    pub vapi_pacing: PacingArg,
    /// The highest read rate adaptive pacing goes to, per key [default: 500, or
    /// --vapi-read-rate when higher].
    #[arg(long, env = "VAPI_READ_RATE_MAX", value_parser = positive_rate)]
    pub vapi_read_rate_max: Option<f64>,
    /// The highest write rate adaptive pacing goes to, per key [default: 500, or
    /// --vapi-write-rate when higher].
    #[arg(long, env = "VAPI_WRITE_RATE_MAX", value_parser = positive_rate)]
    pub vapi_write_rate_max: Option<f64>,
    /// Extra attempts of an idempotent call (GET, PATCH, DELETE) after a 429, 5xx, timeout or
    /// transport error. A POST is retried only after a 429, with adaptive pacing.
    #[arg(long, env = "VAPI_RETRIES", default_value_t = defaults::VAPI_RETRIES, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub vapi_retries: u32,
    /// First delay before a retry of an idempotent call; doubles per attempt (with jitter)...
    #[arg(long, env = "VAPI_RETRY_BACKOFF_BASE", default_value_t = defaults::VAPI_RETRY_BACKOFF_BASE.into(), value_parser = positive_duration)]
    pub vapi_retry_backoff_base: humantime::Duration,
    /// ...up to this.
    #[arg(long, env = "VAPI_RETRY_BACKOFF_MAX", default_value_t = defaults::VAPI_RETRY_BACKOFF_MAX.into(), value_parser = positive_duration)]
    pub vapi_retry_backoff_max: humantime::Duration,
    /// Longest `Retry-After` honoured from a 429.
    #[arg(long, env = "VAPI_RETRY_AFTER_MAX", default_value_t = defaults::VAPI_RETRY_AFTER_MAX.into(), value_parser = positive_duration)]
    pub vapi_retry_after_max: humantime::Duration,
    /// Consecutive failures (5xx, timeouts, unreachable) that open a key's circuit breaker.
    #[arg(long, env = "BREAKER_FAILURES", default_value_t = defaults::BREAKER_FAILURES, value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_failures: u32,
    /// First open period of the breaker; doubles after each failed probe...
    #[arg(long, env = "BREAKER_OPEN_BASE", default_value_t = defaults::BREAKER_OPEN_BASE.into(), value_parser = positive_duration)]
    pub breaker_open_base: humantime::Duration,
    /// ...up to this.
    #[arg(long, env = "BREAKER_OPEN_MAX", default_value_t = defaults::BREAKER_OPEN_MAX.into(), value_parser = positive_duration)]
    pub breaker_open_max: humantime::Duration,
    /// A key Vapi rejected (401/403) is probed at most this often until it changes.
    #[arg(long, env = "QUARANTINE_PROBE_INTERVAL", default_value_t = defaults::QUARANTINE_PROBE_INTERVAL.into(), value_parser = positive_duration)]
    pub quarantine_probe_interval: humantime::Duration,
    /// First retry delay of a failing agent; doubles per failure (with jitter)...
    #[arg(long, env = "AGENT_BACKOFF_BASE", default_value_t = defaults::AGENT_BACKOFF_BASE.into(), value_parser = positive_duration)]
    pub agent_backoff_base: humantime::Duration,
    /// ...up to this.
    #[arg(long, env = "AGENT_BACKOFF_MAX", default_value_t = defaults::AGENT_BACKOFF_MAX.into(), value_parser = positive_duration)]
    pub agent_backoff_max: humantime::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Time between full passes, counted from the end of the last one (± RESYNC_JITTER).
    #[arg(long, env = "RESYNC_INTERVAL", default_value_t = defaults::RESYNC_INTERVAL.into(), value_parser = positive_duration)]
    pub resync_interval: humantime::Duration,
    /// Each full pass is due at the interval ± this share of it, so replicas and restarts do not
    /// stay in step.
    #[arg(long, env = "RESYNC_JITTER", default_value_t = defaults::RESYNC_JITTER, value_parser = share)]
    pub resync_jitter: f64,
    /// Address of the /healthz and /readyz server.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Apply unapplied migrations at start instead of refusing to start.
    #[arg(long, env = "MIGRATE")]
    pub migrate: bool,
    /// File holding the admin token for the /v1 API (wins over the ADMIN_TOKEN environment
    /// variable; without either, /v1 refuses every request).
    #[arg(long, env = "ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// How long `POST /v1/reconcile?wait=true` waits for its pass.
    #[arg(long, env = "API_WAIT_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub api_wait_timeout: humantime::Duration,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Bounds on the HTTP listener's sockets (README, "HTTP server limits").
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// A request head must be complete within this, counted from when the connection waits for
    /// one (a new socket, or a kept-alive one between requests).
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http_header_read_timeout: humantime::Duration,
    /// Reading a request's body and answering it; 408 after. Must exceed API_WAIT_TIMEOUT.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "90s", value_parser = positive_duration)]
    pub http_request_timeout: humantime::Duration,
    /// A connection on which no byte moves for this long while no request is answered is closed.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub http_idle_timeout: humantime::Duration,
    /// Connections served at once; one more closes the oldest.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub http_max_connections: u32,
}

impl HttpArgs {
    pub fn limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            header_read_timeout: self.http_header_read_timeout.into(),
            request_timeout: self.http_request_timeout.into(),
            idle_timeout: self.http_idle_timeout.into(),
            max_connections: self.http_max_connections as usize,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// Run exactly one pass (the only mode; the flag makes that explicit).
    #[arg(long, required = true)]
    pub once: bool,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8900")]
    pub listen: SocketAddr,
    /// Simulator keys as KEY=ORG_ID (repeatable, or comma-separated in VAPI_SIM_KEYS). One is
    /// generated and printed when none is given.
    #[arg(
        long = "key",
        env = "VAPI_SIM_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub keys: Vec<String>,
    /// Latency added to every /assistant request.
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub latency: humantime::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// A Postgres server to create the demo database on (any database on it; the demo makes its
    /// own). Without it the demo starts a private, throwaway server from the installed
    /// PostgreSQL binaries and removes it on exit.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_parser = PostgresUrlParser
    )]
    pub database_url: Option<SecretString>,
    /// Name of the demo database; dropped and recreated at every start.
    #[arg(long, default_value = "vapi_reconciler_demo", value_parser = database_name)]
    pub database: String,
    /// Time between passes in the demo.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub resync_interval: humantime::Duration,
    /// Show the controller's log here instead of writing it to a file.
    #[arg(long, short)]
    pub verbose: bool,
}

// --- Per-organization Vapi keys: the encryption keyring and the `org-key` command. ---

/// The keys that encrypt per-organization Vapi keys in Postgres. The keyring itself is never a
/// flag: it comes from a file, or from the VAPI_RECONCILER_ENCRYPTION_KEYS environment variable
/// (comma- or newline-separated `id:base64` entries of 32 bytes; the first one seals).
#[derive(Debug, Clone, Args)]
pub struct VaultArgs {
    /// File holding the encryption keys, `id:base64` entries (32 bytes each) separated by commas
    /// or newlines, current key first; wins over VAPI_RECONCILER_ENCRYPTION_KEYS.
    #[arg(long, env = "VAPI_RECONCILER_ENCRYPTION_KEYS_FILE")]
    pub encryption_keys_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct OrgKeyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub vault: VaultArgs,
    #[command(subcommand)]
    pub command: OrgKeyCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum OrgKeyCommand {
    /// Store an organization's Vapi private key, sealed with the current encryption key.
    Set {
        /// The organization's id.
        #[arg(long)]
        org: uuid::Uuid,
        #[command(flatten)]
        input: KeyInput,
    },
    /// Remove an organization's Vapi private key.
    Clear {
        /// The organization's id.
        #[arg(long)]
        org: uuid::Uuid,
    },
    /// List the stored keys (fingerprints only) as JSON; with a keyring, whether each opens.
    List,
    /// Re-seal every stored key under the current (first) encryption key.
    Rotate,
}

/// Where `org-key set` reads the Vapi key from: never the command line.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct KeyInput {
    /// Read the key from this file (surrounding whitespace is dropped).
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
    /// Read the key from standard input.
    #[arg(long)]
    pub stdin: bool,
}

// --- end of per-organization Vapi keys ---

/// A URL setting, checked without ever echoing its value (it may hold a password): clap's own
/// message for a refused value would quote it.
#[derive(Debug, Clone, Copy)]
struct HttpUrlParser;

/// A Postgres URL (`postgres://` or `postgresql://`), kept secret.
#[derive(Debug, Clone, Copy)]
struct PostgresUrlParser;

/// The text of a URL setting, or clap's error naming the setting and why, never the value.
fn url_setting<T>(
    cmd: &clap::Command,
    arg: Option<&clap::Arg>,
    value: &std::ffi::OsStr,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, clap::Error> {
    let refuse = |why: String| {
        let setting = arg.map_or_else(|| "a URL".to_owned(), ToString::to_string);
        clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!("invalid value for '{setting}': {why}\n"),
        )
        .with_cmd(cmd)
    };
    let text = value
        .to_str()
        .ok_or_else(|| refuse("not valid UTF-8".to_owned()))?;
    check(text).map_err(refuse)
}

impl clap::builder::TypedValueParser for HttpUrlParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        url_setting(cmd, arg, value, http_url)
    }
}

impl clap::builder::TypedValueParser for PostgresUrlParser {
    type Value = SecretString;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<SecretString, clap::Error> {
        url_setting(cmd, arg, value, |text| {
            postgres_url(text).map(|()| SecretString::from(text.to_owned()))
        })
    }
}

fn postgres_url(s: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "the scheme must be postgres or postgresql, got {:?}",
            url.scheme()
        ));
    }
    Ok(())
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "must be a positive number of calls per second, got {s:?}"
        )),
    }
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("must be a fraction between 0 and 1, got {s:?}")),
    }
}

/// A duration of at most [`MAX_DURATION`] (zero allowed).
fn duration(s: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = s.parse().map_err(|e| format!("{e}"))?;
    if *d > MAX_DURATION {
        return Err(format!(
            "must be at most {} (10 years), got {s:?}",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// A duration above zero and at most [`MAX_DURATION`].
fn positive_duration(s: &str) -> Result<humantime::Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err(format!("must be greater than zero, got {s:?}"));
    }
    Ok(d)
}

/// An `http://` or `https://` URL with a host and no credentials in it (a key belongs in a
/// header, never in a URL that is logged), query or fragment. The value is not echoed: a URL
/// with userinfo may hold a secret.
fn http_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, got {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry a user or password (user:pass@)".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not carry a query or fragment".to_owned());
    }
    Ok(s.trim().to_owned())
}

/// A name: not empty, at most 200 characters, no control characters.
fn name(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if t.chars().count() > 200 || t.chars().any(char::is_control) {
        return Err("must be at most 200 characters without control characters".to_owned());
    }
    Ok(t.to_owned())
}

fn database_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a plain database name (lowercase letters, digits and _, at most 63)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_flag_and_value() {
        let err = Cli::try_parse_from([
            "vapi-reconciler",
            "run",
            "--database-url",
            "postgres://x",
            "--resync-interval",
            "0s",
        ])
        .expect_err("zero interval");
        let text = err.to_string();
        assert!(
            text.contains("--resync-interval") && text.contains("0s"),
            "{text}"
        );
        let err = Cli::try_parse_from([
            "vapi-reconciler",
            "run",
            "--database-url",
            "postgres://x",
            "--concurrency",
            "0",
        ])
        .expect_err("zero concurrency");
        assert!(err.to_string().contains("--concurrency"), "{err}");
        let err = Cli::try_parse_from(["vapi-reconciler", "demo", "--database", "Robert'); drop"])
            .expect_err("name");
        assert!(err.to_string().contains("--database"), "{err}");
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["vapi-reconciler", "run", "--database-url", "postgres://x"])
            .expect("parse");
        let Command::Run(run) = cli.command else {
            panic!("run")
        };
        assert_eq!(run.resync_interval.to_string(), "5m");
        assert_eq!(run.controller.vapi.vapi_base_url, "https://api.vapi.ai");
        assert_eq!(run.controller.pass.concurrency, 8);
        assert!(!run.migrate);
        assert_eq!(run.http.limits(), crate::http::Limits::default());
    }

    #[test]
    fn debug_output_hides_the_database_password() {
        let cli = Cli::try_parse_from([
            "vapi-reconciler",
            "migrate",
            "--database-url",
            "postgres://u:hunter2@db/x",
        ])
        .expect("parse");
        assert!(!format!("{cli:?}").contains("hunter2"));
    }
}
