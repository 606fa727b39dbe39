//! Running the binary as a user would: its own process, environment and signals.

use tokio::io::BufReader;
use tokio::process::Command;

use sqlx::PgPool;

pub const BIN: &str = env!("CARGO_BIN_EXE_vapi-reconciler");

/// The URL of the test's own database.
pub fn url_of(pool: &PgPool) -> String {
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let mut url = reqwest::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
    url.set_path(&db);
    url.to_string()
}

pub fn command(args: &[&str], url: &str, base: &str, key: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.kill_on_drop(true)
        .args(args)
        .env("DATABASE_URL", url)
        .env("VAPI_BASE_URL", base)
        .env("VAPI_PRIVATE_KEY", key)
        .env_remove("VAPI_PRIVATE_KEY_FILE")
        .env_remove("RUST_LOG");
    cmd
}

pub async fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("the child is running").to_string();
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Reads log lines until one contains `marker`; a test that never sees it fails instead of
/// hanging (the bound is generous: it only catches a marker that never comes).
pub async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<impl tokio::io::AsyncRead + Unpin>>,
    marker: &str,
    log: &mut Vec<String>,
) {
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let found = line.contains(marker);
            log.push(line);
            if found {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(std::time::Duration::from_secs(60), reading).await {
        Ok(true) => {}
        Ok(false) => panic!("the process ended before logging {marker:?}: {log:#?}"),
        Err(_) => panic!("no {marker:?} within 60 s: {log:#?}"),
    }
}

/// Polls `check` until it holds; fails the test after `bound` (generous: it only catches a
/// condition that never comes, it asserts nothing about speed).
pub async fn eventually<F, Fut>(what: &str, bound: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waiting = async {
        while !check().await {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    };
    if tokio::time::timeout(bound, waiting).await.is_err() {
        panic!("{what}: not within {bound:?}");
    }
}
