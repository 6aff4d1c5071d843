//! # The sandbox API
//!
//! Owns Mesos' file endpoints on the agent's listen address, for the sandboxes of its
//! tasks and executors: `GET /files/browse?path=` (a directory's entries),
//! `/files/read?path=&offset=&length=` (a piece of a file as JSON; `offset=-1` gives the
//! size; `wait_ms=` waits up to that long for a file to grow past `offset`, which is how
//! `agora logs -f` follows) and `/files/download?path=` (the bytes).
//!
//! A sandbox is addressed as Mesos names an executor's latest run,
//! `/frameworks/FRAMEWORK/executors/TASK/runs/latest`, and is
//! `<work_dir>/sandboxes/FRAMEWORK/TASK` on disk. Every request carries a grant from the
//! leader (`Authorization: Bearer`, see [`agora_security::grant`]) for exactly one sandbox;
//! the agent checks it with the key it gave the leader and serves nothing else: no path
//! with `..`, no symlink leading out (the opened file's real path is checked after it is
//! opened), no read past a file's end.
//!
//! What it must not do: decide who may read a sandbox (the leader does, with the
//! credentials and ACLs), or write anything.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_security::grant::{GrantKey, SandboxGrant};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::master_link::LinkStatus;
use crate::{clock, workdir};

/// The most `/files/read` returns at once (a longer `length` is cut to it).
pub const MAX_READ: u64 = 4 * 1024 * 1024;
/// What `/files/read` returns without a `length`.
pub const DEFAULT_READ: u64 = 1024 * 1024;
/// The longest `wait_ms` honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// What the handlers share.
#[derive(Clone)]
pub struct Files {
    key: GrantKey,
    work_dir: PathBuf,
    status: watch::Receiver<LinkStatus>,
}

/// The routes, for the agent's router.
pub fn router(key: GrantKey, work_dir: PathBuf, status: watch::Receiver<LinkStatus>) -> Router {
    let files = Arc::new(Files {
        key,
        work_dir,
        status,
    });
    Router::new()
        .route("/files/browse", get(browse))
        .route("/files/read", get(read))
        .route("/files/download", get(download))
        .with_state(files)
}

/// Why a request is refused; each is one line for the client.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilesError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for FilesError {
    fn into_response(self) -> Response {
        let status = match &self {
            FilesError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            FilesError::Forbidden(_) => StatusCode::FORBIDDEN,
            FilesError::BadRequest(_) => StatusCode::BAD_REQUEST,
            FilesError::NotFound(_) => StatusCode::NOT_FOUND,
            FilesError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": self.to_string() }).to_string(),
        )
            .into_response()
    }
}

#[derive(Debug, Deserialize)]
struct PathQuery {
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    path: Option<String>,
    offset: Option<i64>,
    length: Option<u64>,
    wait_ms: Option<u64>,
}

/// One entry of `/files/browse`, in Mesos' shape.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub mode: String,
    pub mtime: f64,
    pub nlink: u64,
    pub uid: String,
    pub gid: String,
}

/// A piece of a file: `data` holds `length` bytes from `offset` (as text: bytes that are
/// not UTF-8 shown as U+FFFD; a character cut at the end is left for the next read).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct FileChunk {
    pub data: String,
    pub offset: u64,
    pub length: u64,
}

impl Files {
    fn grant(&self, headers: &HeaderMap) -> Result<SandboxGrant, FilesError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                FilesError::Unauthorized(
                    "a sandbox grant is required (Authorization: Bearer; ask the leader: Master.SandboxAccess)".into(),
                )
            })?;
        let agent_id =
            self.status.borrow().agent_id.clone().ok_or_else(|| {
                FilesError::Unavailable("this agent has not registered yet".into())
            })?;
        self.key
            .verify(token.trim(), &agent_id, clock::now_ms())
            .map_err(|e| FilesError::Unauthorized(e.to_string()))
    }
}

