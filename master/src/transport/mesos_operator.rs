//! Apache Mesos' v1 operator API on the master's listen address, `POST /api/v1`, and the
//! v0 JSON endpoints Mesos tooling polls: `GET /master/state` (and `/state.json`),
//! `GET /master/redirect` (and `/redirect`), `GET /metrics/snapshot`.
//!
//! Calls are Mesos' JSON or protobuf (`Content-Type`); answers are JSON unless `Accept`
//! asks for protobuf (Mesos' default). Calls about this master (GET_HEALTH, GET_VERSION,
//! GET_FLAGS, GET_METRICS, GET_LOGGING_LEVEL, SET_LOGGING_LEVEL) answer on any replica,
//! each about itself (the log level through [`super::replica`], as gRPC's); the others
//! need the leader's state, and a follower answers `307` to the leader's `/api/v1`.
//! Reads go through the leader's [`Leader::read_visible`] (the view ACLs, as gRPC `GetState`), UPDATE_WEIGHTS
//! through the gRPC Operator's [`super::operator::set_weights`] (same validation, same
//! `update_weights` ACL), DRAIN_AGENT, DEACTIVATE_AGENT, REACTIVATE_AGENT and
//! MARK_AGENT_GONE through [`super::operator::maintain`] (the same calls as gRPC's, the
//! same ACLs), SUBSCRIBE follows the leader's cluster events
//! ([`Leader::subscribe_events`]) as RecordIO records. Nothing is kept here.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use agora_mesos_proto::v1::master as op;
use agora_security::authenticate::Caller;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tracing::Instrument;

use super::mesos_http::{
    bad_request, encodings, read_body, redirect_unless_leader, refusal, status_response, Encoding,
    EncodingExt,
};
use super::{leader_status, operator};
use crate::convert::mesos_operator::{self as m, MasterFacts};
use crate::leader::Leader;

/// The endpoint.
pub const PATH: &str = "/api/v1";
/// Chunks of a SUBSCRIBE stream waiting for a slow reader; beyond, the stream falls
/// behind the leader's events and is ended.
const STREAM_CHUNKS: usize = 64;

/// The routes.
pub fn router(leader: Leader) -> Router {
    Router::new()
        .route(PATH, post(call))
        .route("/master/state", get(state))
        .route("/state.json", get(state))
        .route("/master/state.json", get(state))
        .route("/master/redirect", get(redirect))
        .route("/redirect", get(redirect))
        .route("/metrics/snapshot", get(metrics_snapshot))
        .with_state(leader)
        .layer(axum::middleware::map_response(
            super::http::security_headers,
        ))
}

fn facts(leader: &Leader) -> MasterFacts {
    let view = leader.view();
    let (started_ms, elected_ms, _) = leader.times_ms();
    MasterFacts {
        id: view.id,
        address: leader.config().advertise.clone(),
        leader: view.leader_address,
        elected: view.is_leader,
        started_ms,
        elected_ms: if view.is_leader { elected_ms } else { 0 },
    }
}

