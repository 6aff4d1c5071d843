//! Quorum benchmark with real `agora-master` processes (release build) on loopback, fsync on:
//! committed registry writes/s and commit latency at 1 and 64 concurrent clients, the work
//! dir's size after 100,000 writes with compaction, and leader failover time (SIGKILL to a
//! new leader) over 20 trials.
//!
//! Run: `cargo bench -p agora-master --bench quorum` (AGORA_BENCH_QUICK=1 for a short run).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use agora_test_cluster::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += dir_size(&p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

struct Phase {
    clients: usize,
    writes: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// `clients` concurrent writers on one HTTP/2 connection to the leader, until `writes`
/// writes are committed in total.
async fn write_phase(
    security: &agora_security::client::ClientSecurity,
    leader_addr: &str,
    clients: usize,
    writes: usize,
    id_base: usize,
) -> Phase {
    let ch = security
        .endpoint(leader_addr)
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    let ch = security.authorized(ch);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let ch = ch.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            let mut rpc = MasterRpc::new(ch);
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= writes {
                    return lat;
                }
                let t = Instant::now();
                rpc.register_agent(pb::RegisterAgentRequest {
                    incarnation: 0,
                    attempt: 0,
                    tasks: vec![],
                    agent: Some(agent_info(id_base + i)),
                })
                .await
                .expect("write committed");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Phase {
        clients,
        writes,
        elapsed,
        latencies,
    }
}

fn main() {
    let quick = std::env::var("AGORA_BENCH_QUICK").is_ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut report = String::new();
        let big = if quick { 10_000 } else { 100_000 };
        // What security costs: 64 clients against fresh quorums with TLS and authentication
        // on and off, in alternating order (the first run after a large delete of sled
        // files is slower), with `sync` and a pause between runs.
        let rounds = if quick { 1 } else { 3 };
        let mut secure_rates = Vec::new();
        let mut insecure_rates = Vec::new();
        let mut samples = String::new();
        for round in 0..rounds {
            let order = if round % 2 == 0 { [false, true] } else { [true, false] };
            for secure in order {
                let _ = std::process::Command::new("sync").status();
                tokio::time::sleep(Duration::from_secs(3)).await;
                let quorum = if secure {
                    Cluster::start(3)
                } else {
                    Cluster::start_insecure(3, &[])
                };
                let (leader, _, _) = quorum.wait_leader(1, Duration::from_secs(10)).await;
                let addr = quorum.addrs()[leader as usize - 1].clone();
                let p = write_phase(&quorum.client_security(), &addr, 64, big, 1_000_000).await;
                let rate = p.writes as f64 / p.elapsed.as_secs_f64();
                samples.push_str(&format!(
                    "| {} | {} | {rate:.0} | {} | {} |\n",
                    round + 1,
                    if secure { "TLS + credentials + ACLs" } else { "--insecure" },
                    ms(percentile(&p.latencies, 0.5)),
                    ms(percentile(&p.latencies, 0.99)),
                ));
                if secure {
                    secure_rates.push(rate);
                } else {
                    insecure_rates.push(rate);
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (sec, ins) = (median(&mut secure_rates), median(&mut insecure_rates));
        let comparison = format!(
            "\n### TLS and authentication on vs off (64 clients, {big} writes per run, fresh quorum per run)\n\n| round | security | writes/s | p50 commit | p99 commit |\n|---|---|---|---|---|\n{samples}\nMedian secure {sec:.0} writes/s, median insecure {ins:.0} writes/s: secure is {:.1}% of insecure.\n",
            100.0 * sec / ins
        );
        if std::env::var("AGORA_BENCH_ONLY").as_deref() == Ok("security") {
            println!("{comparison}");
            return;
        }
        let mut cluster = Cluster::start(3);
        let (leader, _, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
        let leader_addr = cluster.node(leader).addr.clone();

        // Throughput and latency, with TLS and authentication on (the default).
        let security = cluster.client_security();
        let single =
            write_phase(&security, &leader_addr, 1, if quick { 500 } else { 3_000 }, 0).await;
        let many = write_phase(&security, &leader_addr, 64, big, 1_000_000).await;
        report.push_str("### Committed registry writes through a 3-replica quorum (loopback, fsync on)\n\n");
        report.push_str("| clients | writes | writes/s | p50 commit | p99 commit |\n|---|---|---|---|---|\n");
        for p in [&single, &many] {
            report.push_str(&format!(
                "| {} | {} | {:.0} | {} | {} |\n",
                p.clients,
                p.writes,
                p.writes as f64 / p.elapsed.as_secs_f64(),
                ms(percentile(&p.latencies, 0.5)),
                ms(percentile(&p.latencies, 0.99)),
            ));
        }

        report.push_str(&comparison);

        // Storage after the writes (snapshots every 10,000 entries, 1,000 kept after).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let total_writes = single.writes + many.writes;
        report.push_str(&format!(
            "\n### Work dir size after {total_writes} writes (registry holds {total_writes} agents)\n\n| replica | work dir |\n|---|---|\n"
        ));
        for n in &cluster.nodes {
            report.push_str(&format!(
                "| {} | {:.1} MiB |\n",
                n.id,
                dir_size(&n.work_dir) as f64 / (1024.0 * 1024.0)
            ));
        }

        // Failover: SIGKILL the leader, time until another replica leads.
        let trials = if quick { 5 } else { 20 };
        let mut failovers = Vec::new();
        for _ in 0..trials {
            let (leader, term, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
            // Let the followers settle on this leader (a fresh one just sent its first heartbeat).
            tokio::time::sleep(Duration::from_millis(500)).await;
            let killed = Instant::now();
            cluster.node(leader).kill();
            let (_, _, _) = cluster.wait_leader(term + 1, Duration::from_secs(10)).await;
            failovers.push(killed.elapsed());
            cluster.node(leader).start();
            // Wait for the restarted replica to be back in the quorum.
            let (_, t2, _) = cluster.wait_leader(term + 1, Duration::from_secs(10)).await;
            let applied = cluster
                .statuses()
                .await
                .into_iter()
                .find(|s| s.role == "leader" && s.term == t2)
                .map(|s| s.last_applied)
                .unwrap_or(0);
            cluster.wait_applied(leader, applied, Duration::from_secs(30)).await;
        }
        let raw: Vec<String> = failovers.iter().map(|d| format!("{}", d.as_millis())).collect();
        failovers.sort();
        report.push_str(&format!(
            "\n### Leader failover, SIGKILL to a new leader ({trials} trials)\n\n| p50 | p99 | min | max |\n|---|---|---|---|\n| {} | {} | {} | {} |\n\nTrials (ms, in order): {}\n",
            ms(percentile(&failovers, 0.5)),
            ms(percentile(&failovers, 0.99)),
            ms(failovers[0]),
            ms(*failovers.last().unwrap()),
            raw.join(", "),
        ));
        println!("{report}");
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-quorum.md");
        let _ = std::fs::write(&out, &report);
        eprintln!("report written to {}", out.display());
    });
}
