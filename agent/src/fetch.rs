//! Mesos' fetcher for a task's sandbox: the files a task's `CommandInfo.uris` name
//! (or, for a framework's own executor, its `ExecutorInfo.command.uris`) are put in the
//! sandbox before the task (or executor) starts.
//!
//! Sources: `file:///ABSOLUTE/PATH` or an absolute path (read as the task's user, so a
//! task cannot have the agent copy a file its user may not read), `http://` and `https://`
//! (certificates checked against the host's CA bundle, `/etc/ssl/certs/ca-certificates.crt`;
//! at most [`MAX_REDIRECTS`] redirects). Every file is bounded: at most [`MAX_BYTES`] and
//! [`TIMEOUT`] per URI. The file is written into the sandbox as the task's user (created
//! fresh, never through a symlink), named `output_file` or the URI's last path segment,
//! mode 0755 with `executable`, else 0644.
//!
//! Archives are not extracted: a URI with `extract` whose name is an archive's (see
//! [`is_archive`]) fails, saying so (Mesos' `extract` is on by default and applies only
//! to archives, so every other file is fetched as it is).
//!
//! Every failure names the URI ([`FetchError`]); the executor fails the task with it.
//! This module touches files and the network only; it knows nothing of proto types.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::user::RunAs;

/// The most bytes fetched for one URI.
pub const MAX_BYTES: u64 = 1 << 30;
/// The longest one URI may take, from connecting to the last byte.
pub const TIMEOUT: Duration = Duration::from_secs(300);
/// The most HTTP redirects followed for one URI.
pub const MAX_REDIRECTS: usize = 5;
/// The system's CA bundle, for `https://`.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// One file to fetch (Mesos' `CommandInfo.URI`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchUri {
    pub value: String,
    #[serde(default)]
    pub executable: bool,
    #[serde(default)]
    pub extract: bool,
    /// The name in the sandbox; empty: the URI's last path segment.
    #[serde(default)]
    pub output_file: String,
}

/// Why a URI could not be fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot fetch {uri}: {reason}")]
pub struct FetchError {
    pub uri: String,
    pub reason: String,
}

/// Whether `name` is an archive's name, which Mesos would extract.
pub fn is_archive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip", ".gz",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

enum Source {
    Local(PathBuf),
    Http(http::Uri),
}

fn parse_source(value: &str) -> Result<Source, String> {
    if let Some(rest) = value.strip_prefix("file://") {
        // file:///path, or file://localhost/path.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err("a file:// URI needs an absolute path on this host".into());
        }
        return Ok(Source::Local(PathBuf::from(path)));
    }
    if value.starts_with('/') {
        return Ok(Source::Local(PathBuf::from(value)));
    }
    let lower = value.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let uri: http::Uri = value.parse().map_err(|e| format!("not a URI: {e}"))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err("no host".into());
        }
        return Ok(Source::Http(uri));
    }
    Err("unsupported source: give file://, an absolute path, http:// or https://".into())
}

/// The file's name in the sandbox.
fn output_name(uri: &FetchUri) -> Result<String, String> {
    let name = if uri.output_file.is_empty() {
        let path = uri.value.split(['?', '#']).next().unwrap_or_default();
        let path = path
            .strip_prefix("http://")
            .or_else(|| path.strip_prefix("https://"))
            .map(|rest| rest.split_once('/').map(|(_, p)| p).unwrap_or(""))
            .unwrap_or(path);
        path.rsplit('/').next().unwrap_or_default().to_string()
    } else {
        uri.output_file.clone()
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "output file {name:?}: give a file name (one path component), in output_file if the URI has none"
        ));
    }
    Ok(name)
}

/// Fetches every URI into `sandbox`, in order, as `user` (the agent's own user when
/// `None`), on a thread of its own. Returns the files written.
pub fn fetch_all(
    uris: &[FetchUri],
    sandbox: &Path,
    user: Option<&RunAs>,
) -> Result<Vec<PathBuf>, FetchError> {
    if uris.is_empty() {
        return Ok(Vec::new());
    }
    let uris = uris.to_vec();
    let sandbox = sandbox.to_path_buf();
    let user = user.filter(|u| u.switch).cloned();
    // A thread of its own: its filesystem identity becomes the task's user's, which must
    // not leak to any other thread of the process.
    let worker = std::thread::spawn(move || -> Result<Vec<PathBuf>, FetchError> {
        if let Some(user) = &user {
            become_for_files(user).map_err(|e| FetchError {
                uri: uris[0].value.clone(),
                reason: format!("cannot take the identity of user {}: {e}", user.name),
            })?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| FetchError {
                uri: uris[0].value.clone(),
                reason: format!("cannot start a runtime: {e}"),
            })?;
        let mut written = Vec::with_capacity(uris.len());
        for uri in &uris {
            let fail = |reason: String| FetchError {
                uri: uri.value.clone(),
                reason,
            };
            let path = runtime
                .block_on(async {
                    tokio::time::timeout(TIMEOUT, fetch_one(uri, &sandbox))
                        .await
                        .map_err(|_| format!("took longer than {TIMEOUT:?}"))?
                })
                .map_err(fail)?;
            written.push(path);
        }
        Ok(written)
    });
    worker.join().unwrap_or_else(|_| {
        Err(FetchError {
            uri: String::new(),
            reason: "the fetcher panicked".into(),
        })
    })
}

