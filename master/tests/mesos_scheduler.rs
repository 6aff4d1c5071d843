//! Mesos' v1 scheduler HTTP API (`POST /api/v1/scheduler`) against real masters and a real
//! agent, spoken as a Mesos framework speaks it: HTTP/1.1 over TLS with `Authorization:
//! Basic`, JSON or protobuf bodies, a chunked SUBSCRIBE response of RecordIO-framed events,
//! and `Mesos-Stream-Id` on every other call. The client is written here, on a plain TLS
//! socket, so nothing of Agora's own clients is in the way.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::v1::scheduler as sched;
use agora_mesos_proto::{recordio, MesosJson};
use common::*;
use prost::Message;

const SECOND: Duration = Duration::from_secs(1);
const PATH: &str = "/api/v1/scheduler";
const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_config() -> Arc<rustls::ClientConfig> {
    let tls = agora_security::tls::ClientTls::load(&pki::pki().ca_path(), None).unwrap();
    Arc::new(tls.rustls_config().unwrap())
}

/// A TLS connection to `addr` (the fixture's certificates name 127.0.0.1).
fn connect(addr: &str) -> (Tls, TcpStream) {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(30 * SECOND)).unwrap();
    let handle = tcp.try_clone().unwrap();
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let conn = rustls::ClientConnection::new(tls_config(), name).unwrap();
    (rustls::StreamOwned::new(conn, tcp), handle)
}

/// A request to the scheduler endpoint: its body's type, the answer's type it accepts, the
/// stream id it names, and whose credential it carries (the admin's unless told).
struct Post<'a> {
    content_type: &'a str,
    accept: Option<&'a str>,
    stream_id: Option<&'a str>,
    principal: Option<&'a str>,
    body: Vec<u8>,
}

impl<'a> Post<'a> {
    fn new(content_type: &'a str, body: Vec<u8>) -> Self {
        Post {
            content_type,
            accept: None,
            stream_id: None,
            principal: Some(pki::ADMIN),
            body,
        }
    }

