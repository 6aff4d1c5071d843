//! `agora.v1.AgentGateway`: agents' sessions.

use std::pin::Pin;

use agora_proto::v1 as pb;
use agora_proto::v1::agent_gateway_server::AgentGateway;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::{leader_status, principal, session_status};
use crate::convert::{self, invalid};
use crate::leader::Leader;

type MasterStream = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send>>;

pub struct AgentGatewayApi {
    leader: Leader,
}

impl AgentGatewayApi {
    pub fn new(leader: Leader) -> Self {
        AgentGatewayApi { leader }
    }
}

#[tonic::async_trait]
impl AgentGateway for AgentGatewayApi {
    type ConnectStream = MasterStream;

    async fn connect(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<MasterStream>, Status> {
        self.leader.require_leader().map_err(leader_status)?;
        let who = principal(&req);
        let mut inbound = req.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Hello(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => return Err(invalid("hello", "the first message must be hello")),
        };
        let agent = convert::agent_id(&hello.agent_id, "hello.agent_id")?;
        convert::agent_address(&hello.address, "hello.address")?;
        let sandbox_key = match hello.sandbox_key.as_slice() {
            [] => None,
            bytes => Some(
                agora_security::grant::GrantKey::from_bytes(bytes).ok_or_else(|| {
                    invalid(
                        "hello.sandbox_key",
                        format!(
                            "must be {} bytes, not {}",
                            agora_security::grant::KEY_LEN,
                            bytes.len()
                        ),
                    )
                })?,
            ),
        };
        // Only the principal that registered the agent may open its session.
        self.leader
            .require_agent_owner(who.as_deref(), &agent)
            .map_err(leader_status)?;
        let session = self
            .leader
            .open_agent_session(&agent, &hello.address)
            .map_err(leader_status)?;
        self.leader.set_sandbox_key(&agent, sandbox_key);
        // The session ends at the first transport error or when the agent closes it.
        let reports = inbound
            .map_while(|m| m.ok())
            .filter_map(move |m| convert::agent_report_from_proto(m, &agent));
        tokio::spawn(session.reader.run(Box::pin(reports)).in_current_span());
        let outbound = ReceiverStream::new(session.outbound).map(|m| {
            m.map(convert::agent_command_to_proto)
                .map_err(session_status)
        });
        Ok(Response::new(Box::pin(outbound)))
    }
}
