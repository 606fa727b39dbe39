//! A TCP relay on loopback for freezing a path to Postgres without closing it. Shared by the
//! tests and the benchmark (`examples/bench.rs` includes this file), so it depends on nothing
//! else of the harness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// A TCP relay on loopback (`socat`, one process per connection, all in one process group), so
/// a test can freeze a path to Postgres without closing it: `freeze` stops every relay process
/// (their sockets stay open, the kernel keeps the sessions up) and `thaw` resumes them.
pub struct Relay {
    child: tokio::process::Child,
    pub port: u16,
}

impl Relay {
    pub async fn start(target: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!("TCP:{target}"))
            .process_group(0)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("socat (Debian package `socat`) runs the relay");
        // It listens within moments; a relay that never does fails the caller instead of hanging.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the relay does not listen on {port}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Self { child, port }
    }

    fn group(&self, signal: &str) {
        let pid = self.child.id().expect("the relay is running");
        let status = std::process::Command::new("kill")
            .args([signal, "--", &format!("-{pid}")])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} -{pid}");
    }

    pub fn freeze(&self) {
        self.group("-STOP");
    }

    pub fn thaw(&self) {
        self.group("-CONT");
    }

    /// `url` with its host and port replaced by the relay's.
    pub fn url(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The whole group: the per-connection processes too, stopped or not.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}
