//! Task output and sandboxes against a real cluster (3 masters, a cgroup agent, TLS and
//! credentials): `agora run` prints the task's stdout and stderr as its own, `agora logs -f`
//! follows a running task, and the sandbox API refuses reads past a file's end, paths out
//! of the sandbox and another framework's task.

mod common;

use std::process::Stdio;
use std::time::Duration;

use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use agora_security::client::ClientSecurity;
use agora_security::http_client;
use agora_test_cluster::pki::{pki, TEAM_A, TEAM_B};
use agora_test_cluster::*;
use common::*;

/// `agora` as `principal` (not the admin of the client configuration).
fn agora_as(cluster: &Cluster, principal: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = agora(cluster, args);
    let credential = pki().credential(principal);
    cmd.env("AGORA_PRINCIPAL", &credential.principal)
        .env("AGORA_SECRET", credential.secret.expose());
    cmd
}

async fn access(
    security: ClientSecurity,
    cluster: &Cluster,
    task: &str,
) -> Result<pb::SandboxAccessReply, String> {
    let client = agora_driver::MasterClient::with_security(
        cluster.addrs(),
        agora_driver::RetryPolicy {
            deadline: Duration::from_secs(10),
            ..Default::default()
        },
        security,
    )
    .unwrap();
    client
        .call(|ch| {
            let task_id = task.to_string();
            async move {
                MasterRpc::new(ch)
                    .sandbox_access(pb::SandboxAccessRequest {
                        task_id,
                        framework_id: String::new(),
                    })
                    .await
            }
        })
        .await
        .map_err(|e| e.to_string())
}

/// `/files/read` on the task's agent with `grant`.
async fn read(grant: &pb::SandboxAccessReply, path: &str, offset: i64) -> (u16, String) {
    let tls = pki().client_security(None).tls;
    let q = http_client::query(&[("path", path), ("offset", &offset.to_string())]);
    let reply = http_client::get(
        tls.as_ref(),
        &grant.agent_address,
        &format!("/files/read?{q}"),
        Some(&format!("Bearer {}", grant.token)),
        1 << 20,
        Duration::from_secs(10),
    )
    .await
    .expect("the agent answers");
    (
        reply.status,
        String::from_utf8_lossy(&reply.body).to_string(),
    )
}

fn task_id_of(line: &str) -> String {
    line.split_whitespace().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_shows_output_logs_follow_and_sandboxes_are_guarded() {
    let (cluster, _agents) = start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;

    // The task's stdout and stderr are `agora run`'s own; states go to stderr.
    let out = agora(
        &cluster,
        &["run", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"],
    )
    .output()
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert_eq!(stdout, "hi\n", "stderr: {stderr}");
    assert!(stderr.contains("oops\n"), "{stderr}");
    assert!(stderr.contains("TASK_FAILED"), "{stderr}");

    // `agora logs -f` follows a running task's new lines until it ends.
    let (mut runner, rx) = spawn_run(
        &cluster,
        &[
            "run",
            "--name",
            "ticker",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.5; done",
        ],
    );
    let mut seen = Vec::new();
    wait_line(&rx, "TASK_RUNNING", &mut seen);
    let task = task_id_of(seen.iter().find(|l| l.contains("TASK_RUNNING")).unwrap());
    let follower = agora(&cluster, &["logs", "-f", &task])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let followed = tokio::task::spawn_blocking(move || follower.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&followed.stdout);
    assert_eq!(
        followed.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    let expected: String = (1..=6).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(text, expected);
    assert_eq!(wait_exit(&mut runner, Duration::from_secs(20)), 0);
    // ... and shows the last lines of a finished one.
    let (code, out) = run(&cluster, &["logs", "--tail", "2", &task]);
    assert_eq!((code, out.as_str()), (0, "line-5\nline-6\n"));

    // The sandbox API: a read past the end, a path out of the sandbox.
    let grant = access(cluster.client_security(), &cluster, &task)
        .await
        .expect("the admin may read any sandbox");
    let stdout_path = format!("{}/stdout", grant.path);
    let (status, body) = read(&grant, &stdout_path, 0).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("line-6"), "{body}");
    let (status, body) = read(&grant, &stdout_path, 10_000).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("past the end"), "{body}");
    let (status, body) = read(&grant, &format!("{}/../other/stdout", grant.path), 0).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("out of the sandbox"), "{body}");
    let mut forged = grant.clone();
    forged.token.push('x');
    let (status, _) = read(&forged, &stdout_path, 0).await;
    assert_eq!(status, 401);

    // Another framework's task: team-a runs one, team-b may not read it, team-a may.
    let out = agora_as(
        &cluster,
        TEAM_A,
        &["run", "--name", "private", "--", "echo", "team-a-secret"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "team-a-secret\n");
    let line = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.contains("TASK_FINISHED"))
        .map(str::to_string)
        .unwrap();
    let private = task_id_of(&line);
    let refused = access(pki().client_security(Some(TEAM_B)), &cluster, &private)
        .await
        .expect_err("team-b may not read team-a's sandbox");
    assert!(refused.contains("another principal"), "{refused}");
    let out = agora_as(&cluster, TEAM_B, &["logs", &private])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another principal"));
    let out = agora_as(&cluster, TEAM_A, &["logs", &private])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "team-a-secret\n");
    // A grant for one sandbox opens no other.
    let (status, body) = read(
        &grant,
        &format!(
            "/frameworks/{}/executors/{private}/runs/latest/stdout",
            grant.framework_id
        ),
        0,
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // Through the leader's HTTP (the web UI's way): with credentials only.
    let (leader_id, _, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    let leader = cluster.addrs()[leader_id as usize - 1].clone();
    let tls = pki().client_security(None).tls;
    let q = http_client::query(&[("task", &private), ("path", "stdout")]);
    let anonymous = http_client::get(
        tls.as_ref(),
        &leader,
        &format!("/files/read?{q}"),
        None,
        1 << 20,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(anonymous.status, 401);
    let as_a = http_client::get(
        tls.as_ref(),
        &leader,
        &format!("/files/read?{q}"),
        Some(&pki().credential(TEAM_A).authorization()),
        1 << 20,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(as_a.status, 200);
    assert!(String::from_utf8_lossy(&as_a.body).contains("team-a-secret"));
    let as_b = http_client::get(
        tls.as_ref(),
        &leader,
        &format!(
            "/files/browse?{}",
            http_client::query(&[("task", &private)])
        ),
        Some(&pki().credential(TEAM_B).authorization()),
        1 << 20,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(as_b.status, 403);
    let listing = http_client::get(
        tls.as_ref(),
        &leader,
        &format!(
            "/files/browse?{}",
            http_client::query(&[("task", &private)])
        ),
        Some(&pki().credential(TEAM_A).authorization()),
        1 << 20,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&listing.body).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["path"] == "stdout" && e["size"] == 14),
        "{entries:?}"
    );
}
