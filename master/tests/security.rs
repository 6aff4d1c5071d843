//! Issue 11's findings, each against a real quorum with TLS, credentials and ACLs on (the
//! fixture's PKI): an unauthenticated or wrong-secret caller, a forged Raft peer, an
//! operator call by a principal the ACLs do not name, a framework acting for another's,
//! and a principal taking over another's agent, are all refused.

mod common;

use std::time::Duration;

use agora_proto::v1 as pb;
use agora_proto::v1::agent_gateway_client::AgentGatewayClient;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use agora_proto::v1::operator_client::OperatorClient;
use agora_proto::v1::raft_peer_client::RaftPeerClient;
use agora_proto::v1::scheduler_client::SchedulerClient;
use agora_security::client::{AuthorizedChannel, ClientSecurity};
use agora_security::credentials::Credential;
use agora_security::tls::ClientTls;
use common::pki::{pki, ADMIN, AGENT, AGENT_2, TEAM_A, TEAM_B};
use common::*;
use tonic::Code;

fn channel(addr: &str, security: &ClientSecurity) -> AuthorizedChannel {
    security.connect_lazy(addr, Duration::from_secs(2)).unwrap()
}

fn as_principal(addr: &str, principal: Option<&str>) -> AuthorizedChannel {
    channel(addr, &pki().client_security(principal))
}

fn wrong_secret(addr: &str, principal: &str) -> AuthorizedChannel {
    let mut s = pki().client_security(None);
    s.credential = Some(Credential::new(principal, "not-the-secret"));
    channel(addr, &s)
}

/// A channel presenting a client certificate (and no credential).
fn with_certificate(addr: &str, principal: &str) -> AuthorizedChannel {
    let files = pki().issue(principal, "127.0.0.1");
    let tls = ClientTls::load(&pki().ca_path(), Some((&files.cert, &files.key))).unwrap();
    channel(
        addr,
        &ClientSecurity {
            tls: Some(tls),
            credential: None,
        },
    )
}

async fn leader_addr(cluster: &Cluster) -> String {
    let (id, _, _) = cluster.wait_leader(1, Duration::from_secs(15)).await;
    cluster.addrs()[id as usize - 1].clone()
}

fn subscribe_request(name: &str, id: &str) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        framework: Some(pb::FrameworkInfo {
            id: id.into(),
            name: name.into(),
            roles: vec!["*".into()],
            failover_timeout_seconds: 60.0,
            ..Default::default()
        }),
    }
}

/// Every service refuses a caller with no credential, and one with a wrong secret, with
/// the same UNAUTHENTICATED and no detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_and_wrong_secret_callers_are_refused_on_every_service() {
    let cluster = Cluster::start(1);
    let addr = leader_addr(&cluster).await;
    for (label, ch) in [
        ("no credential", as_principal(&addr, None)),
        ("wrong secret", wrong_secret(&addr, ADMIN)),
        ("unknown principal", wrong_secret(&addr, "mallory")),
    ] {
        let mut messages = Vec::new();
        let s = SchedulerClient::new(ch.clone())
            .subscribe(subscribe_request("x", ""))
            .await
            .unwrap_err();
        messages.push(("Scheduler.Subscribe", s));
        let s = SchedulerClient::new(ch.clone())
            .teardown(pb::FrameworkCall {
                framework_id: "f".into(),
            })
            .await
            .unwrap_err();
        messages.push(("Scheduler.Teardown", s));
        let s = MasterRpc::new(ch.clone())
            .register_agent(pb::RegisterAgentRequest {
                incarnation: 0,
                attempt: 0,
                agent: Some(agent_info(1)),
                tasks: vec![],
            })
            .await
            .unwrap_err();
        messages.push(("Master.RegisterAgent", s));
        let s = MasterRpc::new(ch.clone())
            .get_state(pb::GetStateRequest {})
            .await
            .unwrap_err();
        messages.push(("Master.GetState", s));
        let s = OperatorClient::new(ch.clone())
            .set_weight(pb::SetWeightRequest {
                role: "a".into(),
                weight: 9.0,
            })
            .await
            .unwrap_err();
        messages.push(("Operator.SetWeight", s));
        let s = OperatorClient::new(ch.clone())
            .add_learner(pb::AddLearnerRequest {
                id: 9,
                address: "127.0.0.1:1".into(),
            })
            .await
            .unwrap_err();
        messages.push(("Operator.AddLearner", s));
        let hello = pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(pb::AgentHello {
                agent_id: "a".into(),
                address: "127.0.0.1:1".into(),
                sandbox_key: vec![],
            })),
        };
        let s = AgentGatewayClient::new(ch.clone())
            .connect(tokio_stream::iter(vec![hello]))
            .await
            .unwrap_err();
        messages.push(("AgentGateway.Connect", s));
        for (call, status) in messages {
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{label}: {call}: {status:?}"
            );
            assert_eq!(status.message(), "authentication failed", "{label}: {call}");
        }
    }
    // The weight did not change and no learner was added.
    let weights = OperatorClient::new(as_principal(&addr, Some(ADMIN)))
        .get_weights(pb::GetWeightsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(weights.weights.iter().all(|w| w.role != "a"), "{weights:?}");
    // HTTP reads stay open (no --authenticate-http-readonly), and /health says the
    // replica is not insecure.
    let (code, body) = http_get(&addr, "/health").unwrap();
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["insecure"], false, "{body}");
}

