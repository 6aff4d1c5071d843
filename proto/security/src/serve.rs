//! The accept loop of every Agora server: TLS (with plaintext beside it on the same port
//! when allowed), HTTP/1 and HTTP/2 from one axum router, and a [`ConnectionInfo`] in every
//! request's extensions.

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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let options = options.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder = builder(&options);
            match handshake(stream, remote, &options).await {
                Some(Accepted::Tls(tls, info)) => {
                    let conn = builder.serve_connection(TokioIo::new(tls), service(app, info));
                    let _ = watcher.watch(conn).await;
                }
                Some(Accepted::Plain(plain, info)) => {
                    let conn = builder.serve_connection(TokioIo::new(plain), service(app, info));
                    let _ = watcher.watch(conn).await;
                }
                None => {}
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// HTTP/1 and HTTP/2 with a deadline for a request's headers.
fn builder(options: &ServeOptions) -> Builder<TokioExecutor> {
    let timeout = if options.header_timeout.is_zero() {
        HEADER_READ_TIMEOUT
    } else {
        options.header_timeout
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
    builder
}

enum Accepted {
    Tls(
        Box<tokio_rustls::server::TlsStream<TcpStream>>,
        ConnectionInfo,
    ),
    Plain(TcpStream, ConnectionInfo),
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
        return Some(Accepted::Plain(stream, plain));
    };
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    match peeked {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        if options.allow_plaintext {
            return Some(Accepted::Plain(stream, plain));
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
    Some(Accepted::Tls(Box::new(stream), info))
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
