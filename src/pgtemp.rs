//! A private, throwaway PostgreSQL server for `demo` when no `DATABASE_URL` is given.
//!
//! Why its own module and not a crate: `pgtemp` wants the server binaries on `PATH` (Debian keeps
//! them in `/usr/lib/postgresql/<version>/bin`), panics when a step fails and listens on TCP;
//! `postgresql_embedded` downloads a server build at run time. This one finds the installed
//! binaries (`VAPI_RECONCILER_PG_BINDIR`, then `pg_config --bindir`, `PATH`, then
//! `/usr/lib/postgresql/*/bin`, newest first), runs `initdb` with trust authentication in a fresh
//! directory under the temporary directory and starts `postgres` listening on a Unix socket in
//! that directory only (mode 0700: no TCP port, so trust is safe). `initdb` and `postgres` refuse
//! to run as root: started as root, both run as `postgres` (the Debian package's user) or else
//! `nobody`, and the directory is theirs. The server gets its own process group, so a Ctrl-C at
//! the terminal reaches the demo only, which finishes its pass and then stops the server (fast
//! shutdown) and removes the directory; dropped without `stop`, it is killed and removed all the
//! same. A directory left behind by a demo that was killed outright (its owner pid is gone) is
//! reaped, server included, by the next start.
//!
//! Every failure is an error naming what to do, never a panic; without any server binary the
//! error says so at once (no process is started) and names the package and `DATABASE_URL`.

use std::fmt::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::SecretString;

/// A directory holding `initdb` and `postgres`; set (even to an empty directory) it is the only
/// place looked at.
pub(crate) const BINDIR_ENV: &str = "VAPI_RECONCILER_PG_BINDIR";

/// Names of this module's directories under the temporary directory.
const DIR_PREFIX: &str = "vapi-reconciler-pg-";

/// How long a fresh server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running private server; [`PrivatePostgres::stop`] ends it and removes its files.
pub(crate) struct PrivatePostgres {
    child: Option<tokio::process::Child>,
    dir: PathBuf,
    bindir: PathBuf,
    version: String,
    user: Option<String>,
}

