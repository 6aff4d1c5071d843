//! The client API on a real single-replica master: leader-only answers, InvalidArgument
//! naming the field, HTTP endpoints, and bad flags.

mod common;

use std::process::Command;
use std::time::Duration;

use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_name_the_field_and_change_nothing() {
    let cluster = Cluster::start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let client = cluster.client();
    type Mutation = Box<dyn Fn(&mut pb::AgentInfo)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|a| a.address = "no-port".into()), "agent.address"),
        (Box::new(|a| a.hostname.clear()), "agent.hostname"),
        (
            Box::new(|a| a.hostname = "host\n2026-12-01 INFO forged".into()),
            "agent.hostname",
        ),
        (
            Box::new(|a| a.hostname = "h".repeat(1025)),
            "agent.hostname",
        ),
        (Box::new(|a| a.id = "../etc".into()), "agent.id"),
        (
            Box::new(|a| a.resources[0].value = Some(pb::resource::Value::Scalar(-2.0))),
            "agent.resources[0].scalar",
        ),
        (
            Box::new(|a| a.resources[0].value = Some(pb::resource::Value::Scalar(f64::NAN))),
            "agent.resources[0].scalar",
        ),
    ];
    for (mutate, field) in cases {
        let mut info = agent_info(1);
        mutate(&mut info);
        let err = client
            .call(|ch| {
                let agent = Some(info.clone());
                async move {
                    MasterRpc::new(ch)
                        .register_agent(pb::RegisterAgentRequest {
                            incarnation: 0,
                            attempt: 0,
                            tasks: vec![],
                            agent,
                        })
                        .await
                }
            })
            .await
            .unwrap_err();
        let status = err.status().unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with(field),
            "{} vs {field}",
            status.message()
        );
    }
    let state = state(&client).await;
    assert!(
        state.agents.is_empty(),
        "a refused request changed the registry"
    );

    // Another address claiming a registered id is refused.
    register(&client, 1).await.unwrap();
    let mut imposter = agent_info(1);
    imposter.address = "10.9.9.9:5051".into();
    let err = client
        .call(|ch| {
            let agent = Some(imposter.clone());
            async move {
                MasterRpc::new(ch)
                    .register_agent(pb::RegisterAgentRequest {
                        incarnation: 0,
                        attempt: 0,
                        tasks: vec![],
                        agent,
                    })
                    .await
            }
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.status().unwrap().code(),
        tonic::Code::FailedPrecondition
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_overtaken_by_a_later_one_is_refused_with_aborted() {
    let cluster = Cluster::start(1);
    let (_, term, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    let client = cluster.client();
    let send = |incarnation: u64, attempt: u64| {
        let client = &client;
        async move {
            client
                .call(|ch| async move {
                    MasterRpc::new(ch)
                        .register_agent(pb::RegisterAgentRequest {
                            incarnation,
                            attempt,
                            tasks: vec![],
                            agent: Some(agent_info(1)),
                        })
                        .await
                })
                .await
        }
    };
    let reply = send(4, 7).await.unwrap();
    assert_eq!(
        reply.term, term,
        "the reply names the registering leader's term"
    );
    // A request the agent sent before that one (attempt 6), delivered after it.
    let status = send(4, 6).await.unwrap_err().status().unwrap().clone();
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("older than the last one applied"),
        "{}",
        status.message()
    );
    // So is any request of the agent's previous run; a later one is applied.
    let status = send(3, 100).await.unwrap_err().status().unwrap().clone();
    assert_eq!(status.code(), tonic::Code::Aborted);
    send(5, 1).await.unwrap();
    assert_eq!(state(&client).await.agents.len(), 1);
}

fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let code: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_and_follower_redirect() {
    let cluster = Cluster::start(3);
    let (leader, term, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    register(&cluster.client(), 7).await.unwrap();
    let leader_addr = cluster.nodes[(leader - 1) as usize].addr.clone();
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    // Followers learn the leader with the next heartbeat.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (code, _, body) = http_get(&follower.addr, "/health");
    assert_eq!(code, 200);
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["role"], "follower");
    assert_eq!(h["id"], follower.id);
    assert_eq!(h["leader"], leader_addr.as_str());
    assert_eq!(h["term"], term);

    let (code, head, _) = http_get(&follower.addr, "/state");
    assert_eq!(code, 307);
    assert!(
        head.to_lowercase()
            .contains(&format!("location: http://{leader_addr}/state")),
        "{head}"
    );

    let (code, _, body) = http_get(&leader_addr, "/state");
    assert_eq!(code, 200);
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["leader"], leader_addr.as_str());
    assert_eq!(s["agents"][0]["id"], "agent-7");
    assert_eq!(s["agents"][0]["active"], true);
    assert_eq!(s["agents"][0]["resources"]["cpus"], 4.0);
    assert!(s["frameworks"].as_array().unwrap().is_empty());

    let (code, _, body) = http_get(&leader_addr, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("agora_raft_is_leader 1"), "{body}");
    assert!(body.contains("agora_registry_agents 1"));
    assert!(body.contains(
        "agora_registry_commands_total{kind=\"register_agent\",outcome=\"committed\"} 1"
    ));

    let (code, head, body) = http_get(&leader_addr, "/");
    assert_eq!(code, 200);
    assert!(body.contains("<title>Agora</title>"));
    // The page may load script, style and data from this address only, cannot be framed,
    // and holds no inline script; the script builds the tables from text, never markup.
    let head = head.to_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'self'; frame-ancestors 'none'"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(
        !body.contains("<script>") && !body.contains("<style>"),
        "{body}"
    );
    let (code, head, script) = http_get(&leader_addr, "/ui.js");
    assert_eq!(code, 200);
    assert!(
        head.to_lowercase()
            .contains("content-type: text/javascript"),
        "{head}"
    );
    assert!(script.contains("textContent"));
    for parses_markup in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "createContextualFragment",
        "DOMParser",
    ] {
        assert!(
            !script.contains(parses_markup),
            "ui.js uses {parses_markup}"
        );
    }
    let (_, head, _) = http_get(&leader_addr, "/state");
    assert!(
        head.to_lowercase().contains("content-security-policy"),
        "{head}"
    );

    // A gRPC call on a follower names the leader.
    let ch = cluster
        .client_security()
        .connect_lazy(&follower.addr, Duration::from_secs(1))
        .unwrap();
    let err = MasterRpc::new(ch)
        .get_state(pb::GetStateRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(
        err.metadata()
            .get(agora_proto::LEADER_METADATA_KEY)
            .unwrap()
            .to_str()
            .unwrap(),
        leader_addr
    );
}

