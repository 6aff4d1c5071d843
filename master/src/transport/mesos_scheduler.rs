//! Apache Mesos' v1 scheduler HTTP API on the master's listen address:
//! `POST /api/v1/scheduler` (and Mesos' `GET /version`), so unmodified Mesos frameworks run
//! on Agora.
//!
//! A SUBSCRIBE answers `200` with a `Mesos-Stream-Id` and a never-ending body of
//! RecordIO-framed events; every other call names that stream id and answers `202`. Bodies
//! are Mesos' JSON or protobuf (`Content-Type`), events and answers in the type `Accept`
//! asks for (by default the request's). Each call is converted
//! ([`crate::convert::mesos`]) into the request of the gRPC scheduler API and made through
//! the same functions ([`super::scheduler`]): the same validation, authorization and
//! leader calls. A follower answers `307` to the leader's `/api/v1/scheduler`.
//!
//! The one state kept here is each framework's current stream id (set when a Mesos
//! subscription opens, removed when its stream ends), which only this protocol has.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use agora_mesos_proto::v1::scheduler as sched;
use agora_mesos_proto::MesosJson;
use agora_registry::FrameworkId;
use agora_security::authenticate::Caller;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Code, Status};

use super::mesos_http::{
    bad_request, encodings, read_body, redirect_unless_leader, refusal, status_response, Encoding,
    EncodingExt,
};
use super::scheduler;
use crate::convert;
use crate::convert::mesos::{EventShape, MesosAccept};
use crate::leader::messages::{FrameworkEvent, SessionEnd};
use crate::leader::sessions::Outbound;
use crate::leader::Leader;

/// The endpoint.
pub const PATH: &str = "/api/v1/scheduler";
/// The header naming a subscription.
const STREAM_ID: &str = "mesos-stream-id";
/// Events coalesced into one chunk of the stream, at most (bytes).
const MAX_CHUNK_BYTES: usize = 64 * 1024;

struct Api {
    leader: Leader,
    /// Each framework's current Mesos subscription, by its `Mesos-Stream-Id`.
    streams: Mutex<HashMap<FrameworkId, String>>,
}

impl Api {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<FrameworkId, String>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The routes: `POST /api/v1/scheduler` and `GET /version`.
pub fn router(leader: Leader) -> Router {
    let api = Arc::new(Api {
        leader,
        streams: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route(PATH, post(call))
        .route("/version", get(version))
        .with_state(api)
        .layer(axum::middleware::map_response(
            super::http::security_headers,
        ))
}

/// A call's member for its type (`accept` of an ACCEPT), or 400 as Mesos words it.
fn member<'a, T>(value: &'a Option<T>, name: &str) -> Result<&'a T, Status> {
    value
        .as_ref()
        .ok_or_else(|| Status::invalid_argument(format!("Expecting '{name}' to be present")))
}

async fn version() -> Response {
    match convert::mesos::version_info().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn call(
    State(api): State<Arc<Api>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let who = caller.and_then(|Extension(c)| c.principal);
    if let Some(redirect) = redirect_unless_leader(&api.leader, PATH) {
        return redirect;
    }
    let (encoding, answer) = match encodings(&headers, None) {
        Ok(e) => e,
        Err(refused) => return refused,
    };
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let c = match encoding.decode::<sched::Call>(&bytes) {
        Ok(c) => c,
        Err(e) => return bad_request(format!("Failed to parse body into Call: {e}")),
    };
    let stream_id = headers
        .get(STREAM_ID)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    use sched::call::Type;
    match c.r#type.map(Type::try_from) {
        Some(Ok(Type::Subscribe)) => subscribe(&api, who, c, stream_id, answer).await,
        None | Some(Ok(Type::Unknown)) => bad_request("Expecting 'type' to be present"),
        Some(Err(_)) => bad_request(format!(
            "'type': {} is not a call type",
            c.r#type.unwrap_or_default()
        )),
        Some(Ok(kind)) => {
            let framework = match subscribed_stream(&api, &c, stream_id) {
                Ok(f) => f,
                Err((code, message)) => return refusal(code, message),
            };
            match framework_call(&api.leader, who.as_deref(), kind, &framework, c).await {
                Ok(()) => StatusCode::ACCEPTED.into_response(),
                Err(s) => status_response(s),
            }
        }
    }
}

/// The framework a call other than SUBSCRIBE names, once its `Mesos-Stream-Id` is that of
/// the framework's current subscription through this API; else the refusal.
fn subscribed_stream(
    api: &Api,
    c: &sched::Call,
    stream_id: Option<String>,
) -> Result<String, (StatusCode, String)> {
    let Some(id) = c.framework_id.as_ref().map(|f| f.value.clone()) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "Expecting 'framework_id' to be present".into(),
        ));
    };
    let framework = convert::framework_id(&id, "framework_id")
        .map_err(|s| (StatusCode::BAD_REQUEST, s.message().to_string()))?;
    let Some(stream_id) = stream_id else {
        return Err((
            StatusCode::BAD_REQUEST,
            "All non-subscribe calls should include the 'Mesos-Stream-Id' header".into(),
        ));
    };
    let current = api.streams().get(&framework).cloned();
    match current {
        Some(current) if current == stream_id => Ok(id),
        Some(_) => Err((
            StatusCode::BAD_REQUEST,
            format!(
                "The stream ID '{stream_id}' included in this request didn't match the stream ID currently associated with framework ID {id}"
            ),
        )),
        None if api.leader.read(|reg| reg.framework(&framework).is_some()) => Err((
            StatusCode::FORBIDDEN,
            format!("Framework {id} is not subscribed through this API; SUBSCRIBE first"),
        )),
        None => Err((
            StatusCode::NOT_FOUND,
            format!("Framework cannot be found: {id}"),
        )),
    }
}