fn vote(term: u64, node: u64) -> pb::RaftMessage {
    let req = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(term, node), None);
    pb::RaftMessage {
        json: serde_json::to_vec(&req).unwrap(),
    }
}

/// A forged Vote with a high term used to depose the leader. Now the RaftPeer service
/// answers only a replica's certificate from the cluster CA, and only for that replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_raft_peer_calls_are_refused_and_the_leader_stays() {
    let cluster = Cluster::start(3);
    let (leader, term, _) = cluster.wait_leader(1, Duration::from_secs(15)).await;
    let follower = cluster.addrs()[(leader as usize) % 3].clone();
    let follower_id = (leader % 3) + 1;
    let other = [1u64, 2, 3]
        .into_iter()
        .find(|i| *i != leader && *i != follower_id)
        .unwrap();
    let forged = vote(term + 100, other);

    // No certificate, even with the admin's secret.
    let s = RaftPeerClient::new(as_principal(&follower, Some(ADMIN)))
        .vote(forged.clone())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    // A certificate of the cluster CA that is not a replica's.
    let s = RaftPeerClient::new(with_certificate(&follower, AGENT))
        .vote(forged.clone())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    // A replica's certificate (master-<other>) from another CA: the handshake fails.
    let dir = tempfile::tempdir().unwrap();
    let rogue = agora_security::generate::Authority::new("rogue").unwrap();
    let files = rogue
        .write_issued(
            dir.path(),
            "m",
            &format!("master-{other}"),
            &["127.0.0.1".into()],
        )
        .unwrap();
    let tls = ClientTls::load(&pki().ca_path(), Some((&files.cert, &files.key))).unwrap();
    let s = RaftPeerClient::new(channel(
        &follower,
        &ClientSecurity {
            tls: Some(tls),
            credential: None,
        },
    ))
    .vote(forged.clone())
    .await
    .unwrap_err();
    assert_ne!(s.code(), Code::Ok);
    // A real replica's certificate speaking for another replica.
    let s = RaftPeerClient::new(with_certificate(&follower, &format!("master-{leader}")))
        .vote(forged.clone())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    // A forged AppendEntries to the follower (as the leader would send, from a
    // non-replica) is refused too.
    let append = openraft::raft::AppendEntriesRequest::<agora_master::store::TypeConfig> {
        vote: openraft::Vote::new_committed(term + 100, other),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let s = RaftPeerClient::new(with_certificate(&follower, AGENT))
        .append_entries(pb::RaftMessage {
            json: serde_json::to_vec(&append).unwrap(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");

    // The leader is still the leader, in the same term.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (now_leader, now_term, _) = cluster.wait_leader(1, Duration::from_secs(5)).await;
    assert_eq!((now_leader, now_term), (leader, term));
}

/// Operator calls need a principal the ACLs allow (the fixture's ACLs name the admin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_calls_need_a_permitted_principal() {
    let cluster = Cluster::start(3);
    let addr = leader_addr(&cluster).await;
    let team = as_principal(&addr, Some(TEAM_A));
    let s = OperatorClient::new(team.clone())
        .set_weight(pb::SetWeightRequest {
            role: "a".into(),
            weight: 5.0,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("update_weights"), "{s:?}");
    let s = OperatorClient::new(team.clone())
        .change_membership(pb::ChangeMembershipRequest {
            voter_ids: vec![1],
            retain: false,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let s = OperatorClient::new(team)
        .add_learner(pb::AddLearnerRequest {
            id: 7,
            address: "127.0.0.1:9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    // The quorum still has its three voters; the admin may set a weight.
    let status = MasterRpc::new(as_principal(&addr, Some(ADMIN)))
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.members.iter().filter(|m| m.voter).count(), 3);
    OperatorClient::new(as_principal(&addr, Some(ADMIN)))
        .set_weight(pb::SetWeightRequest {
            role: "a".into(),
            weight: 5.0,
        })
        .await
        .unwrap();
}

/// Framework B cannot act for framework A by naming A's id (read from /state), nor take
/// A's subscription over, nor subscribe under another principal's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_cannot_act_for_another_principals_framework() {
    let cluster = Cluster::start(1);
    let addr = leader_addr(&cluster).await;
    let a = as_principal(&addr, Some(TEAM_A));
    let b = as_principal(&addr, Some(TEAM_B));
    let mut a_events = SchedulerClient::new(a.clone())
        .subscribe(subscribe_request("fw-a", ""))
        .await
        .unwrap()
        .into_inner();
    let first = a_events.message().await.unwrap().unwrap();
    let a_id = match first.kind {
        Some(pb::event::Kind::Subscribed(s)) => s.framework_id,
        other => panic!("{other:?}"),
    };
    let call = || pb::FrameworkCall {
        framework_id: a_id.clone(),
    };
    let mut refusals: Vec<(&str, tonic::Status)> = Vec::new();
    let mut sb = SchedulerClient::new(b.clone());
    refusals.push((
        "subscribe with A's id",
        sb.subscribe(subscribe_request("stolen", &a_id))
            .await
            .unwrap_err(),
    ));
    refusals.push(("teardown", sb.teardown(call()).await.unwrap_err()));
    refusals.push(("suppress", sb.suppress(call()).await.unwrap_err()));
    refusals.push(("revive", sb.revive(call()).await.unwrap_err()));
    refusals.push((
        "kill",
        sb.kill(pb::KillRequest {
            framework_id: a_id.clone(),
            task_id: "t1".into(),
            grace_period_ms: 0,
        })
        .await
        .unwrap_err(),
    ));
    refusals.push((
        "reconcile",
        sb.reconcile(pb::ReconcileRequest {
            framework_id: a_id.clone(),
            task_ids: vec![],
        })
        .await
        .unwrap_err(),
    ));
    refusals.push((
        "decline",
        sb.decline(pb::DeclineRequest {
            framework_id: a_id.clone(),
            offer_ids: vec!["o1".into()],
            filters: None,
        })
        .await
        .unwrap_err(),
    ));
    refusals.push((
        "acknowledge",
        sb.acknowledge(pb::AcknowledgeRequest {
            framework_id: a_id.clone(),
            task_id: "t1".into(),
            uuid: "u".into(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
    ));
    refusals.push((
        "message",
        sb.message(pb::FrameworkMessage {
            framework_id: a_id.clone(),
            agent_id: "a1".into(),
            executor_id: "e1".into(),
            data: vec![],
        })
        .await
        .unwrap_err(),
    ));
    refusals.push((
        "accept",
        sb.accept(pb::AcceptRequest {
            framework_id: a_id.clone(),
            offer_ids: vec!["o1".into()],
            tasks: vec![],
            filters: None,
        })
        .await
        .unwrap_err(),
    ));
    // Declaring another principal in FrameworkInfo is refused too.
    let mut declared = subscribe_request("liar", "");
    declared.framework.as_mut().unwrap().principal = TEAM_A.into();
    refusals.push((
        "declare another principal",
        sb.subscribe(declared).await.unwrap_err(),
    ));
    for (what, s) in refusals {
        assert_eq!(s.code(), Code::PermissionDenied, "{what}: {s:?}");
    }
    // A is still subscribed (its own call works) and its stream was not ended.
    SchedulerClient::new(a.clone())
        .revive(call())
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_millis(500), a_events.message()).await;
    assert!(
        !matches!(ended, Ok(Ok(None)) | Ok(Err(_))),
        "A's stream ended: {ended:?}"
    );
    let state = cluster.http_state().unwrap();
    let fw = &state["frameworks"][0];
    assert_eq!(fw["name"], "fw-a", "{state}");
    assert_eq!(fw["active"], true, "{state}");
    // The admin may tear A down (the ACLs name it).
    SchedulerClient::new(as_principal(&addr, Some(ADMIN)))
        .teardown(call())
        .await
        .unwrap();
}

/// An agent belongs to the principal that registered it: another principal can neither
/// register its id again (which used to mark its tasks lost) nor open its session (which
/// used to take its launches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_id_is_bound_to_the_principal_that_registered_it() {
    let cluster = Cluster::start(1);
    let addr = leader_addr(&cluster).await;
    let real = with_certificate(&addr, AGENT);
    let info = agent_info(1);
    let reply = MasterRpc::new(real.clone())
        .register_agent(pb::RegisterAgentRequest {
            incarnation: 0,
            attempt: 0,
            agent: Some(info.clone()),
            tasks: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    // A framework principal may not register agents at all (the ACLs): a fake agent with
    // 100,000 cpus would attract other frameworks' tasks.
    let mut fake = agent_info(2);
    fake.resources[0].value = Some(pb::resource::Value::Scalar(100_000.0));
    let s = MasterRpc::new(as_principal(&addr, Some(TEAM_B)))
        .register_agent(pb::RegisterAgentRequest {
            incarnation: 0,
            attempt: 0,
            agent: Some(fake),
            tasks: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("register_agents"), "{s:?}");
    // Another agent principal cannot take this agent's id.
    let mut stolen = info.clone();
    stolen.id = reply.agent_id.clone();
    let impostor = with_certificate(&addr, AGENT_2);
    let s = MasterRpc::new(impostor.clone())
        .register_agent(pb::RegisterAgentRequest {
            incarnation: 0,
            attempt: 0,
            agent: Some(stolen.clone()),
            tasks: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let hello = pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::AgentHello {
            agent_id: reply.agent_id.clone(),
            address: stolen.address.clone(),
            sandbox_key: vec![],
        })),
    };
    let s = AgentGatewayClient::new(impostor)
        .connect(tokio_stream::iter(vec![hello.clone()]))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    // The real agent (its certificate) still may.
    MasterRpc::new(real.clone())
        .register_agent(pb::RegisterAgentRequest {
            incarnation: 0,
            attempt: 0,
            agent: Some(stolen),
            tasks: vec![],
        })
        .await
        .unwrap();
}

/// A client certificate from another CA cannot register an agent (nor reach anything:
/// the handshake fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_cannot_register_an_agent() {
    let cluster = Cluster::start(1);
    let addr = leader_addr(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let rogue = agora_security::generate::Authority::new("rogue").unwrap();
    let files = rogue
        .write_issued(dir.path(), "a", AGENT, &["127.0.0.1".into()])
        .unwrap();
    let tls = ClientTls::load(&pki().ca_path(), Some((&files.cert, &files.key))).unwrap();
    let err = MasterRpc::new(channel(
        &addr,
        &ClientSecurity {
            tls: Some(tls),
            credential: None,
        },
    ))
    .register_agent(pb::RegisterAgentRequest {
        incarnation: 0,
        attempt: 0,
        agent: Some(agent_info(1)),
        tasks: vec![],
    })
    .await
    .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    let state = cluster.http_state().unwrap();
    assert_eq!(state["agents"].as_array().map(Vec::len), Some(0), "{state}");
}

/// A raw HTTP/1.1 GET with optional `Authorization`, over plaintext (the fixture's
/// masters allow it beside TLS). Returns the status and the head.
fn get_with(addr: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let head = buf.split_once("\r\n\r\n").map(|(h, _)| h).unwrap_or(&buf);
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_lowercase())
}

/// With --authenticate-http-readonly, /state, /metrics and the UI ask for credentials
/// (401 with a Basic challenge, so a browser prompts); /health stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_http_takes_credentials_when_asked_to() {
    let cluster = Cluster::start_with(1, &["--authenticate-http-readonly"]);
    let addr = leader_addr(&cluster).await;
    for path in ["/state", "/metrics", "/", "/ui.js"] {
        let (code, head) = get_with(&addr, path, None);
        assert_eq!(code, 401, "{path}: {head}");
        assert!(head.contains("www-authenticate: basic"), "{path}: {head}");
        let wrong = Credential::new(ADMIN, "wrong").authorization();
        assert_eq!(get_with(&addr, path, Some(&wrong)).0, 401, "{path}");
        let right = pki().credential(ADMIN).authorization();
        assert_eq!(get_with(&addr, path, Some(&right)).0, 200, "{path}");
    }
    assert_eq!(get_with(&addr, "/health", None).0, 200);
}

/// Certificates reload on SIGHUP without dropping the quorum: a replica's certificate
/// rewritten in place is served to new connections after the signal, and the leader and
/// its term stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_and_keeps_the_quorum() {
    let mut cluster = Cluster::start(3);
    let (leader, term, _) = cluster.wait_leader(1, Duration::from_secs(15)).await;
    let node = cluster.node(1);
    let addr = node.addr.clone();
    let pid = node.pid().unwrap();
    // The new certificate also names "reloaded.test"; the old one does not.
    let files = pki().master(1, &addr);
    assert!(https_get_as(&addr, "reloaded.test", "/health").is_none());
    pki().reissue(
        &files,
        "master-1",
        &["127.0.0.1".into(), "reloaded.test".into()],
    );
    // Not yet reloaded.
    assert!(https_get_as(&addr, "reloaded.test", "/health").is_none());
    for n in &cluster.nodes {
        signal(n.pid().unwrap(), libc::SIGHUP);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((200, _)) = https_get_as(&addr, "reloaded.test", "/health") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every replica is still running (SIGHUP did not stop it), the quorum still has its
    // leader and term, and writes still commit.
    assert!(cluster.nodes.iter().all(|n| n.is_running()));
    assert_eq!(cluster.node(1).pid(), Some(pid));
    let (now_leader, now_term, _) = cluster.wait_leader(1, Duration::from_secs(5)).await;
    assert_eq!((now_leader, now_term), (leader, term));
    register(&cluster.client(), 7).await.unwrap();
}
