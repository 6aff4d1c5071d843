//! The accept loop over real sockets: TLS with and without a client certificate, a
//! certificate from another CA, plaintext refused unless allowed, and a reload.

use std::sync::Arc;

use agora_security::generate::Authority;
use agora_security::serve::{serve, ConnectionInfo, ServeOptions};
use agora_security::tls::{ClientTls, ServerTls, TlsFiles};
use axum::routing::get;
use axum::{Extension, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn app() -> Router {
    let thread = || async { std::thread::current().name().unwrap_or("").to_string() };
    Router::new()
        .route(
            "/who",
            get(|Extension(info): Extension<ConnectionInfo>| async move {
                format!("tls={} principal={:?}", info.tls, info.peer_principal)
            }),
        )
        .route("/bulk/thread", get(thread))
        .route("/thread", get(thread))
}

struct Pki {
    _dir: tempfile::TempDir,
    server: TlsFiles,
    client: TlsFiles,
    ca: Authority,
    dir: std::path::PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("cluster").unwrap();
    let server = ca
        .write_issued(dir.path(), "server", "master-1", &["127.0.0.1".into()])
        .unwrap();
    let client = ca
        .write_issued(dir.path(), "agent", "agent-a", &[])
        .unwrap();
    Pki {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        server,
        client,
        ca,
    }
}

async fn start(options: ServeOptions) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app(), options, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

async fn request<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: S,
) -> std::io::Result<String> {
    request_path(s, "/who").await
}

async fn request_path<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    path: &str,
) -> std::io::Result<String> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(out))
}