/// Mesos' metrics of this master (the cluster's only on the leader), off the runtime.
async fn metrics(leader: &Leader) -> Result<Vec<(String, f64)>, Response> {
    let leader = leader.clone();
    tokio::task::spawn_blocking(move || {
        let facts = facts(&leader);
        let counts = facts.elected.then(|| leader.counts());
        let (_, _, now) = leader.times_ms();
        m::metrics(&facts, now, counts.as_ref())
    })
    .await
    .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// Runs `f` on what `who` may see of the leader's registry, off the runtime.
async fn visible<T: Send + 'static>(
    leader: &Leader,
    who: Option<String>,
    f: impl FnOnce(&crate::leader::views::Visible<'_>) -> T + Send + 'static,
) -> Result<T, Response> {
    leader
        .require_leader()
        .map_err(|e| status_response(leader_status(e)))?;
    let leader = leader.clone();
    tokio::task::spawn_blocking(move || leader.read_visible(who.as_deref(), f))
        .await
        .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn call(
    State(leader): State<Leader>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = caller.and_then(|Extension(c)| c.principal);
    // Mesos answers JSON unless asked otherwise.
    let (encoding, answer) = match encodings(&headers, Some(Encoding::Json)) {
        Ok(e) => e,
        Err(refused) => return refused,
    };
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let c = match encoding.decode::<op::Call>(&bytes) {
        Ok(c) => c,
        Err(e) => return bad_request(format!("Failed to parse body into Call: {e}")),
    };
    use op::call::Type;
    let kind = match c.r#type.map(Type::try_from) {
        None | Some(Ok(Type::Unknown)) => return bad_request("Expecting 'type' to be present"),
        Some(Err(_)) => {
            return bad_request(format!(
                "'type': {} is not a call type",
                c.r#type.unwrap_or_default()
            ))
        }
        Some(Ok(kind)) => kind,
    };
    let span = tracing::info_span!("mesos_operator", call = kind.as_str_name(), principal = ?who);
    async move {
        match answer_call(&leader, who, kind, &c, answer).await {
            Ok(r) | Err(r) => r,
        }
    }
    .instrument(span)
    .await
}

async fn answer_call(
    leader: &Leader,
    who: Option<String>,
    kind: op::call::Type,
    c: &op::Call,
    answer: Encoding,
) -> Result<Response, Response> {
    use op::call::Type;
    use op::response::Type as R;
    // Calls about this master: any replica answers.
    match kind {
        Type::GetHealth => {
            return Ok(answer.ok(&m::answer(R::GetHealth, |r| {
                r.get_health = Some(op::response::GetHealth { healthy: true })
            })))
        }
        Type::GetVersion => {
            return Ok(answer.ok(&m::answer(R::GetVersion, |r| {
                r.get_version = Some(op::response::GetVersion {
                    version_info: crate::convert::mesos::version_info(),
                })
            })))
        }
        Type::GetFlags => {
            // The same flags as `GET /flags`.
            let mut flags = m::get_flags(leader.config());
            if let Some((name, value)) = super::replica::log_level_flag() {
                flags.flags.push(agora_mesos_proto::v1::Flag {
                    name,
                    value: Some(value),
                });
            }
            return Ok(answer.ok(&m::answer(R::GetFlags, |r| r.get_flags = Some(flags))));
        }
        Type::GetMetrics => {
            let metrics = m::get_metrics(metrics(leader).await?);
            return Ok(answer.ok(&m::answer(R::GetMetrics, |r| r.get_metrics = Some(metrics))));
        }
        Type::GetLoggingLevel => {
            // Agora logs through tracing filters: glog's verbosity of the one in force.
            let now = super::replica::get_log_level().ok();
            let level = m::get_logging_level(now.as_ref().map(|n| n.level.as_str()));
            return Ok(answer.ok(&m::answer(R::GetLoggingLevel, |r| {
                r.get_logging_level = Some(level)
            })));
        }
        Type::SetLoggingLevel => {
            // This replica's level, as `agora log-level LEVEL --duration D` sets it.
            let (level, duration) = m::set_logging_level_from_mesos(c).map_err(status_response)?;
            super::replica::set_log_level(
                leader,
                who.as_deref(),
                &level,
                Some(duration),
                "set_logging_level.level",
                "set_logging_level.duration",
            )
            .map_err(status_response)?;
            return Ok(StatusCode::OK.into_response());
        }
        Type::GetState
        | Type::GetAgents
        | Type::GetFrameworks
        | Type::GetExecutors
        | Type::GetTasks
        | Type::GetRoles
        | Type::GetWeights
        | Type::UpdateWeights
        | Type::DrainAgent
        | Type::DeactivateAgent
        | Type::ReactivateAgent
        | Type::MarkAgentGone
        | Type::GetMaster
        | Type::Subscribe => {}
        other => {
            return Err(bad_request(format!(
                "{} is not supported by Agora's operator API",
                other.as_str_name()
            )))
        }
    }
    // The others need the leader's state.
    if let Some(redirect) = redirect_unless_leader(leader, PATH) {
        return Ok(redirect);
    }
    let response = match kind {
        Type::GetState => {
            let s = visible(leader, who, m::get_state).await?;
            m::answer(R::GetState, |r| r.get_state = Some(s))
        }
        Type::GetAgents => {
            let s = visible(leader, who, m::get_agents).await?;
            m::answer(R::GetAgents, |r| r.get_agents = Some(s))
        }
        Type::GetFrameworks => {
            let s = visible(leader, who, m::get_frameworks).await?;
            m::answer(R::GetFrameworks, |r| r.get_frameworks = Some(s))
        }
        Type::GetExecutors => {
            let s = visible(leader, who, m::get_executors).await?;
            m::answer(R::GetExecutors, |r| r.get_executors = Some(s))
        }
        Type::GetTasks => {
            let s = visible(leader, who, m::get_tasks).await?;
            m::answer(R::GetTasks, |r| r.get_tasks = Some(s))
        }
        Type::GetRoles => {
            let s = visible(leader, who, m::get_roles).await?;
            m::answer(R::GetRoles, |r| r.get_roles = Some(s))
        }
        Type::GetWeights => {
            leader
                .require_leader()
                .map_err(|e| status_response(leader_status(e)))?;
            let s = m::get_weights(leader.weights());
            m::answer(R::GetWeights, |r| r.get_weights = Some(s))
        }
        Type::GetMaster => {
            let s = m::get_master(&facts(leader));
            m::answer(R::GetMaster, |r| r.get_master = Some(s))
        }
        Type::UpdateWeights => {
            let weights = m::update_weights_from_mesos(c).map_err(status_response)?;
            operator::set_weights(leader, who.as_deref(), &weights)
                .await
                .map_err(|s| status_response(m::update_weights_fields(s)))?;
            tracing::info!(roles = weights.len(), "weights updated");
            return Ok(StatusCode::OK.into_response());
        }
        Type::DrainAgent | Type::DeactivateAgent | Type::ReactivateAgent | Type::MarkAgentGone => {
            let (agent, field, what) = m::maintenance_from_mesos(c).map_err(status_response)?;
            operator::maintain(leader, who.as_deref(), &agent, field, what)
                .await
                .map_err(status_response)?;
            return Ok(StatusCode::OK.into_response());
        }
        Type::Subscribe => return subscribe(leader, who, answer),
        _ => unreachable!("refused above"),
    };
    Ok(answer.ok(&response))
}

/// SUBSCRIBE: `200` and a RecordIO stream: SUBSCRIBED with the state, then every cluster
/// event and a HEARTBEAT every [`crate::leader::HEARTBEAT`], until the client goes, falls
/// too far behind, or this master stops leading.
// The refusal is the HTTP answer itself, returned as is (a cold path).
#[allow(clippy::result_large_err)]
fn subscribe(
    leader: &Leader,
    who: Option<String>,
    encoding: Encoding,
) -> Result<Response, Response> {
    let heartbeat = crate::leader::HEARTBEAT;
    let (state, mut events) = leader
        .subscribe_events(who.as_deref(), m::get_state)
        .map_err(|e| status_response(leader_status(e)))?;
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_CHUNKS);
    let mut first = Vec::new();
    encoding.encode_record(&m::subscribed(state, heartbeat), &mut first);
    // Cannot fail: the channel is new and empty.
    let _ = tx.try_send(Bytes::from(first));
    tracing::info!("operator subscribed");
    let span = tracing::info_span!("mesos_operator_stream", principal = ?who);
    tokio::spawn(
        async move {
            let start = tokio::time::Instant::now() + heartbeat;
            let mut beat = tokio::time::interval_at(start, heartbeat);
            loop {
                let mut out = Vec::new();
                tokio::select! {
                    e = events.next() => match e {
                        Ok(e) => encoding.encode_record(&m::cluster_event_to_mesos(&e), &mut out),
                        Err(end) => {
                            tracing::info!(reason = %end, "operator stream ended");
                            return;
                        }
                    },
                    _ = beat.tick() => encoding.encode_record(&m::heartbeat(), &mut out),
                    _ = tx.closed() => {
                        tracing::info!("operator went away");
                        return;
                    }
                }
                if tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
            }
        }
        .instrument(span),
    );
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, encoding.mime()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(Chunks(rx)),
    )
        .into_response())
}

