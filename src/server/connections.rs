//! The gRPC port's connections, kept bounded against clients that hold them without
//! using them: our own accept loop (a cap on open connections, and a back-off instead of
//! a busy loop when the process runs out of file descriptors), a timer on every
//! connection (handshake, idle, stalled sends, the hard end of a connection's age), and a
//! layer over every call that counts a connection's open streams, measures the response
//! bytes it still owes, and gives calls that carry no `grpc-timeout` a default deadline.
//!
//! What tonic and hyper already do is used as they are (set in `server::run`): the cap on
//! concurrent streams per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`; a stream over it
//! gets `RST_STREAM(REFUSED_STREAM)`), HTTP/2 keepalive pings, the TLS handshake timeout,
//! and the GOAWAY at the maximum connection age. tonic's own age *grace* is not used: with
//! it set, tonic skips the GOAWAY and only closes the connection when age + grace has
//! passed, so the grace is enforced here instead.
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{BoxFuture, Bytes, Service, http};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::pb;
use crate::service::status::{Reason, Refusal};
use crate::session::UntilSent;

/// The transport's limits (`--max-connections`, `--max-concurrent-streams`, the
/// `--*-timeout-secs` flags, `--max-connection-age-secs`, `--default-deadline-secs`).
#[derive(Debug, Clone)]
pub struct Transport {
    /// Open gRPC connections at most; further clients wait in the kernel's listen backlog
    /// until one closes. `None`: [`default_max_connections`].
    pub max_connections: Option<usize>,
    /// Streams (calls) open at once on one connection. 256: a gRPC client multiplexes all
    /// its calls on one connection and, at the cap, queues further calls on its side
    /// instead of failing them; no client gains from more in flight than
    /// `compute_threads + queue_depth`, and it bounds what one connection can hold to 256
    /// requests and responses.
    pub max_concurrent_streams: u32,
    /// A new connection must send the HTTP/2 preface (or, with TLS, finish the TLS
    /// handshake) within this time.
    pub handshake_timeout: Duration,
    /// A connection with no call open for this long is closed; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// A connection that owes response bytes the peer does not take (no window update, or
    /// a full socket) for this long is closed: a client that never reads cannot keep
    /// encoded responses in memory.
    pub send_timeout: Duration,
    /// Ping an HTTP/2 connection this often when nothing arrives; `None` = no pings.
    pub keepalive_interval: Option<Duration>,
    /// Close a connection whose ping is not acknowledged within this time.
    pub keepalive_timeout: Duration,
    /// Send GOAWAY to a connection this old; `None` = connections may live forever.
    pub max_connection_age: Option<Duration>,
    /// After the GOAWAY, calls in flight have this long to finish before the connection
    /// is closed under them.
    pub max_connection_age_grace: Duration,
    /// Deadline of a call that carries no `grpc-timeout` and whose response is a single
    /// message (unary and client-streaming methods); `None` = no default. Server streams
    /// (ExportModel, health Watch) are exempt: they last as long as their reader wants.
    pub default_deadline: Option<Duration>,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            max_connections: None,
            max_concurrent_streams: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
            send_timeout: Duration::from_secs(30),
            keepalive_interval: Some(Duration::from_secs(60)),
            keepalive_timeout: Duration::from_secs(20),
            max_connection_age: Some(Duration::from_secs(3600)),
            max_connection_age_grace: Duration::from_secs(300),
            default_deadline: Some(Duration::from_secs(120)),
        }
    }
}

/// The file-descriptor budget kept for everything but gRPC connections: the listeners,
/// the runtime's own descriptors, session files being saved or restored, the metrics
/// port's connections.
const RESERVED_FDS_FRACTION: u64 = 4;
/// No more connections than this by default, however high the descriptor limit: each
/// holds HTTP/2 buffers and at most `max_concurrent_streams` calls.
const DEFAULT_MAX_CONNECTIONS_CAP: u64 = 10_000;

/// Three quarters of the soft open-files limit (`ulimit -n`), at most 10 000: the
/// accept loop then stops taking connections before the process runs out of
/// descriptors, so session files and the metrics port still open.
pub fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and has no other effect.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    let usable = soft.saturating_sub(soft / RESERVED_FDS_FRACTION);
    usable.clamp(1, DEFAULT_MAX_CONNECTIONS_CAP) as usize
}

// ---------------------------------------------------------------------------------------
// Accepting

