//! The steady pass measured as a process of its own: the controller's CPU and memory, not the
//! harness's or the simulator's.
//!
//! Design note: the simulator runs as `vapi-reconciler simulate` (a child process), and each
//! pass is one `vapi-reconciler reconcile --once` (another child), so what is measured is the
//! binary a user runs, from start to exit, by the kernel. The measured child is started through
//! this harness re-executed as `bench --rusage-of FILE -- COMMAND…`: that small intermediate
//! process waits for COMMAND and writes `getrusage(RUSAGE_CHILDREN)` to FILE: user and system
//! time of the whole process, and its peak resident set (`ru_maxrss`), with nothing else among
//! its children to blur the figure. The statements of the pass are counted from the child's own
//! log (`sqlx::query` events between "full pass starting" and "pass complete"); the Vapi calls
//! from the simulator's counters.
//!
//! The fleet grows in one run (10,000 → 50,000 → 100,000 → 200,000 agents by default): at each
//! size the new agents are inserted, one unmeasured pass creates their assistants, and the next
//! pass is the measured one. The curve of peak RSS and CPU against N is drawn as an SVG.

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use uuid::Uuid;
use vapi_reconciler::simulator::Counters;

use super::{Args, Env, Row, mb, reconciler_binary};

/// `bench --rusage-of FILE -- COMMAND ARGS…`: runs COMMAND with this process's stdio, then
/// writes its resource usage to FILE as JSON and exits with its exit code.
pub(crate) fn rusage_main(args: &[std::ffi::OsString]) -> anyhow::Result<std::process::ExitCode> {
    let [file, dashdash, command, rest @ ..] = args else {
        anyhow::bail!("usage: bench --rusage-of FILE -- COMMAND [ARGS…]");
    };
    anyhow::ensure!(
        dashdash == "--",
        "usage: bench --rusage-of FILE -- COMMAND [ARGS…]"
    );
    let status = std::process::Command::new(command).args(rest).status()?;
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let json = serde_json::json!({
        "user_s": secs(usage.user_time()),
        "system_s": secs(usage.system_time()),
        "maxrss_kb": usage.max_rss(),
        "code": status.code(),
    });
    std::fs::write(file, json.to_string())?;
    Ok(std::process::ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}

/// `vapi-reconciler simulate` as a child process, on a free port of 127.0.0.1, with one key.
pub(crate) struct SimProcess {
    child: tokio::process::Child,
    pub(crate) base_url: String,
    pub(crate) key: String,
    http: reqwest::Client,
}

impl SimProcess {
    pub(crate) async fn start(
        bin: &std::path::Path,
        log: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let key = Uuid::new_v4().to_string();
        let org = Uuid::new_v4().to_string();
        // A free port, released just before the simulator binds it.
        let addr = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?;
        let log = std::fs::File::create(log)?;
        let child = tokio::process::Command::new(bin)
            .args(["simulate", "--listen", &addr.to_string()])
            .arg("--key")
            .arg(format!("{key}={org}"))
            .env_remove("RUST_LOG")
            .env_remove("VAPI_SIM_KEYS")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let sim = Self {
            child,
            base_url: format!("http://{addr}"),
            key,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while sim.counters().await.is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the simulator did not answer on {addr} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(sim)
    }

    pub(crate) async fn counters(&self) -> anyhow::Result<Counters> {
        Ok(self
            .http
            .get(format!("{}/_sim/counters", self.base_url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub(crate) async fn reset_counters(&self) -> anyhow::Result<()> {
        self.http
            .delete(format!("{}/_sim/counters", self.base_url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The simulator's resident set now, MB (it holds every assistant).
    pub(crate) fn rss_mb(&self) -> f64 {
        let Some(pid) = self.child.id() else {
            return 0.0;
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .map_or(0.0, mb)
    }
}

/// One `reconcile --once` as a process of its own.
pub(crate) struct Once {
    pub(crate) report: Value,
    pub(crate) wall: f64,
    /// user + system time of the process, and its peak RSS (kB): only when measured.
    pub(crate) cpu: f64,
    pub(crate) maxrss_kb: u64,
    /// Statements the pass sent (from the process's own log).
    pub(crate) statements: Vec<String>,
}

/// The settings of every `reconcile --once` here: pacing out of the way (fixed, high rates: the
/// simulator has no latency and no limit), the production defaults otherwise.
const ONCE_FLAGS: &[&str] = &[
    "--concurrency",
    "64",
    "--vapi-pacing",
    "fixed",
    "--vapi-read-rate",
    "100000",
    "--vapi-read-burst",
    "100000",
    "--vapi-write-rate",
    "100000",
    "--vapi-write-burst",
    "100000",
];

/// What a `reconcile --once` is run for.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Run {
    /// Unmeasured (creating the fleet).
    Setup,
    /// CPU and peak RSS, with the default log (debug events cost CPU of their own).
    Measure,
    /// The statements, from a debug log of `sqlx::query`; nothing else is taken from it.
    Count,
}

pub(crate) async fn reconcile_once(
    bin: &std::path::Path,
    env: &Env,
    sim: &SimProcess,
    dir: &std::path::Path,
    label: &str,
    run: Run,
) -> anyhow::Result<Once> {
    let measure = run == Run::Measure;
    let usage_file = dir.join(format!("{label}.rusage.json"));
    let stderr_file = dir.join(format!("{label}.log"));
    let mut cmd = if measure {
        let mut c = tokio::process::Command::new(std::env::current_exe()?);
        c.arg("--rusage-of").arg(&usage_file).arg("--").arg(bin);
        c
    } else {
        tokio::process::Command::new(bin)
    };
    cmd.args(["reconcile", "--once"])
        .args(ONCE_FLAGS)
        .env("DATABASE_URL", &env.url)
        .env("VAPI_BASE_URL", &sim.base_url)
        .env("VAPI_PRIVATE_KEY", &sim.key)
        .env_remove("VAPI_PRIVATE_KEY_FILE")
        .env_remove("LOG_FORMAT")
        .env(
            "RUST_LOG",
            match run {
                // The statements are counted from the log; the rest of it stays at the default.
                Run::Count => "info,sqlx::query=debug,vapi_reconciler::controller=debug",
                Run::Setup | Run::Measure => "info",
            },
        )
        .stdin(Stdio::null());
    let t0 = Instant::now();
    // tokio's `output` pipes stdout and stderr whatever was set: the log comes back here.
    let out = cmd.output().await?;
    let wall = t0.elapsed().as_secs_f64();
    std::fs::write(&stderr_file, &out.stderr)?;
    let log = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success(),
        "reconcile --once ({label}) exited {}; its log is {}",
        out.status,
        stderr_file.display()
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reconcile --once ({label}) printed no JSON report"))?;
    let (cpu, maxrss_kb) = if measure {
        let usage: Value = serde_json::from_str(&std::fs::read_to_string(&usage_file)?)?;
        let f = |k: &str| usage[k].as_f64().unwrap_or(f64::NAN);
        (
            f("user_s") + f("system_s"),
            usage["maxrss_kb"].as_u64().unwrap_or(0),
        )
    } else {
        (0.0, 0)
    };
    let statements = if run == Run::Count {
        anyhow::ensure!(
            log.contains("full pass starting") && log.contains("pass complete"),
            "the log of reconcile --once ({label}) does not show the pass's start and end: {}",
            stderr_file.display()
        );
        pass_statements(&log)
    } else {
        Vec::new()
    };
    Ok(Once {
        report,
        wall,
        cpu,
        maxrss_kb,
        statements,
    })
}

/// The `sqlx::query` events logged between the start of the full pass and its completion,
/// but for the leader's lease renewals (`with held as …`, `src/leader.rs`): those run on their
/// own connection every renew interval, however long the pass takes, and are not the pass's.
fn pass_statements(log: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in log.lines() {
        if line.contains("full pass starting") {
            inside = true;
        } else if line.contains("pass complete") {
            break;
        } else if inside && line.contains("sqlx::query") {
            let summary: String = line
                .split_once("summary=")
                .map_or(line, |(_, s)| s)
                .chars()
                .take(100)
                .collect();
            if !summary.starts_with("\"with held as") {
                out.push(summary);
            }
        }
    }
    out
}

/// One size of the steady curve.
struct Point {
    n: usize,
    cpu: f64,
    rss_mb: f64,
}

/// What a steady pass reads: the organizations' keys, the tools, the agents with their status,
/// the orphan sightings and the phone-number bindings.
const STATEMENTS_PER_PASS: usize = 5;
/// What the first pass of a process adds: the reap of journal rows a dead process left pending,
/// and the keys' health, which the process has not seen yet (a fenced upsert: lease, insert,
/// commit).
const STATEMENTS_PER_PROCESS: usize = 4;

/// How many times the measured pass runs at each size (the figures are the medians).
const MEASURED: usize = 3;
/// The default sizes of the curve.
const SIZES: [usize; 4] = [10_000, 50_000, 100_000, 200_000];
/// The goals hold at this size (the issue's); the larger one is on the curve only.
const GOAL_AT: usize = 100_000;

pub(crate) async fn steady(args: &Args) -> anyhow::Result<Vec<Row>> {
    let sizes: Vec<usize> = match args.agents {
        Some(n) => vec![n],
        None => SIZES.to_vec(),
    };
    let bin = reconciler_binary(args)?;
    let dir = std::env::temp_dir().join(format!("vr-bench-steady-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let sim = SimProcess::start(&bin, &dir.join("simulator.log")).await?;
    let env = Env::new(&args.database_url).await?;
    let result = curve(args, &bin, &env, &sim, &dir, &sizes).await;
    env.drop().await?;
    drop(sim);
    match result {
        Ok(rows) => {
            let _ = std::fs::remove_dir_all(&dir);
            Ok(rows)
        }
        Err(e) => Err(e.context(format!("the processes' logs are in {}", dir.display()))),
    }
}

async fn curve(
    args: &Args,
    bin: &std::path::Path,
    env: &Env,
    sim: &SimProcess,
    dir: &std::path::Path,
    sizes: &[usize],
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut points = Vec::new();
    let mut have = 0;
    for &n in sizes {
        env.insert_agents_range(have + 1, n).await?;
        let t_setup = Instant::now();
        let setup = reconcile_once(bin, env, sim, dir, &format!("setup-{n}"), Run::Setup).await?;
        let created = setup.report["created"].as_u64().unwrap_or(0);
        anyhow::ensure!(
            created as usize == n - have,
            "the setup pass at N={n} created {created} of {} (report: {})",
            n - have,
            setup.report
        );
        // The first pass to find the new assistants in sync records what it decided from (the
        // in-sync memo, src/reconcile/memo.rs): one status write per agent, once.
        let warm = reconcile_once(bin, env, sim, dir, &format!("warm-{n}"), Run::Setup).await?;
        anyhow::ensure!(
            warm.report["in_sync"].as_u64() == Some(n as u64),
            "the warm-up pass at N={n} found {} in sync (report: {})",
            warm.report["in_sync"],
            warm.report
        );
        let setup_wall = t_setup.elapsed().as_secs_f64();
        have = n;

        // The statements of a steady pass, counted in a pass of its own: its debug log would
        // cost the measured pass CPU.
        let counted = reconcile_once(bin, env, sim, dir, &format!("count-{n}"), Run::Count).await?;
        // The measured pass runs MEASURED times, each a process of its own: CPU time on this
        // machine (a VM, other work beside it) varies by a quarter between identical runs, so
        // the figures are the medians, with every run's in the note.
        let mut runs = Vec::with_capacity(MEASURED);
        let mut counters = None;
        for i in 0..MEASURED {
            sim.reset_counters().await?;
            let label = format!("steady-{n}-{}", i + 1);
            runs.push(reconcile_once(bin, env, sim, dir, &label, Run::Measure).await?);
            // Every run's calls are counted; the first's are shown (the check below holds each).
            let c = sim.counters().await?;
            let lists = c.total("GET", "/assistant");
            let total: u64 = c.requests.iter().map(|r| r.count).sum();
            anyhow::ensure!(
                total == lists,
                "measured run {} at N={n} made calls besides LISTs: {:?}",
                i + 1,
                c.requests
            );
            counters.get_or_insert(c);
        }
        let counters = counters.ok_or_else(|| anyhow::anyhow!("no measured run"))?;
        let median = |f: &dyn Fn(&Once) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let each = |f: &dyn Fn(&Once) -> String| runs.iter().map(f).collect::<Vec<_>>().join(", ");
        let cpu_runs = each(&|o| format!("{:.2}", o.cpu));
        let rss_runs = each(&|o| format!("{:.0}", mb(o.maxrss_kb)));
        let cpu = median(&|o| o.cpu);
        let rss = median(&|o| mb(o.maxrss_kb));
        let pass = runs.iter().find(|o| o.cpu == cpu).unwrap_or(&runs[0]);
        let total: u64 = counters.requests.iter().map(|r| r.count).sum();
        let lists = counters.total("GET", "/assistant");
        // Pages of 1,000; the page that is not full ends the listing (an empty one when N is a
        // multiple of 1,000).
        let expected_lists = (n + 1).div_ceil(1000) as u64;
        let r = &pass.report;
        let in_sync = r["in_sync"].as_u64().unwrap_or(0);
        anyhow::ensure!(
            in_sync as usize == n,
            "the measured pass at N={n} found {in_sync} in sync (report: {r})"
        );
        // Every in-sync agent's memo matched: none is left to remember, nothing to write.
        anyhow::ensure!(
            r["memos_written"].as_u64() == Some(0) && r["status_writes"].as_u64() == Some(0),
            "the measured pass at N={n} wrote statuses or memos (report: {r})"
        );
        // A pass reads the agents at the least: none counted means the log was not read right.
        anyhow::ensure!(
            !counted.statements.is_empty(),
            "no statement found in the counted pass's log at N={n} ({})",
            dir.join(format!("count-{n}.log")).display()
        );
        for (i, q) in counted.statements.iter().enumerate() {
            eprintln!("steady N={n} statement {}: {q}", i + 1);
        }
        let goal = |g: f64| (n <= GOAL_AT).then_some(g);
        rows.push(Row {
            scenario: format!("steady (N={n}): Vapi calls"),
            measured: format!("{total} ({lists} LIST)"),
            bound: format!("ceil((N+1)/1000) = {expected_lists} LIST, nothing else"),
            ratio: Some(total as f64 / expected_lists as f64),
            // Pages overlap by the assistants that share the boundary's millisecond (the
            // boundary is inclusive; the setup creates several per millisecond), which can
            // cost a page per hundred; a GET or write per agent would be a ratio of 10 or more.
            goal: Some(1.01),
            note: format!(
                "in sync {in_sync}, patched {}, created {}, status writes {}, memos {}; process \
                 wall {:.2} s (pass {} s); setup and warm-up passes {setup_wall:.1} s",
                r["patched"],
                r["created"],
                r["status_writes"],
                r["memos_written"],
                pass.wall,
                r["duration_seconds"]
            ),
        });
        rows.push(Row {
            scenario: format!("steady (N={n}): statements of the pass"),
            measured: counted.statements.len().to_string(),
            bound: format!(
                "{STATEMENTS_PER_PASS} per pass + {STATEMENTS_PER_PROCESS} once per process"
            ),
            ratio: Some(
                counted.statements.len() as f64
                    / (STATEMENTS_PER_PASS + STATEMENTS_PER_PROCESS) as f64,
            ),
            goal: Some(1.0),
            note: "`sqlx::query` events in a `reconcile --once` log between \"full pass \
                   starting\" and \"pass complete\" (a pass of its own, unmeasured): per pass \
                   the organizations' keys, tools, agents, orphan sightings and number bindings; \
                   once per process the stale-journal reap and the keys' health (lease check, \
                   upsert, commit), which a long-running process does not repeat"
                .to_owned(),
        });
        rows.push(Row {
            scenario: format!("steady (N={n}): CPU of the controller process"),
            measured: format!("{cpu:.2} s"),
            bound: "< 1 s".to_owned(),
            ratio: Some(cpu),
            goal: goal(1.0),
            note: format!(
                "median of {MEASURED} runs ({cpu_runs} s): user + system time of `reconcile \
                 --once`, start to exit (getrusage of the reaped child); the simulator and \
                 Postgres are other processes"
            ),
        });
        rows.push(Row {
            scenario: format!("steady (N={n}): peak RSS of the controller process"),
            measured: format!("{rss:.0} MB"),
            bound: "< 200 MB".to_owned(),
            ratio: Some(rss / 200.0),
            goal: goal(1.0),
            note: format!(
                "median of {MEASURED} runs ({rss_runs} MB): ru_maxrss of `reconcile --once`; the \
                 simulator holds {n} assistants in {:.0} MB of its own",
                sim.rss_mb()
            ),
        });
        points.push(Point {
            n,
            cpu,
            rss_mb: rss,
        });
    }
    if let [first, .., last] = points.as_slice() {
        let per_agent = (last.rss_mb - first.rss_mb) * 1024.0 * 1024.0 / (last.n - first.n) as f64;
        let fixed = first.rss_mb - per_agent * first.n as f64 / (1024.0 * 1024.0);
        let cpu_per = (last.cpu - first.cpu) / (last.n - first.n) as f64 * 1e6;
        rows.push(Row {
            scenario: format!("steady: memory per agent ({} → {})", first.n, last.n),
            measured: format!("{per_agent:.0} bytes/agent"),
            bound: "< 200 MB at 100,000 ⇒ < 2,097 bytes/agent".to_owned(),
            ratio: Some(per_agent / 2097.0),
            goal: Some(1.0),
            note: format!(
                "slope of peak RSS between the smallest and largest size; {fixed:.0} MB fixed; \
                 CPU {cpu_per:.2} µs/agent"
            ),
        });
        let path = args.plot.clone().unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/steady-footprint.svg")
        });
        std::fs::File::create(&path)?.write_all(svg(&points).as_bytes())?;
        eprintln!("steady: the curve is drawn in {}", path.display());
    }
    Ok(rows)
}

/// Two panels, peak RSS and CPU of the controller process against N, with the goals drawn.
/// Hand-written: a few lines of SVG, where a plotting crate would bring fonts and a build of
/// its own into the benchmark.
fn svg(points: &[Point]) -> String {
    let (w, h, pad) = (360.0, 240.0, 48.0);
    let max_n = points.iter().map(|p| p.n).max().unwrap_or(1) as f64;
    let panel = |x0: f64, title: &str, unit: &str, goal: f64, ys: Vec<(f64, f64)>| {
        let top = ys.iter().map(|p| p.1).fold(goal * 1.25, f64::max);
        let px = |n: f64| x0 + pad + n / max_n * (w - 1.5 * pad);
        let py = |y: f64| h - pad + -(y / top) * (h - 1.6 * pad);
        let mut s = format!(
            r##"<text x="{:.1}" y="18" font-size="13" text-anchor="middle">{title}</text>
<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000"/>
<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000"/>
<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#c00" stroke-dasharray="4 3"/>
<text x="{:.1}" y="{:.1}" font-size="10" fill="#c00">goal {goal} {unit} at 100k</text>
"##,
            x0 + w / 2.0,
            px(0.0),
            py(0.0),
            px(max_n),
            py(0.0),
            px(0.0),
            py(0.0),
            px(0.0),
            py(top),
            px(0.0),
            py(goal),
            px(max_n),
            py(goal),
            px(0.0) + 4.0,
            py(goal) - 4.0,
        );
        let line: Vec<String> = ys
            .iter()
            .map(|(n, y)| format!("{:.1},{:.1}", px(*n), py(*y)))
            .collect();
        s += &format!(
            r##"<polyline fill="none" stroke="#06c" stroke-width="2" points="{}"/>
"##,
            line.join(" ")
        );
        for (n, y) in &ys {
            s += &format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#06c"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{y:.2}</text>
<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}k</text>
"##,
                px(*n),
                py(*y),
                px(*n),
                py(*y) - 7.0,
                px(*n),
                h - pad + 14.0,
                n / 1000.0
            );
        }
        s += &format!(
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">agents (N)</text>
<text x="{:.1}" y="{:.1}" font-size="11" transform="rotate(-90 {:.1} {:.1})" text-anchor="middle">{unit}</text>
"##,
            x0 + w / 2.0,
            h - 8.0,
            x0 + 14.0,
            h / 2.0,
            x0 + 14.0,
            h / 2.0
        );
        s
    };
    let rss = points.iter().map(|p| (p.n as f64, p.rss_mb)).collect();
    let cpu = points.iter().map(|p| (p.n as f64, p.cpu)).collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
{}{}</svg>
"##,
        2.0 * w,
        panel(0.0, "peak RSS of one steady pass (MB)", "MB", 200.0, rss),
        panel(w, "CPU of one steady pass (s)", "s", 1.0, cpu),
    )
}
