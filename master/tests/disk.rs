//! Disk faults on real `agora-master` processes with real sled files (issue 16, item 5):
//! a leader whose disk fills (a small tmpfs), a leader whose fsync fails (ext4 on a
//! thin-provisioned loop device: a real EIO from the kernel), and replicas started on
//! damaged copies of a real work dir. What each must do is in docs/reliability.md, "Disk
//! faults".
//!
//! The tests mount filesystems, so they run as root (as CI does); mounts and processes go
//! in `Drop` guards, also when a test fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use common::disk::{fill, ThinDisk, Tmpfs};
use common::*;

const SECOND: Duration = Duration::from_secs(1);

/// Registers agent `i` with 100 attributes of ~1 KB: about 100 KB in the log per write.
async fn register_big(
    client: &agora_driver::MasterClient,
    i: usize,
) -> Result<u64, agora_driver::DriverError> {
    let mut info = agent_info(i);
    info.attributes = (0..100)
        .map(|k| pb::Attribute {
            key: format!("k{k}"),
            value: format!("{i:06}-{k:03}-").repeat(90),
        })
        .collect();
    client
        .call(|ch| {
            let info = info.clone();
            async move {
                MasterRpc::new(ch)
                    .register_agent(pb::RegisterAgentRequest {
                        incarnation: 0,
                        attempt: 0,
                        tasks: vec![],
                        agent: Some(info),
                    })
                    .await
            }
        })
        .await
        .map(|r| r.log_index)
}

/// Makes replica `want` the leader: pauses whichever other replica leads (SIGSTOP) until
/// someone else does, and again, until `want` leads. Returns its term.
async fn make_leader(cluster: &Cluster, want: u64) -> u64 {
    let start = Instant::now();
    loop {
        let (leader, term, _) = cluster.wait_leader(1, 10 * SECOND).await;
        if leader == want {
            // Its blank entry of the term is applied: it answers.
            return term;
        }
        assert!(
            start.elapsed() < 40 * SECOND,
            "replica {want} never came to lead"
        );
        let pid = cluster.nodes.iter().find(|n| n.id == leader).unwrap().pid();
        let pid = pid.expect("the leader runs");
        signal(pid, libc::SIGSTOP);
        let _ = cluster.wait_leader(term + 1, 10 * SECOND).await;
        signal(pid, libc::SIGCONT);
    }
}

/// The agents registered in the leader's state, by id.
async fn agent_ids(client: &agora_driver::MasterClient) -> std::collections::BTreeSet<String> {
    state(client)
        .await
        .agents
        .iter()
        .map(|a| a.info.clone().unwrap().id)
        .collect()
}

/// The line the replica ended with (its last line of stderr naming agora-master).
fn last_words(node: &Node) -> String {
    node.log_text()
        .lines()
        .rev()
        .find(|l| l.starts_with("agora-master:"))
        .unwrap_or("")
        .to_string()
}

/// Writes until replica `failing` has exited and `after` more writes were acknowledged by
/// the others; returns the acknowledged agents (by number, with their log index) and the
/// writes that failed. Panics if the replica is still up after `timeout`.
async fn write_until_exit(
    cluster: &mut Cluster,
    failing: u64,
    after: usize,
    timeout: Duration,
) -> (BTreeMap<usize, u64>, usize, (i32, Duration)) {
    let client = cluster.client();
    let mut acked = BTreeMap::new();
    let mut failed = 0;
    let start = Instant::now();
    let mut exited: Option<(i32, Duration)> = None;
    let mut acked_after = 0;
    for i in 0.. {
        match register_big(&client, i).await {
            Ok(index) => {
                acked.insert(i, index);
                if exited.is_some() {
                    acked_after += 1;
                }
            }
            Err(_) => failed += 1,
        }
        if exited.is_none() {
            if let Some(code) = cluster.node(failing).exit_code() {
                exited = Some((code, start.elapsed()));
            }
        }
        if acked_after >= after {
            break;
        }
        if start.elapsed() > timeout {
            cluster.dump_logs();
            panic!(
                "replica {failing} exited: {exited:?}; {} writes acknowledged, {failed} failed, {acked_after} after the exit",
                acked.len()
            );
        }
    }
    (acked, failed, exited.unwrap())
}

