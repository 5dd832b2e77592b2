//! Accepting and policing HTTP connections.
//!
//! hyper serves each connection; this module decides which connections
//! exist and for how long, because hyper alone keeps a silent or slow
//! socket open forever and has no notion of a connection budget:
//!
//! * **Header timeout**: a connection that has not sent a complete request
//!   head within [`ConnectionLimits::header_timeout`] of its first byte (or
//!   of being accepted) is closed (slowloris).
//! * **Body progress**: the request body must deliver a chunk at least
//!   every [`ConnectionLimits::body_timeout`]; otherwise reading it fails
//!   and the handler answers "malformed request". A response the client
//!   does not read for as long is abandoned and the socket closed.
//! * **Idle keep-alive**: a connection with no request for
//!   [`ConnectionLimits::idle_timeout`] is closed.
//! * **Connection cap**: at most [`ConnectionLimits::max_connections`] are
//!   open. At the cap a new connection takes the place of the one idle the
//!   longest (no request in flight), so health checks and new clients get
//!   in while requests already accepted go on. When every connection is busy
//!   a small reserve is admitted that serves only `/healthz` and `/readyz`
//!   (the application sees [`Admission::Reserve`]); beyond that new
//!   connections are closed at once.
//! * **Shutdown deadline**: on shutdown the listener closes, idle
//!   connections close, requests in flight may finish until
//!   [`ConnectionLimits::shutdown_timeout`], then whatever is left is
//!   dropped.
//!
//! One reaper task checks every connection a few times per second; timing
//! comes from an I/O wrapper that records when bytes last moved.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

/// Timeouts and the connection budget (config keys `header_timeout_secs`,
/// `body_timeout_secs`, `idle_timeout_secs`, `max_connections`,
/// `shutdown_timeout_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to send a complete request head.
    pub header_timeout: Duration,
    /// Longest pause while a body is read or a response written.
    pub body_timeout: Duration,
    /// Longest pause between requests on a kept-alive connection.
    pub idle_timeout: Duration,
    /// Connections open at once, besides the health-check reserve.
    pub max_connections: usize,
    /// How long in-flight requests may take to finish after shutdown
    /// starts.
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            shutdown_timeout: Duration::from_secs(20),
        }
    }
}

/// hyper's own limit on header lines: above the application's (100), so
/// that an excess is answered by the surface in its own format rather than
/// by hyper with a bare 431.
const HYPER_MAX_HEADERS: usize = 200;

/// File descriptors left for everything but client sockets: the database
/// and its WAL, PostgreSQL connections, image downloads, the listener,
/// the runtime's own.
const FD_HEADROOM: u64 = 64;

/// The default connection cap: three quarters of the file descriptors left
/// after [`FD_HEADROOM`] (so the reserve and image downloads still find
/// descriptors), at least 16 and at most 10,000.
pub fn default_max_connections() -> usize {
    let nofile = open_file_limit().unwrap_or(1024);
    (nofile.saturating_sub(FD_HEADROOM) * 3 / 4).clamp(16, 10_000) as usize
}

/// The process's soft limit on open files (`ulimit -n`), from
/// `/proc/self/limits`; `None` where that is not readable or unlimited.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Connections admitted over the cap when none can be evicted.
fn reserve_size(max_connections: usize) -> usize {
    (max_connections / 16).clamp(4, 64)
}

/// How a connection was admitted; a request extension, so the application
/// can serve only health checks on reserve connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the cap.
    Regular,
    /// Over the cap, while every regular connection was busy.
    Reserve,
}

const NONE: u64 = u64::MAX;

/// What the reaper knows of one connection.
struct Activity {
    admission: Admission,
    /// Milliseconds since the server's epoch when bytes last moved.
    last_io: AtomicU64,
    /// When the current request head began (its first byte, or the
    /// connection's acceptance); [`NONE`] between requests.
    head_started: AtomicU64,
    /// When a write started waiting on the client; [`NONE`] otherwise.
    write_stalled: AtomicU64,
    in_flight: AtomicUsize,
    closing: AtomicBool,
    /// Whether its place in the cap or reserve has been given back.
    released: AtomicBool,
    close: Notify,
}

impl Activity {
    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.close.notify_one();
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }
}

/// The open connections.
struct Registry {
    epoch: Instant,
    limits: ConnectionLimits,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    /// Open connections, and those among them admitted over the cap.
    regular: AtomicUsize,
    reserve: AtomicUsize,
    drained: Notify,
    /// Signalled whenever a connection's task ends.
    freed: Notify,
}

