//! Apache Mesos' v1 executor HTTP API, `POST /api/v1/executor`, for executors written on
//! Mesos' libraries (pymesos, mesos-go, Mesos' own), on a listener of its own: plaintext,
//! bound to 127.0.0.1 only, serving this one path and nothing else (executors run on the
//! agent's host; Mesos' libraries speak plain HTTP to `MESOS_AGENT_ENDPOINT`, `host:port`).
//! Its port is `--executor-http-port`, else the one an earlier run used (checkpointed in the
//! work dir, so executors that outlived an agent restart reconnect), else an ephemeral one.
//!
//! A SUBSCRIBE answers `200` with a `Mesos-Stream-Id` and a never-ending chunked body of
//! RecordIO-framed events (SUBSCRIBED, LAUNCH, KILL, ACKNOWLEDGED, MESSAGE, SHUTDOWN, and a
//! HEARTBEAT every [`HEARTBEAT_INTERVAL`]); UPDATE, MESSAGE and HEARTBEAT answer `202`.
//! Bodies are Mesos' JSON or protobuf (`Content-Type`; `415` otherwise), answered in what
//! `Accept` asks for (`406` if nothing we speak); at most [`MAX_BODY_BYTES`] (`413`). A bad
//! body is `400` naming the field.
//!
//! Each call is converted ([`crate::convert::mesos`]) and made through the same
//! [`Tasks`] calls as the gRPC executor API (`agora.v1.Executor`): one checkpointed,
//! reliable path for status updates, one rule for who may speak for which executor.
//!
//! Authentication, per call: `Authorization: Bearer <token>` (the executor's token,
//! `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, as Mesos' libprocess executors send it), or else
//! the caller's process: the socket's owner, found from `/proc/net/tcp` (its inode) and
//! `/proc/*/fd`, must be, with every process holding that socket, inside one running
//! executor's task cgroup (an executor and all it starts run there and cannot leave it).
//! Anything else is `401`; a call naming another framework or executor than the caller's
//! own is `403` (an UPDATE for another task too), so no process outside an executor's
//! cgroup can report for its task.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use agora_mesos_proto::v1::executor as exec;
use agora_mesos_proto::{recordio, MesosJson};
use agora_security::serve::ConnectionInfo;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use crate::config::AgentConfig;
use crate::convert::mesos::{self as conv, ExecutorContext};
use crate::tasks::{cgroup_key, Tasks};
use crate::workdir;

/// The endpoint.
pub const PATH: &str = "/api/v1/executor";
/// The largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How often a subscribed executor gets a HEARTBEAT (well within the listener's idle
/// timeout, so a quiet stream stays open).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Connections the loopback listener holds at once (every executor's come from
/// 127.0.0.1: its event stream and a keep-alive connection for its calls).
pub const MAX_CONNECTIONS: usize = 16_384;
/// How long a connection may stay silent before it is closed: long, because Mesos'
/// executor libraries keep one connection for their calls and do not retry a call on a
/// connection the server closed (a Mesos agent keeps them open).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The file in the work dir's `meta/` holding the listener's port.
const PORT_FILE: &str = "executor_http_port";

use agora_mesos_proto::Encoding;

/// An event as one RecordIO record in `encoding`; none (logged) if it cannot be written.
fn event_record(encoding: Encoding, event: &exec::Event) -> Option<Vec<u8>> {
    let bytes = match encoding {
        Encoding::Protobuf => event.encode_to_vec(),
        Encoding::Json => match event.to_json_vec() {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "a Mesos event could not be written as JSON; skipped");
                return None;
            }
        },
    };
    Some(recordio::encode(&bytes))
}

/// Binds the executor API's loopback listener: `--executor-http-port`, else the port
/// checkpointed by an earlier run (an ephemeral one if it is taken now), else an ephemeral
/// one; the port bound is checkpointed.
pub async fn bind(config: &AgentConfig) -> std::io::Result<TcpListener> {
    let file = workdir::meta_dir(&config.work_dir).join(PORT_FILE);
    let remembered = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok());
    let listener = if config.executor_http_port != 0 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, config.executor_http_port)).await?
    } else if let Some(port) = remembered {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(port, error = %e, "the executor API's earlier port is taken; executors that outlived the agent cannot reconnect");
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?
            }
        }
    } else {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?
    };
    let port = listener.local_addr()?.port();
    if remembered != Some(port) {
        workdir::write_private(&file, port.to_string().as_bytes())?;
    }
    Ok(listener)
}

#[derive(Clone)]
struct Api {
    tasks: Tasks,
    /// The listener's own address (the far end of every caller's socket).
    local: SocketAddr,
}

