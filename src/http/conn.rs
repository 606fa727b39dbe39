//! The listener's accept loop: every socket bounded in time, and the number of sockets capped.
//!
//! Design note: the health routes are unauthenticated and the port is often reachable from a
//! whole cluster, so a client must not be able to hold the server. Four bounds, each a setting
//! ([`Limits`]):
//! - **Header read** (hyper's): the request head must be complete within this time, counted from
//!   the moment the connection waits for a request — a new socket or a kept-alive one between
//!   requests — so slow-loris, half-sent and idle keep-alive sockets are closed.
//! - **Request**: reading the body and answering; past it the answer is 408 (JSON).
//! - **Idle**: a connection on which no byte is read or written for this long while no request
//!   is being answered is closed (a client that stops reading its answer).
//! - **Connections**: at most this many are served; when one more arrives, the oldest is asked
//!   to close (an idle one closes at once, one answering gets a short grace), so a flood of idle
//!   sockets can never lock out a liveness probe, and file descriptors stay bounded.
//!
//! Shutdown closes the listener, lets in-flight requests finish for up to [`DRAIN`], then drops
//! what is left.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The listener's bounds (README, "HTTP server limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(90),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// How long in-flight requests may finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// How long an evicted connection that is answering may finish its answer.
const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// The connections being served, oldest first; each one's token asks it to close.
#[derive(Default)]
struct Slots {
    next: u64,
    open: BTreeMap<u64, CancellationToken>,
}

pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    cancel: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Mutex::new(Slots::default()));
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Transient (out of file descriptors, a reset before accept): back off, never exit.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (id, close) = {
            let mut s = lock(&slots);
            while s.open.len() >= limits.max_connections.max(1) {
                if let Some((_, oldest)) = s.open.pop_first() {
                    oldest.cancel();
                }
            }
            let id = s.next;
            s.next += 1;
            let close = cancel.child_token();
            s.open.insert(id, close.clone());
            (id, close)
        };
        let (app, slots, shutdown) = (app.clone(), slots.clone(), cancel.clone());
        conns.spawn(async move {
            connection(stream, app, limits, close, shutdown).await;
            lock(&slots).open.remove(&id);
        });
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    // What has not finished by then is aborted when `conns` drops.
    let _ = tokio::time::timeout(DRAIN, drain).await;
    Ok(())
}

fn lock(slots: &Mutex<Slots>) -> std::sync::MutexGuard<'_, Slots> {
    slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    close: CancellationToken,
    shutdown: CancellationToken,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let io = IdleBound::new(stream, limits.idle_timeout, in_flight.clone());
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let (app, in_flight) = (app.clone(), in_flight.clone());
            async move {
                in_flight.fetch_add(1, Ordering::SeqCst);
                let answer = app.oneshot(request.map(axum::body::Body::new)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                answer
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = close.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let grace = if shutdown.is_cancelled() { DRAIN } else { EVICTION_GRACE };
            let _ = tokio::time::timeout(grace, conn).await;
        }
    }
}

/// A socket that fails with `TimedOut` once no byte has moved for `idle` while no request is
/// being answered (`in_flight` is zero).
struct IdleBound<T> {
    inner: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    in_flight: Arc<AtomicUsize>,
}

impl<T> IdleBound<T> {
    fn new(inner: T, idle: Duration, in_flight: Arc<AtomicUsize>) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            in_flight,
        }
    }

    /// After a poll of the socket: progress pushes the deadline back; a wait checks it.
    fn bound<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.deadline.as_mut().reset(Instant::now() + self.idle);
                Poll::Ready(r)
            }
            Poll::Pending if self.in_flight.load(Ordering::SeqCst) > 0 => {
                self.deadline.as_mut().reset(Instant::now() + self.idle);
                Poll::Pending
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for longer than the idle timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleBound<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bound(cx, polled)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleBound<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bound(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.bound(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bound(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_socket_nobody_reads_is_closed_after_the_idle_timeout() {
        let (near, _far) = tokio::io::duplex(16);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut io = IdleBound::new(near, Duration::from_secs(30), in_flight);
        let started = Instant::now();
        // The peer never reads: the write fills the pipe and then waits.
        let err = io.write_all(&[0; 1024]).await.expect_err("stalled");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_and_requests_in_flight_keep_a_socket_open() {
        let (near, mut far) = tokio::io::duplex(64);
        let in_flight = Arc::new(AtomicUsize::new(1));
        let mut io = IdleBound::new(near, Duration::from_secs(30), in_flight.clone());
        // A request is being answered: a minute without bytes is fine.
        let mut buf = [0; 8];
        let waiting = tokio::time::timeout(Duration::from_secs(60), io.read(&mut buf)).await;
        assert!(waiting.is_err(), "still waiting, not failed");
        // Bytes arrive every 20 s: never idle for 30.
        in_flight.store(0, Ordering::SeqCst);
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            far.write_all(b"x").await.expect("write");
            assert_eq!(io.read(&mut buf).await.expect("read"), 1);
        }
        let err = io.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