/// The first back-off after the process ran out of descriptors (or kernel memory), and
/// the longest: accept is retried after 10 ms, 20 ms, … up to 1 s, never in a busy loop.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The connections accepted on `listener`, for `serve_with_incoming_shutdown`.
///
/// At `max_connections` open, the loop stops accepting until one closes: the clients
/// over the cap wait in the kernel's listen backlog (and are served, in order, when a
/// connection closes, e.g. an idle one at its handshake or idle timeout) rather than
/// being accepted and closed at once, which would fail well-behaved clients as fast as
/// an attacker could reconnect, and cost a descriptor and a wake-up per refusal. Nothing
/// spins while waiting. Accept errors that mean the process is out of resources
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM) back off with a doubling sleep.
///
/// The loop runs in its own task; it ends when the stream is dropped (the server stops).
pub fn incoming(
    listener: TcpListener,
    transport: &Transport,
) -> ReceiverStream<Result<Conn, io::Error>> {
    let max = transport
        .max_connections
        .unwrap_or_else(default_max_connections);
    let timers = Timers::from(transport);
    let slots = Arc::new(Semaphore::new(max));
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut backoff = BACKOFF_FIRST;
        let mut backing_off = false;
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    if backing_off {
                        tracing::info!("accepting connections again");
                        backing_off = false;
                    }
                    backoff = BACKOFF_FIRST;
                    let _ = stream.set_nodelay(true);
                    let conn = Conn::new(stream, permit, timers.clone());
                    if tx.send(Ok(conn)).await.is_err() {
                        return;
                    }
                }
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    if !backing_off {
                        tracing::warn!(error = %e, open = max - slots.available_permits() - 1, "cannot accept connections; backing off");
                        backing_off = true;
                    }
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {},
                        _ = tx.closed() => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// An accept error about one connection (it was reset before we took it): take the next.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

// ---------------------------------------------------------------------------------------
// One connection

/// The bytes a client sends first: the 24-byte HTTP/2 preface and its SETTINGS frame's
/// 9-byte header (with TLS, the ClientHello is longer than this).
const HANDSHAKE_BYTES: u64 = 24 + 9;
/// While a connection owes response bytes, it must take at least this many every
/// `send_timeout`; a peer that acknowledges pings but never opens its window does not
/// count as reading.
const MIN_SEND_PROGRESS: u64 = 16 * 1024;

/// What a connection's timer enforces, from [`Transport`].
#[derive(Debug, Clone)]
struct Timers {
    handshake: Duration,
    idle: Option<Duration>,
    send: Duration,
    /// Age + grace: the connection is closed at this age whatever is in flight.
    hard_age: Option<Duration>,
}

impl From<&Transport> for Timers {
    fn from(t: &Transport) -> Self {
        Timers {
            handshake: t.handshake_timeout,
            idle: t.idle_timeout,
            send: t.send_timeout,
            hard_age: t
                .max_connection_age
                .map(|age| age.saturating_add(t.max_connection_age_grace)),
        }
    }
}

/// What the connection and the calls on it share.
#[derive(Debug)]
struct Shared {
    accepted: Instant,
    open_streams: AtomicUsize,
    /// When the last call on the connection ended (ms after `accepted`).
    idle_since_ms: AtomicU64,
    /// Response body bytes handed to HTTP/2 and not yet written to the socket (floored at
    /// 0: the socket also carries headers, frame headers and pings).
    owed: AtomicU64,
}

impl Shared {
    fn ms_since_accepted(&self) -> u64 {
        self.accepted
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    fn wrote(&self, n: usize) {
        let n = n as u64;
        let _ = self
            .owed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_sub(n))
            });
    }
}

/// Which timer closed a connection.
#[derive(Debug, Clone, Copy)]
enum Closed {
    Handshake,
    Idle,
    Stalled,
    Age,
}

impl Closed {
    fn message(self) -> &'static str {
        match self {
            Closed::Handshake => "no HTTP/2 preface within the handshake timeout",
            Closed::Idle => "no call open for the idle timeout",
            Closed::Stalled => "the peer took no response bytes for the send timeout",
            Closed::Age => "still open at the maximum connection age plus its grace",
        }
    }
}

/// An accepted TCP connection with its timer and its slot under `max_connections` (freed
/// when hyper drops the connection).
///
/// The timer lives in the I/O calls: hyper always has a read pending on an HTTP/2
/// connection, and one blocked on a full socket polls its write, so checking on every
/// `poll_*` and registering one `Sleep` there is enough. A connection is closed by
/// failing its I/O with `TimedOut`, which drops it; that sends no GOAWAY, but it only
/// happens to a connection with no call open (idle), one whose peer sent nothing
/// (handshake), or one whose peer stopped reading (stalled) or outlived its grace (age).
pub struct Conn {
    stream: TcpStream,
    shared: Arc<Shared>,
    timers: Timers,
    _slot: OwnedSemaphorePermit,
    sleep: Pin<Box<Sleep>>,
    read_total: u64,
    written_total: u64,
    /// Since when the connection owes bytes, and `written_total` then.
    stall: Option<(Instant, u64)>,
    closed: Option<Closed>,
}