/// The one route, `POST /api/v1/executor`; every other path is 404.
pub fn router(tasks: Tasks, local: SocketAddr) -> Router {
    Router::new()
        .route(PATH, post(call))
        .with_state(Api { tasks, local })
        .fallback(|| async { refusal(StatusCode::NOT_FOUND, "not found") })
}

fn refusal(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.to_string(),
    )
        .into_response()
}

/// A refusal of the executor API's core, in HTTP.
fn status_response(status: Status) -> Response {
    let code = match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refusal(code, status.message())
}

fn member<'a, T>(value: &'a Option<T>, name: &str) -> Result<&'a T, Box<Response>> {
    value.as_ref().ok_or_else(|| {
        Box::new(refusal(
            StatusCode::BAD_REQUEST,
            format!("Expecting '{name}' to be present"),
        ))
    })
}

async fn call(
    State(api): State<Api>,
    info: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::parse(content_type) else {
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Expecting 'Content-Type' of application/json or application/x-protobuf, not {content_type:?}"),
        );
    };
    let accept = headers.get(header::ACCEPT).map(|v| v.as_bytes());
    let Some(answer) = Encoding::accepted(accept, encoding) else {
        return refusal(
            StatusCode::NOT_ACCEPTABLE,
            "Expecting 'Accept' to allow application/json or application/x-protobuf",
        );
    };
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY_BYTES} bytes or could not be read"),
            )
        }
    };
    let call = match encoding {
        Encoding::Json => exec::Call::from_json(&bytes).map_err(|e| e.to_string()),
        Encoding::Protobuf => {
            exec::Call::decode(bytes.as_ref()).map_err(|e| format!("mesos.v1.executor.Call: {e}"))
        }
    };
    let call = match call {
        Ok(c) => c,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body: {e}"),
            )
        }
    };
    let Some(kind) = call
        .r#type
        .and_then(|t| exec::call::Type::try_from(t).ok())
        .filter(|t| *t != exec::call::Type::Unknown)
    else {
        return refusal(StatusCode::BAD_REQUEST, "type: missing or unknown");
    };
    // Who calls: the executor whose token it presents, else the one whose cgroup holds
    // the process at the other end of the socket.
    let by_token = bearer(&headers).and_then(|t| api.tasks.executor_by_token(t.as_bytes()));
    let caller = match by_token {
        Some(key) => Some(key),
        None => match info {
            Some(Extension(info)) => {
                let (tasks, local) = (api.tasks.clone(), api.local);
                tokio::task::spawn_blocking(move || {
                    tasks.executor_by_pids(&socket_pids(info.remote, local))
                })
                .await
                .ok()
                .flatten()
            }
            None => None,
        },
    };
    let Some(caller) = caller else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "executor authentication required (the executor's token, or a call from inside its container)",
        );
    };
    let key =
        match api
            .tasks
            .check_executor(caller, &call.framework_id.value, &call.executor_id.value)
        {
            Ok(k) => k,
            Err(s) => return status_response(s),
        };
    let span = tracing::info_span!("mesos_executor", framework = %key.0, task = %key.1, call = kind.as_str_name());
    let _guard = span.enter();
    match kind {
        exec::call::Type::Subscribe => {
            let sub = match member(&call.subscribe, "subscribe") {
                Ok(s) => s,
                Err(r) => return *r,
            };
            // Updates it sent that the agent may not have: checkpointed unless they are
            // already (by uuid).
            for (i, u) in sub.unacknowledged_updates.iter().enumerate() {
                let result = conv::update_from_mesos(&key.0, &u.status)
                    .map_err(Status::invalid_argument)
                    .and_then(|u| api.tasks.executor_update(&key, key.0.clone(), Some(u)));
                if let Err(e) = result {
                    tracing::info!(index = i, error = %e.message(), "an unacknowledged update named on subscription was not taken");
                }
            }
            let resubscribed = sub
                .unacknowledged_tasks
                .iter()
                .any(|t| t.task_id.value == key.1);
            let subscription = match api.tasks.subscribe_executor(&key, resubscribed) {
                Ok(s) => s,
                Err(e) => return status_response(e),
            };
            drop(_guard);
            stream(api.tasks.clone(), key, subscription, answer)
        }
        exec::call::Type::Update => {
            let update = match member(&call.update, "update") {
                Ok(u) => u,
                Err(r) => return *r,
            };
            let converted = match conv::update_from_mesos(&key.0, &update.status) {
                Ok(u) => u,
                Err(e) => return refusal(StatusCode::BAD_REQUEST, e),
            };
            match api
                .tasks
                .executor_update(&key, key.0.clone(), Some(converted))
            {
                Ok(()) => StatusCode::ACCEPTED.into_response(),
                Err(e) => status_response(e),
            }
        }
        exec::call::Type::Message => {
            let message = match member(&call.message, "message") {
                Ok(m) => m,
                Err(r) => return *r,
            };
            let executor_id = api
                .tasks
                .executor_id_of(&key)
                .unwrap_or_else(|| key.1.clone());
            let m = conv::message_from_mesos(&key.0, &executor_id, message.data.clone());
            match api.tasks.executor_message(&key, m) {
                Ok(()) => StatusCode::ACCEPTED.into_response(),
                Err(e) => status_response(e),
            }
        }
        exec::call::Type::Heartbeat | exec::call::Type::Unknown => {
            StatusCode::ACCEPTED.into_response()
        }
    }
}

