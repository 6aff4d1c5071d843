//! HTTP to masters, plaintext or TLS (the client configuration's CA), with the client's
//! credential on every request. Over TLS the client offers HTTP/2 and HTTP/1.1 (ALPN), as
//! Go's and most browsers' clients do: a master that picks HTTP/2 (Agora's do) carries
//! every call on one multiplexed connection, one that picks HTTP/1.1 (Mesos' own) gets a
//! small pool of kept-alive connections. A subscription's endless body has a connection of
//! its own either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_security::client::ClientSecurity;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{DriverError, Encoding};

/// How long a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Calls in flight at once over HTTP/2 (one connection; Agora's masters allow 256 streams
/// on it); more wait their turn.
const MAX_CALLS: u32 = 128;
/// Calls in flight at once over HTTP/1.1, each on a connection of its own (a master admits
/// 256 connections per client), and the idle connections kept per master.
const MAX_HTTP1_CALLS: u32 = 64;

/// One connection's request side.
pub(crate) enum Sender {
    /// One request at a time.
    Http1(http1::SendRequest<Full<Bytes>>),
    /// Many at once; clones share the connection.
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match self {
            Sender::Http1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::Http2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

pub(crate) struct Http {
    tls: Option<TlsConnector>,
    authorization: Option<HeaderValue>,
    /// Idle HTTP/1.1 connections, or the one shared HTTP/2 connection, per master.
    pool: Mutex<HashMap<String, Vec<Sender>>>,
    /// Bounds the calls in flight, so a burst (an acknowledgement per update) reuses a few
    /// connections instead of opening one each.
    calls: tokio::sync::Semaphore,
}

/// A request to a master.
pub(crate) struct Post<'a> {
    pub addr: &'a str,
    pub path: &'a str,
    pub encoding: Encoding,
    pub stream_id: Option<&'a str>,
    pub body: Vec<u8>,
}

impl Http {
    pub fn new(security: &ClientSecurity, http2: bool) -> Result<Http, DriverError> {
        let tls = match &security.tls {
            Some(t) => {
                let mut config = t.rustls_config()?;
                if http2 {
                    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                }
                Some(TlsConnector::from(Arc::new(config)))
            }
            None => None,
        };
        let authorization = match &security.credential {
            Some(c) => {
                let mut v = HeaderValue::from_str(&c.authorization()).map_err(|_| {
                    DriverError::Settings("the credential is not a valid header".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Http {
            tls,
            authorization,
            pool: Mutex::new(HashMap::new()),
            calls: tokio::sync::Semaphore::new(MAX_CALLS as usize),
        })
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Sender>>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection to `addr` (`host:port`).
    pub async fn connect(&self, addr: &str) -> Result<Sender, DriverError> {
        let failed = |message: String| DriverError::Connect {
            addr: addr.to_string(),
            message,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| failed("connect timed out".into()))?
            .map_err(|e| failed(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(connector) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| failed(format!("server name: {e}")))?;
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| failed("TLS handshake timed out".into()))?
                    .map_err(|e| failed(format!("TLS: {e}")))?;
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .map_err(|e| failed(e.to_string()))?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    return Ok(Sender::Http2(sender));
                }
                let (sender, conn) = http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Sender::Http1(sender))
            }
            None => {
                let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Sender::Http1(sender))
            }
        }
    }

    fn request(&self, post: Post<'_>) -> Result<Request<Full<Bytes>>, DriverError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(post.path)
            .header(HOST, post.addr)
            .header(CONTENT_TYPE, post.encoding.mime())
            .header(ACCEPT, post.encoding.mime());
        if let Some(id) = post.stream_id {
            req = req.header("Mesos-Stream-Id", id);
        }
        if let Some(a) = &self.authorization {
            req = req.header(AUTHORIZATION, a.clone());
        }
        req.body(Full::new(Bytes::from(post.body)))
            .map_err(|e| DriverError::Settings(format!("request: {e}")))
    }