impl Conn {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, timers: Timers) -> Self {
        let accepted = Instant::now();
        Conn {
            stream,
            shared: Arc::new(Shared {
                accepted,
                open_streams: AtomicUsize::new(0),
                idle_since_ms: AtomicU64::new(0),
                owed: AtomicU64::new(0),
            }),
            sleep: Box::pin(tokio::time::sleep_until(accepted + timers.handshake)),
            timers,
            _slot: slot,
            read_total: 0,
            written_total: 0,
            stall: None,
            closed: None,
        }
    }

    /// Fails with `TimedOut` once a timer has expired; otherwise arms the sleep for the
    /// earliest moment one could, so this runs again then.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.closed.is_none() {
            let now = Instant::now();
            match self.evaluate(now) {
                Err(why) => {
                    tracing::debug!(reason = why.message(), "closing a connection");
                    self.closed = Some(why);
                }
                Ok(next) => {
                    let current = self.sleep.deadline();
                    if next < current || current <= now {
                        self.sleep.as_mut().reset(next);
                    }
                    // Registers the waker; the deadline is in the future.
                    let _ = self.sleep.as_mut().poll(cx);
                }
            }
        }
        match self.closed {
            Some(why) => Err(io::Error::new(io::ErrorKind::TimedOut, why.message())),
            None => Ok(()),
        }
    }

    /// The expired timer, or when to look again. A condition that is false now is looked
    /// at again after its own timeout (e.g. a busy connection after `idle`), so a change
    /// made by another task (the last call ending) is seen within that time.
    fn evaluate(&mut self, now: Instant) -> Result<Instant, Closed> {
        let s = &self.shared;
        let t = &self.timers;
        let mut next = now + t.send;
        if self.read_total < HANDSHAKE_BYTES {
            let at = s.accepted + t.handshake;
            if now >= at {
                return Err(Closed::Handshake);
            }
            next = next.min(at);
        }
        if let Some(hard) = t.hard_age {
            let at = s.accepted + hard;
            if now >= at {
                return Err(Closed::Age);
            }
            next = next.min(at);
        }
        if let Some(idle) = t.idle {
            if s.open_streams.load(Ordering::Acquire) == 0 {
                let since =
                    s.accepted + Duration::from_millis(s.idle_since_ms.load(Ordering::Acquire));
                let at = since + idle;
                if now >= at {
                    return Err(Closed::Idle);
                }
                next = next.min(at);
            } else {
                next = next.min(now + idle);
            }
        }
        if s.owed.load(Ordering::Relaxed) == 0 {
            self.stall = None;
        } else {
            match self.stall {
                Some((_, written))
                    if self.written_total.saturating_sub(written) >= MIN_SEND_PROGRESS =>
                {
                    self.stall = Some((now, self.written_total));
                }
                Some((since, _)) => {
                    let at = since + t.send;
                    if now >= at {
                        return Err(Closed::Stalled);
                    }
                    next = next.min(at);
                }
                None => self.stall = Some((now, self.written_total)),
            }
        }
        Ok(next)
    }

    fn wrote(&mut self, n: usize) {
        self.written_total += n as u64;
        self.shared.wrote(n);
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.check(cx)?;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.read_total += (buf.filled().len() - before) as u64;
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check(cx)?;
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check(cx)?;
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What a call learns about its connection (tonic puts it in the request's extensions,
/// beside the TLS details when there are any).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub tcp: TcpConnectInfo,
    shared: Arc<Shared>,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            tcp: self.stream.connect_info(),
            shared: self.shared.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Every call

/// Wraps the whole router (`Server::layer`): see [`Tracked`].
#[derive(Debug, Clone)]
pub struct TrackCalls {
    default_deadline: Option<Duration>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl TrackCalls {
    /// `stopping` turns true when the server starts shutting down.
    pub fn new(transport: &Transport, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        TrackCalls {
            default_deadline: transport.default_deadline,
            stopping,
        }
    }
}

impl<S> tower_layer::Layer<S> for TrackCalls {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            default_deadline: self.default_deadline,
            stopping: self.stopping.clone(),
        }
    }
}

/// Counts the call as an open stream of its connection until its response body is gone
/// (the idle timer), adds the response's body bytes to what the connection owes (the
/// send timer), answers DEADLINE_EXCEEDED for a call past the default deadline, and ends
/// a Trainer server stream (Fit, WatchFit, TrainStream, ExportModel) with UNAVAILABLE
/// (SHUTTING_DOWN) when the server starts stopping, so its client learns that the server
/// is going away instead of seeing the connection cut (an "h2 protocol error").
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    default_deadline: Option<Duration>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl<S, ReqB, B> Service<http::Request<ReqB>> for Tracked<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let open = req
            .extensions()
            .get::<ConnInfo>()
            .map(|c| OpenStream::new(c.shared.clone()));
        let deadline = self.default_deadline.filter(|_| {
            !req.headers().contains_key("grpc-timeout") && has_single_response(req.uri().path())
        });
        let path = req.uri().path();
        let stop =
            (path.starts_with("/backprop.v1.Trainer/") && !has_single_response(path)).then(|| {
                let mut stopping = self.stopping.clone();
                let stopped: StopFuture = Box::pin(async move {
                    // A closed channel (the server is gone) counts as stopping too.
                    let _ = stopping.wait_for(|s| *s).await;
                });
                stopped
            });
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut res = match deadline {
                None => answer.await?,
                Some(d) => match tokio::time::timeout(d, answer).await {
                    Ok(res) => res?,
                    Err(_) => tonic::Status::from(Refusal::new(
                        Reason::DefaultDeadline,
                        format!(
                            "the call sent no grpc-timeout and ran past the server's default \
                             deadline of {} s (--default-deadline-secs); send a deadline to allow longer",
                            d.as_secs_f64()
                        ),
                    ))
                    .into_http(),
                },
            };
            let until_sent = res.extensions_mut().remove::<UntilSent>();
            Ok(res.map(|inner| TrackedBody {
                inner,
                open,
                _until_sent: until_sent,
                stop,
                ended: false,
            }))
        })
    }
}