async fn get_tls(addr: &str, tls: &ClientTls) -> std::io::Result<String> {
    let config = Arc::new(tls.rustls_config().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let s = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    request(s).await
}

async fn get_tls_path(addr: &str, tls: &ClientTls, path: &str) -> std::io::Result<String> {
    let config = Arc::new(tls.rustls_config().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let s = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    request_path(s, path).await
}

async fn get_plain(addr: &str) -> std::io::Result<String> {
    request(tokio::net::TcpStream::connect(addr).await?).await
}

fn client(pki: &Pki, with_cert: bool) -> ClientTls {
    let id = with_cert.then_some((pki.client.cert.as_path(), pki.client.key.as_path()));
    ClientTls::load(&pki.client.ca, id).unwrap()
}

#[tokio::test]
async fn tls_names_the_client_certificate_and_refuses_plaintext() {
    let pki = pki();
    let tls = ServerTls::load(pki.server.clone()).unwrap();
    let (addr, _stop) = start(ServeOptions {
        tls: Some(tls),
        allow_plaintext: false,
        ..Default::default()
    })
    .await;
    assert_eq!(
        get_tls(&addr, &client(&pki, true)).await.unwrap(),
        "tls=true principal=Some(\"agent-a\")"
    );
    assert_eq!(
        get_tls(&addr, &client(&pki, false)).await.unwrap(),
        "tls=true principal=None"
    );
    // Plaintext: the connection is closed without an answer.
    assert_eq!(get_plain(&addr).await.unwrap_or_default(), "");
}

#[tokio::test]
async fn plaintext_beside_tls_when_allowed() {
    let pki = pki();
    let tls = ServerTls::load(pki.server.clone()).unwrap();
    let (addr, _stop) = start(ServeOptions {
        tls: Some(tls),
        allow_plaintext: true,
        ..Default::default()
    })
    .await;
    assert_eq!(get_plain(&addr).await.unwrap(), "tls=false principal=None");
    assert_eq!(
        get_tls(&addr, &client(&pki, true)).await.unwrap(),
        "tls=true principal=Some(\"agent-a\")"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_and_a_client_rejects_a_foreign_server() {
    let pki = pki();
    let tls = ServerTls::load(pki.server.clone()).unwrap();
    let (addr, _stop) = start(ServeOptions {
        tls: Some(tls),
        allow_plaintext: false,
        ..Default::default()
    })
    .await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = Authority::new("other").unwrap();
    let forged = other
        .write_issued(other_dir.path(), "m", "master-2", &["127.0.0.1".into()])
        .unwrap();
    // A client certificate (naming a replica!) from another CA, trusting the right CA.
    let bad_client = ClientTls::load(&pki.server.ca, Some((&forged.cert, &forged.key))).unwrap();
    assert!(get_tls(&addr, &bad_client).await.is_err());
    // A client trusting only the other CA refuses the real server.
    let wrong_trust = ClientTls::load(&forged.ca, None).unwrap();
    assert!(get_tls(&addr, &wrong_trust).await.is_err());
}

#[tokio::test]
async fn reload_takes_new_certificates_for_new_connections() {
    let pki = pki();
    let tls = ServerTls::load(pki.server.clone()).unwrap();
    let (addr, _stop) = start(ServeOptions {
        tls: Some(tls.clone()),
        allow_plaintext: false,
        ..Default::default()
    })
    .await;
    assert!(get_tls(&addr, &client(&pki, true)).await.is_ok());
    // Rotate: a new CA signs a new server certificate, written over the old files.
    let ca2 = Authority::new("cluster-2").unwrap();
    let rotated = ca2
        .write_issued(
            &pki.dir.join("new"),
            "server",
            "master-1",
            &["127.0.0.1".into()],
        )
        .unwrap();
    std::fs::copy(&rotated.cert, &pki.server.cert).unwrap();
    std::fs::copy(&rotated.key, &pki.server.key).unwrap();
    std::fs::copy(&rotated.ca, &pki.server.ca).unwrap();
    // Not yet reloaded: the old server certificate is still served.
    let old_client = ClientTls::from_pem(pki.ca.cert_pem().into_bytes(), None);
    assert!(get_tls(&addr, &old_client).await.is_ok());
    tls.reload().unwrap();
    assert!(get_tls(&addr, &old_client).await.is_err());
    let new_client = ClientTls::from_pem(ca2.cert_pem().into_bytes(), None);
    assert_eq!(
        get_tls(&addr, &new_client).await.unwrap(),
        "tls=true principal=None"
    );
    // A broken file keeps the last good configuration.
    std::fs::write(&pki.server.key, "garbage").unwrap();
    assert!(tls.reload().is_err());
    assert!(get_tls(&addr, &new_client).await.is_ok());
}

/// A client that starts a request and never finishes its headers (slowloris) is cut off
/// after the header timeout; one that is quick is served.
#[tokio::test]
async fn a_request_whose_headers_never_end_is_cut_off() {
    let (addr, _stop) = start(ServeOptions {
        header_timeout: std::time::Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        slow.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the connection was held past 5 s");
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(400) && took < std::time::Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(get_plain(&addr).await.unwrap(), "tls=false principal=None");
}

/// A connection that finished a request and then says nothing (a kept-alive HTTP/1
/// connection, or a socket that never sent a byte) is closed after the idle timeout.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let (addr, _stop) = start(ServeOptions {
        idle_timeout: std::time::Duration::from_millis(400),
        header_timeout: std::time::Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), kept.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {closed:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(300),
        "closed too early: {took:?}"
    );
    eprintln!("idle keep-alive connection closed after {took:?}");
}

/// One client IP gets at most `max_connections_per_client` connections at once; the next
/// is closed at accept, and a slot frees when a connection ends.
#[tokio::test]
async fn connections_per_client_are_limited() {
    let (addr, _stop) = start(ServeOptions {
        max_connections_per_client: 3,
        ..Default::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // Accepted in order: give the loop a moment to count the three.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let refused = get_plain(&addr).await;
    assert!(
        refused.as_ref().map_or(true, |body| body.is_empty()),
        "a fourth connection was served: {refused:?}"
    );
    held.pop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(get_plain(&addr).await.unwrap(), "tls=false principal=None");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn http1_bulk_reads_are_served_on_the_bulk_runtime_and_the_rest_on_the_callers() {
    let bulk = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bulk-lane")
        .enable_all()
        .build()
        .unwrap();
    let pki = pki();
    let tls = ServerTls::load(pki.server.clone()).unwrap();
    let (addr, _stop) = start(ServeOptions {
        tls: Some(tls),
        allow_plaintext: true,
        bulk: Some(agora_security::serve::BulkLane {
            runtime: bulk.handle().clone(),
            admits: Arc::new(|path| path.starts_with("/bulk/")),
        }),
        ..Default::default()
    })
    .await;
    let tls = client(&pki, false);
    assert_eq!(
        get_tls_path(&addr, &tls, "/bulk/thread").await.unwrap(),
        "bulk-lane"
    );
    assert_eq!(
        get_tls_path(&addr, &tls, "/bulk/thread?x=1").await.unwrap(),
        "bulk-lane"
    );
    assert_ne!(
        get_tls_path(&addr, &tls, "/thread").await.unwrap(),
        "bulk-lane"
    );
    let plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(
        request_path(plain, "/bulk/thread").await.unwrap(),
        "bulk-lane"
    );
    // Other requests still get their answers (the bytes read to choose are replayed).
    assert_eq!(
        get_tls(&addr, &client(&pki, true)).await.unwrap(),
        "tls=true principal=Some(\"agent-a\")"
    );
    bulk.shutdown_background();
}