/// A call other than SUBSCRIBE, made through the scheduler API's functions.
async fn framework_call(
    leader: &Leader,
    who: Option<&str>,
    kind: sched::call::Type,
    id: &str,
    c: sched::Call,
) -> Result<(), Status> {
    use convert::mesos as m;
    use sched::call::Type;
    match kind {
        Type::Teardown => scheduler::teardown(leader, who, id).await,
        Type::Accept => match m::accept_from_mesos(id, member(&c.accept, "accept")?)? {
            MesosAccept::Decline(req) => scheduler::decline(leader, who, &req)
                .await
                .map_err(m::accept_decline_fields),
            MesosAccept::Launch(launch) => {
                match scheduler::accept(leader, who, &launch.request).await {
                    // Refused by the registry: no task launched, and each got TASK_DROPPED
                    // with the reason, which is how Mesos answers an accept of bad offers.
                    Err(s) if s.code() == Code::FailedPrecondition => {
                        tracing::info!(
                            framework = id,
                            reason = s.message(),
                            "Mesos accept refused; its tasks were dropped"
                        );
                        Ok(())
                    }
                    r => r.map_err(|s| launch.name_fields(s)),
                }
            }
        },
        Type::Decline => {
            let req = m::decline_from_mesos(id, member(&c.decline, "decline")?);
            scheduler::decline(leader, who, &req)
                .await
                .map_err(m::decline_fields)
        }
        // A framework has one role: REVIVE and SUPPRESS of any roles are of it.
        Type::Revive => scheduler::revive(leader, who, id),
        Type::Suppress => scheduler::suppress(leader, who, id),
        Type::Kill => {
            let req = m::kill_from_mesos(id, member(&c.kill, "kill")?)?;
            scheduler::kill(leader, who, &req).map_err(m::kill_fields)
        }
        Type::Shutdown => {
            let req = m::shutdown_from_mesos(id, member(&c.shutdown, "shutdown")?);
            scheduler::shutdown(leader, who, req)
                .map_err(|s| m::executor_call_fields(s, "shutdown"))
        }
        Type::Acknowledge => {
            let req = m::acknowledge_from_mesos(id, member(&c.acknowledge, "acknowledge")?)?;
            scheduler::acknowledge(leader, who, req).map_err(m::acknowledge_fields)
        }
        Type::Reconcile => {
            let req = m::reconcile_from_mesos(id, member(&c.reconcile, "reconcile")?);
            scheduler::reconcile(leader, who, &req).map_err(m::reconcile_fields)
        }
        Type::Message => {
            let req = m::message_from_mesos(id, member(&c.message, "message")?);
            scheduler::message(leader, who, req).map_err(|s| m::executor_call_fields(s, "message"))
        }
        // Resource requests (which Mesos' allocator ignores too), and inverse offers, of
        // which Agora makes none: accepted, after the caller's check, with no effect.
        Type::Request | Type::AcceptInverseOffers | Type::DeclineInverseOffers => {
            scheduler::caller(leader, id, who).map(|_| ())
        }
        Type::AcknowledgeOperationStatus | Type::ReconcileOperations | Type::UpdateFramework => {
            Err(Status::unimplemented(format!(
                "{} is not supported by Agora",
                kind.as_str_name()
            )))
        }
        Type::Subscribe | Type::Unknown => {
            Err(Status::invalid_argument("Expecting 'type' to be present"))
        }
    }
}