/// Takes `user`'s filesystem identity (groups, fsgid, fsuid) for the calling thread only
/// (raw system calls: glibc's setgroups would change every thread of the process).
fn become_for_files(user: &RunAs) -> std::io::Result<()> {
    let groups: Vec<libc::gid_t> = user.groups.clone();
    // SAFETY: plain system calls on this thread's credentials, with a valid buffer.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::setfsgid(user.gid);
        libc::setfsuid(user.uid);
        // setfsuid returns the previous value; calling it again reports the current one.
        if libc::setfsuid(user.uid) as u32 != user.uid
            || libc::setfsgid(user.gid) as u32 != user.gid
        {
            return Err(std::io::Error::from_raw_os_error(libc::EPERM));
        }
    }
    Ok(())
}

async fn fetch_one(uri: &FetchUri, sandbox: &Path) -> Result<PathBuf, String> {
    let name = output_name(uri)?;
    if uri.extract && is_archive(&name) {
        return Err(format!(
            "{name} is an archive and extract is set: this agent does not extract archives (set extract to false to fetch the file as it is)"
        ));
    }
    let source = parse_source(&uri.value)?;
    let dest = sandbox.join(&name);
    let mode = if uri.executable { 0o755 } else { 0o644 };
    // Replaced if there, never followed if a symlink.
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if m.is_dir() => return Err(format!("{name} is a directory in the sandbox")),
        Ok(_) => std::fs::remove_file(&dest).map_err(|e| format!("{name}: {e}"))?,
        Err(_) => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&dest)
        .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let result = match source {
        Source::Local(path) => copy_local(&path, &mut file),
        Source::Http(u) => download(u, &mut file).await,
    };
    if let Err(e) = result {
        drop(file);
        let _ = std::fs::remove_file(&dest);
        return Err(e);
    }
    file.sync_all().map_err(|e| e.to_string())?;
    // The mode asked for, whatever the umask took away.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| e.to_string())?;
    Ok(dest)
}

fn copy_local(path: &Path, out: &mut std::fs::File) -> Result<(), String> {
    let mut src = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = src.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > MAX_BYTES {
        return Err(format!("{} bytes, at most {MAX_BYTES}", meta.len()));
    }
    let copied = std::io::copy(&mut std::io::Read::take(&mut src, MAX_BYTES + 1), out)
        .map_err(|e| e.to_string())?;
    if copied > MAX_BYTES {
        return Err(format!("more than {MAX_BYTES} bytes"));
    }
    Ok(())
}

/// GETs `uri` into `out`, following redirects.
async fn download(mut uri: http::Uri, out: &mut std::fs::File) -> Result<(), String> {
    use http_body_util::BodyExt;
    for _ in 0..=MAX_REDIRECTS {
        let response = get(&uri).await?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("HTTP {status} without a Location"))?;
            uri = resolve(&uri, location)?;
            continue;
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        if let Some(len) = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            if len > MAX_BYTES {
                return Err(format!("{len} bytes, at most {MAX_BYTES}"));
            }
        }
        let mut body = response.into_body();
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            if let Some(data) = frame.data_ref() {
                total += data.len() as u64;
                if total > MAX_BYTES {
                    return Err(format!("more than {MAX_BYTES} bytes"));
                }
                out.write_all(data).map_err(|e| e.to_string())?;
            }
        }
        return Ok(());
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// A redirect's target, absolute or relative to `base`.
fn resolve(base: &http::Uri, location: &str) -> Result<http::Uri, String> {
    let bad = |e: &dyn std::fmt::Display| format!("redirect to {location:?}: {e}");
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().map_err(|e| bad(&e));
    }
    if !location.starts_with('/') {
        return Err(bad(&"not an absolute URL or path"));
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    format!("{scheme}://{authority}{location}")
        .parse()
        .map_err(|e| bad(&e))
}

type Body = http_body_util::Empty<bytes::Bytes>;

async fn get(uri: &http::Uri) -> Result<http::Response<hyper::body::Incoming>, String> {
    let host = uri.host().ok_or("no host")?.to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = http::Request::get(path)
        .header(
            http::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(&host),
        )
        .header(http::header::USER_AGENT, "agora-fetcher")
        .body(Body::new())
        .map_err(|e| e.to_string())?;
    if https {
        let roots = agora_security::tls::load_roots(Path::new(CA_BUNDLE))
            .map_err(|e| format!("https needs the host's CA bundle: {e}"))?;
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(bare.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        send(hyper_util::rt::TokioIo::new(tls), request).await
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), request).await
    }
}

