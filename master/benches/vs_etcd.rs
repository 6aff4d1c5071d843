//! Agora against etcd, side by side in one run on this machine (issue 17): 3-replica
//! Agora (release `agora-master` processes, `--insecure`) and 3-member etcd (the
//! distribution's `etcd` binary, plain HTTP), both on loopback with fsync on and the same
//! Raft timing (50 ms heartbeats, 250 ms election timeout). The same client pattern for
//! both: N concurrent calls over one HTTP/2 connection to the leader. Agora's write is a
//! `RegisterAgent` of a new agent, etcd's a `Put` of a 200-byte value under a new key.
//! Runs are interleaved (the order alternates per measurement) and each measurement starts
//! a fresh cluster.
//!
//! Figures: writes/s and p50/p99 commit at 1, 16, 64 and 256 clients; server CPU per write
//! (user + system time of the three server processes over the phase); 100,000 writes at 64
//! clients with the rate of each tenth (flat or falling as the state grows), leadership
//! changes during it and the leader's RSS after it; leader SIGKILL -> a new leader and
//! leader SIGTERM -> a new leader (p50 over trials each, polled every 5 ms).
//!
//! Run: `cargo bench -p agora-master --bench vs_etcd` (`AGORA_BENCH_QUICK=1` for a short
//! run; `AGORA_VS_ETCD_ONLY=agora` or `=etcd` for one side; `AGORA_VS_ETCD_SIZES=1:3000,64:20000`
//! for other client counts; `AGORA_VS_ETCD_WRITES=N` for the growth run's size, 0 to skip it). Without `etcd` on `PATH` (the
//! `etcd-server` package) the etcd side is skipped with a message. The report goes to
//! stdout and `target/bench-vs-etcd.md`.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use agora_test_cluster::{agent_info, free_port, Cluster};
use tonic::transport::{Channel, Endpoint};

/// The part of etcd's v3 API the bench calls (`etcdserverpb`), declared by hand.
mod etcd {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
        #[prost(uint64, tag = "2")]
        pub member_id: u64,
        #[prost(int64, tag = "3")]
        pub revision: i64,
        #[prost(uint64, tag = "4")]
        pub raft_term: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusRequest {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(uint64, tag = "4")]
        pub leader: u64,
        #[prost(uint64, tag = "6")]
        pub raft_term: u64,
    }

    pub async fn unary<Q, R>(
        ch: tonic::transport::Channel,
        path: &'static str,
        req: Q,
    ) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(ch);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Q, R>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
        Ok(grpc
            .unary(tonic::Request::new(req), path, codec)
            .await?
            .into_inner())
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Agora,
    Etcd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Agora => "Agora",
            Kind::Etcd => "etcd",
        }
    }
}

struct EtcdMember {
    name: String,
    client_addr: String,
    peer_url: String,
    dir: std::path::PathBuf,
    cluster: String,
    child: Option<Child>,
    new: bool,
}

