//! HTTP/1.1 to masters, plaintext or TLS (the client configuration's CA), with the
//! client's credential on every request: a small pool of kept-alive connections per
//! master for calls, and a connection of its own for each subscription's endless body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_security::client::ClientSecurity;
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{DriverError, Encoding};

/// How long a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Calls in flight at once (each on a connection of its own; more wait their turn), and
/// idle connections kept per master.
const MAX_CALLS: usize = 16;

pub(crate) type Sender = SendRequest<Full<Bytes>>;

pub(crate) struct Http {
    tls: Option<TlsConnector>,
    authorization: Option<HeaderValue>,
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
    pub fn new(security: &ClientSecurity) -> Result<Http, DriverError> {
        let tls = match &security.tls {
            Some(t) => Some(TlsConnector::from(Arc::new(t.rustls_config()?))),
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
            calls: tokio::sync::Semaphore::new(MAX_CALLS),
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
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(sender)
            }
            None => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(sender)
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
    pub async fn open(
        &self,
        post: Post<'_>,
    ) -> Result<Response<hyper::body::Incoming>, DriverError> {
        let addr = post.addr.to_string();
        let mut sender = self.connect(&addr).await?;
        let req = self.request(post)?;
        sender
            .send_request(req)
            .await
            .map_err(|e| DriverError::Connect {
                addr,
                message: e.to_string(),
            })
    }

    /// Sends a call on a pooled connection and reads the whole answer: its status and body.
    pub async fn call(&self, post: Post<'_>) -> Result<(u16, HeaderValueMap, Bytes), DriverError> {
        use http_body_util::BodyExt;
        let addr = post.addr.to_string();
        let req = self.request(post)?;
        let _turn = self
            .calls
            .acquire()
            .await
            .map_err(|_| DriverError::Stopped)?;
        let pooled = {
            let mut pool = self.pool();
            let idle = pool.entry(addr.clone()).or_default();
            idle.retain(|s| !s.is_closed());
            idle.pop()
        };
        let mut sender = match pooled {
            Some(s) => s,
            None => self.connect(&addr).await?,
        };
        let failed = |e: hyper::Error| DriverError::Connect {
            addr: addr.clone(),
            message: e.to_string(),
        };
        sender.ready().await.map_err(failed)?;
        let response = sender.send_request(req).await.map_err(failed)?;
        let code = response.status().as_u16();
        let headers = HeaderValueMap::of(&response);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(failed)?
            .to_bytes();
        let mut pool = self.pool();
        let idle = pool.entry(addr).or_default();
        if idle.len() < MAX_CALLS && !sender.is_closed() {
            idle.push(sender);
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
