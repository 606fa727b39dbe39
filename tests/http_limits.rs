//! The HTTP listener under hostile clients: slow-loris and idle sockets are closed, a half-sent
//! body gets a 408, and thousands of idle connections cannot lock out `/healthz`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use vapi_reconciler::http::Limits;

const TOKEN: &str = "test-admin-token-0123456789";

async fn serve(pool: &PgPool, limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
    common::serve_api(pool, TOKEN, limits).await
}

/// Reads until the server closes the socket; what it sent before closing.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server never closed the socket");
    String::from_utf8_lossy(&seen).into_owned()
}

async fn healthz(addr: std::net::SocketAddr) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[sqlx::test]
async fn slow_loris_idle_and_half_sent_requests_are_closed(pool: PgPool) {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    let (addr, cancel) = serve(&pool, limits).await;

    // Slow-loris: a head that never ends.
    let mut loris = TcpStream::connect(addr).await.unwrap();
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    // A socket that never says anything.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A kept-alive socket after one answer.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A body announced and never sent.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(
        format!(
            "POST /v1/reconcile HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"orgId\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();

    let loris_saw = until_closed(&mut loris).await;
    assert!(!loris_saw.contains("200 OK"), "{loris_saw}");
    until_closed(&mut silent).await;
    let kept_saw = until_closed(&mut kept).await;
    assert!(kept_saw.starts_with("HTTP/1.1 200 OK"), "{kept_saw}");
    let half_saw = until_closed(&mut half).await;
    assert!(half_saw.starts_with("HTTP/1.1 408"), "{half_saw}");
    assert!(
        half_saw.contains(r#""error":"request_timeout""#),
        "{half_saw}"
    );

    assert_eq!(healthz(addr).await, 200);
    cancel.cancel();
}

#[sqlx::test]
async fn healthz_answers_with_5000_idle_connections_open(pool: PgPool) {
    // Each idle connection costs this process two descriptors (client and server side).
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let wanted = 12_000.min(hard);
    if soft < wanted {
        rlimit::Resource::NOFILE.set(wanted, hard).unwrap();
    }
    assert!(
        wanted >= 6_000,
        "the open-file limit ({hard}) is too low for 5,000 connections; raise it (ulimit -Hn)"
    );
    // Time bounds out of the way: the connection cap alone must keep the server reachable.
    let limits = Limits {
        header_read_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    assert_eq!(limits.max_connections, 1024);
    let (addr, cancel) = serve(&pool, limits).await;
    let mut idle = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..3 {
        assert_eq!(healthz(addr).await, 200);
    }
    // The oldest were closed to make room; the newest are still served.
    until_closed(&mut idle[0]).await;
    let newest = idle.last().unwrap();
    let mut buf = [0u8; 1];
    assert!(
        matches!(newest.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the newest idle connection is still open"
    );
    cancel.cancel();
}
