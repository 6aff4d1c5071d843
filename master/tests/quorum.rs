//! The master quorum with real `agora-master` processes on loopback: durability across
//! leader SIGKILL, failover time, catch-up, no split brain, 5-replica tolerance, and no fork
//! from a wiped replica.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const SECOND: Duration = Duration::from_secs(1);

/// No two replicas claim leadership of the same term (a stale leader of an older term may
/// not have heard of its successor yet; that is not split brain).
async fn assert_one_leader_per_term(cluster: &Cluster) {
    let mut by_term = std::collections::BTreeMap::new();
    for s in cluster
        .statuses()
        .await
        .into_iter()
        .filter(|s| s.role == "leader")
    {
        if let Some(other) = by_term.insert(s.term, s.id) {
            panic!("replicas {other} and {} both lead term {}", s.id, s.term);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_survive_leader_kill_and_refuse_writes_without_quorum() {
    let mut cluster = Cluster::start(3);
    let (leader, term, _) = cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();

    // Writes committed through the client API.
    let mut last_index = 0;
    for i in 0..100 {
        last_index = register(&client, i).await.expect("write committed");
    }

    // SIGKILL the leader: another replica leads within 2 s with a higher term.
    cluster.node(leader).kill();
    let (new_leader, new_term, waited) = cluster.wait_leader(term + 1, 5 * SECOND).await;
    assert_ne!(new_leader, leader);
    assert!(new_term > term);
    assert!(waited < 2 * SECOND, "failover took {waited:?}");

    // Everything acknowledged before the kill is there, and writes continue.
    let st = common::state(&client).await;
    let ids: BTreeSet<String> = st
        .agents
        .iter()
        .map(|a| a.info.clone().unwrap().id)
        .collect();
    for i in 0..100 {
        assert!(
            ids.contains(&format!("agent-{i}")),
            "agent-{i} lost after failover"
        );
    }
    for i in 100..150 {
        last_index = register(&client, i).await.expect("write after failover");
    }

    // The killed replica restarts, catches up and follows.
    cluster.node(leader).start();
    let caught_up = cluster.wait_applied(leader, last_index, 10 * SECOND).await;
    assert_eq!(caught_up.role, "follower");
    assert_eq!(caught_up.agents, 150);
    assert_eq!(caught_up.leader_id, new_leader);

    // Kill two of three: no write is accepted.
    let (current, term2, _) = cluster.wait_leader(new_term, 5 * SECOND).await;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != current).collect();
    cluster.node(current).kill();
    cluster.node(others[0]).kill();
    let lonely = others[1];
    let impatient = cluster.impatient_client();
    assert!(
        register(&impatient, 999).await.is_err(),
        "a minority accepted a write"
    );
    // The lone replica never claims leadership on its own.
    tokio::time::sleep(SECOND).await;
    let s = cluster.node(lonely).status().await.unwrap();
    assert_ne!(s.role, "leader", "split brain: a lone replica leads");

    // Progress resumes when one returns.
    cluster.node(others[0]).start();
    let (_, term3, _) = cluster.wait_leader(term2 + 1, 10 * SECOND).await;
    assert!(term3 > term2);
    register(&client, 150)
        .await
        .expect("progress after a replica returns");
    let st = common::state(&client).await;
    assert!(st
        .agents
        .iter()
        .any(|a| a.info.as_ref().unwrap().id == "agent-150"));
    assert_eq!(
        st.agents
            .iter()
            .filter(|a| a.info.as_ref().unwrap().id.starts_with("agent-"))
            .count(),
        // 151 acknowledged, plus agent-999 only if its timed-out proposal later committed.
        151 + st
            .agents
            .iter()
            .any(|a| a.info.as_ref().unwrap().id == "agent-999") as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_replicas_tolerate_two_failures() {
    let mut cluster = Cluster::start(5);
    let (leader, term, _) = cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();
    for i in 0..50 {
        register(&client, i).await.unwrap();
    }
    // Kill the leader and one follower.
    let follower = (1..=5).find(|i| *i != leader).unwrap();
    cluster.node(leader).kill();
    cluster.node(follower).kill();
    let (_, new_term, waited) = cluster.wait_leader(term + 1, 5 * SECOND).await;
    assert!(waited < 2 * SECOND, "failover took {waited:?}");
    assert!(new_term > term);
    for i in 50..100 {
        register(&client, i).await.expect("3 of 5 make progress");
    }
    let st = common::state(&client).await;
    assert_eq!(st.agents.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_replica_does_not_fork() {
    let mut cluster = Cluster::start(3);
    let (_, _, _) = cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();
    let mut last = 0;
    for i in 0..30 {
        last = register(&client, i).await.unwrap();
    }
    // Replica 1 is the one that bootstraps a fresh cluster. Stop everyone, wipe 1, and
    // start 1 alone: it must not initialize a new cluster by itself.
    for id in 1..=3 {
        cluster.node(id).kill();
    }
    cluster.node(1).wipe();
    cluster.node(1).start();
    tokio::time::sleep(3 * SECOND).await;
    let alone = cluster.node(1).status().await.expect("replica 1 answers");
    assert_ne!(
        alone.role, "leader",
        "a wiped replica formed its own cluster"
    );
    assert_eq!(
        alone.last_log_index, 0,
        "a wiped replica wrote a log on its own"
    );
    assert!(
        alone.members.is_empty(),
        "a wiped replica adopted a membership on its own"
    );

    // The others return: one quorum, with all data, and replica 1 catches up as a follower.
    cluster.node(2).start();
    cluster.node(3).start();
    let (leader, term, _) = cluster.wait_leader(2, 10 * SECOND).await;
    let s1 = cluster.wait_applied(1, last, 15 * SECOND).await;
    assert_eq!(s1.agents, 30);
    assert_eq!(s1.leader_id, leader);
    assert_one_leader_per_term(&cluster).await;
    let _ = term;
    register(&client, 30).await.unwrap();

    // Wipe a follower while the others run: it rejoins the same quorum, never a new one.
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    cluster.node(follower).kill();
    cluster.node(follower).wipe();
    cluster.node(follower).start();
    let s = cluster.wait_applied(follower, last + 1, 15 * SECOND).await;
    assert_eq!(s.agents, 31);
    assert_eq!(s.members.len(), 3);
    let (leader_now, _, _) = cluster.wait_leader(term, 5 * SECOND).await;
    assert_one_leader_per_term(&cluster).await;
    let s = cluster.node(follower).status().await.unwrap();
    assert_eq!(s.leader_id, leader_now);
    assert_ne!(s.role, "leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_change_replaces_a_replica() {
    let mut cluster = Cluster::start(3);
    let (leader, _, _) = cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();
    for i in 0..20 {
        register(&client, i).await.unwrap();
    }
    let victim = (1..=3).find(|i| *i != leader).unwrap();
    let addr = {
        let n = cluster.add_joiner(4);
        n.start();
        n.addr.clone()
    };
    use agora_proto::v1 as pb;
    use agora_proto::v1::operator_client::OperatorClient;
    client
        .call(|ch| {
            let address = addr.clone();
            async move {
                OperatorClient::new(ch)
                    .add_learner(pb::AddLearnerRequest { id: 4, address })
                    .await
            }
        })
        .await
        .expect("add learner");
    let voters: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|i| *i != victim).collect();
    let reply = client
        .call(|ch| {
            let voter_ids = voters.clone();
            async move {
                OperatorClient::new(ch)
                    .change_membership(pb::ChangeMembershipRequest {
                        voter_ids,
                        retain: false,
                    })
                    .await
            }
        })
        .await
        .expect("change membership");
    let now_voters: BTreeSet<u64> = reply
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    assert_eq!(now_voters, voters.iter().copied().collect());
    cluster.node(victim).kill();
    let last = register(&client, 20)
        .await
        .expect("write with the new membership");
    let s4 = cluster.wait_applied(4, last, 10 * SECOND).await;
    assert_eq!(s4.agents, 21);

    // Bad membership requests are refused with the field named.
    let err = client
        .call(|ch| async move {
            OperatorClient::new(ch)
                .change_membership(pb::ChangeMembershipRequest {
                    voter_ids: vec![1, 77],
                    retain: false,
                })
                .await
        })
        .await
        .unwrap_err();
    let status = err.status().expect("a rejection");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("voter_ids"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_replica_loses_nothing_it_acknowledged_on_sigkill() {
    // With one replica an acknowledgement means the entry was flushed locally, so a SIGKILL
    // right after the last acknowledged write must lose none of them.
    let mut cluster = Cluster::start(1);
    cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();
    let mut handles = Vec::new();
    let client = std::sync::Arc::new(client);
    for t in 0..8 {
        let c = client.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..50 {
                register(&c, t * 1000 + i).await.expect("committed");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    cluster.node(1).kill();
    cluster.node(1).start();
    // (A lone replica whose committed vote is its own may resume leading in the same term.)
    cluster.wait_leader(1, 10 * SECOND).await;
    let st = common::state(&cluster.client()).await;
    assert_eq!(
        st.agents.len(),
        400,
        "acknowledged writes lost across SIGKILL"
    );
}

/// Sends `signal` (STOP or CONT) to replica `id`'s process.
fn signal(cluster: &mut Cluster, id: u64, signal: &str) {
    let pid = cluster.node(id).pid().expect("running");
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_majority_stops_leading_within_its_lease() {
    let mut cluster = Cluster::start(3);
    let (leader, term, _) = cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();
    register(&client, 1).await.expect("write committed");
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();

    // Both followers frozen: the leader hears from no majority. Within its lease (0.9 x
    // openraft's maximum election timeout, 124 ms with the default 250 ms) it stops acting
    // as leader and names none, so no client reads from it or waits on it.
    for f in &followers {
        signal(&mut cluster, *f, "STOP");
    }
    let frozen = std::time::Instant::now();
    let stepped_down = loop {
        let s = cluster
            .node(leader)
            .status()
            .await
            .expect("the leader answers");
        if s.role != "leader" {
            assert_eq!(s.leader_id, 0, "it still names a leader: {s:?}");
            assert_eq!(s.role, "candidate");
            break frozen.elapsed();
        }
        assert!(
            frozen.elapsed() < 3 * SECOND,
            "it kept leading without a majority"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(stepped_down < SECOND, "stepped down after {stepped_down:?}");
    // The lease counts from the last append a follower accepted, sent at most one
    // heartbeat interval (50 ms) before the freeze.
    let timing = agora_master::config::RaftTiming::default();
    assert!(
        stepped_down >= timing.lease() - timing.heartbeat_interval,
        "stepped down before its lease could have run out: {stepped_down:?}"
    );
    // Nothing is served as the leader's: a write is not accepted (the client finds no
    // leader; the frozen followers never answer its TLS handshakes, so it is cut short).
    let impatient = cluster.impatient_client();
    let write = tokio::time::timeout(5 * SECOND, register(&impatient, 2)).await;
    assert!(!matches!(write, Ok(Ok(_))), "a write without a majority");

    // The followers back: a leader again, and writes go on.
    for f in &followers {
        signal(&mut cluster, *f, "CONT");
    }
    cluster.wait_leader(term, 10 * SECOND).await;
    register(&client, 3)
        .await
        .expect("a write once the majority is back");
    assert_one_leader_per_term(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hear_of_a_new_leader_from_the_other_replicas() {
    let mut cluster = Cluster::start(3);
    let (leader, term, _) = cluster.wait_leader(1, 10 * SECOND).await;
    let leader_addr = cluster.node(leader).addr.clone();
    let client = cluster.client();
    register(&client, 1).await.expect("write committed");
    // No notice of a later term while the leader leads.
    let quiet = tokio::time::timeout(2 * SECOND, client.leader_moved(leader_addr.clone(), term));
    assert!(quiet.await.is_err(), "a notice with no new leader");

    // The leader frozen: its connections stay open and silent. The others elect a leader
    // of a later term and say so on their WatchLeader streams.
    signal(&mut cluster, leader, "STOP");
    let frozen = std::time::Instant::now();
    let moved = tokio::time::timeout(10 * SECOND, client.leader_moved(leader_addr.clone(), term))
        .await
        .expect("no notice of a new leader within 10 s");
    let heard_in = frozen.elapsed();
    eprintln!("heard of the new leader {moved} {heard_in:?} after the leader froze");
    assert_ne!(moved, leader_addr);
    assert_eq!(client.leader().as_deref(), Some(moved.as_str()));
    let others: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != leader)
        .map(|n| n.addr.clone())
        .collect();
    assert!(others.contains(&moved), "{moved} is none of {others:?}");
    // The client's next call goes to it.
    register(&client, 2)
        .await
        .expect("a write with the new leader");
    signal(&mut cluster, leader, "CONT");
    cluster.wait_leader(term + 1, 10 * SECOND).await;
    assert_one_leader_per_term(&cluster).await;
}

/// A leader stopped with SIGTERM hands leadership over (TimeoutNow to a follower holding
/// its whole log, which it then votes for): a follower leads in a higher term well before
/// the 250 ms election timeout an election after a SIGKILL has to wait for, and nothing
/// acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_sigterm_hands_over_without_waiting_for_a_timeout() {
    let mut cluster = Cluster::start(3);
    let (leader, term, _) = cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();
    for i in 0..20 {
        register(&client, i).await.expect("write committed");
    }
    // The followers settle on this leader (a fresh one has just sent its first heartbeat).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    let pid = cluster.node(leader).pid().expect("running");
    let signalled = std::time::Instant::now();
    agora_test_cluster::signal(pid, libc::SIGTERM);
    let mut took = None;
    while took.is_none() && signalled.elapsed() < 5 * SECOND {
        for id in &others {
            if let Some(s) = cluster.node(*id).status().await {
                if s.role == "leader" && s.term > term {
                    took = Some(signalled.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = took.expect("a follower leads after the leader's SIGTERM");
    // Wait for the old leader to exit, then read what it said.
    let exited = std::time::Instant::now();
    while cluster.node(leader).exit_code().is_none() && exited.elapsed() < 10 * SECOND {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = cluster.node(leader).log_text();
    assert!(
        log.contains("leadership handed over"),
        "the stopping leader did not hand over:\n{log}"
    );
    assert!(
        took < Duration::from_millis(200),
        "a new leader only {took:?} after SIGTERM"
    );
    eprintln!("SIGTERM of the leader -> new leader: {took:?}");
    let st = common::state(&cluster.client()).await;
    assert_eq!(
        st.agents.len(),
        20,
        "acknowledged writes lost in the hand-over"
    );
}