/// Whether `path` (`/package.Service/Method`) names a method of ours whose response is
/// one message (unary or client-streaming), from the descriptor sets: these get the
/// default deadline. Server streams and unknown paths do not.
fn has_single_response(path: &str) -> bool {
    static SINGLE: OnceLock<HashSet<String>> = OnceLock::new();
    SINGLE
        .get_or_init(|| {
            [
                pb::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
            ]
            .into_iter()
            .filter_map(|bytes| prost_types::FileDescriptorSet::decode(bytes).ok())
            .flat_map(|set| set.file)
            .flat_map(|file| {
                let package = file.package().to_string();
                file.service.into_iter().flat_map(move |service| {
                    let prefix = format!("/{package}.{}/", service.name());
                    service
                        .method
                        .into_iter()
                        .filter(|m| !m.server_streaming())
                        .map(move |m| format!("{prefix}{}", m.name()))
                })
            })
            .collect()
        })
        .contains(path)
}

/// One call open on a connection, until dropped.
#[derive(Debug)]
struct OpenStream(Arc<Shared>);

impl OpenStream {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open_streams.fetch_add(1, Ordering::AcqRel);
        OpenStream(shared)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let s = &self.0;
        // Idle from now on if this was the last call: stored before the count drops, so
        // the timer never sees 0 calls with an older idle time.
        s.idle_since_ms
            .store(s.ms_since_accepted(), Ordering::Release);
        s.open_streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its call counted as open, adds its DATA bytes to what
/// the connection owes, and holds the answer's memory against the budget until it is
/// sent or dropped (a reader that never reads holds at most what the budget allows).
pub struct TrackedBody<B> {
    inner: B,
    open: Option<OpenStream>,
    _until_sent: Option<UntilSent>,
    /// For a server stream: resolves when the server starts stopping.
    stop: Option<StopFuture>,
    /// The stream was ended here (by [`TrackedBody::stop`]).
    ended: bool,
}

type StopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The trailers that end a server stream when the server stops.
fn stopping_trailers() -> http::HeaderMap {
    let status: tonic::Status = Refusal::new(
        Reason::ShuttingDown,
        "the server is stopping (SIGTERM or a shutdown); this stream ends here. Retry \
         once it is back (or on another replica); WatchFit replays what you missed",
    )
    .into();
    let mut headers = status.into_http::<()>().into_parts().0.headers;
    headers.remove(http::header::CONTENT_TYPE);
    headers
}

impl<B> Body for TrackedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending()
            && let Some(stop) = &mut self.stop
            && stop.as_mut().poll(cx).is_ready()
        {
            self.stop = None;
            self.ended = true;
            return Poll::Ready(Some(Ok(Frame::trailers(stopping_trailers()))));
        }
        if let (Poll::Ready(Some(Ok(frame))), Some(open)) = (&polled, &self.open)
            && let Some(data) = frame.data_ref()
        {
            open.0.owed.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
