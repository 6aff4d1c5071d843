//! Tasks in containers from OCI images, through a real cluster (3 masters, a cgroup
//! agent running crun) and a real registry on loopback (`docker-registry`), with images
//! built here from the host's static busybox (umoci) and pushed (skopeo).

mod common;

use std::time::Duration;

use agora_test_cluster::registry::{ImageSpec, Registry};
use agora_test_cluster::*;
use common::*;

/// The image's default command: each of what the image says checked, exit 42 when all
/// hold (another code names the check that failed).
const CHECKS: &str = r#"test "$(id -u)" = 1000 || exit 11
test "$(id -g)" = 1000 || exit 12
test "$GREETING" = hello || exit 13
test "$(pwd)" = /home/app || exit 14
test "$(cat /etc/agora-test)" = from-the-image || exit 15
test ! -e /usr || exit 16
test "$MESOS_SANDBOX" = /mnt/mesos/sandbox || exit 17
echo written > "$MESOS_SANDBOX/out" || exit 18
test "$(cat /proc/1/cmdline | tr '\0' ' ')" != "" || exit 19
exit 42"#;

fn check_image() -> ImageSpec {
    ImageSpec {
        name: "tools/check:v1".into(),
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        cmd: vec![CHECKS.into()],
        env: vec!["GREETING=hello".into()],
        user: "app".into(),
        workdir: "/home/app".into(),
        files: vec![("etc/agora-test".into(), b"from-the-image\n".to_vec())],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_task_sees_the_image_not_the_host_and_the_second_starts_without_a_pull() {
    let registry = Registry::start().unwrap();
    let image = registry.push(&check_image()).unwrap();
    let shared = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (cluster, agents) = start_with_agent_args(
        1,
        &["--allowed-host-volumes", shared.path().to_str().unwrap()],
    );
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;

    // The image's entrypoint, cmd, env, user and working dir, its files and not the host's.
    let (code, out) = run(&cluster, &["run", "--image", &image.reference]);
    assert_eq!(code, 42, "{out}\n{}", registry.log());
    let pulls = registry.manifest_requests("tools/check");
    assert_eq!(pulls, 1, "{}", registry.log());
    // The sandbox is at /mnt/mesos/sandbox, the container user's.
    let written = walk(&agents[0].work_dir)
        .into_iter()
        .filter(|p| p.ends_with("out"))
        .count();
    assert_eq!(written, 1);

    // Arguments replace the cmd, the entrypoint stays; the layers are in the store, so no
    // pull. The host's paths are not there.
    let hidden = format!(
        "test ! -e {} || exit 20; test ! -e /proc/1/root/usr || exit 21; exit 7",
        agents[0].work_dir.display()
    );
    let (code, out) = run(
        &cluster,
        &["run", "--image", &image.reference, "--", &hidden],
    );
    assert_eq!(code, 7, "{out}");
    assert_eq!(
        registry.manifest_requests("tools/check"),
        pulls,
        "pulled again"
    );

    // The user the task names, looked up in the image.
    let (code, out) = run(
        &cluster,
        &[
            "run",
            "--user",
            "root",
            "--image",
            &image.reference,
            "--",
            r#"test "$(id -u)" = 0 && exit 5"#,
        ],
    );
    assert_eq!(code, 5, "{out}");
    let (code, out) = run(
        &cluster,
        &["run", "--user", "nosuchuser", "--image", &image.reference],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("\"nosuchuser\" is not in the image"), "{out}");

    // A host directory the agent allows, mounted; one it does not, refused.
    let volume = format!("{}:/shared", shared.path().display());
    let (code, out) = run(
        &cluster,
        &[
            "run",
            "--user",
            "root",
            "--image",
            &image.reference,
            "-v",
            &volume,
            "--",
            "echo from-the-task > /shared/note",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(shared.path().join("note")).unwrap(),
        "from-the-task\n"
    );
    let volume = format!("{}:/elsewhere:ro", elsewhere.path().display());
    let (code, out) = run(
        &cluster,
        &[
            "run",
            "--image",
            &image.reference,
            "-v",
            &volume,
            "--",
            "true",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not under the agent's --allowed-host-volumes"),
        "{out}"
    );

    // /state shows each task's image.
    let state = cluster.http_state().expect("/state");
    let images: Vec<&str> = state["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(state["completed_tasks"].as_array().into_iter().flatten())
        .filter_map(|t| t["image"].as_str())
        .collect();
    assert!(images.contains(&image.reference.as_str()), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_need_the_same_image_at_once_pull_it_once() {
    let registry = Registry::start().unwrap();
    let image = registry
        .push(&ImageSpec {
            name: "tools/once:v1".into(),
            cmd: vec!["true".into()],
            padding_bytes: 48 * 1024 * 1024,
            ..Default::default()
        })
        .unwrap();
    let (cluster, _agents) = start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let runs: Vec<_> = (0..3)
        .map(|i| {
            spawn_run(
                &cluster,
                &[
                    "run",
                    "--name",
                    &format!("once-{i}"),
                    "--image",
                    &image.reference,
                    "--",
                    "sleep",
                    "1",
                ],
            )
        })
        .collect();
    for (mut child, rx) in runs {
        let code = wait_exit(&mut child, Duration::from_secs(60));
        let lines: Vec<String> = rx.try_iter().collect();
        assert_eq!(code, 0, "{lines:?}");
    }
    assert_eq!(
        registry.manifest_requests("tools/once"),
        1,
        "{}",
        registry.log()
    );
    for layer in &image.layers {
        assert_eq!(
            registry.blob_requests(layer),
            1,
            "{layer}: {}",
            registry.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_asking_for_credentials_gets_the_agents_and_docker_manifests_pull_too() {
    let private = Registry::start_with_auth("alice", "secret").unwrap();
    let image = private
        .push(&ImageSpec {
            docker_format: true,
            ..check_image()
        })
        .unwrap();
    let other = Registry::start_with_auth("bob", "other").unwrap();
    let unknown = other.push(&check_image()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("registries.json");
    std::fs::write(
        &credentials,
        format!(
            r#"{{"{}": {{"username": "alice", "password": "secret"}}}}"#,
            private.addr
        ),
    )
    .unwrap();
    let (cluster, _agents) = start_with_agent_args(
        1,
        &["--registry-credentials", credentials.to_str().unwrap()],
    );
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;

    let (code, out) = run(&cluster, &["run", "--image", &image.reference]);
    assert_eq!(code, 42, "{out}\n{}", private.log());
    let (code, out) = run(&cluster, &["run", "--image", &unknown.reference]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TASK_FAILED") && out.contains("wants credentials"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_copy_backend_a_container_gets_the_layers_copied_and_its_writes_stay_its_own() {
    let registry = Registry::start().unwrap();
    let image = registry.push(&check_image()).unwrap();
    let (cluster, agents) = start_with_agent_args(1, &["--image-provisioner-backend", "copy"]);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let (code, out) = run(&cluster, &["run", "--image", &image.reference]);
    assert_eq!(code, 42, "{out}");
    // A write to the image's files changes its own copy only.
    let (code, out) = run(
        &cluster,
        &[
            "run",
            "--user",
            "root",
            "--image",
            &image.reference,
            "--",
            "echo changed > /etc/agora-test",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&cluster, &["run", "--image", &image.reference]);
    assert_eq!(code, 42, "{out}");
    let layers = agents[0].work_dir.join("images/layers");
    let unchanged = walk(&layers)
        .into_iter()
        .filter(|p| p.ends_with("etc/agora-test"))
        .all(|p| std::fs::read_to_string(p).unwrap() == "from-the-image\n");
    assert!(unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_an_unreachable_registry_and_a_digest_mismatch_fail_the_task_saying_so() {
    let registry = Registry::start().unwrap();
    let good = registry.push(&check_image()).unwrap();
    let corrupt = registry
        .push(&ImageSpec {
            name: "tools/corrupt:v1".into(),
            cmd: vec!["true".into()],
            files: vec![("etc/unique".into(), b"corrupt-me".to_vec())],
            ..Default::default()
        })
        .unwrap();
    let (cluster, _agents) = start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;

    let missing = good.reference.replace(":v1", ":nope");
    let (code, out) = run(&cluster, &["run", "--image", &missing]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TASK_FAILED") && out.contains("not found in its registry"),
        "{out}"
    );

    let unreachable = format!("127.0.0.1:{}/tools/check:v1", free_port());
    let started = std::time::Instant::now();
    let (code, out) = run(&cluster, &["run", "--image", &unreachable]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unreachable"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(15), "{out}");

    // The registry serves a layer whose bytes are not its digest's.
    let blob = registry.blob_file(corrupt.layers.last().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last / 2] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let (code, out) = run(&cluster, &["run", "--image", &corrupt.reference]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("digest mismatch"), "{out}");

    // The agent carries on.
    let (code, out) = run(&cluster, &["run", "--image", &good.reference]);
    assert_eq!(code, 42, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_survives_an_agent_crash_and_finishes_once() {
    let registry = Registry::start().unwrap();
    let image = registry.push(&check_image()).unwrap();
    let (cluster, mut agents) = start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let (mut child, rx) = spawn_run(
        &cluster,
        &["run", "--image", &image.reference, "--", "sleep 3; exit 0"],
    );
    let mut seen = Vec::new();
    wait_line(&rx, "TASK_RUNNING", &mut seen);
    agents[0].kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    agents[0].start();
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30)),
        0,
        "{seen:?}"
    );
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.push(l);
    }
    let finished = seen.iter().filter(|l| l.contains("TASK_FINISHED")).count();
    assert_eq!(finished, 1, "TASK_FINISHED must be reported once: {seen:?}");
    // Its container directory went with it.
    let containers = agents[0].work_dir.join("containers");
    let left: Vec<_> = std::fs::read_dir(&containers)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != ".runtime")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_a_disk_filler_and_an_unlisted_port_are_stopped_and_the_rest_carry_on() {
    let registry = Registry::start().unwrap();
    let image = registry.push(&check_image()).unwrap();
    let (cluster, _agents) = start_with_agent_args(
        1,
        &[
            "--max-task-pids",
            "200",
            "--resources",
            "cpus:2;mem:1024;disk:1000;ports:[31000-31010]",
        ],
    );
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    // A neighbour that must live through all of it.
    let (mut neighbour, rx) = spawn_run(
        &cluster,
        &["run", "--name", "neighbour", "--", "sh", "-c", "sleep 12"],
    );
    let mut seen = Vec::new();
    wait_line(&rx, "TASK_RUNNING", &mut seen);

    let bomb = "bomb() { bomb | bomb & }; bomb; sleep 60";
    let fill_root = "dd if=/dev/zero of=/home/app/fill bs=1M count=40; sleep 60";
    let fill_sandbox = "dd if=/dev/zero of=fill bs=1M count=40; sleep 60";
    let (image_ref, disk) = (image.reference.as_str(), ["--disk", "16"]);
    let stopped: [(Vec<&str>, &str); 4] = [
        (
            vec!["--image", image_ref, "--", bomb],
            "process limit reached (200",
        ),
        (vec!["--", "sh", "-c", bomb], "process limit reached (200"),
        (
            [&disk[..], &["--image", image_ref, "--", fill_root]].concat(),
            "disk limit exceeded",
        ),
        (
            [&disk[..], &["--", "sh", "-c", fill_sandbox]].concat(),
            "disk limit exceeded",
        ),
    ];
    for (args, reason) in stopped {
        let (code, out) = run(&cluster, &[&["run"][..], &args].concat());
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(reason), "{out}");
    }

    // Its own port it may listen on, in a container as on the host.
    let own = "busybox nc -l -p $PORT_HTTP & sleep 3; test $PORT0 = $PORT_HTTP";
    let own_in_image = "nc -l -p $PORT_HTTP & sleep 3; test $PORT0 = $PORT_HTTP";
    for args in [
        vec![
            "run",
            "--port",
            "http",
            "--image",
            &image.reference,
            "--",
            own_in_image,
        ],
        vec!["run", "--port", "http", "--", "sh", "-c", own],
    ] {
        let (code, out) = run(&cluster, &args);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("port http: 310"), "{out}");
    }

    let port = free_port().to_string();
    let listen = format!("nc -l -p {port}; sleep 60");
    // On the host, busybox's nc (busybox-static, which .ci/run installs).
    let listen_on_host = format!("busybox {listen}");
    for args in [
        vec!["run", "--image", &image.reference, "--", &listen],
        vec!["run", "--", "sh", "-c", &listen_on_host],
    ] {
        let (code, out) = run(&cluster, &args);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!(
                "listening on port {port}, which is not among its ports"
            )),
            "{out}"
        );
    }

    assert_eq!(wait_exit(&mut neighbour, Duration::from_secs(30)), 0);
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.push(l);
    }
    assert!(seen.iter().any(|l| l.contains("TASK_FINISHED")), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_container_has_only_its_loopback_and_its_forwarded_port() {
    let registry = Registry::start().unwrap();
    let image = registry.push(&check_image()).unwrap();
    let (cluster, _agents) = start_with_agent_args(
        1,
        &[
            "--resources",
            "cpus:2;mem:1024;disk:1000;ports:[31000-31010]",
        ],
    );
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let serve = "echo hello > /tmp/index.html; ls /sys/class/net | tr '\\n' ' ' > /tmp/nets; \
                 httpd -f -p $PORT_WEB -h /tmp & sleep 6";
    let (mut child, rx) = spawn_run(
        &cluster,
        &[
            "run",
            "--image",
            &image.reference,
            "--port",
            "web:8080",
            "--",
            serve,
        ],
    );
    let mut seen = Vec::new();
    wait_line(&rx, "port web: ", &mut seen);
    let host_port = seen
        .last()
        .and_then(|l| l.split("port web: ").nth(1))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    wait_line(&rx, "TASK_RUNNING", &mut seen);
    let addr = format!("127.0.0.1:{host_port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let page = loop {
        match http_get(&addr, "/index.html") {
            Some((200, body)) => break body,
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("no page through the forwarded port {addr}: {other:?} {seen:?}"),
        }
    };
    assert_eq!(page.trim(), "hello");
    // Its own network: a loopback and nothing else.
    let nets = http_get(&addr, "/nets").unwrap().1;
    assert_eq!(nets.trim(), "lo", "{nets}");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30)),
        0,
        "{seen:?}"
    );
    // The namespace went with it.
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(!left.contains("agora-ct-"), "{left}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
