//! Disk faults under an agent's checkpoints (issue 16, item 5), with real `agora-executor`
//! processes, real cgroups and real files: a work dir on a small tmpfs that fills while a
//! task ends, and checkpoints damaged while the agent is down. What the agent must do is
//! in docs/reliability.md, "Disk faults".
//!
//! The full-disk test mounts a tmpfs, so it runs as root (as CI does); the mount goes in a
//! `Drop` guard, and a [`Sweep`] removes every process and cgroup, also when a test fails.

mod common;

use std::time::{Duration, Instant};

use agora_test_cluster::disk::{fill, Tmpfs};
use common::instance::*;
use common::{alive, read_pid, unique_root, Sweep};

use agora_proto::v1 as pb;

/// Reads and acknowledges updates until `task` reports `state`; panics after `within`.
async fn until_state(
    leader: &mut Leader,
    tasks: &agora_agent::tasks::Tasks,
    task: &str,
    state: &str,
    within: Duration,
) -> pb::StatusUpdate {
    until_states(leader, tasks, &[(task, state)], within)
        .await
        .remove(0)
}

/// Reads and acknowledges updates until each task has reported its state; panics after
/// `within`.
async fn until_states(
    leader: &mut Leader,
    tasks: &agora_agent::tasks::Tasks,
    wanted: &[(&str, &str)],
    within: Duration,
) -> Vec<pb::StatusUpdate> {
    let deadline = Instant::now() + within;
    let mut seen: Vec<Option<pb::StatusUpdate>> = vec![None; wanted.len()];
    while seen.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let u = leader
            .next_update(left)
            .await
            .unwrap_or_else(|| panic!("not every one of {wanted:?} within {within:?}"));
        acknowledge(tasks, &u);
        for (i, (task, state)) in wanted.iter().enumerate() {
            if u.task_id == *task && u.state().as_str_name() == *state {
                seen[i] = Some(u.clone());
            }
        }
    }
    seen.into_iter().flatten().collect()
}

fn acknowledge(tasks: &agora_agent::tasks::Tasks, u: &pb::StatusUpdate) {
    tasks.acknowledged(&pb::StatusAck {
        framework_id: u.framework_id.clone(),
        task_id: u.task_id.clone(),
        uuid: u.uuid.clone(),
    });
}

/// Sends `task`'s executor's update (TASK_RUNNING again, with `message`) through the
/// executor API with the executor's own token, and acknowledges it as the leader would.
async fn executor_says(
    addr: std::net::SocketAddr,
    work: &std::path::Path,
    leader: &mut Leader,
    tasks: &agora_agent::tasks::Tasks,
    task: &str,
    message: String,
) {
    let token = std::fs::read_to_string(
        work.join("meta/frameworks/fw-1/tasks")
            .join(task)
            .join("executor.token"),
    )
    .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut req = tonic::Request::new(pb::ExecutorUpdate {
        framework_id: "fw-1".into(),
        executor_id: task.into(),
        update: Some(pb::StatusUpdate {
            uuid: uuid::Uuid::new_v4().to_string(),
            framework_id: "fw-1".into(),
            task_id: task.into(),
            state: pb::TaskState::TaskRunning.into(),
            message,
            ..Default::default()
        }),
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    agora_proto::v1::executor_client::ExecutorClient::new(channel)
        .update(req)
        .await
        .expect("checkpointed");
    let u = leader
        .next_update(Duration::from_secs(5))
        .await
        .expect("sent");
    acknowledge(tasks, &u);
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Every line of a journal is whole JSON.
fn assert_journal_whole(path: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let tail = &text[text.len().saturating_sub(120)..];
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the journal ends with a half line: ...{tail:?}"
    );
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("{}: {e}: {line:?}", path.display()));
    }
    text.lines().count()
}