/// The subscription's events as a RecordIO stream, with heartbeats, until the executor
/// goes or a newer subscription replaces this one.
fn stream(
    tasks: Tasks,
    key: (String, String),
    sub: crate::tasks::Subscription,
    encoding: Encoding,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(16);
    let mut events = sub.events;
    let record = sub.record;
    let agent_id = sub.agent_id;
    tokio::spawn(async move {
        let ctx = ExecutorContext {
            record: &record,
            agent_id: &agent_id,
            hostname: tasks.hostname(),
            container_id: cgroup_key(&key.0, &key.1),
        };
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        heartbeat.tick().await;
        loop {
            let event = tokio::select! {
                ev = events.recv() => match ev {
                    Some(Ok(ev)) => conv::event_to_mesos(&ctx, ev),
                    Some(Err(_)) | None => break,
                },
                _ = heartbeat.tick() => Some(conv::heartbeat()),
                () = tx.closed() => break,
            };
            let Some(bytes) = event.and_then(|e| event_record(encoding, &e)) else {
                continue;
            };
            if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                break;
            }
        }
        tracing::info!(framework = %key.0, task = %key.1, "Mesos executor stream ended");
    });
    let stream_id = uuid::Uuid::new_v4().to_string();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, encoding.mime())
        .header("Mesos-Stream-Id", stream_id)
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap_or_else(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then_some(token.trim())
}

/// The processes holding the client end of a loopback TCP connection from `peer` to
/// `local` (found by the socket's inode in `/proc/net/tcp`, then among every process's
/// open files). Empty if the socket or its owners cannot be found.
pub fn socket_pids(peer: SocketAddr, local: SocketAddr) -> Vec<u32> {
    let (SocketAddr::V4(peer), SocketAddr::V4(local)) = (peer, local) else {
        return Vec::new();
    };
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return Vec::new();
    };
    let Some(inode) = socket_inode(&table, peer, local) else {
        return Vec::new();
    };
    let wanted = format!("socket:[{inode}]");
    let mut pids = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()))
        {
            pids.push(pid);
        }
    }
    pids
}

/// The inode of the socket whose local end is `peer` and remote end `local`, from the
/// text of `/proc/net/tcp`.
fn socket_inode(table: &str, peer: SocketAddrV4, local: SocketAddrV4) -> Option<u64> {
    let hex = |a: SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (want_local, want_remote) = (hex(peer), hex(local));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (l.eq_ignore_ascii_case(&want_local) && r.eq_ignore_ascii_case(&want_remote))
            .then(|| inode.parse().ok())
            .flatten()
            .filter(|i| *i != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_socket_is_found_in_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n   \
            1: 0100007F:1F90 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        let peer = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0xA1B2);
        let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0x1F90);
        assert_eq!(socket_inode(table, peer, local), Some(4242));
        assert_eq!(socket_inode(table, local, peer), Some(4343));
        let other = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        assert_eq!(socket_inode(table, other, local), None);
    }

    #[test]
    fn our_own_connection_is_traced_to_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let pids = socket_pids(peer, listener.local_addr().unwrap());
        assert_eq!(pids, [std::process::id()]);
    }

    #[test]
    fn media_types_and_bearer_tokens() {
        assert_eq!(
            Encoding::parse("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::parse("text/plain"), None);
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, "text/html".parse().unwrap());
        let accept = |h: &HeaderMap| h.get(header::ACCEPT).map(|v| v.as_bytes().to_vec());
        assert_eq!(
            Encoding::accepted(accept(&h).as_deref(), Encoding::Json),
            None
        );
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        assert_eq!(
            Encoding::accepted(accept(&h).as_deref(), Encoding::Protobuf),
            Some(Encoding::Protobuf)
        );
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