async fn send<T>(
    io: T,
    request: http::Request<Body>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(value: &str) -> FetchUri {
        FetchUri {
            value: value.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_come_from_output_file_or_the_last_segment() {
        assert_eq!(output_name(&uri("http://h:1/a/b.sh?x=1")).unwrap(), "b.sh");
        assert_eq!(output_name(&uri("file:///tmp/x.txt")).unwrap(), "x.txt");
        assert_eq!(output_name(&uri("/tmp/y")).unwrap(), "y");
        assert!(output_name(&uri("http://h:1/")).is_err());
        assert!(output_name(&uri("http://h")).is_err());
        let mut u = uri("http://h/");
        u.output_file = "z".into();
        assert_eq!(output_name(&u).unwrap(), "z");
        for bad in ["../z", "a/b", "..", "."] {
            u.output_file = bad.into();
            assert!(output_name(&u).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_are_files_or_http() {
        assert!(matches!(parse_source("file:///a"), Ok(Source::Local(p)) if p == Path::new("/a")));
        assert!(matches!(parse_source("/a"), Ok(Source::Local(_))));
        assert!(matches!(
            parse_source("file://localhost/a"),
            Ok(Source::Local(_))
        ));
        assert!(parse_source("file://other/a").is_err());
        assert!(parse_source("relative/a").is_err());
        assert!(parse_source("hdfs://nn/a").is_err());
        assert!(matches!(parse_source("https://h/a"), Ok(Source::Http(_))));
    }

    /// A server answering each connection once: `/moved` redirects to `/file`, `/loop`
    /// to itself, `/file` is 200, anything else 404.
    fn http_server() -> u16 {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let answer = match path.as_str() {
                    "/moved" => {
                        "HTTP/1.1 302 Found\r\nLocation: /file\r\nContent-Length: 0\r\n\r\n"
                            .to_string()
                    }
                    "/loop" => "HTTP/1.1 301 Moved\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n"
                        .to_string(),
                    "/file" => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_string(),
                    _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                };
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        port
    }

    #[test]
    fn http_follows_redirects_and_fails_naming_the_uri() {
        let port = http_server();
        let dir = tempfile::tempdir().unwrap();
        let mut moved = uri(&format!("http://127.0.0.1:{port}/moved"));
        moved.output_file = "got".into();
        fetch_all(&[moved], dir.path(), None).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("got")).unwrap(),
            "hello"
        );
        let missing = format!("http://127.0.0.1:{port}/missing");
        let e = fetch_all(&[uri(&missing)], dir.path(), None).unwrap_err();
        assert_eq!(e.uri, missing);
        assert!(e.reason.contains("404"), "{e}");
        assert!(
            !dir.path().join("missing").exists(),
            "a failed fetch leaves no file"
        );
        let looping = format!("http://127.0.0.1:{port}/loop");
        let e = fetch_all(&[uri(&looping)], dir.path(), None).unwrap_err();
        assert!(e.reason.contains("redirects"), "{e}");
    }

    #[test]
    fn local_files_are_copied_and_archives_refused_when_extract_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("tool.sh");
        std::fs::write(&src, "#!/bin/sh\necho hi\n").unwrap();
        let sandbox = dir.path().join("sandbox");
        std::fs::create_dir(&sandbox).unwrap();
        let mut u = uri(&format!("file://{}", src.display()));
        u.executable = true;
        u.extract = true; // not an archive: fetched as it is
        let written = fetch_all(&[u], &sandbox, None).unwrap();
        assert_eq!(written, [sandbox.join("tool.sh")]);
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(sandbox.join("tool.sh")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            std::fs::read_to_string(sandbox.join("tool.sh")).unwrap(),
            "#!/bin/sh\necho hi\n"
        );
        let tar = dir.path().join("a.tar.gz");
        std::fs::write(&tar, "x").unwrap();
        let mut a = uri(tar.to_str().unwrap());
        a.extract = true;
        let e = fetch_all(&[a.clone()], &sandbox, None).unwrap_err();
        assert_eq!(e.uri, tar.to_str().unwrap());
        assert!(e.to_string().contains("does not extract archives"), "{e}");
        a.extract = false;
        fetch_all(&[a], &sandbox, None).unwrap();
        let missing = fetch_all(&[uri("/nonexistent/file")], &sandbox, None).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/file"),
            "{missing}"
        );
        // A symlink planted under the output name is replaced, not followed.
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, sandbox.join("tool2")).unwrap();
        let mut s = uri(src.to_str().unwrap());
        s.output_file = "tool2".into();
        fetch_all(&[s], &sandbox, None).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
