//! The transport layer: one file per gRPC service and the HTTP routes. Each handler
//! validates and converts the request (through [`crate::convert`]), calls the leader (or
//! the quorum), and maps a domain error to a gRPC status. No coordination happens here.
//!
//! What it must not do: keep state (beyond [`state_cache`]'s rendered bytes), decide
//! policy, or write the registry.

mod agent_gateway;
pub mod auth;
mod files;
pub mod http;
mod master_api;
mod mesos_http;
mod mesos_operator;
mod mesos_scheduler;
mod operator;
mod replica;
mod scheduler;
pub mod state_cache;

use agora_proto::v1::agent_gateway_server::AgentGatewayServer;
use agora_proto::v1::master_server::MasterServer;
use agora_proto::v1::operator_server::OperatorServer;
use agora_proto::v1::scheduler_server::SchedulerServer;
use agora_proto::LEADER_METADATA_KEY;
use tonic::Status;

use crate::leader::messages::SessionEnd;
use crate::leader::{Leader, LeaderError};
use crate::quorum::QuorumError;

/// The gRPC services of the client-facing API added to `grpc` (the quorum's own), and the
/// HTTP routes, as one router behind the authentication [`auth::gate`].
pub fn router(
    leader: Leader,
    grpc: tonic::service::Routes,
    gate: std::sync::Arc<auth::Gate>,
) -> axum::Router {
    let grpc = grpc
        .add_service(MasterServer::new(master_api::MasterApi::new(
            leader.clone(),
        )))
        .add_service(AgentGatewayServer::new(
            agent_gateway::AgentGatewayApi::new(leader.clone()),
        ))
        .add_service(SchedulerServer::new(scheduler::SchedulerApi::new(
            leader.clone(),
        )))
        .add_service(OperatorServer::new(operator::OperatorApi::new(
            leader.clone(),
        )))
        .into_axum_router();
    http::router(leader.clone())
        .merge(files::router(leader.clone()))
        .merge(mesos_scheduler::router(leader.clone()))
        .merge(replica::router(leader.clone()))
        .merge(mesos_operator::router(leader))
        .merge(grpc)
        .fallback(agora_security::serve::unknown_path)
        .layer(axum::middleware::from_fn_with_state(gate, auth::gate))
}

/// The refusal a follower gives: UNAVAILABLE, naming the leader in the message and in the
/// `agora-leader` metadata.
pub fn not_leader(leader: Option<&str>) -> Status {
    match leader {
        Some(addr) => {
            let mut status = Status::unavailable(format!("not the leader; the leader is {addr}"));
            if let Ok(v) = addr.parse() {
                status.metadata_mut().insert(LEADER_METADATA_KEY, v);
            }
            status
        }
        None => Status::unavailable("not the leader; no leader is known yet"),
    }
}

fn leader_status(e: LeaderError) -> Status {
    match e {
        LeaderError::NotLeader(addr) => not_leader(addr.as_deref()),
        LeaderError::Unavailable(msg) => Status::unavailable(msg),
        LeaderError::Rejected(r @ agora_registry::Rejection::PrincipalMismatch { .. }) => {
            Status::permission_denied(r.to_string())
        }
        LeaderError::Rejected(r @ agora_registry::Rejection::EntryTooLarge { .. }) => {
            Status::invalid_argument(r.to_string())
        }
        // Nobody waits for a registration a later one overtook: not the agent's fault,
        // and not final (the agent registers again with a later attempt).
        LeaderError::Rejected(r @ agora_registry::Rejection::StaleRegistration { .. }) => {
            Status::aborted(r.to_string())
        }
        LeaderError::Rejected(r) => Status::failed_precondition(r.to_string()),
        LeaderError::Invalid { field, reason } => crate::convert::invalid(&field, reason),
        LeaderError::Precondition(msg) => Status::failed_precondition(msg),
        LeaderError::PermissionDenied(msg) => Status::permission_denied(msg),
    }
}

/// The principal the request's connection or credential proved (see [`auth`]); none
/// on a cluster without authentication.
fn principal<T>(req: &tonic::Request<T>) -> Option<String> {
    req.extensions()
        .get::<agora_security::authenticate::Caller>()
        .and_then(|c| c.principal.clone())
}

fn session_status(end: SessionEnd) -> Status {
    let message = end.to_string();
    match end {
        SessionEnd::Replaced | SessionEnd::AgentReplaced => Status::aborted(message),
        SessionEnd::NotLeader(addr) => not_leader(addr.as_deref()),
        SessionEnd::FrameworkRemoved(_)
        | SessionEnd::AgentUnreachable
        | SessionEnd::Rejected(_) => Status::failed_precondition(message),
        SessionEnd::Invalid { .. } => Status::invalid_argument(message),
        SessionEnd::Unavailable(msg) => Status::unavailable(msg),
    }
}

fn quorum_status(e: QuorumError) -> Status {
    match e {
        QuorumError::NotLeader(addr) => not_leader(addr.as_deref()),
        QuorumError::Invalid { field, reason } => crate::convert::invalid(field, reason),
        QuorumError::Refused(msg) => Status::failed_precondition(msg),
        QuorumError::Unavailable(msg) => Status::unavailable(msg),
    }
}