/// The account the server runs as when this process is root.
struct ServerUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl PrivatePostgres {
    /// Initializes a cluster with the binaries in `bindir` (from [`find_bindir`]) and starts it;
    /// ready to accept connections.
    pub(crate) async fn start(bindir: PathBuf) -> anyhow::Result<Self> {
        reap_abandoned();
        let user = if running_as_root() {
            Some(server_user()?)
        } else {
            None
        };
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let mut server = Self {
            child: None,
            dir,
            bindir,
            version: String::new(),
            user: user.as_ref().map(|u| u.name.clone()),
        };
        // From here on a failure drops `server`, which removes the directory.
        std::fs::write(server.dir.join("owner"), std::process::id().to_string())?;
        if let Some(user) = &user {
            std::os::unix::fs::chown(&server.dir, Some(user.uid), Some(user.gid))
                .with_context(|| format!("handing {} to {}", server.dir.display(), user.name))?;
        }
        server.initdb(user.as_ref()).await?;
        server.version = std::fs::read_to_string(server.data().join("PG_VERSION"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        server.spawn(user.as_ref())?;
        server.wait_ready().await?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(
        &self,
        program: &str,
        user: Option<&ServerUser>,
        log: &str,
    ) -> anyhow::Result<tokio::process::Command> {
        let log = std::fs::File::create(self.dir.join(log))?;
        let mut cmd = tokio::process::Command::new(self.bindir.join(program));
        cmd.current_dir(&self.dir)
            .env_remove("PGDATA")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C at the terminal is the demo's to handle.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(user) = user {
            cmd.uid(user.uid).gid(user.gid);
            cmd.env("HOME", &self.dir);
        }
        Ok(cmd)
    }

    async fn initdb(&self, user: Option<&ServerUser>) -> anyhow::Result<()> {
        let status = self
            .command("initdb", user, "initdb.log")?
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .status()
            .await
            .with_context(|| format!("running {}", self.bindir.join("initdb").display()))?;
        if !status.success() {
            bail!("initdb failed ({status}): {}", self.log_tail("initdb.log"));
        }
        Ok(())
    }

    fn spawn(&mut self, user: Option<&ServerUser>) -> anyhow::Result<()> {
        let child = self
            .command("postgres", user, "postgres.log")?
            .arg("-D")
            .arg(self.data())
            .arg("-k")
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .spawn()
            .with_context(|| format!("starting {}", self.bindir.join("postgres").display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `postmaster.pid` says `ready` (what `pg_ctl -w` waits for).
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let pid_file = self.data().join("postmaster.pid");
        loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                if text.lines().nth(7).is_some_and(|l| l.trim() == "ready") {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "the private PostgreSQL server exited at start ({status}): {}",
                        self.log_tail("postgres.log")
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the private PostgreSQL server did not get ready within {}: {}",
                    humantime::format_duration(READY_TIMEOUT),
                    self.log_tail("postgres.log")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of a log in this server's directory, for an error message.
    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// A URL for the `postgres` superuser over the private socket (no password: trust).
    pub(crate) fn url(&self) -> SecretString {
        let mut url = reqwest::Url::parse("postgres://postgres@localhost/postgres")
            .expect("a constant URL parses");
        url.query_pairs_mut()
            .append_pair("host", &self.dir.to_string_lossy());
        SecretString::from(url.to_string())
    }

    /// What it is, in one line for people.
    pub(crate) fn describe(&self) -> String {
        let mut text = format!(
            "PostgreSQL {} from {}, in {}",
            self.version,
            self.bindir.display(),
            self.dir.display()
        );
        if let Some(user) = &self.user {
            let _ = write!(text, ", running as {user}");
        }
        text
    }

    /// Fast shutdown (SIGINT), then the directory goes; a server that does not stop within 10 s
    /// is killed.
    pub(crate) async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = signal(pid, "-INT").await;
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        // Drop removes the directory.
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // A killed postmaster's backends exit once they notice; the files can go now.
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn signal(pid: u32, signal: &str) -> std::io::Result<std::process::ExitStatus> {
    tokio::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// The first directory holding both `initdb` and `postgres`, or an error saying what to install.
pub(crate) fn find_bindir() -> anyhow::Result<PathBuf> {
    let candidates = match std::env::var_os(BINDIR_ENV) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => default_candidates(),
    };
    if let Some(found) = candidates.iter().find(|d| has_server(d)) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "no PostgreSQL server binaries (initdb, postgres) found in {}: install them \
         (`apt-get install postgresql`), point {BINDIR_ENV} at them, or set DATABASE_URL to a \
         server to use",
        if looked.is_empty() {
            "PATH".to_owned()
        } else {
            looked.join(", ")
        }
    )
}

fn default_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
    {
        if out.status.success() {
            dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path).filter(|d| d.join("initdb").is_file()));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    dirs.extend(versions.into_iter().map(|(_, d)| d));
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    dirs.dedup();
    dirs
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `postgres` if the system has it (Debian's package makes it), else `nobody`.
fn server_user() -> anyhow::Result<ServerUser> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 3 && fields[0] == wanted {
                if let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse()) {
                    return Ok(ServerUser {
                        name: wanted.to_owned(),
                        uid,
                        gid,
                    });
                }
            }
        }
    }
    bail!(
        "PostgreSQL refuses to run as root and neither a `postgres` nor a `nobody` user exists: \
         run the demo as another user or set DATABASE_URL"
    )
}

/// Whether `pid` runs (a zombie, killed but not yet waited for, does not).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold spaces.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Stops and removes what a demo that was killed outright left behind (its owner is gone).
fn reap_abandoned() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        let owner = std::fs::read_to_string(path.join("owner")).unwrap_or_default();
        let owner_alive = owner.trim().parse::<u32>().is_ok_and(process_alive);
        if !is_ours || owner.is_empty() || owner_alive {
            continue;
        }
        let postmaster =
            std::fs::read_to_string(path.join("data/postmaster.pid")).unwrap_or_default();
        if let Some(pid) = postmaster
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        {
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}
