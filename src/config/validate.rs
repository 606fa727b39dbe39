//! The configuration checked as a whole at start, before anything is connected.
//!
//! Design note: a value that is wrong on its own (an `ftp://` URL, a zero timeout, a duration
//! that would overflow the clock, an empty name) is refused by its flag's value parser, so clap
//! names the flag and the environment variable. What is wrong only next to another setting (a
//! breaker base above its max, a renew interval over half the lease) is checked here, each
//! problem naming both settings and their values. Every problem is reported at once.
//!
//! PURE: no I/O.

use std::time::Duration;

use super::{Cli, Command, ControllerArgs, HttpArgs};

/// The longest duration any setting accepts (10 years): long enough for any retention, short
/// enough that adding it to a clock or doubling it in a back-off never overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// The shortest `Retry-After` the lanes honour (`app` uses the same bound).
pub const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);

/// Every problem of settings that are wrong together, each naming the settings.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl Cli {
    /// Checks what single flags cannot: the relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        match &self.command {
            Command::Run(run) => {
                controller(&run.controller, &mut p);
                http(&run.http, run.api_wait_timeout.into(), &mut p);
            }
            Command::Reconcile(r) => controller(&r.controller, &mut p),
            Command::Plan(plan) => controller(&plan.controller, &mut p),
            Command::Migrate(_)
            | Command::Simulate(_)
            | Command::Demo(_)
            | Command::Guard(_)
            | Command::Breaker(_)
            | Command::OrgKey(_) => {}
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p))
        }
    }
}

