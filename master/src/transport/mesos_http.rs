//! What Mesos' v1 HTTP APIs share on the master (the scheduler API, `mesos_scheduler.rs`,
//! and the operator API, `mesos_operator.rs`): the body encodings chosen by `Content-Type`
//! and `Accept`, the bounded read of a request body, refusals as Mesos words them (plain
//! text), and the `307` a follower answers.

use agora_mesos_proto::{recordio, MesosJson};
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use tonic::{Code, Status};

use crate::leader::Leader;

/// The largest request body: the gRPC API's message limit.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub use agora_mesos_proto::Encoding;

/// What the master's transports do with an [`Encoding`] beyond its media types (those are
/// `agora-mesos-proto`'s, shared with the agent and the client).
pub trait EncodingExt: Copy {
    fn encode<M: Message + MesosJson>(self, message: &M) -> Option<Vec<u8>>;
    fn encode_record<M: Message + MesosJson>(self, message: &M, out: &mut Vec<u8>);
    fn decode<M: Message + MesosJson + Default>(self, body: &[u8]) -> Result<M, String>;
    fn ok<M: Message + MesosJson>(self, message: &M) -> Response;
}

impl EncodingExt for Encoding {
    /// `message` in this encoding; None (logged) if it cannot be written as JSON.
    fn encode<M: Message + MesosJson>(self, message: &M) -> Option<Vec<u8>> {
        match self {
            Encoding::Protobuf => Some(message.encode_to_vec()),
            Encoding::Json => match message.to_json_vec() {
                Ok(json) => Some(json),
                Err(e) => {
                    tracing::error!(error = %e, "a Mesos message could not be written as JSON");
                    None
                }
            },
        }
    }

    /// `message` as one RecordIO record appended to `out` (skipped if it cannot be
    /// written).
    fn encode_record<M: Message + MesosJson>(self, message: &M, out: &mut Vec<u8>) {
        if let Some(record) = self.encode(message) {
            recordio::encode_into(&record, out);
        }
    }

    /// `body` parsed as an `M`, or the reason naming the field.
    fn decode<M: Message + MesosJson + Default>(self, body: &[u8]) -> Result<M, String> {
        match self {
            Encoding::Json => M::from_json(body).map_err(|e| e.to_string()),
            Encoding::Protobuf => M::decode(body).map_err(|e| e.to_string()),
        }
    }

    /// A `200` answer carrying `message`.
    fn ok<M: Message + MesosJson>(self, message: &M) -> Response {
        match self.encode(message) {
            Some(body) => {
                (StatusCode::OK, [(header::CONTENT_TYPE, self.mime())], body).into_response()
            }
            None => refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the answer could not be written as JSON",
            ),
        }
    }
}

/// A refusal, its reason as plain text (as Mesos answers).
pub fn refusal(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.to_string(),
    )
        .into_response()
}

pub fn bad_request(message: impl std::fmt::Display) -> Response {
    refusal(StatusCode::BAD_REQUEST, message)
}

/// A refusal of the gRPC API's transport functions, in HTTP: a bad request is 400, a
/// refused credential 401, a refused principal 403, no leader 503.
pub fn status_response(status: Status) -> Response {
    let code = match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::AlreadyExists
        | Code::ResourceExhausted => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Aborted => StatusCode::CONFLICT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refusal(code, status.message())
}

/// On a follower, the answer pointing at the leader's `path`: `307` with a
/// scheme-relative `Location` (as Mesos answers: the client keeps its own scheme), or
/// `503` while no leader is known. None on the leader.
pub fn redirect_unless_leader(leader: &Leader, path: &str) -> Option<Response> {
    let view = leader.view();
    if view.is_leader {
        return None;
    }
    Some(match view.leader_address {
        Some(addr) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, format!("//{addr}{path}"))],
        )
            .into_response(),
        None => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "no leading master is known yet",
        ),
    })
}

/// The encodings of a call: its body's (`Content-Type`) and its answer's (`Accept`, else
/// `default_answer`, or the body's when None); or the refusal (415, 406).
// The refusal is the HTTP answer itself, returned as is (a cold path).
#[allow(clippy::result_large_err)]
pub fn encodings(
    headers: &HeaderMap,
    default_answer: Option<Encoding>,
) -> Result<(Encoding, Encoding), Response> {
    let Some(request) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Encoding::parse)
    else {
        return Err(refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expecting 'Content-Type' of application/json or application/x-protobuf",
        ));
    };
    let accept = headers.get(header::ACCEPT).map(|v| v.as_bytes());
    let Some(answer) = Encoding::accepted(accept, default_answer.unwrap_or(request)) else {
        return Err(refusal(
            StatusCode::NOT_ACCEPTABLE,
            "Expecting 'Accept' to allow application/json or application/x-protobuf",
        ));
    };
    Ok((request, answer))
}

/// The request body, at most [`MAX_BODY_BYTES`] (413 beyond, before reading it when its
/// length is declared).
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, Response> {
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => Ok(b),
        Err(e) if e.to_string().contains("length limit") => Err(too_large()),
        Err(e) => Err(bad_request(format!("could not read the request body: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn content_type_and_accept_choose_the_encodings() {
        let h = headers(&[("content-type", "application/x-protobuf")]);
        assert_eq!(
            encodings(&h, None).unwrap(),
            (Encoding::Protobuf, Encoding::Protobuf)
        );
        assert_eq!(
            encodings(&h, Some(Encoding::Json)).unwrap(),
            (Encoding::Protobuf, Encoding::Json)
        );
        let h = headers(&[
            ("content-type", "application/json; charset=utf-8"),
            ("accept", "text/html, application/x-protobuf;q=0.9"),
        ]);
        assert_eq!(
            encodings(&h, None).unwrap(),
            (Encoding::Json, Encoding::Protobuf)
        );
        let h = headers(&[("content-type", "application/json"), ("accept", "*/*")]);
        assert_eq!(
            encodings(&h, None).unwrap(),
            (Encoding::Json, Encoding::Json)
        );
        let h = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            encodings(&h, None).unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let h = headers(&[
            ("content-type", "application/json"),
            ("accept", "text/html"),
        ]);
        assert_eq!(
            encodings(&h, None).unwrap_err().status(),
            StatusCode::NOT_ACCEPTABLE
        );
    }
}