    /// Sends on a connection of its own (a subscription: its body never ends).
    pub async fn open(&self, post: Post<'_>) -> Result<Response<Incoming>, DriverError> {
        let addr = post.addr.to_string();
        let mut sender = self.connect(&addr).await?;
        let req = self.request(post)?;
        sender.send(req).await.map_err(|e| DriverError::Connect {
            addr,
            message: e.to_string(),
        })
    }

    /// Sends a call on a pooled connection and reads the whole answer: its status and body.
    pub async fn call(&self, post: Post<'_>) -> Result<(u16, HeaderValueMap, Bytes), DriverError> {
        use http_body_util::BodyExt;
        let addr = post.addr.to_string();
        let req = self.request(post)?;
        // An HTTP/1.1 call (or one before the first connection says which) takes a larger
        // share of the calls allowed in flight.
        let multiplexed = self
            .pool()
            .get(&addr)
            .is_some_and(|idle| idle.iter().any(|s| matches!(s, Sender::Http2(_))));
        let share = if multiplexed {
            1
        } else {
            MAX_CALLS / MAX_HTTP1_CALLS
        };
        let _turn = self
            .calls
            .acquire_many(share)
            .await
            .map_err(|_| DriverError::Stopped)?;
        let pooled = {
            let mut pool = self.pool();
            let idle = pool.entry(addr.clone()).or_default();
            idle.retain(|s| !s.is_closed());
            match idle.last() {
                // Shared: it stays in the pool for the other calls.
                Some(Sender::Http2(s)) => Some(Sender::Http2(s.clone())),
                _ => idle.pop(),
            }
        };
        let mut sender = match pooled {
            Some(s) => s,
            None => {
                let s = self.connect(&addr).await?;
                if let Sender::Http2(shared) = &s {
                    let mut pool = self.pool();
                    let idle = pool.entry(addr.clone()).or_default();
                    if !idle.iter().any(|s| matches!(s, Sender::Http2(_))) {
                        idle.push(Sender::Http2(shared.clone()));
                    }
                }
                s
            }
        };
        let failed = |e: hyper::Error| DriverError::Connect {
            addr: addr.clone(),
            message: e.to_string(),
        };
        let response = sender.send(req).await.map_err(failed)?;
        let code = response.status().as_u16();
        let headers = HeaderValueMap::of(&response);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(failed)?
            .to_bytes();
        if let Sender::Http1(_) = sender {
            let mut pool = self.pool();
            let idle = pool.entry(addr).or_default();
            if idle.len() < MAX_HTTP1_CALLS as usize && !sender.is_closed() {
                idle.push(sender);
            }
        }
        Ok((code, headers, body))
    }

    /// Forgets the idle connections to `addr` (it stopped leading, or went away).
    pub fn forget(&self, addr: &str) {
        self.pool().remove(addr);
    }
}

/// The answer's headers this client reads.
#[derive(Debug, Default)]
pub(crate) struct HeaderValueMap {
    pub location: Option<String>,
}

impl HeaderValueMap {
    pub fn of<B>(response: &Response<B>) -> HeaderValueMap {
        HeaderValueMap {
            location: response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }
    }
}

/// The `host:port` of a redirect's `Location` (`//host:port/path`, as a Mesos master
/// writes it, or with a scheme).
pub(crate) fn redirect_target(location: &str) -> Option<String> {
    let rest = location
        .split_once("//")
        .map(|(_, rest)| rest)
        .unwrap_or(location);
    let authority = rest.split('/').next()?;
    (!authority.is_empty() && authority.contains(':')).then(|| authority.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_name_the_leader() {
        assert_eq!(
            redirect_target("//10.0.0.2:5050/api/v1/scheduler").as_deref(),
            Some("10.0.0.2:5050")
        );
        assert_eq!(
            redirect_target("http://m1:5050/api/v1/scheduler").as_deref(),
            Some("m1:5050")
        );
        assert_eq!(redirect_target("/api/v1/scheduler"), None);
        assert_eq!(redirect_target(""), None);
    }
}
