//! The accept loop of every Agora server: TLS (with plaintext beside it on the same port
//! when allowed), HTTP/1 and HTTP/2 from one axum router, and a [`ConnectionInfo`] in every
//! request's extensions.
//!
//! Its bounds: a handshake (or first byte) within [`HANDSHAKE_TIMEOUT`], a request's
//! headers within [`HEADER_READ_TIMEOUT`], a connection with no bytes either way for
//! [`IDLE_TIMEOUT`] is closed, at most [`MAX_CONNECTIONS_PER_CLIENT`] connections from one
//! IP address, and at most [`MAX_CONCURRENT_STREAMS`] requests at once on one HTTP/2
//! connection. Connections that a [`PriorityLane`] admits (a master's Raft peers) are
//! served on the lane's own runtime, so client traffic cannot starve them; HTTP/1
//! connections whose first request a [`BulkLane`] admits (bulk reads such as `/state`) are
//! served on that lane's runtime, so a flood of them slows readers, not the API.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::tls::{common_name, ServerTls};

/// How long a new connection has to finish its TLS handshake (or send its first byte).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/1 client has to send a request's headers (slowloris: 500 sockets that
/// never finish a request used to be held for good).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may carry no bytes either way before it is closed (clients that
/// hold a connection open send HTTP/2 pings, which count).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Connections accepted at once from one IP address; more are closed at accept.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// Requests in flight at once on one HTTP/2 connection (a simulator multiplexes 100 agent
/// sessions on one).
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Connections served on a runtime of their own: those `admits` says yes to (once their
/// TLS handshake has named the client) run there, every other one on the caller's.
#[derive(Clone)]
pub struct PriorityLane {
    pub runtime: tokio::runtime::Handle,
    pub admits: Arc<dyn Fn(&ConnectionInfo) -> bool + Send + Sync>,
}

impl std::fmt::Debug for PriorityLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriorityLane").finish_non_exhaustive()
    }
}

/// HTTP/1 connections served on a runtime of their own (a low-priority one): those whose
/// first request's path `admits` says yes to. HTTP/2 (gRPC) always stays on the caller's.
#[derive(Clone)]
pub struct BulkLane {
    pub runtime: tokio::runtime::Handle,
    pub admits: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for BulkLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLane").finish_non_exhaustive()
    }
}

/// What the connection a request came on proves. Every request carries one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub remote: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The Common Name of the client's certificate, verified against the cluster CA.
    pub peer_principal: Option<String>,
}

/// How a server accepts connections.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// TLS; `None` serves plaintext only (`--insecure`).
    pub tls: Option<Arc<ServerTls>>,
    /// With TLS on, also accept plaintext on the same port (`--tls-allow-plaintext`).
    pub allow_plaintext: bool,
    /// How long a client has to send a request's headers ([`HEADER_READ_TIMEOUT`] when
    /// zero).
    pub header_timeout: Duration,
    /// How long a connection may stay silent ([`IDLE_TIMEOUT`] when zero).
    pub idle_timeout: Duration,
    /// Connections at once per client IP ([`MAX_CONNECTIONS_PER_CLIENT`] when zero).
    pub max_connections_per_client: usize,
    /// Connections served on their own runtime (a master's Raft peers).
    pub priority: Option<PriorityLane>,
    /// HTTP/1 connections served on a runtime of their own by their first request's path.
    pub bulk: Option<BulkLane>,
}

impl ServeOptions {
    pub fn plaintext() -> Self {
        Self::default()
    }
}

/// The first byte of a TLS ClientHello record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting and waits
/// for open connections to finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let clients = ClientCounts::default();
    let per_client = if options.max_connections_per_client == 0 {
        MAX_CONNECTIONS_PER_CLIENT
    } else {
        options.max_connections_per_client
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = clients.admit(remote.ip(), per_client) else {
            tracing::debug!(%remote, limit = per_client, "too many connections from one client; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let options = options.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some(mut accepted) = handshake(stream, remote, &options).await else {
                return;
            };
            let mut lane = options
                .priority
                .as_ref()
                .filter(|lane| (lane.admits)(accepted.info()))
                .map(|lane| lane.runtime.clone());
            if let (None, Some(bulk)) = (&lane, &options.bulk) {
                let Some(line) = accepted.first_line(header_timeout(&options)).await else {
                    return;
                };
                lane = request_path(&line)
                    .filter(|path| (bulk.admits)(path))
                    .map(|_| bulk.runtime.clone());
            }
            let connection = serve_connection(accepted, app, options, watcher, slot);
            match lane {
                // Spawned there, so the connection and the streams hyper spawns for it
                // run on the lane's runtime.
                Some(runtime) => {
                    let _ = runtime.spawn(connection).await;
                }
                None => connection.await,
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn serve_connection(
    accepted: Accepted,
    app: Router,
    options: ServeOptions,
    watcher: hyper_util::server::graceful::Watcher,
    _slot: ClientSlot,
) {
    let builder = builder(&options);
    let idle = if options.idle_timeout.is_zero() {
        IDLE_TIMEOUT
    } else {
        options.idle_timeout
    };
    match accepted {
        Accepted::Tls(tls, info, read) => {
            let (io, activity) = Watched::new(Replayed::new(read, *tls));
            let conn = builder.serve_connection(TokioIo::new(io), service(app, info));
            until_idle(watcher.watch(conn), activity, idle).await;
        }
        Accepted::Plain(plain, info, read) => {
            let (io, activity) = Watched::new(Replayed::new(read, plain));
            let conn = builder.serve_connection(TokioIo::new(io), service(app, info));
            until_idle(watcher.watch(conn), activity, idle).await;
        }
    }
}

/// Runs `conn` until it ends or carries no bytes for `idle`.
async fn until_idle<F: Future>(conn: F, activity: Arc<Activity>, idle: Duration) {
    tokio::pin!(conn);
    let check = (idle / 4).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = &mut conn => return,
            () = tokio::time::sleep(check) => {
                if activity.silent_for() >= idle {
                    tracing::debug!(?idle, "idle connection closed");
                    return;
                }
            }
        }
    }
}

/// Connections open per client IP address.
#[derive(Clone, Default)]
struct ClientCounts(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

impl ClientCounts {
    fn admit(&self, ip: std::net::IpAddr, limit: usize) -> Option<ClientSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            counts: self.clone(),
            ip,
        })
    }
}