/// A stream's chunks as the response body; it ends when the producer does.
struct Chunks(mpsc::Receiver<Bytes>);

impl Stream for Chunks {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_recv(cx).map(|c| c.map(Ok))
    }
}

fn json(body: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /master/state`: Mesos' state.json of what the caller may see; on a follower, 307
/// to the leader's.
async fn state(
    State(leader): State<Leader>,
    uri: Uri,
    caller: Option<Extension<Caller>>,
) -> Response {
    if let Some(redirect) = redirect_unless_leader(&leader, uri.path()) {
        return redirect;
    }
    let who = caller.and_then(|Extension(c)| c.principal);
    let facts = facts(&leader);
    let config = leader.config().clone();
    match visible(&leader, who, move |v| m::state_json(v, &facts, &config)).await {
        Ok(body) => json(body),
        Err(refused) => refused,
    }
}

/// `GET /master/redirect`: 307 to the leading master (itself on the leader), as Mesos'.
async fn redirect(State(leader): State<Leader>) -> Response {
    let view = leader.view();
    let target = if view.is_leader {
        Some(leader.config().advertise.clone())
    } else {
        view.leader_address
    };
    match target {
        Some(addr) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, format!("//{addr}"))],
        )
            .into_response(),
        None => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "no leading master is known yet",
        ),
    }
}

/// `GET /metrics/snapshot`: Mesos' metric names and values as one JSON object.
async fn metrics_snapshot(State(leader): State<Leader>) -> Response {
    match metrics(&leader).await {
        Ok(metrics) => json(m::metrics_json(metrics)),
        Err(refused) => refused,
    }
}
