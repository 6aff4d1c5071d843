//! What this replica says of itself and lets an operator change, answered by any replica
//! (leader or not), each about itself: its flags (`GET /flags`, `{"flags": {NAME:
//! VALUE}}` as Mesos; Mesos' GET_FLAGS lists the same), its log level (`GET
//! /logging/level`, gRPC `Operator.GetLogLevel`, Mesos' GET_LOGGING_LEVEL) and changing
//! it ([`set_log_level`], for gRPC `Operator.SetLogLevel` and Mesos' SET_LOGGING_LEVEL:
//! one validation, one `set_log_level` ACL check). Its version is Mesos' `GET /version`
//! ([`super::mesos_scheduler`]).
//!
//! `/flags` and `/logging/level` are read-only HTTP: they need a principal only with
//! `--authenticate-http-readonly` ([`super::auth`]). Flags name files (TLS, credentials,
//! ACLs) but never hold a secret.

use std::time::Duration;

use agora_proto::v1 as pb;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tonic::Status;

use super::leader_status;
use crate::convert::{invalid, mesos_operator as m};
use crate::leader::Leader;
use crate::logging::{self, LevelNow, LogLevelError};

/// The routes: `GET /flags` and `GET /logging/level`.
pub fn router(leader: Leader) -> Router {
    Router::new()
        .route("/flags", get(flags_json))
        .route("/logging/level", get(level_json))
        .with_state(leader)
        .layer(axum::middleware::map_response(
            super::http::security_headers,
        ))
}

/// This replica's effective flags by Mesos' names: its configuration's, and `log_level`
/// (the level it started with, or was last set to for good).
pub fn flags(leader: &Leader) -> Vec<(String, String)> {
    let mut out = m::flags(leader.config());
    out.extend(log_level_flag());
    out
}

/// The `log_level` flag, where the process has a log level control.
pub fn log_level_flag() -> Option<(String, String)> {
    logging::global().map(|l| ("log_level".to_string(), l.base()))
}

async fn flags_json(State(leader): State<Leader>) -> Response {
    let flags: serde_json::Map<String, serde_json::Value> = flags(&leader)
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    json_response(StatusCode::OK, json!({ "flags": flags }))
}

async fn level_json(State(leader): State<Leader>) -> Response {
    match get_log_level() {
        Ok(now) => json_response(
            StatusCode::OK,
            json!({
                "id": leader.view().id,
                "level": now.level,
                "base": now.base,
                "reverts_in_ms": reverts_in_ms(&now),
                "verbosity": now.verbosity(),
            }),
        ),
        Err(status) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": status.message() }),
        ),
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn reverts_in_ms(now: &LevelNow) -> u64 {
    now.reverts_in.map_or(0, |d| (d.as_millis() as u64).max(1))
}

fn level_status(e: LogLevelError, level_field: &str, duration_field: &str) -> Status {
    match e {
        LogLevelError::Invalid(_) | LogLevelError::TooLong => invalid(level_field, e),
        LogLevelError::DurationTooLong => invalid(duration_field, e),
        LogLevelError::NotReloadable => Status::failed_precondition(e.to_string()),
        LogLevelError::Reload(_) => Status::internal(e.to_string()),
    }
}

/// Sets this replica's log level to `level` (for `duration`, or for good) once it is a
/// valid filter and the ACLs let `caller` (`set_log_level`, its object the level's text);
/// refusals name `level_field` or `duration_field`.
pub(super) fn set_log_level(
    leader: &Leader,
    caller: Option<&str>,
    level: &str,
    duration: Option<Duration>,
    level_field: &str,
    duration_field: &str,
) -> Result<LevelNow, Status> {
    let level =
        logging::validate(level).map_err(|e| level_status(e, level_field, duration_field))?;
    if duration.is_some_and(|d| d > logging::MAX_DURATION) {
        return Err(level_status(
            LogLevelError::DurationTooLong,
            level_field,
            duration_field,
        ));
    }
    leader
        .authorize(caller, &agora_acl::Action::SetLogLevel { level: &level })
        .map_err(leader_status)?;
    logging::set(&level, duration).map_err(|e| level_status(e, level_field, duration_field))
}

/// This replica's log level.
pub(super) fn get_log_level() -> Result<LevelNow, Status> {
    logging::global()
        .map(logging::LogLevels::now)
        .ok_or_else(|| Status::failed_precondition(LogLevelError::NotReloadable.to_string()))
}

/// The gRPC reply for `now` on this replica.
pub(super) fn reply(leader: &Leader, now: &LevelNow) -> pb::LogLevelReply {
    pb::LogLevelReply {
        id: leader.view().id,
        level: now.level.clone(),
        base: now.base.clone(),
        reverts_in_ms: reverts_in_ms(now),
    }
}

/// `Operator.SetLogLevel`.
pub(super) fn grpc_set(
    leader: &Leader,
    caller: Option<&str>,
    req: &pb::SetLogLevelRequest,
) -> Result<pb::LogLevelReply, Status> {
    let duration = (req.duration_ms > 0).then(|| Duration::from_millis(req.duration_ms));
    let now = set_log_level(leader, caller, &req.level, duration, "level", "duration_ms")?;
    Ok(reply(leader, &now))
}

/// `Operator.GetLogLevel`.
pub(super) fn grpc_get(leader: &Leader) -> Result<pb::LogLevelReply, Status> {
    Ok(reply(leader, &get_log_level()?))
}