impl Registry {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides whether a just-accepted connection may stay, evicting the
    /// longest-idle connection when at the cap.
    fn admit(&self) -> Option<Admission> {
        if self.regular.load(Ordering::SeqCst) < self.limits.max_connections {
            return Some(Admission::Regular);
        }
        if self.evict_longest_idle() {
            return Some(Admission::Regular);
        }
        if self.reserve.load(Ordering::SeqCst) < reserve_size(self.limits.max_connections) {
            return Some(Admission::Reserve);
        }
        None
    }

    /// Closes the regular connection with no request in flight whose last
    /// I/O is oldest; false when every one is busy.
    fn evict_longest_idle(&self) -> bool {
        let open = self.lock();
        // Ties (same millisecond) go to the older connection.
        let victim = open
            .iter()
            .filter(|(_, a)| {
                a.admission == Admission::Regular
                    && a.is_idle()
                    && !a.closing.load(Ordering::SeqCst)
            })
            .min_by_key(|(id, a)| (a.last_io.load(Ordering::SeqCst), **id))
            .map(|(_, a)| a);
        match victim {
            Some(a) => {
                a.close();
                // Its place is handed over now, not when its task ends.
                self.release(a);
                true
            }
            None => false,
        }
    }

    fn register(&self, admission: Admission) -> (u64, Arc<Activity>) {
        let now = self.now();
        let activity = Arc::new(Activity {
            admission,
            last_io: AtomicU64::new(now),
            head_started: AtomicU64::new(now),
            write_stalled: AtomicU64::new(NONE),
            in_flight: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            released: AtomicBool::new(false),
            close: Notify::new(),
        });
        match admission {
            Admission::Regular => self.regular.fetch_add(1, Ordering::SeqCst),
            Admission::Reserve => self.reserve.fetch_add(1, Ordering::SeqCst),
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.lock().insert(id, activity.clone());
        (id, activity)
    }

    fn unregister(&self, id: u64) {
        let (removed, now_empty) = {
            let mut open = self.lock();
            (open.remove(&id), open.is_empty())
        };
        if let Some(a) = removed {
            self.release(&a);
        }
        self.freed.notify_waiters();
        if now_empty {
            self.drained.notify_waiters();
        }
    }

    /// Gives a connection's place in the cap or the reserve back, once.
    fn release(&self, a: &Activity) {
        if a.released.swap(true, Ordering::SeqCst) {
            return;
        }
        match a.admission {
            Admission::Regular => self.regular.fetch_sub(1, Ordering::SeqCst),
            Admission::Reserve => self.reserve.fetch_sub(1, Ordering::SeqCst),
        };
    }

    /// Closes every connection past one of its timeouts.
    fn reap(&self) {
        let now = self.now();
        let limits = &self.limits;
        let past = |since: u64, limit: Duration| {
            since != NONE && now.saturating_sub(since) > limit.as_millis() as u64
        };
        for a in self.lock().values() {
            let expired = if a.is_idle() {
                let head = a.head_started.load(Ordering::SeqCst);
                if head != NONE {
                    past(head, limits.header_timeout)
                } else {
                    past(a.last_io.load(Ordering::SeqCst), limits.idle_timeout)
                }
            } else {
                false
            } || past(a.write_stalled.load(Ordering::SeqCst), limits.body_timeout);
            if expired {
                a.close();
            }
        }
    }

    fn close_all(&self) {
        for a in self.lock().values() {
            a.close();
        }
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Waits while the sockets still open fill the cap and the reserve and
    /// some of them are closing: an evicted connection closes
    /// asynchronously, and accepting faster than they close would run out
    /// of descriptors. With nothing closing, the next accept evicts.
    async fn wait_for_room(&self) {
        let most = self.limits.max_connections + reserve_size(self.limits.max_connections);
        loop {
            let freed = self.freed.notified();
            {
                let open = self.lock();
                let closing = open.values().any(|a| a.closing.load(Ordering::SeqCst));
                if open.len() < most || !closing {
                    return;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), freed).await;
        }
    }
}

/// A socket that tells its [`Activity`] when bytes move.
struct TrackedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
    registry: Arc<Registry>,
}

impl TrackedIo {
    fn moved(&self) {
        self.activity
            .last_io
            .store(self.registry.now(), Ordering::SeqCst);
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
            // The first byte after a response starts the next head's clock.
            if self.activity.is_idle() {
                self.start_clock(&self.activity.head_started);
            }
        }
        r
    }
}

impl TrackedIo {
    /// Records a write's or a flush's outcome. Only bytes accepted by the
    /// socket, or a stalled write getting through, count as I/O: hyper
    /// flushes an empty buffer when a connection's task first runs, and
    /// counting that would order idle connections by when their tasks were
    /// scheduled rather than by when they last moved data.
    fn note_write(&self, ready: bool, wrote_bytes: bool) {
        if !ready {
            self.start_clock(&self.activity.write_stalled);
            return;
        }
        let was_stalled = self.activity.write_stalled.swap(NONE, Ordering::SeqCst) != NONE;
        if was_stalled || wrote_bytes {
            self.moved();
        }
    }