/// Every acknowledged write is in the leader's state.
async fn assert_acknowledged_kept(cluster: &Cluster, acked: &BTreeMap<usize, u64>) {
    let ids = agent_ids(&cluster.client()).await;
    for i in acked.keys() {
        assert!(
            ids.contains(&format!("agent-{i}")),
            "agent-{i} was acknowledged but is not in the quorum's state"
        );
    }
}

/// Waits until replica `id` has applied what the leader has, then checks it holds the same
/// registry there (agents counted at the same applied index).
async fn assert_caught_up(cluster: &Cluster, id: u64, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let statuses = cluster.statuses().await;
        let leader = statuses.iter().find(|s| s.role == "leader");
        let mine = statuses.iter().find(|s| s.id == id);
        if let (Some(l), Some(m)) = (leader, mine) {
            if m.last_applied == l.last_applied && l.id != id {
                assert_eq!(
                    (m.agents, m.frameworks, m.tasks),
                    (l.agents, l.frameworks, l.tasks),
                    "replica {id} at index {} holds another registry than the leader",
                    m.last_applied
                );
                return start.elapsed();
            }
        }
        if start.elapsed() > timeout {
            cluster.dump_logs();
            panic!("replica {id} did not catch up within {timeout:?}: {statuses:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A leader whose disk fills stops (exits naming the full disk); every acknowledged write
/// is on the quorum, the other two go on accepting writes, and once space is freed the
/// restarted replica catches up to the leader's registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_fills_stops_and_catches_up_once_space_is_freed() {
    let small = Tmpfs::mount("16m").expect("mount a tmpfs (tests run as root)");
    let work_dir = small.path().join("m1");
    let mut cluster = Cluster::start_customized(3, |n| {
        if n.id == 1 {
            n.work_dir = work_dir.clone();
        }
    });
    make_leader(&cluster, 1).await;
    let client = cluster.client();
    for i in 0..5 {
        register_big(&client, 100_000 + i).await.expect("written");
    }
    // Leave about a megabyte: ten writes' worth.
    let filler = fill(small.path(), "filler", 1024 * 1024);

    let (acked, failed, (code, took)) = write_until_exit(&mut cluster, 1, 20, 45 * SECOND).await;
    let words = last_words(&cluster.nodes[0]);
    eprintln!(
        "disk full: replica 1 exited {code} after {took:?}; {} writes acknowledged, {failed} failed; its last line: {words}",
        acked.len()
    );
    assert_ne!(code, 0, "a replica that cannot write must not exit cleanly");
    assert!(
        words.contains("storage failed")
            && words.contains("No space left on device (os error 28)")
            && words.contains(work_dir.to_str().unwrap()),
        "the exit line names the full disk and the path: {words:?}"
    );
    assert_acknowledged_kept(&cluster, &acked).await;

    // Space freed, the replica restarted: it catches up.
    std::fs::remove_file(filler).unwrap();
    cluster.node(1).start();
    for i in 0..5 {
        register_big(&client, 200_000 + i).await.expect("written");
    }
    let took = assert_caught_up(&cluster, 1, 30 * SECOND).await;
    eprintln!("disk full: replica 1 caught up {took:?} after its restart");
    assert_acknowledged_kept(&cluster, &acked).await;
}

/// A leader whose fsync fails (EIO from the kernel: ext4 over a loop device whose backing
/// store ran out) never acknowledges a write after it: it exits naming the error and the
/// path, and every write a client saw acknowledged is on the quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_fsync_fails_exits_without_acknowledging() {
    let disk = ThinDisk::mount("256m", "48m").expect("ext4 on a loop device (tests run as root)");
    let work_dir = disk.path().join("m1");
    let mut cluster = Cluster::start_customized(3, |n| {
        if n.id == 1 {
            n.work_dir = work_dir.clone();
        }
    });
    make_leader(&cluster, 1).await;
    let client = cluster.client();
    for i in 0..5 {
        register_big(&client, 100_000 + i).await.expect("written");
    }
    // The filesystem still says 200+ MB free; its device has about 512 KB left.
    disk.exhaust(512 * 1024);
    let free = common::disk::available_bytes(disk.path());

    let (acked, failed, (code, took)) = write_until_exit(&mut cluster, 1, 20, 45 * SECOND).await;
    let words = last_words(&cluster.nodes[0]);
    eprintln!(
        "fsync fails: replica 1 exited {code} after {took:?}; {} writes acknowledged, {failed} failed; its last line: {words}",
        acked.len()
    );
    assert_ne!(code, 0);
    // ext4 had room for every write (delayed allocation reserves blocks in the
    // filesystem, which had 100+ MB free), so the error came from writeback, reported by
    // fsync: ENOSPC for data blocks the loop device could not store, EIO once the journal
    // failed too.
    assert!(free > 100 << 20, "ext4 had {free} bytes free");
    assert!(
        words.contains("storage failed")
            && (words.contains("Input/output error (os error 5)")
                || words.contains("No space left on device (os error 28)"))
            && words.contains(work_dir.to_str().unwrap()),
        "the exit line names the I/O error and the path: {words:?}"
    );
    let log = cluster.nodes[0].log_text();
    assert!(
        !log.contains("panicked"),
        "the replica panicked instead of stopping"
    );
    assert_acknowledged_kept(&cluster, &acked).await;
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// One kind of damage done to a copy of a work dir.
struct Damage {
    name: &'static str,
    apply: fn(&Path),
}

fn sled_db(work_dir: &Path) -> PathBuf {
    work_dir.join("raft").join("db")
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip_bytes(path: &Path, at: u64, n: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at as usize;
    for b in &mut bytes[at..at + n] {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

const DAMAGES: &[Damage] = &[
    Damage {
        name: "sled db truncated to half",
        apply: |w| truncate(&sled_db(w), len(&sled_db(w)) / 2),
    },
    Damage {
        name: "sled db truncated to its last 4 KiB cut off",
        apply: |w| truncate(&sled_db(w), len(&sled_db(w)).saturating_sub(4096)),
    },
    Damage {
        name: "sled db emptied",
        apply: |w| truncate(&sled_db(w), 0),
    },
    Damage {
        name: "sled db deleted",
        apply: |w| std::fs::remove_file(sled_db(w)).unwrap(),
    },
    Damage {
        name: "bytes flipped in the middle of the sled db",
        apply: |w| flip_bytes(&sled_db(w), len(&sled_db(w)) / 2, 64),
    },
    Damage {
        name: "bytes flipped near the end of the sled db",
        apply: |w| flip_bytes(&sled_db(w), len(&sled_db(w)) * 9 / 10, 16),
    },
    Damage {
        name: "sled conf deleted",
        apply: |w| std::fs::remove_file(w.join("raft").join("conf")).unwrap(),
    },
    Damage {
        name: "sled snapshot (snap.*) deleted",
        apply: |w| {
            for e in std::fs::read_dir(w.join("raft")).unwrap() {
                let e = e.unwrap();
                if e.file_name().to_string_lossy().starts_with("snap.") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        },
    },
    Damage {
        name: "durability marker deleted",
        apply: |w| std::fs::remove_file(w.join("raft").join("raft-durable")).unwrap(),
    },
    Damage {
        name: "durability marker overwritten",
        apply: |w| std::fs::write(w.join("raft").join("raft-durable"), b"garbage").unwrap(),
    },
    Damage {
        name: "work dir emptied",
        apply: |w| {
            std::fs::remove_dir_all(w).unwrap();
            std::fs::create_dir(w).unwrap();
        },
    },
];

/// A replica started on a damaged copy of a real work dir (SIGKILLed mid-run, so its
/// files are as a crash leaves them) either refuses to start, with one line naming the
/// damage and no panic, or starts with a consistent prefix of the log and catches up: at
/// every index it reports applied, it holds exactly the agents the quorum had there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_on_a_damaged_work_dir_refuses_or_catches_up() {
    let mut cluster = Cluster::start(3);
    cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();
    // Registration i committed at index[i]: the agents at index k are those with
    // index[i] <= k.
    let mut index = Vec::new();
    for i in 0..150 {
        index.push(register(&client, i).await.expect("written"));
    }
    let leader = cluster.wait_leader(1, 10 * SECOND).await.0;
    let victim = if leader == 3 { 2 } else { 3 };
    cluster.node(victim).kill();
    for i in 150..200 {
        index.push(register(&client, i).await.expect("written"));
    }
    // The copies are made from this: the victim's dir as it last ran.
    let mut original = cluster.dir.path().join("original");
    copy_tree(&cluster.node(victim).work_dir.clone(), &original);
    let first_copy = cluster.dir.path().join("first");
    copy_tree(&original, &first_copy);
    let agents_at = |k: u64| index.iter().filter(|&&i| i <= k).count() as u64;

    let mut outcomes = Vec::new();
    for (n, damage) in DAMAGES.iter().enumerate() {
        let copy = cluster.dir.path().join(format!("damaged-{n}"));
        copy_tree(&original, &copy);
        (damage.apply)(&copy);
        let node = cluster.node(victim);
        node.work_dir = copy.clone();
        let log_before = node.log_text().len();
        node.start();
        // Watch it: either it exits, or every status it gives is consistent and it catches up.
        let start = Instant::now();
        let outcome = loop {
            if let Some(code) = cluster.node(victim).exit_code() {
                let text = cluster.node(victim).log_text()[log_before..].to_string();
                assert!(
                    !text.contains("panicked"),
                    "{}: the replica panicked: {text}",
                    damage.name
                );
                let line = text
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("agora-master:"))
                    .unwrap_or("")
                    .to_string();
                assert_eq!(code, 2, "{}: exit {code}: {text}", damage.name);
                assert!(
                    line.contains(copy.to_str().unwrap())
                        && (line.contains("damaged") || line.contains("unreadable")),
                    "{}: the line names neither the work dir nor the damage: {line}",
                    damage.name
                );
                break format!("refused in {:?}: {line}", start.elapsed());
            }
            let node = cluster.nodes.iter().find(|n| n.id == victim).unwrap();
            if let Some(s) = node.status().await {
                assert_eq!(
                    s.agents,
                    agents_at(s.last_applied),
                    "{}: at index {} the replica serves another registry than the quorum's",
                    damage.name,
                    s.last_applied
                );
                let l = cluster.statuses().await;
                let leader = l.iter().find(|s| s.role == "leader");
                if leader.is_some_and(|l| s.last_applied == l.last_applied)
                    && s.last_applied >= index[199]
                {
                    break format!("started and caught up in {:?}", start.elapsed());
                }
            }
            assert!(
                start.elapsed() < 20 * SECOND,
                "{}: neither refused nor caught up in 20 s",
                damage.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!("damage {:?}: {outcome}", damage.name);
        let started = outcome.starts_with("started");
        outcomes.push((damage.name, outcome));
        cluster.node(victim).kill();
        if started {
            // It went on from there: later copies start from where it got to (a copy from
            // before would be a work dir restored from an old backup, tested last).
            original = cluster.dir.path().join(format!("ran-{n}"));
            copy_tree(&copy, &original);
        }
    }

    // A work dir restored from an old copy (its marker went back with it, so nothing
    // local tells): the leader, which had seen the replica further, searches the log again
    // rather than panic (openraft's loosen-follower-log-revert), and the replica catches up.
    let restored = cluster.dir.path().join("restored");
    copy_tree(&first_copy, &restored);
    let node = cluster.node(victim);
    node.work_dir = restored;
    node.start();
    let took = assert_caught_up(&cluster, victim, 20 * SECOND).await;
    eprintln!("restored from an old copy: caught up in {took:?}");
    outcomes.push((
        "work dir restored from an old copy",
        format!("started and caught up in {took:?}"),
    ));
    for i in 200..210 {
        index.push(
            register(&client, i)
                .await
                .expect("written after the restore"),
        );
    }
    // The quorum kept every write all along.
    let ids = agent_ids(&client).await;
    assert_eq!(ids.len(), 210);
    for (name, outcome) in outcomes {
        eprintln!("{name}: {outcome}");
    }
}