/// A task's sandbox in the API's terms (also its `directory` in the agent's `/state`).
pub fn sandbox_path(framework_id: &str, task_id: &str) -> String {
    format!("/frameworks/{framework_id}/executors/{task_id}/runs/latest")
}

/// The sandbox root a grant covers, in the API's terms.
pub fn grant_root(grant: &SandboxGrant) -> String {
    sandbox_path(&grant.framework_id, &grant.task_id)
}

/// The file `path` (an API path) names inside the granted sandbox, checked lexically: it
/// must lie under the grant's root and have no `..`. Returns the sandbox's directory and
/// the path relative to it.
pub fn resolve(
    work_dir: &Path,
    grant: &SandboxGrant,
    path: &str,
) -> Result<(PathBuf, PathBuf), FilesError> {
    let root = grant_root(grant);
    let rest = path
        .strip_prefix(&root)
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or_else(|| {
            FilesError::Forbidden(format!(
                "path {path:?}: the grant covers only {root} (the sandbox of task {})",
                grant.task_id
            ))
        })?;
    let mut relative = PathBuf::new();
    for c in Path::new(rest).components() {
        match c {
            Component::Normal(part) => relative.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(FilesError::Forbidden(format!(
                    "path {path:?} leads out of the sandbox (\"..\" is not allowed)"
                )))
            }
        }
    }
    let sandbox = workdir::sandbox_dir(work_dir, &grant.framework_id, &grant.task_id);
    Ok((sandbox, relative))
}

/// Opens `relative` in `sandbox` and checks that what was opened (its real path, read back
/// from the open descriptor, so a symlink swapped in meanwhile cannot fool it) is inside
/// the sandbox.
fn open_inside(
    sandbox: &Path,
    relative: &Path,
    shown: &str,
) -> Result<(fs::File, fs::Metadata), FilesError> {
    let not_found = || FilesError::NotFound(format!("{shown}: no such file or directory"));
    let root = fs::canonicalize(sandbox).map_err(|_| {
        FilesError::NotFound(format!(
            "{shown}: the sandbox is gone (collected, or never created)"
        ))
    })?;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(sandbox.join(relative))
        .map_err(|_| not_found())?;
    let real = fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ))
    .map_err(|_| not_found())?;
    if !real.starts_with(&root) {
        return Err(FilesError::Forbidden(format!(
            "{shown} leads out of the sandbox (through a symlink)"
        )));
    }
    let meta = file.metadata().map_err(|_| not_found())?;
    Ok((file, meta))
}

fn required(path: Option<String>) -> Result<String, FilesError> {
    path.filter(|p| !p.is_empty())
        .ok_or_else(|| FilesError::BadRequest("path: missing".into()))
}