impl EtcdMember {
    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let client_url = format!("http://{}", self.client_addr);
        let child = Command::new("etcd")
            .args([
                "--name",
                &self.name,
                "--data-dir",
                self.dir.to_str().unwrap(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
                "--initial-cluster",
                &self.cluster,
                "--initial-cluster-state",
                if self.new { "new" } else { "existing" },
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "250",
                "--log-level",
                "error",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.new = false;
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn status(&self) -> Option<etcd::StatusResponse> {
        self.child.as_ref()?;
        let ch = Endpoint::from_shared(format!("http://{}", self.client_addr))
            .ok()?
            .connect_timeout(Duration::from_millis(200))
            .timeout(Duration::from_millis(500))
            .connect_lazy();
        etcd::unary(
            ch,
            "/etcdserverpb.Maintenance/Status",
            etcd::StatusRequest {},
        )
        .await
        .ok()
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.kill();
    }
}

struct EtcdCluster {
    members: Vec<EtcdMember>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    fn start() -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("agora-vs-etcd")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("e{}=http://127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<EtcdMember> = ports
            .iter()
            .enumerate()
            .map(|(i, (c, p))| EtcdMember {
                name: format!("e{}", i + 1),
                client_addr: format!("127.0.0.1:{c}"),
                peer_url: format!("http://127.0.0.1:{p}"),
                dir: dir.path().join(format!("e{}", i + 1)),
                cluster: cluster.clone(),
                child: None,
                new: true,
            })
            .collect();
        for m in &mut members {
            m.start();
        }
        EtcdCluster { members, _dir: dir }
    }
}

/// One running 3-replica system under test.
enum System {
    Agora(Cluster),
    Etcd(EtcdCluster),
}

impl System {
    fn start(kind: Kind) -> System {
        match kind {
            Kind::Agora => System::Agora(Cluster::start_insecure(3, &[])),
            Kind::Etcd => System::Etcd(EtcdCluster::start()),
        }
    }

    /// (index of the leader in 0..3, its term), if one running member is leader with a
    /// term of at least `min_term`.
    async fn leader(&self, min_term: u64) -> Option<(usize, u64)> {
        match self {
            System::Agora(c) => {
                let mut best: Option<(usize, u64)> = None;
                for (i, n) in c.nodes.iter().enumerate() {
                    if let Some(s) = n.status().await {
                        if s.role == "leader"
                            && s.term >= min_term
                            && best.is_none_or(|b| s.term > b.1)
                        {
                            best = Some((i, s.term));
                        }
                    }
                }
                best
            }
            System::Etcd(e) => {
                for (i, m) in e.members.iter().enumerate() {
                    if let Some(s) = m.status().await {
                        let me = s.header.as_ref().map(|h| h.member_id).unwrap_or(0);
                        if s.leader == me && me != 0 && s.raft_term >= min_term {
                            return Some((i, s.raft_term));
                        }
                    }
                }
                None
            }
        }
    }

    async fn wait_leader(&self, min_term: u64, timeout: Duration, poll: Duration) -> (usize, u64) {
        let start = Instant::now();
        loop {
            if let Some(l) = self.leader(min_term).await {
                return l;
            }
            assert!(
                start.elapsed() < timeout,
                "no leader with term >= {min_term} within {timeout:?}"
            );
            tokio::time::sleep(poll).await;
        }
    }

    fn kind(&self) -> Kind {
        match self {
            System::Agora(_) => Kind::Agora,
            System::Etcd(_) => Kind::Etcd,
        }
    }

    fn addr(&self, i: usize) -> String {
        match self {
            System::Agora(c) => c.nodes[i].addr.clone(),
            System::Etcd(e) => e.members[i].client_addr.clone(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            System::Agora(c) => c.nodes.iter().filter_map(|n| n.pid()).collect(),
            System::Etcd(e) => e
                .members
                .iter()
                .filter_map(|m| m.child.as_ref().map(|c| c.id()))
                .collect(),
        }
    }

    fn kill(&mut self, i: usize) {
        match self {
            System::Agora(c) => c.nodes[i].kill(),
            System::Etcd(e) => e.members[i].kill(),
        }
    }

    /// SIGTERM to member `i`: it stops on its own (a leader hands over first, both systems).
    fn stop(&mut self, i: usize) {
        let pid = match self {
            System::Agora(c) => c.nodes[i].pid(),
            System::Etcd(e) => e.members[i].child.as_ref().map(|c| c.id()),
        };
        if let Some(pid) = pid {
            // SAFETY: kill(2) on a child this bench started and has not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }

    /// Waits up to 10 s for member `i` to exit after [`System::stop`] (then kills it).
    async fn reap(&mut self, i: usize) {
        let started = Instant::now();
        loop {
            let exited = match self {
                System::Agora(c) => c.nodes[i].exit_code().is_some(),
                System::Etcd(e) => {
                    let m = &mut e.members[i];
                    let done = m
                        .child
                        .as_mut()
                        .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
                    if done {
                        m.child = None;
                    }
                    done
                }
            };
            if exited {
                return;
            }
            if started.elapsed() > Duration::from_secs(10) {
                eprintln!("member {i} still running 10 s after SIGTERM: killed");
                self.kill(i);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn restart(&mut self, i: usize) {
        match self {
            System::Agora(c) => c.nodes[i].start(),
            System::Etcd(e) => e.members[i].start(),
        }
    }
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').map(|i| i + 2).unwrap_or(0)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / hz.max(1) as f64)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Phase {
    writes: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Completion time (since the start) of each write, in completion order.
    completions: Vec<Duration>,
    cpu: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64()
    }

    /// Writes/s over each tenth of the writes, by completion order.
    fn tenths(&self) -> Vec<f64> {
        let n = self.completions.len();
        (0..10)
            .map(|k| {
                let (a, b) = (n * k / 10, n * (k + 1) / 10);
                let from = if a == 0 {
                    Duration::ZERO
                } else {
                    self.completions[a - 1]
                };
                (b - a) as f64 / (self.completions[b - 1] - from).as_secs_f64()
            })
            .collect()
    }
}

/// `clients` concurrent writers over one HTTP/2 connection to the leader, `writes` in all.
async fn write_phase(sys: &System, leader: usize, clients: usize, writes: usize) -> Phase {
    let addr = sys.addr(leader);
    let kind = sys.kind();
    let ch: Channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    let pids = sys.pids();
    let cpu_before: Duration = pids.iter().map(|p| cpu_time(*p)).sum();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let value = vec![b'v'; 200];
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (ch, next, value) = (ch.clone(), next.clone(), value.clone());
        handles.push(tokio::spawn(async move {
            let mut rpc = MasterRpc::new(ch.clone());
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= writes {
                    return out;
                }
                let t = Instant::now();
                match kind {
                    Kind::Agora => {
                        // A leader change mid-run (counted in the report) sends the client
                        // to the leader the answer names, as the driver does.
                        let mut tries = 0;
                        while let Err(status) = rpc
                            .register_agent(pb::RegisterAgentRequest {
                                incarnation: 0,
                                attempt: 0,
                                tasks: vec![],
                                agent: Some(agent_info(i)),
                            })
                            .await
                        {
                            tries += 1;
                            assert!(tries < 500, "write failed 500 times: {status:?}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            let leader = status
                                .metadata()
                                .get("agora-leader")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            if let Some(addr) = leader {
                                if let Ok(e) = Endpoint::from_shared(format!("http://{addr}")) {
                                    rpc = MasterRpc::new(e.tcp_nodelay(true).connect_lazy());
                                }
                            }
                        }
                    }
                    Kind::Etcd => {
                        let _: etcd::PutResponse = etcd::unary(
                            ch.clone(),
                            "/etcdserverpb.KV/Put",
                            etcd::PutRequest {
                                key: format!("/bench/{i:08}").into_bytes(),
                                value: value.clone(),
                            },
                        )
                        .await
                        .expect("put committed");
                    }
                }
                out.push((t.elapsed(), start.elapsed()));
            }
        }));
    }
    let mut latencies = Vec::with_capacity(writes);
    let mut completions = Vec::with_capacity(writes);
    for h in handles {
        for (l, c) in h.await.unwrap() {
            latencies.push(l);
            completions.push(c);
        }
    }
    let elapsed = start.elapsed();
    let cpu_after: Duration = pids.iter().map(|p| cpu_time(*p)).sum();
    latencies.sort();
    completions.sort();
    Phase {
        writes,
        elapsed,
        latencies,
        completions,
        cpu: cpu_after.saturating_sub(cpu_before),
    }
}

/// `trials` times: the leader is sent SIGKILL (or, `graceful`, SIGTERM: it hands over),
/// then polled every 5 ms until another member leads; the killed member is restarted and
/// the cluster left 3 s to settle. Returns the p50 in ms.
async fn leader_changes(sys: &mut System, trials: usize, graceful: bool) -> f64 {
    let mut times = Vec::new();
    for _ in 0..trials {
        let (leader, term) = sys
            .wait_leader(1, Duration::from_secs(20), Duration::from_millis(20))
            .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let signalled = Instant::now();
        if graceful {
            sys.stop(leader);
        } else {
            sys.kill(leader);
        }
        sys.wait_leader(term + 1, Duration::from_secs(20), Duration::from_millis(5))
            .await;
        times.push(signalled.elapsed());
        if graceful {
            sys.reap(leader).await;
        }
        sys.restart(leader);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    times.sort();
    eprintln!(
        "{} {} (ms): {:?}",
        if graceful {
            "hand-over on SIGTERM"
        } else {
            "failover"
        },
        sys.kind().name(),
        times.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    ms(percentile(&times, 0.5))
}

async fn fresh(kind: Kind) -> (System, usize, u64) {
    let _ = Command::new("sync").status();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sys = System::start(kind);
    let (leader, term) = sys
        .wait_leader(1, Duration::from_secs(20), Duration::from_millis(20))
        .await;
    // Let the followers settle on the new leader.
    tokio::time::sleep(Duration::from_millis(500)).await;
    (sys, leader, term)
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

fn cell(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    }
}

fn main() {
    let quick = std::env::var("AGORA_BENCH_QUICK").is_ok();
    let only = std::env::var("AGORA_VS_ETCD_ONLY").ok();
    let etcd_present = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut kinds = Vec::new();
    if only.as_deref() != Some("etcd") {
        kinds.push(Kind::Agora);
    }
    if only.as_deref() != Some("agora") {
        if etcd_present {
            kinds.push(Kind::Etcd);
        } else {
            eprintln!("etcd is not installed (Debian package etcd-server): its side is skipped");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut report = String::from(
            "| measure | Agora | etcd | Agora / etcd |\n|---|---|---|---|\n",
        );
        let mut row = |name: &str, a: Option<f64>, e: Option<f64>, digits: usize| {
            report.push_str(&format!(
                "| {name} | {} | {} | {} |\n",
                cell(a, digits),
                cell(e, digits),
                a.map(|a| ratio(a, e)).unwrap_or_else(|| "-".into())
            ));
        };
        let pick = |v: &[(Kind, f64)], k: Kind| v.iter().find(|(x, _)| *x == k).map(|(_, f)| *f);

        // Rates at 1, 16, 64 and 256 clients, fresh clusters, order alternating.
        // `AGORA_VS_ETCD_SIZES=clients:writes,...` replaces the default list.
        let sizes: Vec<(usize, usize)> = match std::env::var("AGORA_VS_ETCD_SIZES") {
            Ok(list) => list
                .split(',')
                .filter_map(|p| {
                    let (c, w) = p.split_once(':')?;
                    Some((c.parse().ok()?, w.parse().ok()?))
                })
                .collect(),
            Err(_) if quick => vec![(1, 300), (16, 3_000), (64, 5_000), (256, 8_000)],
            Err(_) => vec![(1, 1_500), (16, 10_000), (64, 20_000), (256, 30_000)],
        };
        for (round, (clients, writes)) in sizes.into_iter().enumerate() {
            let mut rates = Vec::new();
            let mut p99 = Vec::new();
            let mut p50 = Vec::new();
            let mut cpu = Vec::new();
            let mut order = kinds.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            let mut changes = Vec::new();
            for &kind in &order {
                let (sys, leader, term) = fresh(kind).await;
                let p = write_phase(&sys, leader, clients, writes).await;
                let (_, term_after) = sys
                    .wait_leader(1, Duration::from_secs(10), Duration::from_millis(20))
                    .await;
                changes.push((kind, (term_after - term) as f64));
                eprintln!(
                    "{} {clients} clients: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, cpu {:.3} ms/write",
                    kind.name(),
                    p.rate(),
                    ms(percentile(&p.latencies, 0.5)),
                    ms(percentile(&p.latencies, 0.99)),
                    ms(p.cpu) / writes as f64
                );
                rates.push((kind, p.rate()));
                p50.push((kind, ms(percentile(&p.latencies, 0.5))));
                p99.push((kind, ms(percentile(&p.latencies, 0.99))));
                cpu.push((kind, ms(p.cpu) / writes as f64));
            }
            row(
                &format!("writes/s, {clients} client{}", if clients > 1 { "s" } else { "" }),
                pick(&rates, Kind::Agora),
                pick(&rates, Kind::Etcd),
                0,
            );
            row(
                &format!("p50 commit at {clients} (ms)"),
                pick(&p50, Kind::Agora),
                pick(&p50, Kind::Etcd),
                2,
            );
            row(
                &format!("p99 commit at {clients} (ms)"),
                pick(&p99, Kind::Agora),
                pick(&p99, Kind::Etcd),
                2,
            );
            row(
                &format!("server CPU per write at {clients}, 3 replicas (ms)"),
                pick(&cpu, Kind::Agora),
                pick(&cpu, Kind::Etcd),
                3,
            );
            row(
                &format!("leadership changes at {clients}"),
                pick(&changes, Kind::Agora),
                pick(&changes, Kind::Etcd),
                0,
            );
        }

        // Growth: 100,000 writes at 64 clients, then failover trials on the same cluster
        // (`AGORA_VS_ETCD_WRITES=0` skips both).
        let big = std::env::var("AGORA_VS_ETCD_WRITES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if quick { 20_000 } else { 100_000 });
        if big == 0 {
            println!("{report}");
            return;
        }
        let trials = if quick { 5 } else { 15 };
        let mut tenths_text = String::new();
        let (mut whole, mut first, mut last, mut changes, mut rss, mut failover) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut handover = Vec::new();
        for &kind in kinds.iter().rev() {
            let (mut sys, leader, term) = fresh(kind).await;
            let p = write_phase(&sys, leader, 64, big).await;
            let t = p.tenths();
            let (_, term_after) = sys
                .wait_leader(1, Duration::from_secs(10), Duration::from_millis(20))
                .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let leader_pid = sys.pids()[leader];
            eprintln!(
                "{} {big} writes at 64: {:.0} writes/s, tenths {:?}, terms {term}->{term_after}",
                kind.name(),
                p.rate(),
                t.iter().map(|r| r.round()).collect::<Vec<_>>()
            );
            tenths_text.push_str(&format!(
                "| {} | {} |\n",
                kind.name(),
                t.iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
            whole.push((kind, p.rate()));
            first.push((kind, t[0]));
            last.push((kind, t[9]));
            changes.push((kind, (term_after - term) as f64));
            rss.push((kind, rss_mib(leader_pid)));

            // Failover: SIGKILL the leader, then SIGTERM it, time until another member leads.
            failover.push((kind, leader_changes(&mut sys, trials, false).await));
            handover.push((kind, leader_changes(&mut sys, trials, true).await));
        }
        row(
            &format!("writes/s over {big} writes at 64 clients"),
            pick(&whole, Kind::Agora),
            pick(&whole, Kind::Etcd),
            0,
        );
        row(
            "  of which the first 10%",
            pick(&first, Kind::Agora),
            pick(&first, Kind::Etcd),
            0,
        );
        row(
            "  of which the last 10%",
            pick(&last, Kind::Agora),
            pick(&last, Kind::Etcd),
            0,
        );
        row(
            "leadership changes during them",
            pick(&changes, Kind::Agora),
            pick(&changes, Kind::Etcd),
            0,
        );
        row(
            &format!("leader RSS after {big} writes (MiB)"),
            pick(&rss, Kind::Agora),
            pick(&rss, Kind::Etcd),
            0,
        );
        row(
            &format!("leader SIGKILL -> new leader, p50 of {trials} (ms)"),
            pick(&failover, Kind::Agora),
            pick(&failover, Kind::Etcd),
            0,
        );
        row(
            &format!("leader SIGTERM -> new leader, p50 of {trials} (ms)"),
            pick(&handover, Kind::Agora),
            pick(&handover, Kind::Etcd),
            0,
        );
        report.push_str(&format!(
            "\nWrites/s by tenth of the {big} writes:\n\n| system | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 |\n|---|---|---|---|---|---|---|---|---|---|---|\n{tenths_text}"
        ));
        println!("{report}");
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_string()
        });
        let out = std::path::Path::new(&target).join("bench-vs-etcd.md");
        let _ = std::fs::write(&out, &report);
        eprintln!("report written to {}", out.display());
    });
}
