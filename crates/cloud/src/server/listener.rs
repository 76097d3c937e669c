//! The accept loop: TCP, then TLS, then HTTP/1.1 (hyper), with every server limit set, so no
//! client, slow or hostile, can hold the server's descriptors or memory.
//!
//! - **Connections.** At most `max_connections` at once (never more than the descriptors the
//!   process may open, less a reserve for the database and logs), and at most
//!   `max_per_address` from one IP address. A connection over either cap is closed at once.
//! - **Time.** The TLS handshake must finish within `header_timeout`; so must each request's
//!   head, and an idle keep-alive connection is closed after the same time (hyper's header-read
//!   timer runs while it waits for the next request). A request's body and its handling must
//!   finish within `request_timeout` (the middleware in `mod.rs`). A connection on which
//!   nothing moves, either way, for `request_timeout` plus the header timeout is dropped (a
//!   client that stops reading its answer).
//! - **Errors.** Accept failures (out of descriptors) are logged at most once per 5 s with how
//!   many were not logged, and the loop waits rather than spins.
//!
//! HTTP/2 is not offered (ALPN says http/1.1): the agent API needs none of it, and it would need
//! its own set of limits.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use super::tls::Peer;

/// The server's limits (`ad-sync-cloud serve --help` names the flags).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_address: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_per_address: 128,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Descriptors kept free for the database, its WAL, the log and the listener itself.
const FD_RESERVE: usize = 64;

impl Limits {
    /// The total cap as applied: never more than the process may open.
    pub fn effective_max(&self) -> usize {
        match open_files_limit() {
            Some(n) => self
                .max_connections
                .min(n.saturating_sub(FD_RESERVE).max(1)),
            None => self.max_connections,
        }
    }
}

#[cfg(unix)]
fn open_files_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur as usize)
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<usize> {
    None
}

/// Open connections, in total and per address.
struct Table {
    max: usize,
    per_address: usize,
    total: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
    drained: tokio::sync::Notify,
}

/// One connection's place in the table, given back when dropped.
struct Slot {
    table: Arc<Table>,
    ip: IpAddr,
}

impl Table {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.max {
            return Err("the server's connection limit");
        }
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= self.per_address {
            return Err("the per-address connection limit");
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_ip = self.table.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
        if self.table.total.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.table.drained.notify_waiters();
        }
    }
}

/// A warning logged at most once per period, with how many were held back.
struct Throttled {
    what: &'static str,
    last: Option<Instant>,
    held: u64,
}

impl Throttled {
    const PERIOD: Duration = Duration::from_secs(5);

    fn new(what: &'static str) -> Self {
        Throttled {
            what,
            last: None,
            held: 0,
        }
    }

    fn warn(&mut self, detail: &dyn std::fmt::Display) {
        if self.last.is_some_and(|t| t.elapsed() < Self::PERIOD) {
            self.held += 1;
            return;
        }
        let held = std::mem::take(&mut self.held);
        tracing::warn!(held_back = held, "{}: {detail}", self.what);
        self.last = Some(Instant::now());
    }
}

/// Serves `app` on `tcp` until `shutdown` completes; then stops accepting, lets requests in
/// flight finish (up to the request timeout) and returns.
pub async fn serve(
    tcp: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let table = Arc::new(Table {
        max: limits.effective_max(),
        per_address: limits.max_per_address,
        total: AtomicUsize::new(0),
        by_ip: Mutex::new(HashMap::new()),
        drained: tokio::sync::Notify::new(),
    });
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut accept_errors = Throttled::new("accept failed");
    let mut over_limit = Throttled::new("connection refused");
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    accept_errors.warn(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match table.take(peer.ip()) {
            Ok(s) => s,
            Err(which) => {
                over_limit.warn(&format_args!("{peer}: over {which}"));
                drop(stream);
                continue;
            }
        };
        // Only latency: a socket that refuses it still works.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            let _slot = slot;
            connection(stream, peer, acceptor, app, limits, closing).await;
        });
    }
    drop(tcp);
    // Connections finish what they are doing; none waits longer than a request may take.
    let _ = closing_tx.send(true);
    let deadline = limits.request_timeout + limits.header_timeout;
    let _ = tokio::time::timeout(deadline, async {
        loop {
            let drained = table.drained.notified();
            if table.total.load(Ordering::Relaxed) == 0 {
                break;
            }
            drained.await;
        }
    })
    .await;
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    limits: Limits,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let watched = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    let tls = match tokio::time::timeout(limits.header_timeout, acceptor.accept(watched)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(Peer(peer)));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    let mut conn = std::pin::pin!(conn);
    let stall = limits.request_timeout + limits.header_timeout;
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(stall / 4));
    let mut shutting_down = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection closed");
                }
                return;
            }
            _ = closing.changed(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if activity.idle() > stall {
                    tracing::debug!(%peer, "connection dropped: nothing moved for {} s", stall.as_secs());
                    return;
                }
            }
        }
    }
}

/// When bytes last moved on a connection, either way.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that notes each read and write that moved bytes.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_caps_hold_in_total_and_per_address() {
        let table = Arc::new(Table {
            max: 3,
            per_address: 2,
            total: AtomicUsize::new(0),
            by_ip: Mutex::new(HashMap::new()),
            drained: tokio::sync::Notify::new(),
        });
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = table.take(a).unwrap_or_else(|e| panic!("{e}"));
        let _a2 = table.take(a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            table.take(a).err(),
            Some("the per-address connection limit")
        );
        let _b1 = table.take(b).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(table.take(b).err(), Some("the server's connection limit"));
        drop(a1);
        assert!(
            table.take(b).is_ok(),
            "a closed connection gives its place back"
        );
        assert_eq!(table.total.load(Ordering::Relaxed), 2);
    }
}