    fn write(&self, s: &mut impl Write, addr: &str, close: bool) {
        let mut head = format!(
            "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.content_type,
            self.body.len()
        );
        if let Some(a) = self.accept {
            head.push_str(&format!("Accept: {a}\r\n"));
        }
        if let Some(id) = self.stream_id {
            head.push_str(&format!("Mesos-Stream-Id: {id}\r\n"));
        }
        if let Some(principal) = self.principal {
            let auth = pki::pki().credential(principal).authorization();
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&self.body).unwrap();
        s.flush().unwrap();
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a status line and headers.
fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let code = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status line: {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            return (code, headers);
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

/// The next chunk of a chunked body; None at its end.
fn read_chunk(r: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut size = String::new();
    if r.read_line(&mut size)? == 0 {
        return Ok(None);
    }
    let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|e| std::io::Error::other(format!("chunk size {size:?}: {e}")))?;
    if size == 0 {
        return Ok(None);
    }
    let mut data = vec![0; size + 2];
    r.read_exact(&mut data)?;
    data.truncate(size);
    Ok(Some(data))
}

/// The rest of an answer: its body, by its length, its chunks, or its end.
fn read_answer(r: &mut impl BufRead, code: u16, headers: Vec<(String, String)>) -> Answer {
    let mut a = Answer {
        code,
        headers,
        body: vec![],
    };
    if a.header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        while let Ok(Some(c)) = read_chunk(r) {
            a.body.extend(c);
        }
    } else if let Some(n) = a.header("content-length") {
        let mut body = vec![0; n.parse().unwrap()];
        r.read_exact(&mut body).unwrap();
        a.body = body;
    } else {
        // A TLS peer may close without close_notify: keep what arrived.
        let _ = r.read_to_end(&mut a.body);
    }
    a
}

/// A call that is not SUBSCRIBE: its answer, whole.
fn post(addr: &str, req: &Post) -> Answer {
    let (mut s, _) = connect(addr);
    req.write(&mut s, addr, true);
    let mut r = BufReader::new(s);
    let (code, headers) = read_head(&mut r);
    read_answer(&mut r, code, headers)
}

/// One Mesos subscription: its stream id and its events, read by a thread of their own
/// until the stream ends (then `events` disconnects).
struct Subscription {
    framework_id: String,
    stream_id: String,
    encoding: &'static str,
    events: mpsc::Receiver<sched::Event>,
    socket: TcpStream,
    /// Events received and not yet picked, oldest first.
    pending: std::collections::VecDeque<sched::Event>,
    /// Every offer received and not rescinded (some may be gone since).
    offered: Vec<mesos::OfferId>,
    /// The type of every event received, for the failure messages.
    seen: Vec<String>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// SUBSCRIBE with `call` (in `encoding`); the answer if it is not a stream.
fn subscribe(
    addr: &str,
    encoding: &'static str,
    call: &sched::Call,
) -> Result<Subscription, Answer> {
    let (mut s, socket) = connect(addr);
    Post::new(encoding, encode(encoding, call)).write(&mut s, addr, false);
    let mut r = BufReader::new(s);
    let (code, headers) = read_head(&mut r);
    if code != 200 {
        return Err(read_answer(&mut r, code, headers));
    }
    let a = Answer {
        code,
        headers,
        body: vec![],
    };
    assert_eq!(a.header("content-type"), Some(encoding), "{a:?}");
    assert!(
        a.header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked")),
        "{a:?}"
    );
    let stream_id = a
        .header("mesos-stream-id")
        .unwrap_or_else(|| panic!("no Mesos-Stream-Id: {a:?}"))
        .to_string();
    let (tx, events) = mpsc::channel();
    std::thread::spawn(move || {
        let mut decoder = recordio::Decoder::default();
        while let Ok(Some(chunk)) = read_chunk(&mut r) {
            for record in decoder.decode(&chunk).expect("RecordIO") {
                let event = if encoding == JSON {
                    sched::Event::from_json(&record).unwrap_or_else(|e| {
                        panic!("event {}: {e}", String::from_utf8_lossy(&record))
                    })
                } else {
                    sched::Event::decode(record.as_slice()).expect("protobuf event")
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        }
    });
    let mut sub = Subscription {
        framework_id: String::new(),
        stream_id,
        encoding,
        events,
        socket,
        pending: Default::default(),
        offered: vec![],
        seen: vec![],
    };
    let subscribed = sub.next(10 * SECOND, |e| e.subscribed.clone());
    let subscribed = subscribed.unwrap_or_else(|| panic!("no SUBSCRIBED: {:?}", sub.seen));
    sub.framework_id = subscribed.framework_id.value.clone();
    // The first event is SUBSCRIBED, naming the leader.
    assert!(sub.seen.len() == 1, "{:?}", sub.seen);
    assert_eq!(subscribed.heartbeat_interval_seconds, Some(15.0));
    let master = subscribed.master_info.expect("master_info");
    let port: u32 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(master.port, port, "{master:?}");
    assert_eq!(master.hostname.as_deref(), Some("127.0.0.1"), "{master:?}");
    assert_eq!(master.ip, u32::from_le_bytes([127, 0, 0, 1]), "{master:?}");
    assert!(master.version.is_some(), "{master:?}");
    Ok(sub)
}

fn encode(encoding: &str, call: &sched::Call) -> Vec<u8> {
    if encoding == JSON {
        call.to_json_vec().unwrap()
    } else {
        call.encode_to_vec()
    }
}

impl Subscription {
    /// The oldest event `pick` takes, within `timeout`; the others stay pending.
    fn next<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&sched::Event) -> Option<T>,
    ) -> Option<T> {
        if let Some((i, t)) = self
            .pending
            .iter()
            .enumerate()
            .find_map(|(i, e)| pick(e).map(|t| (i, t)))
        {
            self.pending.remove(i);
            return Some(t);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(format!("{:?}", e.r#type()));
                    if let Some(o) = &e.offers {
                        self.offered.extend(o.offers.iter().map(|o| o.id.clone()));
                    }
                    if let Some(r) = &e.rescind {
                        self.offered.retain(|o| *o != r.offer_id);
                    }
                    if let Some(t) = pick(&e) {
                        return Some(t);
                    }
                    self.pending.push_back(e);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the event stream ended; events: {:?}", self.seen)
                }
            }
        }
    }

    fn offers(&mut self) -> Vec<mesos::Offer> {
        let offers = self.next(10 * SECOND, |e| e.offers.as_ref().map(|o| o.offers.clone()));
        offers.unwrap_or_else(|| panic!("no OFFERS within 10 s: {:?}", self.seen))
    }

    /// The next update of `task`.
    fn update(&mut self, task: &str) -> mesos::TaskStatus {
        let u = self.next(10 * SECOND, |e| {
            e.update
                .as_ref()
                .map(|u| u.status.clone())
                .filter(|s| s.task_id.value == task)
        });
        u.unwrap_or_else(|| panic!("no update of {task} within 10 s: {:?}", self.seen))
    }

    /// A call on this subscription (its stream id, its encoding).
    fn call(&self, addr: &str, call: &sched::Call) -> Answer {
        let mut req = Post::new(self.encoding, encode(self.encoding, call));
        req.stream_id = Some(&self.stream_id);
        post(addr, &req)
    }

    /// A call that must answer 202.
    fn ok(&self, addr: &str, call: &sched::Call) {
        let a = self.call(addr, call);
        assert_eq!(a.code, 202, "{:?}: {a:?} {}", call.r#type(), a.text());
    }

    /// Acknowledges `status` if it asks for it.
    fn ack(&self, addr: &str, status: &mesos::TaskStatus) {
        if let Some(uuid) = &status.uuid {
            self.ok(
                addr,
                &self.framework_call(sched::Call {
                    acknowledge: Some(sched::call::Acknowledge {
                        agent_id: status.agent_id.clone().expect("an update's agent"),
                        task_id: status.task_id.clone(),
                        uuid: uuid.clone(),
                    }),
                    ..call(sched::call::Type::Acknowledge)
                }),
            );
        }
    }

    /// Follows `task` to `state`, acknowledging every update on the way; the updates'
    /// states.
    fn follow(&mut self, addr: &str, task: &str, state: mesos::TaskState) -> Vec<mesos::TaskState> {
        let mut states = vec![];
        loop {
            let u = self.update(task);
            assert_eq!(
                u.source,
                Some(if u.uuid.is_some() {
                    mesos::task_status::Source::Executor as i32
                } else {
                    mesos::task_status::Source::Master as i32
                }),
                "{u:?}"
            );
            assert!(u.timestamp.is_some_and(|t| t > 1.5e9), "{u:?}");
            self.ack(addr, &u);
            states.push(u.state());
            if u.state() == state {
                return states;
            }
            assert!(
                !matches!(
                    u.state(),
                    mesos::TaskState::TaskFinished
                        | mesos::TaskState::TaskFailed
                        | mesos::TaskState::TaskKilled
                        | mesos::TaskState::TaskLost
                        | mesos::TaskState::TaskError
                ),
                "{task} ended {:?} ({:?}), not {state:?}: {states:?}",
                u.state(),
                u.message
            );
        }
    }

    fn framework_call(&self, c: sched::Call) -> sched::Call {
        sched::Call {
            framework_id: Some(mesos::FrameworkId {
                value: self.framework_id.clone(),
            }),
            ..c
        }
    }

    /// Waits for the stream to end; the events it still carried.
    fn wait_end(&mut self, timeout: Duration) -> Vec<sched::Event> {
        let deadline = Instant::now() + timeout;
        let mut rest: Vec<sched::Event> = self.pending.drain(..).collect();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => rest.push(e),
                Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the stream did not end: {rest:?}"),
            }
        }
    }
}

fn call(kind: sched::call::Type) -> sched::Call {
    let mut c = sched::Call::default();
    c.set_type(kind);
    c
}

fn subscribe_call(name: &str, id: Option<&str>, failover_timeout: f64) -> sched::Call {
    sched::Call {
        subscribe: Some(sched::call::Subscribe {
            framework_info: mesos::FrameworkInfo {
                user: "root".into(),
                name: name.into(),
                id: id.map(|v| mesos::FrameworkId { value: v.into() }),
                failover_timeout: Some(failover_timeout),
                ..Default::default()
            },
            suppressed_roles: vec![],
        }),
        framework_id: id.map(|v| mesos::FrameworkId { value: v.into() }),
        ..call(sched::call::Type::Subscribe)
    }
}

fn scalar(name: &str, value: f64) -> mesos::Resource {
    let mut r = mesos::Resource {
        name: name.into(),
        scalar: Some(mesos::value::Scalar { value }),
        ..Default::default()
    };
    r.set_type(mesos::value::Type::Scalar);
    r
}

fn task(id: &str, offer: &mesos::Offer, command: &str) -> mesos::TaskInfo {
    mesos::TaskInfo {
        name: id.into(),
        task_id: mesos::TaskId { value: id.into() },
        agent_id: offer.agent_id.clone(),
        resources: vec![scalar("cpus", 0.1), scalar("mem", 32.0)],
        command: Some(mesos::CommandInfo {
            value: Some(command.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn launch(offer: &mesos::Offer, tasks: Vec<mesos::TaskInfo>) -> sched::Call {
    let mut op = mesos::offer::Operation {
        launch: Some(mesos::offer::operation::Launch { task_infos: tasks }),
        ..Default::default()
    };
    op.set_type(mesos::offer::operation::Type::Launch);
    sched::Call {
        accept: Some(sched::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![op],
            filters: Some(mesos::Filters {
                refuse_seconds: Some(1.0),
            }),
        }),
        ..call(sched::call::Type::Accept)
    }
}

fn scalar_of(resources: &[mesos::Resource], name: &str) -> Option<f64> {
    resources
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| r.scalar.as_ref())
        .map(|s| s.value)
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One master, one real agent: the leader's address, and the agent (dropping it ends its
/// tasks).
fn one_agent_cluster(rt: &tokio::runtime::Runtime) -> (Cluster, AgentNode, String) {
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    rt.block_on(cluster.wait_leader(1, 10 * SECOND));
    let mut agent = AgentNode::new(
        &cluster,
        "agent-1",
        &[
            "--resources",
            "cpus:2;mem:1024;disk:1000;ports:[31000-31099]",
            "--isolation",
            "none",
        ],
    );
    agent.start();
    wait_for("the agent to register", 20 * SECOND, || agent.agent_id());
    let addr = cluster.nodes[0].addr.clone();
    (cluster, agent, addr)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The framework's outstanding offers' cpus, as the leader's registry has them.
fn offered_cpus(rt: &tokio::runtime::Runtime, cluster: &Cluster, framework: &str) -> f64 {
    let s = rt.block_on(async { state(&cluster.client()).await });
    let f = s
        .frameworks
        .iter()
        .find(|f| f.id == framework)
        .unwrap_or_else(|| panic!("framework {framework} not registered"));
    f.offered
        .iter()
        .find(|r| r.name == "cpus")
        .and_then(|r| match r.value {
            Some(agora_proto::v1::resource::Value::Scalar(x)) => Some(x),
            _ => None,
        })
        .unwrap_or(0.0)
}

/// The whole life of a framework in Mesos' JSON: SUBSCRIBE, OFFERS, ACCEPT with a LAUNCH
/// of a task that finishes and one that sleeps, UPDATEs acknowledged, KILL, explicit
/// RECONCILE, DECLINE, TEARDOWN.
#[test]
fn json_framework_launches_acknowledges_kills_reconciles_declines() {
    let rt = runtime();
    let (cluster, _agent, addr) = one_agent_cluster(&rt);

    // The JSON a Mesos framework writes, as Mesos' documentation shows it.
    let body = br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root",
        "name":"mesos-json","failover_timeout":60,"roles":["*"],
        "capabilities":[{"type":"MULTI_ROLE"},{"type":"PARTITION_AWARE"}]}}}"#;
    let c = sched::Call::from_json(body).unwrap();
    let mut sub = subscribe(&addr, JSON, &c).expect("subscribed");

    let offers = sub.offers();
    assert_eq!(offers.len(), 1, "{offers:?}");
    let offer = &offers[0];
    assert_eq!(offer.framework_id.value, sub.framework_id);
    assert!(!offer.hostname.is_empty(), "{offer:?}");
    assert!(!offer.id.value.is_empty() && !offer.agent_id.value.is_empty());
    assert_eq!(scalar_of(&offer.resources, "cpus"), Some(2.0), "{offer:?}");
    assert_eq!(
        scalar_of(&offer.resources, "mem"),
        Some(1024.0),
        "{offer:?}"
    );
    let ports = offer
        .resources
        .iter()
        .find(|r| r.name == "ports")
        .expect("ports");
    assert_eq!(ports.r#type(), mesos::value::Type::Ranges);
    assert_eq!(ports.ranges.as_ref().unwrap().range[0].begin, 31000);
    assert_eq!(
        offer
            .allocation_info
            .as_ref()
            .and_then(|a| a.role.as_deref()),
        Some("*"),
        "a MULTI_ROLE framework's offer names its role"
    );

    // A task that finishes and one that sleeps, in one ACCEPT.
    let accept = sub.framework_call(launch(
        offer,
        vec![
            task("done", offer, "true"),
            task("sleeper", offer, "sleep 60"),
        ],
    ));
    sub.ok(&addr, &accept);
    let done = sub.follow(&addr, "done", mesos::TaskState::TaskFinished);
    assert!(done.contains(&mesos::TaskState::TaskRunning), "{done:?}");
    sub.follow(&addr, "sleeper", mesos::TaskState::TaskRunning);

    // KILL of the sleeping task, with a kill policy.
    let kill = sub.framework_call(sched::Call {
        kill: Some(sched::call::Kill {
            task_id: mesos::TaskId {
                value: "sleeper".into(),
            },
            agent_id: Some(offer.agent_id.clone()),
            kill_policy: Some(mesos::KillPolicy {
                grace_period: Some(mesos::DurationInfo {
                    nanoseconds: 2_000_000_000,
                }),
            }),
        }),
        ..call(sched::call::Type::Kill)
    });
    sub.ok(&addr, &kill);
    sub.follow(&addr, "sleeper", mesos::TaskState::TaskKilled);

    // Explicit RECONCILE: both tasks, and one this master never heard of.
    let reconcile = sub.framework_call(sched::Call {
        reconcile: Some(sched::call::Reconcile {
            tasks: ["done", "sleeper", "never"]
                .into_iter()
                .map(|t| sched::call::reconcile::Task {
                    task_id: mesos::TaskId { value: t.into() },
                    agent_id: None,
                })
                .collect(),
        }),
        ..call(sched::call::Type::Reconcile)
    });
    sub.ok(&addr, &reconcile);
    for (t, state) in [
        ("done", mesos::TaskState::TaskFinished),
        ("sleeper", mesos::TaskState::TaskKilled),
        ("never", mesos::TaskState::TaskLost),
    ] {
        // (An update the agent resent before its acknowledgement arrived may come too.)
        let u = sub.next(10 * SECOND, |e| {
            let s = &e.update.as_ref()?.status;
            (s.task_id.value == t && s.uuid.is_none()).then(|| s.clone())
        });
        let u = u.unwrap_or_else(|| panic!("no reconciliation of {t}: {:?}", sub.seen));
        assert_eq!(u.state(), state, "{u:?}");
        assert_eq!(u.source, Some(mesos::task_status::Source::Master as i32));
        assert_eq!(
            u.reason(),
            mesos::task_status::Reason::Reconciliation,
            "{u:?}"
        );
    }

    // DECLINE: first every offer made so far (each holds part of the agent, as tasks
    // ended at different times; a declined part does not hold back an offer of more), then,
    // revived, the one offer of the whole agent, for a minute: nothing is offered again.
    let decline = |sub: &Subscription, ids: Vec<mesos::OfferId>| {
        sub.ok(
            &addr,
            &sub.framework_call(sched::Call {
                decline: Some(sched::call::Decline {
                    offer_ids: ids,
                    filters: Some(mesos::Filters {
                        refuse_seconds: Some(60.0),
                    }),
                }),
                ..call(sched::call::Type::Decline)
            }),
        )
    };
    sub.offers();
    wait_for("every offer declined", 10 * SECOND, || {
        let _ = sub.next(Duration::from_millis(200), |_| None::<()>);
        decline(&sub, sub.offered.clone());
        (offered_cpus(&rt, &cluster, &sub.framework_id) == 0.0).then_some(())
    });
    sub.pending.retain(|e| e.offers.is_none());
    sub.ok(&addr, &sub.framework_call(call(sched::call::Type::Revive)));
    let whole = sub.offers().remove(0);
    assert_eq!(scalar_of(&whole.resources, "cpus"), Some(2.0), "{whole:?}");
    decline(&sub, vec![whole.id.clone()]);
    assert_eq!(offered_cpus(&rt, &cluster, &sub.framework_id), 0.0);
    assert!(
        sub.next(SECOND, |e| e.offers.clone()).is_none(),
        "offered again within the decline's minute: {:?}",
        sub.seen
    );
    // REVIVE clears the filter: offered again.
    sub.ok(&addr, &sub.framework_call(call(sched::call::Type::Revive)));
    sub.offers();
    // REQUEST is accepted and does nothing.
    sub.ok(&addr, &sub.framework_call(call(sched::call::Type::Request)));

    // TEARDOWN: the framework is removed, and its stream says so and ends.
    sub.ok(
        &addr,
        &sub.framework_call(call(sched::call::Type::Teardown)),
    );
    let rest = sub.wait_end(5 * SECOND);
    let error = rest
        .iter()
        .find_map(|e| e.error.as_ref())
        .unwrap_or_else(|| panic!("no ERROR event: {rest:?}"));
    assert!(error.message.contains("removed"), "{error:?}");
}

/// The same flow in protobuf, and a framework subscribing again with its id after its
/// stream broke: it keeps its tasks.
#[test]
#[allow(deprecated)] // Resource.role: the pre-refinement format a framework gets by default.
fn protobuf_framework_resubscribes_and_keeps_its_tasks() {
    let rt = runtime();
    let (_cluster, _agent, addr) = one_agent_cluster(&rt);
    let mut sub = subscribe(
        &addr,
        PROTOBUF,
        &subscribe_call("mesos-protobuf", None, 60.0),
    )
    .expect("subscribed");
    let offer = sub.offers().remove(0);
    assert_eq!(scalar_of(&offer.resources, "cpus"), Some(2.0), "{offer:?}");
    assert!(
        offer
            .resources
            .iter()
            .all(|r| r.role.as_deref() == Some("*")),
        "unreserved resources in the pre-refinement format: {offer:?}"
    );
    let accept = sub.framework_call(launch(
        &offer,
        vec![
            task("once", &offer, "true"),
            task("long", &offer, "sleep 60"),
        ],
    ));
    sub.ok(&addr, &accept);
    sub.follow(&addr, "once", mesos::TaskState::TaskFinished);
    sub.follow(&addr, "long", mesos::TaskState::TaskRunning);

    // The connection breaks; the framework subscribes again with its id.
    let id = sub.framework_id.clone();
    let old_stream = sub.stream_id.clone();
    drop(sub);
    let mut sub = subscribe(
        &addr,
        PROTOBUF,
        &subscribe_call("mesos-protobuf", Some(&id), 60.0),
    )
    .expect("subscribed again");
    assert_eq!(sub.framework_id, id);
    assert_ne!(
        sub.stream_id, old_stream,
        "a new stream id per subscription"
    );
    // The old stream id no longer works.
    let mut req = Post::new(
        PROTOBUF,
        sub.framework_call(call(sched::call::Type::Revive))
            .encode_to_vec(),
    );
    req.stream_id = Some(&old_stream);
    let a = post(&addr, &req);
    assert_eq!(a.code, 400, "{a:?}");
    assert!(
        a.text().contains("Mesos-Stream-Id") || a.text().contains("stream ID"),
        "{}",
        a.text()
    );

    // Implicit RECONCILE: the live task is still there, running.
    sub.ok(
        &addr,
        &sub.framework_call(sched::Call {
            reconcile: Some(sched::call::Reconcile { tasks: vec![] }),
            ..call(sched::call::Type::Reconcile)
        }),
    );
    let u = sub.update("long");
    assert_eq!(u.state(), mesos::TaskState::TaskRunning, "{u:?}");
    assert_eq!(u.agent_id.as_ref(), Some(&offer.agent_id));

    // A refused answer comes in the type asked for... and a kill ends the task.
    let kill = sub.framework_call(sched::Call {
        kill: Some(sched::call::Kill {
            task_id: mesos::TaskId {
                value: "long".into(),
            },
            agent_id: None,
            kill_policy: None,
        }),
        ..call(sched::call::Type::Kill)
    });
    sub.ok(&addr, &kill);
    sub.follow(&addr, "long", mesos::TaskState::TaskKilled);
}

/// Every refusal: the status Mesos gives and a body naming what is wrong; none changes
/// the framework's subscription.
#[test]
fn bad_calls_are_refused_naming_the_problem() {
    let rt = runtime();
    let (_cluster, _agent, addr) = one_agent_cluster(&rt);
    let mut sub =
        subscribe(&addr, JSON, &subscribe_call("mesos-bad", None, 60.0)).expect("subscribed");
    let offer = sub.offers().remove(0);
    let fw = &sub.framework_id.clone();
    let json = |text: &str| text.replace("FW", fw).into_bytes();

    // No Mesos-Stream-Id.
    let revive = json(r#"{"type":"REVIVE","framework_id":{"value":"FW"}}"#);
    let a = post(&addr, &Post::new(JSON, revive.clone()));
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("Mesos-Stream-Id"), "{}", a.text());
    // Another stream's id.
    let a = post(
        &addr,
        &Post {
            stream_id: Some("not-the-stream"),
            ..Post::new(JSON, revive.clone())
        },
    );
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("didn't match"), "{}", a.text());
    // A framework nobody registered.
    let a = post(
        &addr,
        &Post {
            stream_id: Some(&sub.stream_id),
            ..Post::new(
                JSON,
                br#"{"type":"REVIVE","framework_id":{"value":"nobody-0000"}}"#.to_vec(),
            )
        },
    );
    assert_eq!(a.code, 404, "{a:?}");
    // No credential: 401 with Basic, as Mesos asks.
    let a = post(
        &addr,
        &Post {
            stream_id: Some(&sub.stream_id),
            principal: None,
            ..Post::new(JSON, revive.clone())
        },
    );
    assert_eq!(a.code, 401, "{a:?}");
    assert!(
        a.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic")),
        "{a:?}"
    );
    // Another principal, with the stream id: not its framework.
    let a = post(
        &addr,
        &Post {
            stream_id: Some(&sub.stream_id),
            principal: Some(pki::TEAM_A),
            ..Post::new(JSON, revive.clone())
        },
    );
    assert_eq!(a.code, 403, "{a:?}");
    assert!(a.text().contains("another principal"), "{}", a.text());
    // A body type Mesos does not speak, an answer type we cannot give.
    let a = post(&addr, &Post::new("text/plain", revive.clone()));
    assert_eq!(a.code, 415, "{a:?}");
    let a = post(
        &addr,
        &Post {
            accept: Some("text/html"),
            stream_id: Some(&sub.stream_id),
            ..Post::new(JSON, revive.clone())
        },
    );
    assert_eq!(a.code, 406, "{a:?}");

    let bad = |body: String| {
        let mut req = Post::new(JSON, body.into_bytes());
        req.stream_id = Some(&sub.stream_id);
        post(&addr, &req)
    };
    // Malformed JSON: the field is named.
    let a = bad(format!(
        r#"{{"type":"KILL","framework_id":{{"value":"{fw}"}},"kill":{{"task_id":{{"value":5}}}}}}"#
    ));
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("kill.task_id.value"), "{}", a.text());
    let a = bad(r#"{"type":"KILL","#.into());
    assert_eq!(a.code, 400, "{a:?}");
    let a = bad(format!(
        r#"{{"type":"ACCEPT","framework_id":{{"value":"{fw}"}}}}"#
    ));
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("'accept'"), "{}", a.text());
    // An operation Agora does not do: named.
    let a = bad(format!(
        r#"{{"type":"ACCEPT","framework_id":{{"value":"{fw}"}},"accept":{{"offer_ids":[{{"value":"{}"}}],
            "operations":[{{"type":"RESERVE","reserve":{{"resources":[]}}}}]}}}}"#,
        offer.id.value
    ));
    assert_eq!(a.code, 400, "{a:?}");
    assert!(
        a.text().contains("accept.operations[0].type") && a.text().contains("RESERVE"),
        "{}",
        a.text()
    );
    let a = bad(format!(
        r#"{{"type":"ACCEPT","framework_id":{{"value":"{fw}"}},"accept":{{"offer_ids":[{{"value":"{}"}}],
            "operations":[{{"type":"LAUNCH_GROUP"}}]}}}}"#,
        offer.id.value
    ));
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("LAUNCH_GROUP"), "{}", a.text());
    // A task too small for Agora: the Mesos path of the field.
    let mut small = task("tiny", &offer, "true");
    small.resources = vec![scalar("cpus", 0.1), scalar("mem", 1.0)];
    let a = sub.call(&addr, &sub.framework_call(launch(&offer, vec![small])));
    assert_eq!(a.code, 400, "{a:?}");
    assert!(
        a.text()
            .starts_with("accept.operations[0].launch.task_infos[0].resources"),
        "{}",
        a.text()
    );
    // A negative kill grace.
    let a = bad(format!(
        r#"{{"type":"KILL","framework_id":{{"value":"{fw}"}},"kill":{{"task_id":{{"value":"t"}},
            "kill_policy":{{"grace_period":{{"nanoseconds":-1}}}}}}}}"#
    ));
    assert_eq!(a.code, 400, "{a:?}");
    assert!(
        a.text().contains("kill.kill_policy.grace_period"),
        "{}",
        a.text()
    );
    // A body over 4 MiB is refused before it is read.
    let (mut s, _) = connect(&addr);
    let auth = pki::pki().credential(pki::ADMIN).authorization();
    write!(
        s,
        "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {JSON}\r\nContent-Length: 5000000\r\nAuthorization: {auth}\r\n\r\n"
    )
    .unwrap();
    s.flush().unwrap();
    let (code, _) = read_head(&mut BufReader::new(s));
    assert_eq!(code, 413);
    // SUBSCRIBE as a principal other than the credential's.
    let mut other = subscribe_call("x", None, 1.0);
    other.subscribe.as_mut().unwrap().framework_info.principal = Some(pki::TEAM_A.into());
    let a = subscribe(&addr, JSON, &other).err().expect("refused");
    assert_eq!(a.code, 403, "{a:?}");
    assert!(
        a.text().starts_with("subscribe.framework_info.principal"),
        "{}",
        a.text()
    );
    // An invalid FrameworkInfo: the Mesos field is named.
    let a = subscribe(&addr, JSON, &subscribe_call("x", None, -1.0))
        .err()
        .expect("refused");
    assert_eq!(a.code, 400, "{a:?}");
    assert!(
        a.text()
            .starts_with("subscribe.framework_info.failover_timeout"),
        "{}",
        a.text()
    );
    // SUBSCRIBE naming a stream, and calls Agora does not serve.
    let mut req = Post::new(JSON, encode(JSON, &subscribe_call("x", None, 1.0)));
    req.stream_id = Some(&sub.stream_id);
    assert_eq!(post(&addr, &req).code, 400);
    let a = sub.call(
        &addr,
        &sub.framework_call(call(sched::call::Type::UpdateFramework)),
    );
    assert_eq!(a.code, 501, "{a:?}");

    // Through all this the offer stayed the framework's, and the subscription lives.
    let a = sub.call(
        &addr,
        &sub.framework_call(launch(&offer, vec![task("fine", &offer, "true")])),
    );
    assert_eq!(a.code, 202, "{a:?} {}", a.text());
    sub.follow(&addr, "fine", mesos::TaskState::TaskFinished);
    // An accept of an offer already used is accepted, as Mesos does, and its task is
    // dropped (TASK_LOST for a framework that is not partition-aware), saying why.
    let a = sub.call(
        &addr,
        &sub.framework_call(launch(&offer, vec![task("late", &offer, "true")])),
    );
    assert_eq!(a.code, 202, "{a:?} {}", a.text());
    let u = sub.update("late");
    assert_eq!(u.state(), mesos::TaskState::TaskLost, "{u:?}");
    assert_eq!(
        u.reason(),
        mesos::task_status::Reason::InvalidOffers,
        "{u:?}"
    );
    assert!(
        u.message
            .as_deref()
            .is_some_and(|m| m.contains(&offer.id.value)),
        "{u:?}"
    );
}

