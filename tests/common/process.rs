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

/// A `run` process with its HTTP address, its log kept in memory (drained as it comes, so a full
/// pipe never blocks it) and its probes.
pub struct Replica {
    pub name: String,
    pub child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl Replica {
    /// Spawns `cmd` (a `command(["run", "--listen", "127.0.0.1:0", ...])`) with JSON logs on a
    /// pipe and waits for the line that names the HTTP address.
    pub async fn start(name: &str, mut cmd: Command) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = cmd
            .env("POD_NAME", name)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        read_until(&mut lines, "serving /healthz", &mut log).await;
        let line: serde_json::Value = serde_json::from_str(log.last().unwrap()).unwrap();
        let addr = line["addr"].as_str().unwrap().parse().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(log));
        tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().unwrap().push(line);
                }
            }
        });
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap();
        Self {
            name: name.to_owned(),
            child,
            addr,
            log,
            http,
        }
    }

    /// `GET /healthz`, or `None` while it does not answer.
    pub async fn health(&self) -> Option<serde_json::Value> {
        let response = self
            .http
            .get(format!("http://{}/healthz", self.addr))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    pub async fn role(&self) -> Option<String> {
        Some(self.health().await?["role"].as_str()?.to_owned())
    }

    /// The shards it writes for now, per `/healthz` (empty unless it leads).
    pub async fn writing(&self) -> Option<Vec<u64>> {
        let health = self.health().await?;
        if health["role"] != "leader" {
            return Some(Vec::new());
        }
        Some(
            health["shards"]
                .as_array()?
                .iter()
                .filter(|s| s["writing"] == true)
                .filter_map(|s| s["shard"].as_u64())
                .collect(),
        )
    }

    /// Waits until `/healthz` satisfies `check`; on timeout, fails with the replica's log.
    pub async fn until(
        &self,
        what: &str,
        bound: std::time::Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let waiting = async {
            loop {
                if let Some(health) = self.health().await {
                    if check(&health) {
                        return health;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        };
        match tokio::time::timeout(bound, waiting).await {
            Ok(health) => health,
            Err(_) => panic!(
                "{}: {what}: not within {bound:?}; log: {:#?}",
                self.name,
                self.log.lock().unwrap()
            ),
        }
    }
}

/// `host:port` of the Postgres that `url` names.
pub fn postgres_addr(url: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
}
