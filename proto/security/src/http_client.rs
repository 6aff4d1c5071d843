//! One HTTP/1.1 GET to an Agora server (the CLI and the leader reading an agent's sandbox
//! API): TLS when the client has the cluster CA (the server's certificate must name the
//! host), a bounded body and a deadline. No redirects, no connection reuse.

use std::time::Duration;

use http_body_util::BodyExt;

use crate::tls::ClientTls;

/// An answer: its status, its `Content-Type` and its body.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why a request got no answer. One line, never containing the authorization.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0} is not HOST:PORT")]
    Address(String),
    #[error("connecting to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("TLS with {addr}: {message}")]
    Tls { addr: String, message: String },
    #[error("HTTP with {addr}: {message}")]
    Http { addr: String, message: String },
    #[error("{addr} answered more than {limit} bytes")]
    TooLarge { addr: String, limit: usize },
    #[error("{addr} did not answer within {0:?}", .timeout)]
    Timeout { addr: String, timeout: Duration },
}

type Body = http_body_util::Empty<bytes::Bytes>;

/// `GET path_and_query` on `addr` (`HOST:PORT`), with `authorization` as the header's value.
pub async fn get(
    tls: Option<&ClientTls>,
    addr: &str,
    path_and_query: &str,
    authorization: Option<&str>,
    max_body: usize,
    timeout: Duration,
) -> Result<HttpReply, HttpError> {
    match tokio::time::timeout(
        timeout,
        request(tls, addr, path_and_query, authorization, max_body),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout {
            addr: addr.to_string(),
            timeout,
        }),
    }
}

async fn request(
    tls: Option<&ClientTls>,
    addr: &str,
    path_and_query: &str,
    authorization: Option<&str>,
    max_body: usize,
) -> Result<HttpReply, HttpError> {
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| HttpError::Address(addr.to_string()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare, port))
        .await
        .map_err(|e| HttpError::Connect {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let mut request = http::Request::get(path_and_query)
        .header(http::header::HOST, addr)
        .header(http::header::USER_AGENT, "agora");
    if let Some(value) = authorization {
        let mut value = http::HeaderValue::from_str(value).map_err(|_| HttpError::Http {
            addr: addr.to_string(),
            message: "the authorization is not a valid header value".into(),
        })?;
        value.set_sensitive(true);
        request = request.header(http::header::AUTHORIZATION, value);
    }
    let request = request.body(Body::new()).map_err(|e| HttpError::Http {
        addr: addr.to_string(),
        message: e.to_string(),
    })?;
    let response = match tls {
        Some(tls) => {
            let config = tls.rustls_config().map_err(|e| HttpError::Tls {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
            let name = rustls_pki_types::ServerName::try_from(bare.to_string()).map_err(|e| {
                HttpError::Tls {
                    addr: addr.to_string(),
                    message: e.to_string(),
                }
            })?;
            let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls {
                    addr: addr.to_string(),
                    message: e.to_string(),
                })?;
            send(hyper_util::rt::TokioIo::new(stream), request, addr).await?
        }
        None => send(hyper_util::rt::TokioIo::new(tcp), request, addr).await?,
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limited = http_body_util::Limited::new(response.into_body(), max_body);
    let body = limited
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                HttpError::TooLarge {
                    addr: addr.to_string(),
                    limit: max_body,
                }
            } else {
                HttpError::Http {
                    addr: addr.to_string(),
                    message: e.to_string(),
                }
            }
        })?
        .to_bytes()
        .to_vec();
    Ok(HttpReply {
        status,
        content_type,
        body,
    })
}

async fn send<T>(
    io: T,
    request: http::Request<Body>,
    addr: &str,
) -> Result<http::Response<hyper::body::Incoming>, HttpError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| HttpError::Http {
        addr: addr.to_string(),
        message: e.to_string(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(request).await.map_err(http)
}

/// A query string (`a=1&b=x%20y`) from `pairs`, every byte but `A-Z a-z 0-9 - . _ ~ /`
/// percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, k);
        out.push('=');
        encode_into(&mut out, v);
    }
    out
}

fn encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            super::query(&[("path", "/a b/ü&x=1"), ("offset", "-1")]),
            "path=/a%20b/%C3%BC%26x%3D1&offset=-1"
        );
    }
}