/// A leader that is deposed while a framework is subscribed ends the stream (with no
/// ERROR: the framework is to subscribe again), and sends the framework to the new leader,
/// where it subscribes again with its id.
#[test]
fn a_deposed_leader_ends_the_stream_and_the_framework_follows() {
    let rt = runtime();
    let cluster = Cluster::start(3);
    let (old, term, _) = rt.block_on(cluster.wait_leader(1, 10 * SECOND));
    let old_addr = cluster.nodes[(old - 1) as usize].addr.clone();
    let mut sub =
        subscribe(&old_addr, JSON, &subscribe_call("deposed", None, 60.0)).expect("subscribed");
    let id = sub.framework_id.clone();

    let pid = cluster.nodes[(old - 1) as usize].pid().unwrap();
    signal(pid, libc::SIGSTOP);
    // (Asked of the other two only: a paused replica's status never comes.)
    let new = wait_for("a new leader", 15 * SECOND, || {
        cluster.nodes.iter().filter(|n| n.id != old).find_map(|n| {
            let s = rt.block_on(n.status())?;
            (s.role == "leader" && s.term > term).then_some(n.id)
        })
    });
    signal(pid, libc::SIGCONT);
    let rest = sub.wait_end(10 * SECOND);
    assert!(
        rest.iter().all(|e| e.error.is_none()),
        "a deposed leader's stream ends without ERROR: {rest:?}"
    );

    let new_addr = cluster.nodes[(new - 1) as usize].addr.clone();
    let again = subscribe_call("deposed", Some(&id), 60.0);
    let a = wait_for("the old leader to know the new one", 10 * SECOND, || {
        let a = post(&old_addr, &Post::new(JSON, encode(JSON, &again)));
        (a.code == 307).then_some(a)
    });
    assert_eq!(
        a.header("location"),
        Some(format!("//{new_addr}{PATH}").as_str())
    );
    let sub = subscribe(&new_addr, JSON, &again).expect("subscribed to the new leader");
    assert_eq!(sub.framework_id, id);
}