fn show(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// `a` must be at most `b`.
fn at_most(a: (&str, Duration), b: (&str, Duration), why: &str, p: &mut Vec<String>) {
    if a.1 > b.1 {
        p.push(format!(
            "{} ({}) must be at most {} ({}){why}",
            a.0,
            show(a.1),
            b.0,
            show(b.1)
        ));
    }
}

fn controller(args: &ControllerArgs, p: &mut Vec<String>) {
    let (vapi, leader, r) = (&args.vapi, &args.leader, &args.resilience);
    let lease: Duration = leader.leader_lease.into();
    at_most(
        (
            "--leader-renew-interval / LEADER_RENEW_INTERVAL",
            leader.leader_renew_interval.into(),
        ),
        ("half of --leader-lease / LEADER_LEASE", lease / 2),
        ": a leader must prove its lock again before the last proof expires",
        p,
    );
    let floor = Duration::from(vapi.vapi_request_timeout) + lease;
    if Duration::from(args.pass.create_grace) < floor {
        p.push(format!(
            "--create-grace / CREATE_GRACE ({}) must be at least --vapi-request-timeout / VAPI_REQUEST_TIMEOUT ({}) plus --leader-lease / LEADER_LEASE ({}): a create still in flight could land after it and leave a duplicate",
            args.pass.create_grace, vapi.vapi_request_timeout, leader.leader_lease
        ));
    }
    at_most(
        (
            "--breaker-open-base / BREAKER_OPEN_BASE",
            r.breaker_open_base.into(),
        ),
        (
            "--breaker-open-max / BREAKER_OPEN_MAX",
            r.breaker_open_max.into(),
        ),
        "",
        p,
    );
    at_most(
        (
            "--agent-backoff-base / AGENT_BACKOFF_BASE",
            r.agent_backoff_base.into(),
        ),
        (
            "--agent-backoff-max / AGENT_BACKOFF_MAX",
            r.agent_backoff_max.into(),
        ),
        "",
        p,
    );
    at_most(
        (
            "--vapi-retry-backoff-base / VAPI_RETRY_BACKOFF_BASE",
            r.vapi_retry_backoff_base.into(),
        ),
        (
            "--vapi-retry-backoff-max / VAPI_RETRY_BACKOFF_MAX",
            r.vapi_retry_backoff_max.into(),
        ),
        "",
        p,
    );
    for (max, max_name, start, start_name) in [
        (
            r.vapi_read_rate_max,
            "--vapi-read-rate-max / VAPI_READ_RATE_MAX",
            r.vapi_read_rate,
            "--vapi-read-rate / VAPI_READ_RATE",
        ),
        (
            r.vapi_write_rate_max,
            "--vapi-write-rate-max / VAPI_WRITE_RATE_MAX",
            r.vapi_write_rate,
            "--vapi-write-rate / VAPI_WRITE_RATE",
        ),
    ] {
        if let Some(max) = max.filter(|max| *max < start) {
            p.push(format!(
                "{max_name} ({max}) must be at least {start_name} ({start}): adaptive pacing starts there and never goes above the max"
            ));
        }
    }
    at_most(
        ("the shortest Retry-After honoured", RETRY_AFTER_MIN),
        (
            "--vapi-retry-after-max / VAPI_RETRY_AFTER_MAX",
            r.vapi_retry_after_max.into(),
        ),
        "",
        p,
    );
}

fn http(args: &HttpArgs, api_wait: Duration, p: &mut Vec<String>) {
    let request: Duration = args.http_request_timeout.into();
    if request <= api_wait {
        p.push(format!(
            "--http-request-timeout / HTTP_REQUEST_TIMEOUT ({}) must exceed --api-wait-timeout / API_WAIT_TIMEOUT ({}): a waiting trigger would be cut off first",
            show(request),
            show(api_wait)
        ));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// Parses and validates a command line; the error text as a user sees it.
    fn start(args: &[&str]) -> Result<(), String> {
        let cli =
            Cli::try_parse_from(std::iter::once("vapi-reconciler").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        cli.validate().map_err(|e| e.to_string())
    }

    const DB: [&str; 2] = ["--database-url", "postgres://u:hunter2@db/x"];

    /// The command, a database URL unless `extra` brings its own, and `extra`.
    fn with(command: &[&str], extra: &[&str]) -> Vec<String> {
        let own = command.contains(&"--database-url")
            || extra.contains(&"--database-url")
            || command.first() == Some(&"simulate");
        let db: &[&str] = if own { &[] } else { &DB };
        command
            .iter()
            .chain(db)
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect()
    }

    #[test]
    fn every_setting_refuses_a_bad_value_naming_itself() {
        let years = "300000000000years";
        // (subcommand, flags, what the error must name)
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (
                &["run"],
                &["--vapi-base-url", "garbage"],
                &["--vapi-base-url", "not a URL"],
            ),
            (&["run"], &["--vapi-base-url", ""], &["--vapi-base-url"]),
            (
                &["run"],
                &["--vapi-base-url", "ftp://api.vapi.ai"],
                &["--vapi-base-url", "http or https"],
            ),
            (
                &["run"],
                &["--vapi-base-url", "https://k:s3cret@api.vapi.ai"],
                &["--vapi-base-url", "user or password"],
            ),
            (
                &["run"],
                &["--vapi-base-url", "https://api.vapi.ai/?x=1"],
                &["--vapi-base-url", "query"],
            ),
            (
                &["run"],
                &["--vapi-base-url", "file:///etc/passwd"],
                &["--vapi-base-url"],
            ),
            (
                &["run"],
                &["--vapi-connect-timeout", "0s"],
                &["--vapi-connect-timeout", "greater than zero"],
            ),
            (
                &["run"],
                &["--vapi-request-timeout", "0s"],
                &["--vapi-request-timeout"],
            ),
            (&["run"], &["--concurrency", "0"], &["--concurrency"]),
            (&["run"], &["--create-grace", "0s"], &["--create-grace"]),
            (&["run"], &["--orphan-policy", "burn"], &["--orphan-policy"]),
            (
                &["run"],
                &["--orphan-grace", years],
                &["--orphan-grace", "10 years"],
            ),
            (
                &["run"],
                &["--guard-max-share", "1.5"],
                &["--guard-max-share"],
            ),
            (&["run"], &["--guard-min-count=-1"], &["--guard-min-count"]),
            (
                &["run"],
                &["--journal-retention", "0s"],
                &["--journal-retention"],
            ),
            (
                &["run"],
                &["--leader-election-name", " "],
                &["--leader-election-name", "empty"],
            ),
            (&["run"], &["--holder", ""], &["--holder", "empty"]),
            (&["run"], &["--leader-lease", "0s"], &["--leader-lease"]),
            (
                &["run"],
                &["--leader-renew-interval", "0s"],
                &["--leader-renew-interval"],
            ),
            (
                &["run"],
                &["--leader-poll-interval", years],
                &["--leader-poll-interval"],
            ),
            (&["run"], &["--shards", "0"], &["--shards"]),
            (
                &["run"],
                &["--key-reload-interval", "0s"],
                &["--key-reload-interval"],
            ),
            (&["run"], &["--vapi-read-rate", "0"], &["--vapi-read-rate"]),
            (
                &["run"],
                &["--vapi-read-burst", "0"],
                &["--vapi-read-burst"],
            ),
            (
                &["run"],
                &["--vapi-write-rate", "NaN"],
                &["--vapi-write-rate"],
            ),
            (
                &["run"],
                &["--vapi-write-burst", "0"],
                &["--vapi-write-burst"],
            ),
            (
                &["run"],
                &["--vapi-pacing", "turbo"],
                &["--vapi-pacing", "turbo"],
            ),
            (
                &["run"],
                &["--vapi-read-rate-max", "0"],
                &["--vapi-read-rate-max"],
            ),
            (
                &["run"],
                &["--vapi-write-rate-max", "3"],
                &[
                    "--vapi-write-rate-max / VAPI_WRITE_RATE_MAX (3)",
                    "VAPI_WRITE_RATE (10)",
                ],
            ),
            (
                &["run"],
                &["--vapi-read-rate", "50", "--vapi-read-rate-max", "20"],
                &["VAPI_READ_RATE_MAX (20)", "VAPI_READ_RATE (50)"],
            ),
            (
                &["run"],
                &["--vapi-retries", "4000000000"],
                &["--vapi-retries"],
            ),
            (
                &["run"],
                &["--vapi-retry-after-max", "0s"],
                &["--vapi-retry-after-max"],
            ),
            (
                &["run"],
                &["--vapi-retry-after-max", "500ms"],
                &["VAPI_RETRY_AFTER_MAX", "500ms"],
            ),
            (
                &["run"],
                &["--breaker-failures", "0"],
                &["--breaker-failures"],
            ),
            (
                &["run"],
                &["--breaker-open-base", "0s"],
                &["--breaker-open-base"],
            ),
            (
                &["run"],
                &["--breaker-open-max", years],
                &["--breaker-open-max"],
            ),
            (
                &["run"],
                &["--breaker-open-base", "10m"],
                &["BREAKER_OPEN_BASE (10m)", "BREAKER_OPEN_MAX (5m)"],
            ),
            (
                &["run"],
                &["--quarantine-probe-interval", "0s"],
                &["--quarantine-probe-interval"],
            ),
            (
                &["run"],
                &["--agent-backoff-base", "100000000000years"],
                &["--agent-backoff-base", "10 years"],
            ),
            (
                &["run"],
                &["--agent-backoff-max", "0s"],
                &["--agent-backoff-max"],
            ),
            (
                &["run"],
                &["--agent-backoff-base", "10m"],
                &["AGENT_BACKOFF_BASE (10m)", "AGENT_BACKOFF_MAX (5m)"],
            ),
            (
                &["run"],
                &["--resync-interval", "0s"],
                &["--resync-interval"],
            ),
            (
                &["run"],
                &["--resync-interval", "3e11years"],
                &["--resync-interval"],
            ),
            (
                &["run"],
                &["--resync-interval", years],
                &["--resync-interval", "10 years"],
            ),
            (&["run"], &["--listen", "nowhere"], &["--listen"]),
            (
                &["run"],
                &["--api-wait-timeout", "0s"],
                &["--api-wait-timeout"],
            ),
            (
                &["run"],
                &["--api-wait-timeout", "2m"],
                &["HTTP_REQUEST_TIMEOUT (1m 30s)", "API_WAIT_TIMEOUT (2m)"],
            ),
            (
                &["run"],
                &["--http-header-read-timeout", "0s"],
                &["--http-header-read-timeout"],
            ),
            (
                &["run"],
                &["--http-request-timeout", "0s"],
                &["--http-request-timeout"],
            ),
            (
                &["run"],
                &["--http-idle-timeout", years],
                &["--http-idle-timeout"],
            ),
            (
                &["run"],
                &["--http-max-connections", "0"],
                &["--http-max-connections"],
            ),
            (
                &["run"],
                &["--leader-renew-interval", "2s"],
                &["LEADER_RENEW_INTERVAL (2s)", "LEADER_LEASE (1s 500ms)"],
            ),
            (
                &["run"],
                &["--create-grace", "10s"],
                &[
                    "CREATE_GRACE (10s)",
                    "VAPI_REQUEST_TIMEOUT (30s)",
                    "LEADER_LEASE (3s)",
                ],
            ),
            (
                &["reconcile", "--once"],
                &["--breaker-open-base", "1h"],
                &["BREAKER_OPEN_BASE"],
            ),
            (
                &["plan"],
                &["--leader-renew-interval", "2s"],
                &["LEADER_RENEW_INTERVAL"],
            ),
            (
                &["migrate"],
                &["--database-url", "mysql://db/x"],
                &["--database-url", "postgres or postgresql"],
            ),
            (
                &["guard", "--database-url", "postgres://db/x", "list"],
                &["--limit", "0"],
                &["--limit"],
            ),
            (
                &["guard", "--database-url", "postgres://db/x", "confirm", "1"],
                &["--valid-for", "0s"],
                &["--valid-for"],
            ),
            (
                &["guard", "--database-url", "postgres://db/x", "confirm", "1"],
                &["--by", ""],
                &["--by", "empty"],
            ),
            (
                &["demo"],
                &["--resync-interval", "0s"],
                &["--resync-interval"],
            ),
            (&["demo"], &["--database", "Bad Name"], &["--database"]),
            (
                &["demo"],
                &["--database-url", "http://db/x"],
                &["--database-url", "postgres"],
            ),
            (
                &["simulate"],
                &["--latency", years],
                &["--latency", "10 years"],
            ),
            (&["simulate"], &["--listen", "nowhere"], &["--listen"]),
        ];
        for (command, flags, needles) in cases {
            let args = with(command, flags);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let err = start(&args).expect_err(&format!("{args:?} must be refused"));
            for needle in *needles {
                assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
            }
            assert!(!err.contains("hunter2") && !err.contains("s3cret"), "{err}");
        }
        // The parts on their own, and the defaults, are fine.
        for command in [
            &["run"][..],
            &["reconcile", "--once"],
            &["plan"],
            &["migrate"],
        ] {
            let args = with(command, &[]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(start(&args), Ok(()), "{args:?}");
        }
        for ok in [
            &["--vapi-base-url", "http://127.0.0.1:8900"][..],
            &["--orphan-grace", "0s"],
            &["--journal-retention", "3650d"],
            &["--breaker-open-base", "5m"],
            &["--vapi-pacing", "fixed", "--vapi-write-rate-max", "10"],
            &["--vapi-read-rate", "600"],
            // The request timeout bounds the whole call; a longer connect bound is harmless.
            &["--vapi-request-timeout", "2s", "--create-grace", "1m"],
        ] {
            let args = with(&["run"], ok);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(start(&args), Ok(()), "{args:?}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let args = with(
            &["run"],
            &[
                "--breaker-open-base",
                "1h",
                "--agent-backoff-base",
                "1h",
                "--create-grace",
                "1s",
            ],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = start(&args).expect_err("three problems");
        assert_eq!(err.matches("must be").count(), 3, "{err}");
    }
}