fn mode_string(meta: &fs::Metadata) -> String {
    let mode = meta.mode();
    let kind = if meta.is_dir() {
        'd'
    } else if meta.file_type().is_symlink() {
        'l'
    } else {
        '-'
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn entry(path: String, meta: &fs::Metadata) -> FileEntry {
    FileEntry {
        path,
        size: meta.len(),
        mode: mode_string(meta),
        mtime: meta.mtime() as f64,
        nlink: meta.nlink(),
        uid: meta.uid().to_string(),
        gid: meta.gid().to_string(),
    }
}

async fn browse(
    State(files): State<Arc<Files>>,
    headers: HeaderMap,
    Query(q): Query<PathQuery>,
) -> Result<Response, FilesError> {
    let grant = files.grant(&headers)?;
    let path = required(q.path)?;
    let (sandbox, relative) = resolve(&files.work_dir, &grant, &path)?;
    let shown = path.trim_end_matches('/').to_string();
    let entries = tokio::task::spawn_blocking(move || -> Result<Vec<FileEntry>, FilesError> {
        let (_dir, meta) = open_inside(&sandbox, &relative, &shown)?;
        if !meta.is_dir() {
            return Err(FilesError::BadRequest(format!(
                "{shown} is not a directory"
            )));
        }
        let dir = sandbox.join(&relative);
        let mut out = Vec::new();
        let read = fs::read_dir(&dir).map_err(|e| FilesError::NotFound(format!("{shown}: {e}")))?;
        for e in read.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            let name = e.file_name().to_string_lossy().into_owned();
            out.push(entry(format!("{shown}/{name}"), &meta));
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    })
    .await
    .map_err(|e| FilesError::Unavailable(e.to_string()))??;
    Ok(axum::Json(entries).into_response())
}

/// Reads up to `length` bytes at `offset` of an open file of `size` bytes.
pub fn read_chunk(
    file: &mut fs::File,
    size: u64,
    offset: u64,
    length: u64,
) -> std::io::Result<FileChunk> {
    let want = length.min(size.saturating_sub(offset));
    let mut buf = Vec::with_capacity(want as usize);
    file.seek(SeekFrom::Start(offset))?;
    file.take(want).read_to_end(&mut buf)?;
    // Leave a character cut at the end for the next read (when more may follow).
    let keep = match std::str::from_utf8(&buf) {
        Ok(_) => buf.len(),
        Err(e) if e.error_len().is_none() && buf.len() - e.valid_up_to() < 4 => e.valid_up_to(),
        Err(_) => buf.len(),
    };
    let keep = if keep == 0 && !buf.is_empty() {
        buf.len()
    } else {
        keep
    };
    buf.truncate(keep);
    Ok(FileChunk {
        data: String::from_utf8_lossy(&buf).into_owned(),
        offset,
        length: keep as u64,
    })
}

async fn read(
    State(files): State<Arc<Files>>,
    headers: HeaderMap,
    Query(q): Query<ReadQuery>,
) -> Result<Response, FilesError> {
    let grant = files.grant(&headers)?;
    let path = required(q.path)?;
    let (sandbox, relative) = resolve(&files.work_dir, &grant, &path)?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let length = q.length.unwrap_or(DEFAULT_READ).min(MAX_READ);
    let offset = q.offset;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (sandbox, relative, shown) = (sandbox.clone(), relative.clone(), path.clone());
        let answer =
            tokio::task::spawn_blocking(move || -> Result<Option<FileChunk>, FilesError> {
                let (mut file, meta) = open_inside(&sandbox, &relative, &shown)?;
                if meta.is_dir() {
                    return Err(FilesError::BadRequest(format!(
                        "{shown} is a directory (use /files/browse)"
                    )));
                }
                let size = meta.len();
                let offset = match offset {
                    None => 0,
                    Some(-1) => {
                        return Ok(Some(FileChunk {
                            data: String::new(),
                            offset: size,
                            length: 0,
                        }))
                    }
                    Some(o) if o < 0 => {
                        return Err(FilesError::BadRequest(format!(
                            "offset: {o} is negative (only -1, for the size, is allowed)"
                        )))
                    }
                    Some(o) => o as u64,
                };
                if offset > size {
                    return Err(FilesError::BadRequest(format!(
                        "offset: {offset} is past the end of {shown} ({size} bytes)"
                    )));
                }
                if offset == size {
                    return Ok(None);
                }
                read_chunk(&mut file, size, offset, length)
                    .map(Some)
                    .map_err(|e| FilesError::NotFound(format!("{shown}: {e}")))
            })
            .await
            .map_err(|e| FilesError::Unavailable(e.to_string()))??;
        match answer {
            Some(chunk) => return Ok(axum::Json(chunk).into_response()),
            None if tokio::time::Instant::now() >= deadline => {
                let at = offset.unwrap_or(0).max(0) as u64;
                return Ok(axum::Json(FileChunk {
                    data: String::new(),
                    offset: at,
                    length: 0,
                })
                .into_response());
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

async fn download(
    State(files): State<Arc<Files>>,
    headers: HeaderMap,
    Query(q): Query<PathQuery>,
) -> Result<Response, FilesError> {
    let grant = files.grant(&headers)?;
    let path = required(q.path)?;
    let (sandbox, relative) = resolve(&files.work_dir, &grant, &path)?;
    let shown = path.clone();
    let (file, meta) =
        tokio::task::spawn_blocking(move || open_inside(&sandbox, &relative, &shown))
            .await
            .map_err(|e| FilesError::Unavailable(e.to_string()))??;
    if meta.is_dir() {
        return Err(FilesError::BadRequest(format!(
            "{path} is a directory (use /files/browse)"
        )));
    }
    let name = Path::new(&path)
        .file_name()
        .map(|n| n.to_string_lossy().replace(['"', '\\'], "_"))
        .unwrap_or_else(|| "file".into());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(bytes::Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, meta.len().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> SandboxGrant {
        SandboxGrant {
            agent_id: "a".into(),
            framework_id: "fw".into(),
            task_id: "t1".into(),
            principal: None,
            expires_ms: u64::MAX,
        }
    }

    #[test]
    fn paths_resolve_only_inside_the_granted_sandbox() {
        let work = Path::new("/w");
        let root = "/frameworks/fw/executors/t1/runs/latest";
        let (sandbox, rel) = resolve(work, &grant(), &format!("{root}/stdout")).unwrap();
        assert_eq!(sandbox, Path::new("/w/sandboxes/fw/t1"));
        assert_eq!(rel, Path::new("stdout"));
        assert_eq!(resolve(work, &grant(), root).unwrap().1, Path::new(""));
        assert_eq!(
            resolve(work, &grant(), &format!("{root}/./a//b"))
                .unwrap()
                .1,
            Path::new("a/b")
        );
        for bad in [
            format!("{root}/../t2/stdout"),
            format!("{root}/a/../../x"),
            "/frameworks/fw/executors/t2/runs/latest/stdout".to_string(),
            format!("{root}x/stdout"),
            "/etc/passwd".to_string(),
        ] {
            assert!(
                matches!(resolve(work, &grant(), &bad), Err(FilesError::Forbidden(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn symlinks_out_of_the_sandbox_are_refused_after_opening() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sb");
        fs::create_dir(&sandbox).unwrap();
        fs::write(sandbox.join("stdout"), "hi\n").unwrap();
        fs::write(dir.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), sandbox.join("link")).unwrap();
        std::os::unix::fs::symlink("stdout", sandbox.join("inner")).unwrap();
        assert!(open_inside(&sandbox, Path::new("stdout"), "stdout").is_ok());
        assert!(open_inside(&sandbox, Path::new("inner"), "inner").is_ok());
        assert!(matches!(
            open_inside(&sandbox, Path::new("link"), "link"),
            Err(FilesError::Forbidden(_))
        ));
        assert!(matches!(
            open_inside(&sandbox, Path::new("nope"), "nope"),
            Err(FilesError::NotFound(_))
        ));
    }

    #[test]
    fn chunks_stop_before_a_cut_character_and_keep_invalid_bytes_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "aé€b".as_bytes()).unwrap(); // 1 + 2 + 3 + 1 bytes
        let mut f = fs::File::open(&p).unwrap();
        let c = read_chunk(&mut f, 7, 0, 2).unwrap();
        assert_eq!((c.data.as_str(), c.length), ("a", 1));
        let c = read_chunk(&mut f, 7, 1, 100).unwrap();
        assert_eq!((c.data.as_str(), c.length), ("é€b", 6));
        fs::write(&p, [b'x', 0xff, b'y']).unwrap();
        let mut f = fs::File::open(&p).unwrap();
        let c = read_chunk(&mut f, 3, 0, 100).unwrap();
        assert_eq!((c.data.as_str(), c.length), ("x\u{fffd}y", 3));
        assert_eq!(
            mode_string(&fs::metadata(dir.path()).unwrap())
                .chars()
                .next(),
            Some('d')
        );
    }
}