/// A follower answers 307 to the leader's endpoint; `/version` answers anywhere.
#[test]
fn a_follower_redirects_to_the_leader() {
    let rt = runtime();
    let cluster = Cluster::start(3);
    let (leader, _, _) = rt.block_on(cluster.wait_leader(1, 10 * SECOND));
    let leader_addr = cluster.nodes[(leader - 1) as usize].addr.clone();
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let c = subscribe_call("redirected", None, 1.0);
    let a = wait_for("the follower to know the leader", 10 * SECOND, || {
        let a = post(&follower.addr, &Post::new(JSON, encode(JSON, &c)));
        (a.code != 503).then_some(a)
    });
    assert_eq!(a.code, 307, "{a:?}");
    assert_eq!(
        a.header("location"),
        Some(format!("//{leader_addr}{PATH}").as_str()),
        "{a:?}"
    );
    // Following it subscribes.
    let sub = subscribe(&leader_addr, JSON, &c).expect("subscribed at the leader");
    assert!(!sub.framework_id.is_empty());

    let (code, body) = https_get(&follower.addr, "/version").expect("/version");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["build_user"], "agora");
    assert!(
        v["build_time"].is_number() && v["git_sha"].is_string(),
        "{v}"
    );
}

/// A leader SIGKILLed under a subscribed framework with a running task: the framework
/// subscribes again with its id to the new leader (found through a survivor's 307) and
/// its task is kept, running, on the same agent.
#[test]
fn a_framework_keeps_its_tasks_through_a_leader_sigkill() {
    let rt = runtime();
    let mut cluster = Cluster::start_with(3, &["--allocation-interval", "100ms"]);
    let (old, term, _) = rt.block_on(cluster.wait_leader(1, 10 * SECOND));
    let mut agent = AgentNode::new(
        &cluster,
        "agent-1",
        &[
            "--resources",
            "cpus:2;mem:1024;disk:1000",
            "--isolation",
            "none",
        ],
    );
    agent.start();
    wait_for("the agent to register", 20 * SECOND, || agent.agent_id());
    let old_addr = cluster.node(old).addr.clone();
    let mut sub =
        subscribe(&old_addr, JSON, &subscribe_call("sigkilled", None, 60.0)).expect("subscribed");
    let id = sub.framework_id.clone();
    let offer = sub.offers().remove(0);
    let accept = sub.framework_call(launch(&offer, vec![task("kept", &offer, "sleep 600")]));
    sub.ok(&old_addr, &accept);
    sub.follow(&old_addr, "kept", mesos::TaskState::TaskRunning);

    cluster.node(old).kill();
    let rest = sub.wait_end(10 * SECOND);
    assert!(
        rest.iter().all(|e| e.error.is_none()),
        "a killed leader's stream ends without ERROR: {rest:?}"
    );
    let survivor = cluster
        .nodes
        .iter()
        .find(|n| n.id != old)
        .unwrap()
        .addr
        .clone();
    let again = subscribe_call("sigkilled", Some(&id), 60.0);
    // A survivor sends the framework on to the new leader once one is elected (a call
    // other than SUBSCRIBE asks: a follower answers 307, the leader refuses it without a
    // stream id).
    let probe = sched::Call {
        framework_id: Some(mesos::FrameworkId { value: id.clone() }),
        ..call(sched::call::Type::Revive)
    };
    let new_addr = wait_for("a new leader named by a survivor", 30 * SECOND, || {
        let a = post(&survivor, &Post::new(JSON, encode(JSON, &probe)));
        match a.code {
            307 => a
                .header("location")
                .and_then(|l| l.strip_prefix("//"))
                .and_then(|l| l.strip_suffix(PATH))
                // (Until it notices, a survivor still names the dead leader.)
                .filter(|l| *l != old_addr)
                .map(str::to_string),
            503 => None,
            _ => Some(survivor.clone()),
        }
    });
    assert_ne!(new_addr, old_addr);
    let new = cluster.nodes.iter().find(|n| n.addr == new_addr).unwrap();
    let status = rt.block_on(new.status()).expect("the new leader answers");
    assert!(status.term > term, "a later term: {status:?}");
    let mut sub = subscribe(&new_addr, JSON, &again).expect("subscribed to the new leader");
    assert_eq!(sub.framework_id, id);
    sub.ok(
        &new_addr,
        &sub.framework_call(sched::Call {
            reconcile: Some(sched::call::Reconcile { tasks: vec![] }),
            ..call(sched::call::Type::Reconcile)
        }),
    );
    let u = sub.next(10 * SECOND, |e| {
        let s = &e.update.as_ref()?.status;
        (s.task_id.value == "kept" && s.uuid.is_none()).then(|| s.clone())
    });
    let u = u.unwrap_or_else(|| panic!("no reconciliation of the kept task: {:?}", sub.seen));
    assert_eq!(u.state(), mesos::TaskState::TaskRunning, "{u:?}");
    assert_eq!(u.agent_id.as_ref(), Some(&offer.agent_id));
}