    /// Sets a clock to now unless it is already running.
    fn start_clock(&self, clock: &AtomicU64) {
        let _ = clock.compare_exchange(
            NONE,
            self.registry.now(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(r.is_ready(), matches!(r, Poll::Ready(Ok(n)) if n > 0));
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note_write(r.is_ready(), false);
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(r.is_ready(), matches!(r, Poll::Ready(Ok(n)) if n > 0));
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts a request in flight from its head until its response is ready.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.head_started.store(NONE, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often the reaper looks at every connection.
const REAP_INTERVAL: Duration = Duration::from_millis(250);

/// Serves `app` on `listener` under `limits` until `shutdown` resolves,
/// then drains within the shutdown deadline.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        limits,
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
        regular: AtomicUsize::new(0),
        reserve: AtomicUsize::new(0),
        drained: Notify::new(),
        freed: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let reaper = tokio::spawn({
        let registry = registry.clone();
        async move {
            let mut tick = tokio::time::interval(REAP_INTERVAL);
            loop {
                tick.tick().await;
                registry.reap();
            }
        }
    });
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = async {
                registry.wait_for_room().await;
                listener.accept().await
            } => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of descriptors: free one if an idle connection can
                // go, and back off briefly either way.
                tracing::warn!(error = %e, "accept failed");
                registry.evict_longest_idle();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(admission) = registry.admit() else {
            tracing::warn!("connection refused: every connection and the reserve are busy");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Counted before its task first runs, so the next admission sees it.
        let (id, activity) = registry.register(admission);
        tokio::spawn(serve_connection(
            stream,
            id,
            activity,
            app.clone(),
            registry.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = async {
        loop {
            let notified = registry.drained.notified();
            if registry.is_empty() {
                return;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(limits.shutdown_timeout, drained)
        .await
        .is_err()
    {
        let left = registry.lock().len();
        tracing::warn!(
            connections = left,
            "shutdown deadline reached; closing what is left"
        );
        registry.close_all();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while !registry.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
    reaper.abort();
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    id: u64,
    activity: Arc<Activity>,
    app: Router,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let admission = activity.admission;
    let body_timeout = registry.limits.body_timeout;
    let io = TrackedIo {
        inner: stream,
        activity: activity.clone(),
        registry: registry.clone(),
    };
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = InFlight::begin(&service_activity);
        let mut req = req.map(|b| Body::new(TimeoutBody::new(body_timeout, b)));
        req.extensions_mut().insert(admission);
        let app = app.clone();
        // Boxed: an `Unpin` future lets the connection hand its socket
        // back when it ends (for the lingering close below).
        Box::pin(async move {
            let resp = app.oneshot(req).await;
            drop(in_flight);
            resp
        })
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The reaper enforces the header timeout (hyper's would also cut idle
    // keep-alive connections at the same, shorter, limit).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(HYPER_MAX_HEADERS)
        // A client that closes its side after sending still gets its
        // answer (an error, when the body fell short).
        .half_close(true);
    let mut conn = builder.serve_connection(TokioIo::new(io), service);
    let mut stopping = *stop.borrow();
    if stopping {
        Pin::new(&mut conn).graceful_shutdown();
    }
    let finished = loop {
        tokio::select! {
            r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                if let Err(e) = &r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break r.is_ok();
            }
            () = activity.close.notified() => break false,
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
    };
    if finished {
        linger(conn.into_parts().io.into_inner(), &activity).await;
    }
    registry.unregister(id);
}

/// How long a closing connection keeps reading what the client still
/// sends, and how much of it.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 << 20;

/// Closes a finished connection the way a client can read: when an answer
/// went out before the request body was read (refused by its declared size,
/// say), closing at once would make the kernel reset the connection and
/// the client could lose the answer. So: end our side, then read and
/// discard what the client still sends, for a short while.
async fn linger(mut io: TrackedIo, activity: &Activity) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if io.shutdown().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut drained = 0;
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    while drained < LINGER_BYTES {
        tokio::select! {
            r = tokio::time::timeout_at(deadline, io.read(&mut buf)) => match r {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => return,
            },
            () = activity.close.notified() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_from_proc() {
        let n = open_file_limit().expect("/proc/self/limits on Linux");
        assert!(n >= 16, "{n}");
        let cap = default_max_connections();
        assert!((16..=10_000).contains(&cap));
    }

    #[test]
    fn the_reserve_is_small_but_never_empty() {
        assert_eq!(reserve_size(16), 4);
        assert_eq!(reserve_size(144), 9);
        assert_eq!(reserve_size(10_000), 64);
    }
}