fn master(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agora-master"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("w");
    let wd = wd.to_str().unwrap();
    for (args, needle) in [
        (
            vec![
                "--id",
                "4",
                "--peers",
                "1=a:1,2=b:2,3=c:3",
                "--work-dir",
                wd,
            ],
            "--id 4 is not in --peers",
        ),
        (
            vec![
                "--id",
                "1",
                "--peers",
                "1=a:1,1=b:2,3=c:3",
                "--work-dir",
                wd,
            ],
            "twice",
        ),
        (vec!["--id", "x", "--work-dir", wd], "--id"),
        (
            vec!["--id", "1", "--peers", "1=a:1,2=b:2", "--work-dir", wd],
            "1, 3 or 5",
        ),
        (
            vec![
                "--id",
                "1",
                "--work-dir",
                wd,
                "--allocation-interval",
                "soon",
            ],
            "--allocation-interval",
        ),
        // Secure by default: no TLS or credentials, no start (unless --insecure).
        (
            vec!["--id", "1", "--listen", "127.0.0.1:1", "--work-dir", wd],
            "refusing to start without TLS and credentials",
        ),
        (
            vec!["--id", "1", "--work-dir", wd, "--tls-cert", "c.pem"],
            "--tls-cert, --tls-key and --tls-ca go together",
        ),
        (
            vec![
                "--id",
                "1",
                "--work-dir",
                wd,
                "--insecure",
                "--credentials",
                "/nonexistent/credentials.json",
            ],
            "/nonexistent/credentials.json",
        ),
    ] {
        let (code, stderr) = master(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_dir_held_by_another_process_exits_2() {
    let cluster = Cluster::start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let n = &cluster.nodes[0];
    let port = free_port();
    let (code, stderr) = master(&[
        "--id",
        "1",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--work-dir",
        n.work_dir.to_str().unwrap(),
        "--insecure",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("held by another running process"),
        "{stderr}"
    );
    // One line of error; the only other line is the log's INSECURE warning.
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("INSECURE"), "{stderr}");
}