/// One admitted connection; its count is given back when it is dropped.
struct ClientSlot {
    counts: ClientCounts,
    ip: std::net::IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// When a connection last carried a byte.
struct Activity {
    start: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

/// A stream that records its reads and writes in an [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    fn new(inner: S) -> (Self, Arc<Activity>) {
        let activity = Arc::new(Activity {
            start: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        });
        (
            Watched {
                inner,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn header_timeout(options: &ServeOptions) -> Duration {
    if options.header_timeout.is_zero() {
        HEADER_READ_TIMEOUT
    } else {
        options.header_timeout
    }
}

/// HTTP/1 and HTTP/2 with a deadline for a request's headers.
fn builder(options: &ServeOptions) -> Builder<TokioExecutor> {
    let timeout = header_timeout(options);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder
}

/// An accepted connection, with the bytes read from it so far (they are served first).
enum Accepted {
    Tls(
        Box<tokio_rustls::server::TlsStream<TcpStream>>,
        ConnectionInfo,
        Vec<u8>,
    ),
    Plain(TcpStream, ConnectionInfo, Vec<u8>),
}

/// The longest first line read to choose a lane; a longer one is served on the caller's.
const MAX_FIRST_LINE: usize = 8 * 1024;

impl Accepted {
    fn info(&self) -> &ConnectionInfo {
        match self {
            Accepted::Tls(_, info, _) | Accepted::Plain(_, info, _) => info,
        }
    }

    /// Reads the connection's first line (an HTTP/1 request line, or HTTP/2's
    /// `PRI * HTTP/2.0`), keeping the bytes for the server. `None` if the client sent
    /// none within `timeout` or closed.
    async fn first_line(&mut self, timeout: Duration) -> Option<String> {
        use tokio::io::AsyncReadExt;
        let read = async {
            loop {
                let (n, read) = match self {
                    Accepted::Tls(s, _, read) => {
                        let mut chunk = [0u8; 1024];
                        let n = s.read(&mut chunk).await.ok()?;
                        read.extend_from_slice(&chunk[..n]);
                        (n, read)
                    }
                    Accepted::Plain(s, _, read) => {
                        let mut chunk = [0u8; 1024];
                        let n = s.read(&mut chunk).await.ok()?;
                        read.extend_from_slice(&chunk[..n]);
                        (n, read)
                    }
                };
                if n == 0 {
                    return None;
                }
                if let Some(end) = read.iter().position(|&b| b == b'\n') {
                    return Some(String::from_utf8_lossy(&read[..end]).into_owned());
                }
                if read.len() >= MAX_FIRST_LINE {
                    return Some(String::new());
                }
            }
        };
        tokio::time::timeout(timeout, read).await.ok().flatten()
    }
}

/// The path of an HTTP/1 request line (`GET /state?x HTTP/1.1` is `/state`); `None` for
/// anything else (HTTP/2's preface is `PRI * HTTP/2.0`).
fn request_path(line: &str) -> Option<&str> {
    let mut words = line.split_ascii_whitespace();
    let _method = words.next()?;
    let target = words.next()?;
    let version = words.next()?;
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    Some(target.split(['?', '#']).next().unwrap_or(target))
}

/// A stream whose first bytes were read already: it gives those, then the rest.
struct Replayed<S> {
    read: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replayed<S> {
    fn new(read: Vec<u8>, inner: S) -> Self {
        Replayed { read, at: 0, inner }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Replayed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.at < self.read.len() {
            let n = (self.read.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.read[at..at + n]);
            self.at += n;
            if self.at == self.read.len() {
                self.read = Vec::new();
                self.at = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Replayed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn handshake(
    stream: TcpStream,
    remote: SocketAddr,
    options: &ServeOptions,
) -> Option<Accepted> {
    let plain = ConnectionInfo {
        remote,
        tls: false,
        peer_principal: None,
    };
    let Some(tls) = &options.tls else {
        return Some(Accepted::Plain(stream, plain, Vec::new()));
    };
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    match peeked {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        if options.allow_plaintext {
            return Some(Accepted::Plain(stream, plain, Vec::new()));
        }
        tracing::debug!(%remote, "plaintext connection refused: TLS is required");
        return None;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => return None,
    };
    let peer_principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|c| common_name(c));
    let info = ConnectionInfo {
        remote,
        tls: true,
        peer_principal,
    };
    Some(Accepted::Tls(Box::new(stream), info, Vec::new()))
}

fn service(
    app: Router,
    info: ConnectionInfo,
) -> TowerToHyperService<
    impl tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Clone,
> {
    TowerToHyperService::new(app.map_request(
        move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(info.clone());
            req
        },
    ))
}

/// The fallback of a server's router: UNIMPLEMENTED to a gRPC client, 404 to anyone else
/// (tonic's own fallback answered every unknown path with a 200 carrying a gRPC status).
pub async fn unknown_path(req: http::Request<axum::body::Body>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        tonic::Status::unimplemented(format!("no such method: {}", req.uri().path()))
            .into_http::<axum::body::Body>()
            .into_response()
    } else {
        (http::StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}