/// SUBSCRIBE: the framework's subscription, streamed.
async fn subscribe(
    api: &Arc<Api>,
    who: Option<String>,
    c: sched::Call,
    stream_id: Option<String>,
    encoding: Encoding,
) -> Response {
    if stream_id.is_some() {
        return bad_request("Subscribe calls should not include the 'Mesos-Stream-Id' header");
    }
    let sub = match member(&c.subscribe, "subscribe") {
        Ok(s) => s,
        Err(s) => return status_response(s),
    };
    if let Some(id) = &c.framework_id {
        if sub.framework_info.id.as_ref().map(|i| &i.value) != Some(&id.value) {
            return bad_request("'framework_id' differs from 'subscribe.framework_info.id'");
        }
    }
    let m = match convert::mesos::subscribe_from_mesos(sub) {
        Ok(m) => m,
        Err(s) => return status_response(s),
    };
    if let Some(id) = &m.call.id {
        if api.leader.read(|reg| reg.framework(id).is_none()) {
            return refusal(
                StatusCode::NOT_FOUND,
                format!("Framework cannot be found: {id} (removed after its failover timeout or a teardown?)"),
            );
        }
    }
    let subscription = match scheduler::subscribe(&api.leader, who, m.call).await {
        Ok(s) => s,
        Err(s) => return status_response(convert::mesos::subscribe_fields(s)),
    };
    let framework = subscription.framework_id.clone();
    if m.suppressed {
        if let Err(e) = api.leader.suppress(&framework) {
            tracing::warn!(framework = %framework, error = %e, "could not suppress offers");
        }
    }
    let stream_id = uuid::Uuid::new_v4().to_string();
    api.streams().insert(framework.clone(), stream_id.clone());
    let view = api.leader.view();
    let address = view
        .leader_address
        .unwrap_or_else(|| api.leader.config().advertise.clone());
    let shape = EventShape {
        master: Some(convert::mesos::master_info(view.id, &address)),
        ..m.shape
    };
    tracing::info!(framework = %framework, stream = %stream_id, "Mesos scheduler subscribed");
    let body = EventBody {
        events: subscription.events,
        shape,
        encoding,
        ended: false,
        _stream: StreamGuard {
            api: api.clone(),
            framework,
            stream_id: stream_id.clone(),
        },
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, encoding.mime().to_string()),
            (header::HeaderName::from_static(STREAM_ID), stream_id),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Forgets a framework's stream id when its stream ends (unless a newer one replaced it).
struct StreamGuard {
    api: Arc<Api>,
    framework: FrameworkId,
    stream_id: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = self.api.streams();
        if streams.get(&self.framework) == Some(&self.stream_id) {
            streams.remove(&self.framework);
        }
        tracing::info!(framework = %self.framework, stream = %self.stream_id, "Mesos scheduler stream ended");
    }
}

/// A subscription's events as the response body: each a RecordIO record. When the leader
/// ends the subscription the body ends too (after an ERROR event if the framework must not
/// subscribe again); when the client goes away the body is dropped, which ends the
/// subscription as a dropped gRPC stream does.
struct EventBody {
    events: mpsc::Receiver<Outbound<FrameworkEvent, SessionEnd>>,
    shape: EventShape,
    encoding: Encoding,
    ended: bool,
    _stream: StreamGuard,
}

impl Stream for EventBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut out = Vec::new();
        while !this.ended && out.len() < MAX_CHUNK_BYTES {
            match this.events.poll_recv(cx) {
                Poll::Ready(Some(Ok(e))) => {
                    if let Some((task, uuid, agent)) =
                        convert::mesos::hidden_update(&e, &this.shape)
                    {
                        let framework = &this._stream.framework;
                        if let Err(err) = this
                            ._stream
                            .api
                            .leader
                            .acknowledge(framework, &task, uuid, agent)
                        {
                            tracing::warn!(framework = %framework, task = %task, error = %err, "could not acknowledge a TASK_KILLING the framework is not sent");
                        }
                        continue;
                    }
                    let event = convert::mesos::framework_event_to_mesos(e, &this.shape);
                    this.encoding.encode_record(&event, &mut out);
                }
                Poll::Ready(Some(Err(end))) => {
                    tracing::info!(framework = %this._stream.framework, reason = %end, "Mesos scheduler subscription ended");
                    if let Some(event) = convert::mesos::session_end_to_mesos(&end) {
                        this.encoding.encode_record(&event, &mut out);
                    }
                    this.ended = true;
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => break,
            }
        }
        if !out.is_empty() {
            Poll::Ready(Some(Ok(Bytes::from(out))))
        } else if this.ended {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