/// A task's end while the agent's disk is full is not acknowledged to its executor, so it
/// is not sent to the leader either: it arrives once there is room again, exactly once,
/// and the journal never holds half a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_cannot_be_checkpointed_is_not_sent_until_it_is() {
    let small = Tmpfs::mount("16m").expect("mount a tmpfs (tests run as root)");
    let work = small.path().join("agent");
    let signals = tempfile::tempdir().unwrap();
    let go = signals.path().join("go");
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[&work]);
    let (agent, addr) = AgentInstance::start(&work, None, &root, RECOVERY_TIMEOUT);
    let tasks = agent.tasks.clone();
    let mut leader = Leader::attach(&tasks);
    launch(
        &tasks,
        task(
            "ends",
            &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
            0.5,
            64.0,
        ),
    );
    until_state(
        &mut leader,
        &tasks,
        "ends",
        "TASK_RUNNING",
        Duration::from_secs(15),
    )
    .await;
    let journal = work.join("meta/frameworks/fw-1/tasks/ends/updates.jsonl");
    // tmpfs allocates whole pages: an append that fits in the journal's last page needs no
    // room. So the journal is first brought to 16 bytes short of a page's end, with one
    // more update of the executor's padded to fit (its line's length measured from a first
    // one): the next append writes 16 bytes, then fails for want of a page (ENOSPC), and
    // must not leave those 16 bytes behind.
    let before = file_len(&journal);
    executor_says(addr, &work, &mut leader, &tasks, "ends", "x".into()).await;
    let with_one = file_len(&journal) - before - 1;
    let used = file_len(&journal) + with_one;
    let pad = (4096 - 16 - used % 4096 + 4096) % 4096;
    executor_says(
        addr,
        &work,
        &mut leader,
        &tasks,
        "ends",
        "x".repeat(pad as usize),
    )
    .await;
    assert_eq!(
        file_len(&journal) % 4096,
        4096 - 16,
        "the journal ends 16 bytes short of a page"
    );
    let lines_before = assert_journal_whole(&journal);

    // The disk fills; then the task ends.
    let filler = fill(small.path(), "filler", 0);
    std::fs::write(&go, "").unwrap();
    let full_for = Duration::from_secs(3);
    let nothing = leader.next_update(full_for).await;
    assert!(
        nothing.is_none(),
        "an update was sent that could not have been checkpointed: {nothing:?}"
    );
    // The executor was told nothing was checkpointed, and kept its update; the journal
    // has no half line for the next append to run into.
    assert_eq!(assert_journal_whole(&journal), lines_before);

    // Room again: the end arrives, once.
    std::fs::remove_file(filler).unwrap();
    let freed = Instant::now();
    let end = until_state(
        &mut leader,
        &tasks,
        "ends",
        "TASK_FINISHED",
        Duration::from_secs(20),
    )
    .await;
    eprintln!(
        "disk full for {full_for:?}: no update sent; TASK_FINISHED {:?} after space was freed",
        freed.elapsed()
    );
    assert_eq!(assert_journal_whole(&journal), lines_before + 2);
    let again = leader.next_update(Duration::from_millis(2500)).await;
    assert!(
        again.as_ref().is_none_or(|u| u.uuid == end.uuid),
        "a second end: {again:?}"
    );
    agent.crash();
}

/// An agent restarted on damaged checkpoints starts: a task whose `task.json` was cut
/// short is failed with a message naming the file (its executor stopped), a task with a
/// damaged journal line keeps running with what the rest of its journal says, and its end
/// is reported as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_damaged_checkpoints_starts_and_names_the_damage() {
    let timeout = Duration::from_secs(5);
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let (agent, addr) = AgentInstance::start(dir.path(), None, &root, timeout);
    let tasks = agent.tasks.clone();
    let mut leader = Leader::attach(&tasks);
    for name in ["bad", "good"] {
        launch(
            &tasks,
            task(
                name,
                "while [ ! -e go ]; do sleep 0.05; done; echo done",
                0.5,
                64.0,
            ),
        );
    }
    until_states(
        &mut leader,
        &tasks,
        &[("bad", "TASK_RUNNING"), ("good", "TASK_RUNNING")],
        Duration::from_secs(20),
    )
    .await;
    let meta = dir.path().join("meta/frameworks/fw-1/tasks");
    let bad_executor = read_pid(&meta.join("bad/executor.pid")).expect("executor.pid");
    let good_executor = read_pid(&meta.join("good/executor.pid")).expect("executor.pid");
    agent.crash();
    drop(tasks);

    // Damage while the agent is down: bad's record cut in half; good's first journal line
    // (TASK_STARTING, acknowledged) with a byte changed.
    let record = meta.join("bad/task.json");
    let bytes = std::fs::read(&record).unwrap();
    std::fs::write(&record, &bytes[..bytes.len() / 2]).unwrap();
    let journal = meta.join("good/updates.jsonl");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[5] = b'#';
    std::fs::write(&journal, &bytes).unwrap();

    let (agent, _) = AgentInstance::start(dir.path(), Some(addr), &root, timeout);
    let tasks = agent.tasks.clone();
    let report: std::collections::BTreeMap<String, &str> = tasks
        .report()
        .iter()
        .map(|r| (r.task_id.clone(), r.state().as_str_name()))
        .collect();
    assert_eq!(report.get("good"), Some(&"TASK_RUNNING"), "{report:?}");
    assert_eq!(report.get("bad"), Some(&"TASK_FAILED"), "{report:?}");
    tasks.check_recovered_executors();
    let mut leader = Leader::attach(&tasks);
    let failed = until_state(
        &mut leader,
        &tasks,
        "bad",
        "TASK_FAILED",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        failed.message.contains("bad/task.json") && failed.message.contains("damaged"),
        "the update names the damaged file: {}",
        failed.message
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(bad_executor) {
        assert!(Instant::now() < deadline, "bad's executor still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(alive(good_executor), "good's executor was stopped");
    std::fs::write(dir.path().join("sandboxes/fw-1/good/go"), "").unwrap();
    until_state(
        &mut leader,
        &tasks,
        "good",
        "TASK_FINISHED",
        Duration::from_secs(15),
    )
    .await;
    eprintln!("damaged checkpoints: {}", failed.message);
    agent.crash();
}
