//! Mesos' v1 operator API (`POST /api/v1`) and the v0 endpoints Mesos tooling polls
//! (`/master/state`, `/state.json`, `/master/redirect`, `/metrics/snapshot`) against real
//! masters and a real agent, spoken as Mesos tooling speaks them: HTTP/1.1 over TLS with
//! `Authorization: Basic`, JSON or protobuf bodies, and a chunked SUBSCRIBE response of
//! RecordIO records. The client is written here on a plain TLS socket; the framework whose
//! task the operator watches speaks Mesos' scheduler API through it too.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::v1::master as op;
use agora_mesos_proto::v1::scheduler as sched;
use agora_mesos_proto::{recordio, MesosJson};
use common::*;
use prost::Message;

const SECOND: Duration = Duration::from_secs(1);
const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(addr: &str) -> (Tls, TcpStream) {
    let tls = agora_security::tls::ClientTls::load(&pki::pki().ca_path(), None).unwrap();
    let config = Arc::new(tls.rustls_config().unwrap());
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(30 * SECOND)).unwrap();
    let handle = tcp.try_clone().unwrap();
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    (rustls::StreamOwned::new(conn, tcp), handle)
}

/// One POST: path, body type, the answer type accepted, stream id, principal.
struct Post<'a> {
    path: &'a str,
    content_type: &'a str,
    accept: Option<&'a str>,
    stream_id: Option<&'a str>,
    principal: Option<&'a str>,
    body: Vec<u8>,
}

impl<'a> Post<'a> {
    fn new(path: &'a str, content_type: &'a str, body: Vec<u8>) -> Self {
        Post {
            path,
            content_type,
            accept: None,
            stream_id: None,
            principal: Some(pki::ADMIN),
            body,
        }
    }

    fn write(&self, s: &mut impl Write, addr: &str, close: bool) {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.path,
            self.content_type,
            self.body.len()
        );
        if let Some(a) = self.accept {
            head.push_str(&format!("Accept: {a}\r\n"));
        }
        if let Some(id) = self.stream_id {
            head.push_str(&format!("Mesos-Stream-Id: {id}\r\n"));
        }
        if let Some(p) = self.principal {
            let auth = pki::pki().credential(p).authorization();
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
        let _ = r.read_to_end(&mut a.body);
    }
    a
}

fn post(addr: &str, req: &Post) -> Answer {
    let (mut s, _) = connect(addr);
    req.write(&mut s, addr, true);
    let mut r = BufReader::new(s);
    let (code, headers) = read_head(&mut r);
    read_answer(&mut r, code, headers)
}

/// A GET over TLS as `principal` (None: no credential), its whole answer.
fn get(addr: &str, path: &str, principal: Option<&str>) -> Answer {
    let (mut s, _) = connect(addr);
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(p) = principal {
        let auth = pki::pki().credential(p).authorization();
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let (code, headers) = read_head(&mut r);
    read_answer(&mut r, code, headers)
}

fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let a = get(addr, path, Some(pki::ADMIN));
    assert_eq!(a.code, 200, "{path}: {a:?}");
    assert_eq!(a.header("content-type"), Some(JSON), "{path}");
    serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", a.text()))
}

fn call(kind: op::call::Type) -> op::Call {
    let mut c = op::Call::default();
    c.set_type(kind);
    c
}

fn encode<M: Message + MesosJson>(encoding: &str, m: &M) -> Vec<u8> {
    if encoding == JSON {
        m.to_json_vec().unwrap()
    } else {
        m.encode_to_vec()
    }
}

/// An operator call in `encoding` as `principal`: the raw answer.
fn operator_as(addr: &str, encoding: &str, c: &op::Call, principal: Option<&str>) -> Answer {
    let mut req = Post::new("/api/v1", encoding, encode(encoding, c));
    req.accept = Some(encoding);
    req.principal = principal;
    post(addr, &req)
}

/// An operator call that must answer 200 with a Response of its type, in `encoding`.
fn operator(addr: &str, encoding: &str, c: &op::Call) -> op::Response {
    let a = operator_as(addr, encoding, c, Some(pki::ADMIN));
    assert_eq!(a.code, 200, "{:?}: {a:?} {}", c.r#type(), a.text());
    assert_eq!(a.header("content-type"), Some(encoding), "{a:?}");
    let r = if encoding == JSON {
        op::Response::from_json(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.text()))
    } else {
        op::Response::decode(a.body.as_slice()).unwrap()
    };
    assert_eq!(
        r.r#type().as_str_name(),
        c.r#type().as_str_name(),
        "the answer's type is the call's"
    );
    r
}

/// An operator's SUBSCRIBE stream, read by a thread of its own.
struct OperatorStream {
    events: mpsc::Receiver<op::Event>,
    socket: TcpStream,
    pending: Vec<op::Event>,
    seen: Vec<String>,
}

impl Drop for OperatorStream {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

fn operator_subscribe(
    addr: &str,
    encoding: &'static str,
) -> (op::event::Subscribed, OperatorStream) {
    let (mut s, socket) = connect(addr);
    let mut req = Post::new(
        "/api/v1",
        encoding,
        encode(encoding, &call(op::call::Type::Subscribe)),
    );
    req.accept = Some(encoding);
    req.write(&mut s, addr, false);
    let mut r = BufReader::new(s);
    let (code, headers) = read_head(&mut r);
    if code != 200 {
        panic!("SUBSCRIBE: {:?}", read_answer(&mut r, code, headers));
    }
    let head = Answer {
        code,
        headers,
        body: vec![],
    };
    assert_eq!(head.header("content-type"), Some(encoding), "{head:?}");
    assert!(
        head.header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked")),
        "{head:?}"
    );
    let (tx, events) = mpsc::channel();
    std::thread::spawn(move || {
        let mut decoder = recordio::Decoder::default();
        while let Ok(Some(chunk)) = read_chunk(&mut r) {
            for record in decoder.decode(&chunk).expect("RecordIO") {
                let e = if encoding == JSON {
                    op::Event::from_json(&record).unwrap_or_else(|e| {
                        panic!("event {}: {e}", String::from_utf8_lossy(&record))
                    })
                } else {
                    op::Event::decode(record.as_slice()).expect("protobuf event")
                };
                if tx.send(e).is_err() {
                    return;
                }
            }
        }
    });
    let stream = OperatorStream {
        events,
        socket,
        pending: vec![],
        seen: vec![],
    };
    let first = stream
        .events
        .recv_timeout(10 * SECOND)
        .expect("a first event");
    assert_eq!(first.r#type(), op::event::Type::Subscribed, "{first:?}");
    (first.subscribed.expect("subscribed"), stream)
}

impl OperatorStream {
    /// Waits for the stream to end (the master closed it).
    fn wait_end(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => self.seen.push(e.r#type().as_str_name().to_string()),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the stream did not end; seen {:?}", self.seen)
                }
            }
        }
    }

    /// The oldest event `pick` takes within `timeout`; others stay pending.
    fn next<T>(&mut self, timeout: Duration, mut pick: impl FnMut(&op::Event) -> Option<T>) -> T {
        if let Some(i) = self.pending.iter().position(|e| pick(e).is_some()) {
            let e = self.pending.remove(i);
            return pick(&e).unwrap();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.r#type().as_str_name().to_string());
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                    self.pending.push(e);
                }
                Err(e) => panic!(
                    "no such event within {timeout:?} ({e}); seen {:?}",
                    self.seen
                ),
            }
        }
    }
}

// --- A Mesos framework, on the scheduler API, whose task the operator watches. ---

struct Framework {
    id: String,
    stream_id: String,
    events: mpsc::Receiver<sched::Event>,
    socket: TcpStream,
    pending: Vec<sched::Event>,
}

impl Drop for Framework {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

fn sched_call(kind: sched::call::Type) -> sched::Call {
    let mut c = sched::Call::default();
    c.set_type(kind);
    c
}

impl Framework {
    fn subscribe(addr: &str, name: &str) -> Framework {
        let c = sched::Call {
            subscribe: Some(sched::call::Subscribe {
                framework_info: mesos::FrameworkInfo {
                    user: "root".into(),
                    name: name.into(),
                    failover_timeout: Some(60.0),
                    ..Default::default()
                },
                suppressed_roles: vec![],
            }),
            ..sched_call(sched::call::Type::Subscribe)
        };
        let (mut s, socket) = connect(addr);
        Post::new("/api/v1/scheduler", JSON, c.to_json_vec().unwrap()).write(&mut s, addr, false);
        let mut r = BufReader::new(s);
        let (code, headers) = read_head(&mut r);
        let head = Answer {
            code,
            headers,
            body: vec![],
        };
        assert_eq!(code, 200, "{head:?}");
        let stream_id = head.header("mesos-stream-id").unwrap().to_string();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            let mut decoder = recordio::Decoder::default();
            while let Ok(Some(chunk)) = read_chunk(&mut r) {
                for record in decoder.decode(&chunk).expect("RecordIO") {
                    if tx.send(sched::Event::from_json(&record).unwrap()).is_err() {
                        return;
                    }
                }
            }
        });
        let mut f = Framework {
            id: String::new(),
            stream_id,
            events,
            socket,
            pending: vec![],
        };
        f.id = f.next(|e| e.subscribed.as_ref().map(|s| s.framework_id.value.clone()));
        f
    }

    fn next<T>(&mut self, mut pick: impl FnMut(&sched::Event) -> Option<T>) -> T {
        if let Some(i) = self.pending.iter().position(|e| pick(e).is_some()) {
            let e = self.pending.remove(i);
            return pick(&e).unwrap();
        }
        loop {
            let e = self
                .events
                .recv_timeout(15 * SECOND)
                .expect("a scheduler event");
            if let Some(t) = pick(&e) {
                return t;
            }
            self.pending.push(e);
        }
    }

    fn ok(&self, addr: &str, c: sched::Call) {
        let c = sched::Call {
            framework_id: Some(mesos::FrameworkId {
                value: self.id.clone(),
            }),
            ..c
        };
        let mut req = Post::new("/api/v1/scheduler", JSON, c.to_json_vec().unwrap());
        req.stream_id = Some(&self.stream_id);
        let a = post(addr, &req);
        assert_eq!(a.code, 202, "{:?}: {a:?} {}", c.r#type(), a.text());
    }

    /// Launches a task on the first offer.
    fn launch(&mut self, addr: &str, task: &str, command: &str) {
        let offer = self.next(|e| e.offers.as_ref().and_then(|o| o.offers.first().cloned()));
        let scalar = |name: &str, value: f64| {
            let mut r = mesos::Resource {
                name: name.into(),
                scalar: Some(mesos::value::Scalar { value }),
                ..Default::default()
            };
            r.set_type(mesos::value::Type::Scalar);
            r
        };
        let mut operation = mesos::offer::Operation {
            launch: Some(mesos::offer::operation::Launch {
                task_infos: vec![mesos::TaskInfo {
                    name: task.into(),
                    task_id: mesos::TaskId { value: task.into() },
                    agent_id: offer.agent_id.clone(),
                    resources: vec![scalar("cpus", 0.5), scalar("mem", 64.0)],
                    command: Some(mesos::CommandInfo {
                        value: Some(command.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        };
        operation.set_type(mesos::offer::operation::Type::Launch);
        self.ok(
            addr,
            sched::Call {
                accept: Some(sched::call::Accept {
                    offer_ids: vec![offer.id],
                    operations: vec![operation],
                    filters: None,
                }),
                ..sched_call(sched::call::Type::Accept)
            },
        );
    }

    /// Follows `task` to `state`, acknowledging each update.
    fn follow(&mut self, addr: &str, task: &str, state: mesos::TaskState) {
        loop {
            let s = self.next(|e| {
                e.update
                    .as_ref()
                    .map(|u| u.status.clone())
                    .filter(|s| s.task_id.value == task)
            });
            if let Some(uuid) = &s.uuid {
                self.ok(
                    addr,
                    sched::Call {
                        acknowledge: Some(sched::call::Acknowledge {
                            agent_id: s.agent_id.clone().unwrap(),
                            task_id: s.task_id.clone(),
                            uuid: uuid.clone(),
                        }),
                        ..sched_call(sched::call::Type::Acknowledge)
                    },
                );
            }
            if s.state() == state {
                return;
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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

fn scalar_of(resources: &[mesos::Resource], name: &str) -> Option<f64> {
    resources
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| r.scalar.as_ref())
        .map(|s| s.value)
}

fn metric(m: &serde_json::Value, name: &str) -> f64 {
    m[name]
        .as_f64()
        .unwrap_or_else(|| panic!("no metric {name} in {m}"))
}

/// Every operator call in JSON, GET_STATE and SUBSCRIBE in protobuf too, the event stream
/// following a framework's task and an agent's life, and the v0 endpoints' fields.
#[test]
fn operator_calls_events_and_v0_endpoints() {
    use op::call::Type;
    let rt = runtime();
    let cluster = Cluster::start_with(
        1,
        &[
            "--allocation-interval",
            "100ms",
            "--agent-ping-timeout",
            "1s",
            "--max-agent-ping-timeouts",
            "3",
        ],
    );
    rt.block_on(cluster.wait_leader(1, 10 * SECOND));
    let addr = cluster.nodes[0].addr.clone();

    // About this master.
    let r = operator(&addr, JSON, &call(Type::GetHealth));
    assert!(r.get_health.unwrap().healthy);
    let r = operator(&addr, JSON, &call(Type::GetVersion));
    assert_eq!(
        r.get_version.unwrap().version_info.version,
        env!("CARGO_PKG_VERSION")
    );
    let flags = operator(&addr, JSON, &call(Type::GetFlags))
        .get_flags
        .unwrap()
        .flags;
    let flag = |name: &str| {
        flags
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.value.clone())
            .unwrap_or_else(|| panic!("no flag {name}: {flags:?}"))
    };
    assert_eq!(flag("allocation_interval"), "0.1secs");
    assert_eq!(flag("advertise"), addr);
    assert_eq!(flag("log_level"), "info,openraft=error");
    let r = operator(&addr, JSON, &call(Type::GetLoggingLevel));
    assert_eq!(r.get_logging_level.unwrap().level, 0);
    // glog verbosity 1 (debug) for a second on this replica, then back.
    let mut set = call(Type::SetLoggingLevel);
    set.set_logging_level = Some(op::call::SetLoggingLevel {
        level: 1,
        duration: mesos::DurationInfo {
            nanoseconds: 1_000_000_000,
        },
    });
    let a = operator_as(&addr, JSON, &set, Some(pki::ADMIN));
    assert_eq!(a.code, 200, "{a:?} {}", a.text());
    let r = operator(&addr, JSON, &call(Type::GetLoggingLevel));
    assert_eq!(r.get_logging_level.unwrap().level, 1);
    assert_eq!(get_json(&addr, "/logging/level")["level"], "debug");
    wait_for("the level to go back", 5 * SECOND, || {
        let r = operator(&addr, JSON, &call(Type::GetLoggingLevel));
        (r.get_logging_level.unwrap().level == 0).then_some(())
    });
    // Only for principals the `set_log_level` ACL lets.
    let a = operator_as(&addr, JSON, &set, Some(pki::TEAM_A));
    assert_eq!(a.code, 403, "{a:?} {}", a.text());
    let master = operator(&addr, JSON, &call(Type::GetMaster))
        .get_master
        .unwrap();
    let info = master.master_info.expect("master_info");
    assert_eq!(
        info.port.to_string(),
        addr.rsplit_once(':').unwrap().1,
        "{info:?}"
    );
    assert!(master.start_time.is_some_and(|t| t > 1.5e9));
    assert!(master
        .elected_time
        .is_some_and(|t| t >= master.start_time.unwrap()));

    // Two operators follow the cluster from before anything is in it: one in JSON, one
    // in protobuf.
    let (subscribed, mut json_ops) = operator_subscribe(&addr, JSON);
    assert_eq!(subscribed.heartbeat_interval_seconds, Some(15.0));
    let empty = subscribed.get_state.expect("get_state");
    assert!(empty.get_agents.unwrap().agents.is_empty());
    let (_, mut proto_ops) = operator_subscribe(&addr, PROTOBUF);

    let mut agent = AgentNode::new(
        &cluster,
        "agent-1",
        &[
            "--resources",
            "cpus:2;mem:1024;disk:1000;ports:[31000-31099]",
            "--isolation",
            "none",
            "--attributes",
            "rack:3;os:linux",
        ],
    );
    agent.start();
    let agent_id = wait_for("the agent", 20 * SECOND, || agent.agent_id());
    for ops in [&mut json_ops, &mut proto_ops] {
        let added = ops.next(10 * SECOND, |e| e.agent_added.clone());
        let a = &added.agent;
        assert_eq!(a.agent_info.id.as_ref().unwrap().value, agent_id);
        assert!(a.active);
        assert_eq!(scalar_of(&a.total_resources, "cpus"), Some(2.0));
    }

    // A Mesos framework launches a task that keeps running.
    let mut fw = Framework::subscribe(&addr, "watched");
    for ops in [&mut json_ops, &mut proto_ops] {
        let f = ops
            .next(10 * SECOND, |e| e.framework_added.clone())
            .framework;
        assert_eq!(f.framework_info.id.as_ref().unwrap().value, fw.id);
        assert_eq!(f.framework_info.name, "watched");
        assert!(f.active && f.connected);
    }
    fw.launch(&addr, "sleeper", "sleep 120");
    fw.follow(&addr, "sleeper", mesos::TaskState::TaskRunning);
    for ops in [&mut json_ops, &mut proto_ops] {
        let t = ops.next(10 * SECOND, |e| e.task_added.clone()).task;
        assert_eq!(t.task_id.value, "sleeper");
        assert_eq!(t.framework_id.value, fw.id);
        assert_eq!(t.agent_id.value, agent_id);
        assert_eq!(t.state(), mesos::TaskState::TaskStaging);
        assert_eq!(scalar_of(&t.resources, "cpus"), Some(0.5));
        let running = ops.next(10 * SECOND, |e| {
            e.task_updated
                .clone()
                .filter(|u| u.state() == mesos::TaskState::TaskRunning)
        });
        assert_eq!(running.framework_id.value, fw.id);
        assert_eq!(running.status.task_id.value, "sleeper");
        assert_eq!(running.status.state(), mesos::TaskState::TaskRunning);
        assert!(running.status.timestamp.is_some_and(|t| t > 1.5e9));
    }

    // The state, in JSON and in protobuf.
    for encoding in [JSON, PROTOBUF] {
        let s = operator(&addr, encoding, &call(Type::GetState))
            .get_state
            .unwrap();
        let tasks = s.get_tasks.unwrap();
        assert_eq!(tasks.tasks.len(), 1, "{encoding}: {tasks:?}");
        assert_eq!(tasks.tasks[0].state(), mesos::TaskState::TaskRunning);
        assert_eq!(tasks.tasks[0].statuses.len(), 1);
        let frameworks = s.get_frameworks.unwrap().frameworks;
        assert_eq!(frameworks.len(), 1);
        assert_eq!(
            scalar_of(&frameworks[0].allocated_resources, "cpus"),
            Some(0.5)
        );
        let agents = s.get_agents.unwrap().agents;
        assert_eq!(agents.len(), 1);
        assert_eq!(scalar_of(&agents[0].allocated_resources, "cpus"), Some(0.5));
        let attributes = &agents[0].agent_info.attributes;
        assert!(
            attributes
                .iter()
                .any(|a| a.name == "rack" && a.scalar.as_ref().is_some_and(|s| s.value == 3.0)),
            "{attributes:?}"
        );
        // Command tasks run under Agora's built-in executor, which Mesos does not list.
        assert!(s.get_executors.unwrap().executors.is_empty());
    }
    let agents = operator(&addr, JSON, &call(Type::GetAgents))
        .get_agents
        .unwrap();
    assert!(!agents.agents[0].agent_info.hostname.is_empty());
    let frameworks = operator(&addr, JSON, &call(Type::GetFrameworks))
        .get_frameworks
        .unwrap();
    assert_eq!(frameworks.frameworks[0].framework_info.user, "root");
    let tasks = operator(&addr, JSON, &call(Type::GetTasks))
        .get_tasks
        .unwrap();
    assert_eq!(tasks.tasks[0].task_id.value, "sleeper");
    let executors = operator(&addr, JSON, &call(Type::GetExecutors))
        .get_executors
        .unwrap();
    assert!(executors.executors.is_empty());
    let roles = operator(&addr, JSON, &call(Type::GetRoles))
        .get_roles
        .unwrap()
        .roles;
    let star = roles.iter().find(|r| r.name == "*").expect("role *");
    assert_eq!(star.frameworks.len(), 1);
    assert_eq!(star.weight, 1.0);
    assert_eq!(scalar_of(&star.resources, "cpus"), Some(0.5));

    // Weights: set, then read back, in the roles too.
    let update = op::Call {
        update_weights: Some(op::call::UpdateWeights {
            weight_infos: vec![
                mesos::WeightInfo {
                    weight: 2.5,
                    role: Some("web".into()),
                },
                mesos::WeightInfo {
                    weight: 0.5,
                    role: Some("batch".into()),
                },
            ],
        }),
        ..call(Type::UpdateWeights)
    };
    let a = operator_as(&addr, JSON, &update, Some(pki::ADMIN));
    assert_eq!(a.code, 200, "{a:?} {}", a.text());
    let weights = operator(&addr, JSON, &call(Type::GetWeights))
        .get_weights
        .unwrap()
        .weight_infos;
    let weight = |role: &str| {
        weights
            .iter()
            .find(|w| w.role.as_deref() == Some(role))
            .map(|w| w.weight)
    };
    assert_eq!((weight("web"), weight("batch")), (Some(2.5), Some(0.5)));
    let roles = operator(&addr, JSON, &call(Type::GetRoles))
        .get_roles
        .unwrap()
        .roles;
    assert!(
        roles.iter().any(|r| r.name == "web" && r.weight == 2.5),
        "{roles:?}"
    );

    // A principal the ACLs do not let update weights is refused as gRPC refuses it; no
    // credential at all is 401.
    let a = operator_as(&addr, JSON, &update, Some(pki::TEAM_A));
    assert_eq!(a.code, 403, "{a:?}");
    assert!(
        a.text().contains("update the weight of role"),
        "{}",
        a.text()
    );
    // ... in the very words of the gRPC Operator's refusal.
    let grpc = rt.block_on(async {
        let channel = pki::pki()
            .client_security(Some(pki::TEAM_A))
            .connect_lazy(&addr, 2 * SECOND)
            .unwrap();
        agora_proto::v1::operator_client::OperatorClient::new(channel)
            .set_weight(agora_proto::v1::SetWeightRequest {
                role: "web".into(),
                weight: 2.5,
            })
            .await
            .unwrap_err()
    });
    assert_eq!(grpc.code(), tonic::Code::PermissionDenied);
    assert_eq!(a.text(), grpc.message());
    let a = operator_as(&addr, JSON, &update, None);
    assert_eq!(a.code, 401, "{a:?}");
    let weights = operator(&addr, JSON, &call(Type::GetWeights))
        .get_weights
        .unwrap()
        .weight_infos;
    assert_eq!(weights.len(), 2, "nothing changed: {weights:?}");

    // Metrics, by Mesos' names.
    let m = operator(&addr, JSON, &call(Type::GetMetrics))
        .get_metrics
        .unwrap()
        .metrics;
    let value = |name: &str| {
        m.iter()
            .find(|x| x.name == name)
            .and_then(|x| x.value)
            .unwrap_or_else(|| panic!("no {name}: {m:?}"))
    };
    assert_eq!(value("master/elected"), 1.0);
    assert_eq!(value("master/tasks_running"), 1.0);
    let snapshot = get_json(&addr, "/metrics/snapshot");
    for (name, expected) in [
        ("master/elected", 1.0),
        ("master/tasks_running", 1.0),
        ("master/tasks_staging", 0.0),
        ("master/slaves_active", 1.0),
        ("master/slaves_connected", 1.0),
        ("master/frameworks_active", 1.0),
        ("master/cpus_total", 2.0),
        ("master/cpus_used", 0.5),
        ("master/cpus_percent", 0.25),
        ("master/mem_total", 1024.0),
        ("master/mem_used", 64.0),
        ("master/tasks_finished", 0.0),
        ("master/tasks_killed", 0.0),
        ("master/tasks_failed", 0.0),
        ("master/tasks_lost", 0.0),
    ] {
        assert_eq!(metric(&snapshot, name), expected, "{name}: {snapshot}");
    }
    assert!(metric(&snapshot, "master/uptime_secs") > 0.0);

    // state.json, as Mesos tooling reads it.
    for path in ["/master/state", "/state.json"] {
        let s = get_json(&addr, path);
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"), "{path}");
        assert_eq!(s["leader"], format!("master@{addr}"), "{path}");
        assert_eq!(s["pid"], format!("master@{addr}"), "{path}");
        assert_eq!(s["hostname"], "127.0.0.1", "{path}");
        assert_eq!(s["activated_slaves"], 1, "{path}");
        assert!(s["elected_time"].as_f64().unwrap() > 1.5e9, "{s}");
        let slave = &s["slaves"][0];
        assert_eq!(slave["id"], agent_id);
        assert_eq!(slave["resources"]["cpus"], 2.0);
        assert_eq!(slave["resources"]["ports"], "[31000-31099]");
        assert_eq!(slave["used_resources"]["cpus"], 0.5);
        assert_eq!(slave["attributes"]["rack"], 3.0);
        assert_eq!(slave["attributes"]["os"], "linux");
        assert_eq!(slave["active"], true);
        let f = &s["frameworks"][0];
        assert_eq!(f["id"], fw.id.as_str());
        assert_eq!(f["name"], "watched");
        assert_eq!(f["active"], true);
        assert_eq!(f["used_resources"]["mem"], 64.0);
        let t = &f["tasks"][0];
        assert_eq!(t["id"], "sleeper");
        assert_eq!(t["state"], "TASK_RUNNING");
        assert_eq!(t["slave_id"], agent_id);
        assert_eq!(t["framework_id"], fw.id.as_str());
        assert_eq!(t["resources"]["cpus"], 0.5);
        assert_eq!(t["statuses"][0]["state"], "TASK_RUNNING");
        assert_eq!(f["completed_tasks"].as_array().unwrap().len(), 0);
        assert!(s["completed_frameworks"].as_array().unwrap().is_empty());
        assert_eq!(s["flags"]["allocation_interval"], "0.1secs");
    }

    // The task is killed: an update; then it is among the completed tasks.
    fw.ok(
        &addr,
        sched::Call {
            kill: Some(sched::call::Kill {
                task_id: mesos::TaskId {
                    value: "sleeper".into(),
                },
                agent_id: None,
                kill_policy: None,
            }),
            ..sched_call(sched::call::Type::Kill)
        },
    );
    fw.follow(&addr, "sleeper", mesos::TaskState::TaskKilled);
    for ops in [&mut json_ops, &mut proto_ops] {
        let killed = ops.next(10 * SECOND, |e| {
            e.task_updated
                .clone()
                .filter(|u| u.state() == mesos::TaskState::TaskKilled)
        });
        assert_eq!(killed.status.task_id.value, "sleeper");
    }
    let s = get_json(&addr, "/master/state");
    assert_eq!(
        s["frameworks"][0]["completed_tasks"][0]["state"], "TASK_KILLED",
        "{s}"
    );
    let snapshot = get_json(&addr, "/metrics/snapshot");
    assert_eq!(metric(&snapshot, "master/tasks_killed"), 1.0);
    assert_eq!(metric(&snapshot, "master/tasks_running"), 0.0);
    assert_eq!(metric(&snapshot, "master/cpus_used"), 0.0);

    // The framework tears itself down: removed.
    fw.ok(&addr, sched_call(sched::call::Type::Teardown));
    for ops in [&mut json_ops, &mut proto_ops] {
        let removed = ops.next(10 * SECOND, |e| e.framework_removed.clone());
        assert_eq!(removed.framework_info.id.unwrap().value, fw.id);
    }
    let s = get_json(&addr, "/state.json");
    assert_eq!(s["completed_frameworks"][0]["id"], fw.id.as_str(), "{s}");

    // The agent dies: after its missed pings it is removed.
    agent.kill();
    let snapshot = wait_for("the agent to be unreachable", 20 * SECOND, || {
        let s = get_json(&addr, "/metrics/snapshot");
        (metric(&s, "master/slaves_unreachable") == 1.0).then_some(s)
    });
    assert_eq!(metric(&snapshot, "master/slaves_active"), 0.0);
    for ops in [&mut json_ops, &mut proto_ops] {
        let removed = ops.next(10 * SECOND, |e| e.agent_removed.clone());
        assert_eq!(removed.agent_id.value, agent_id);
    }

    // Heartbeats keep the streams alive.
    for ops in [&mut json_ops, &mut proto_ops] {
        ops.next(20 * SECOND, |e| {
            (e.r#type() == op::event::Type::Heartbeat).then_some(())
        });
    }
}

/// Calls Agora does not serve, and malformed ones, are refused with 400 naming the call or
/// the field; the master serves on.
#[test]
fn bad_operator_calls_are_refused_naming_the_problem() {
    use op::call::Type;
    let rt = runtime();
    let cluster = Cluster::start(1);
    rt.block_on(cluster.wait_leader(1, 10 * SECOND));
    let addr = cluster.nodes[0].addr.clone();
    let raw = |content_type: &str, body: &[u8]| {
        post(&addr, &Post::new("/api/v1", content_type, body.to_vec()))
    };

    for (kind, name) in [
        (Type::ReserveResources, "RESERVE_RESOURCES"),
        (Type::Teardown, "TEARDOWN"),
        (Type::ListFiles, "LIST_FILES"),
    ] {
        let a = operator_as(&addr, JSON, &call(kind), Some(pki::ADMIN));
        assert_eq!(a.code, 400, "{name}: {a:?}");
        assert!(a.text().contains(name), "{name}: {}", a.text());
    }
    let a = operator_as(&addr, JSON, &call(Type::SetLoggingLevel), Some(pki::ADMIN));
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("set_logging_level"), "{}", a.text());
    let a = raw(JSON, br#"{"type":"GET_STATE""#);
    assert_eq!(a.code, 400, "{a:?}");
    assert!(
        a.text().starts_with("Failed to parse body into Call"),
        "{}",
        a.text()
    );
    let a = raw(JSON, br#"{"type":"NOT_A_CALL"}"#);
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("type"), "{}", a.text());
    let a = raw(JSON, br#"{}"#);
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("'type'"), "{}", a.text());
    let a = raw(PROTOBUF, &[0x08, 0xe7, 0x07]);
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("999 is not a call type"), "{}", a.text());
    let a = raw(PROTOBUF, &[0xff, 0xff, 0xff]);
    assert_eq!(a.code, 400, "{a:?}");
    let a = raw("text/plain", b"GET_STATE");
    assert_eq!(a.code, 415, "{a:?}");
    let a = raw(
        JSON,
        br#"{"type":"UPDATE_WEIGHTS","update_weights":{"weight_infos":[{"weight":"heavy","role":"r"}]}}"#,
    );
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("weight"), "{}", a.text());
    let a = raw(
        JSON,
        br#"{"type":"UPDATE_WEIGHTS","update_weights":{"weight_infos":[{"weight":2}]}}"#,
    );
    assert_eq!(a.code, 400, "{a:?}");
    assert!(
        a.text().contains("update_weights.weight_infos[0].role"),
        "{}",
        a.text()
    );
    let a = raw(
        JSON,
        br#"{"type":"UPDATE_WEIGHTS","update_weights":{"weight_infos":[{"weight":1,"role":"a"},{"weight":-1,"role":"b"}]}}"#,
    );
    assert_eq!(a.code, 400, "{a:?}");
    assert!(
        a.text().contains("update_weights.weight_infos[1].weight"),
        "{}",
        a.text()
    );
    let a = raw(JSON, br#"{"type":"UPDATE_WEIGHTS"}"#);
    assert_eq!(a.code, 400, "{a:?}");
    assert!(a.text().contains("update_weights"), "{}", a.text());
    // A body over the bound is refused before it is read.
    let (mut s, _) = connect(&addr);
    let auth = pki::pki().credential(pki::ADMIN).authorization();
    write!(
        s,
        "POST /api/v1 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {JSON}\r\nContent-Length: 5000000\r\nAuthorization: {auth}\r\n\r\n"
    )
    .unwrap();
    s.flush().unwrap();
    let (code, _) = read_head(&mut BufReader::new(s));
    assert_eq!(code, 413);
    // Nothing was set, and the master still answers.
    let w = operator(&addr, JSON, &call(Type::GetWeights))
        .get_weights
        .unwrap();
    assert!(w.weight_infos.is_empty(), "{w:?}");
}

/// A follower sends callers of the leader's state to the leader, as a Mesos master does;
/// calls about itself it answers.
#[test]
fn a_follower_redirects_to_the_leader() {
    use op::call::Type;
    let rt = runtime();
    let cluster = Cluster::start(3);
    let (leader, _, _) = rt.block_on(cluster.wait_leader(1, 10 * SECOND));
    let leader_addr = cluster.nodes[(leader - 1) as usize].addr.clone();
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let a = wait_for("the follower to know the leader", 10 * SECOND, || {
        let a = operator_as(
            &follower.addr,
            JSON,
            &call(Type::GetState),
            Some(pki::ADMIN),
        );
        (a.code != 503).then_some(a)
    });
    assert_eq!(a.code, 307, "{a:?}");
    assert_eq!(
        a.header("location"),
        Some(format!("//{leader_addr}/api/v1").as_str())
    );
    for kind in [Type::Subscribe, Type::UpdateWeights, Type::GetWeights] {
        let a = operator_as(&follower.addr, PROTOBUF, &call(kind), Some(pki::ADMIN));
        assert_eq!(a.code, 307, "{kind:?}: {a:?}");
    }
    // Following it answers.
    let s = operator(&leader_addr, JSON, &call(Type::GetState));
    assert!(s.get_state.is_some());
    // About itself a follower answers.
    let r = operator(&follower.addr, JSON, &call(Type::GetHealth));
    assert!(r.get_health.unwrap().healthy);
    let snapshot = get_json(&follower.addr, "/metrics/snapshot");
    assert_eq!(metric(&snapshot, "master/elected"), 0.0);
    assert_eq!(
        metric(
            &get_json(&leader_addr, "/metrics/snapshot"),
            "master/elected"
        ),
        1.0
    );

    // The v0 endpoints.
    for addr in [&follower.addr, &leader_addr] {
        let a = get(addr, "/master/redirect", None);
        assert_eq!(a.code, 307, "{a:?}");
        assert_eq!(
            a.header("location"),
            Some(format!("//{leader_addr}").as_str())
        );
    }
    let a = get(&follower.addr, "/master/state", Some(pki::ADMIN));
    assert_eq!(a.code, 307, "{a:?}");
    assert_eq!(
        a.header("location"),
        Some(format!("//{leader_addr}/master/state").as_str())
    );
    let s = get_json(&leader_addr, "/master/state");
    assert_eq!(s["leader"], format!("master@{leader_addr}"));

    // A leader that is deposed ends its operators' streams, so they follow the new one.
    let (_, mut ops) = operator_subscribe(&leader_addr, JSON);
    let term = rt
        .block_on(cluster.nodes[(leader - 1) as usize].status())
        .unwrap()
        .term;
    let pid = cluster.nodes[(leader - 1) as usize].pid().unwrap();
    signal(pid, libc::SIGSTOP);
    // (Asked of the other two only: a paused replica's status never comes.)
    let new = wait_for("a new leader", 15 * SECOND, || {
        cluster
            .nodes
            .iter()
            .filter(|n| n.id != leader)
            .find_map(|n| {
                let s = rt.block_on(n.status())?;
                (s.role == "leader" && s.term > term).then_some(n.id)
            })
    });
    signal(pid, libc::SIGCONT);
    ops.wait_end(10 * SECOND);
    let new_addr = cluster.nodes[(new - 1) as usize].addr.clone();
    let a = wait_for("the old leader to know the new one", 10 * SECOND, || {
        let a = operator_as(&leader_addr, JSON, &call(Type::Subscribe), Some(pki::ADMIN));
        (a.code == 307).then_some(a)
    });
    assert_eq!(
        a.header("location"),
        Some(format!("//{new_addr}/api/v1").as_str())
    );
    let (subscribed, _) = operator_subscribe(&new_addr, JSON);
    assert!(subscribed.get_state.is_some());
}

/// An operator that stops reading is dropped once it falls too far behind, not buffered
/// without end: its stream ends, short of the events, and the master serves on.
#[test]
fn a_subscriber_that_does_not_read_is_dropped() {
    use op::call::Type;
    const REGISTRATIONS: usize = 16_000;
    let rt = runtime();
    let cluster = Cluster::start(1);
    rt.block_on(cluster.wait_leader(1, 10 * SECOND));
    let addr = cluster.nodes[0].addr.clone();
    let (mut s, socket) = connect(&addr);
    // A small receive window, as a slow reader's: what the kernel holds for it is bounded
    // whatever the host's defaults.
    {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 32 * 1024;
        // SAFETY: setsockopt on a socket this test owns, with a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUF");
    }
    let mut req = Post::new("/api/v1", JSON, encode(JSON, &call(Type::Subscribe)));
    req.accept = Some(JSON);
    req.write(&mut s, &addr, false);
    let mut r = BufReader::new(s);
    let (code, _) = read_head(&mut r);
    assert_eq!(code, 200);

    // Every (re-)registration of an agent is an AGENT_ADDED; the operator reads none of
    // them meanwhile.
    let client = Arc::new({
        let _runtime = rt.enter();
        cluster.client()
    });
    // (A registration the loaded master answers late is not the point: counted, not fatal.)
    let registered: usize = rt.block_on(async {
        let workers: Vec<_> = (0..16)
            .map(|w| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut ok = 0;
                    for i in 0..REGISTRATIONS / 16 {
                        match register(&client, (i * 16 + w) % 64).await {
                            Ok(_) => ok += 1,
                            Err(e) => eprintln!("registration {i} of worker {w}: {e}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut ok = 0;
        for w in workers {
            ok += w.await.unwrap();
        }
        ok
    });
    assert!(
        registered > REGISTRATIONS * 3 / 4,
        "only {registered} registrations"
    );

    // What the socket and the stream's queue held arrives, then the end.
    let mut decoder = recordio::Decoder::default();
    let mut added = 0;
    let started = Instant::now();
    loop {
        let chunk = match read_chunk(&mut r) {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => panic!("the stream broke after {added} events, not ended: {e}"),
        };
        for record in decoder.decode(&chunk).expect("RecordIO") {
            let e = op::Event::from_json(&record).unwrap();
            if e.agent_added.is_some() {
                added += 1;
            }
        }
        assert!(
            started.elapsed() < 30 * SECOND,
            "the stream of a subscriber that fell behind did not end"
        );
    }
    eprintln!("{added} of {registered} events reached the subscriber that fell behind");
    assert!(
        added < registered,
        "all {added} events were kept for a subscriber that did not read"
    );
    // The master serves on, and a new subscription starts from the whole state.
    let (subscribed, _) = operator_subscribe(&addr, JSON);
    let agents = subscribed.get_state.unwrap().get_agents.unwrap().agents;
    assert_eq!(agents.len(), 64);
}

/// Puts the fixture's ACLs back when dropped (the file is this process's, shared by its
/// tests).
struct RestoreAcls(String);

impl Drop for RestoreAcls {
    fn drop(&mut self) {
        let _ = std::fs::write(&pki::pki().acls, &self.0);
    }
}

/// What an operator sees is what the view ACLs let its principal see, in answers, in the
/// event stream and in `/master/state`, as in gRPC `GetState`.
#[test]
fn operators_see_what_the_view_acls_allow() {
    use op::call::Type;
    let rt = runtime();
    let cluster = Cluster::start(1);
    rt.block_on(cluster.wait_leader(1, 10 * SECOND));
    let addr = cluster.nodes[0].addr.clone();
    let before = std::fs::read_to_string(&pki::pki().acls).unwrap();
    let _restore = RestoreAcls(before.clone());
    let mut acls: serde_json::Value = serde_json::from_str(&before).unwrap();
    acls["view_frameworks"] = serde_json::json!([
        {"principals": {"values": [pki::TEAM_A]}, "users": {"values": ["nobody"]}},
        {"principals": {"values": [pki::TEAM_A]}, "users": {"type": "NONE"}},
    ]);
    // A framework of user root before the ACLs change, to see them take effect by.
    let _first = Framework::subscribe(&addr, "first");
    std::fs::write(&pki::pki().acls, acls.to_string()).unwrap();
    signal(cluster.nodes[0].pid().unwrap(), libc::SIGHUP);

    let frameworks_seen_by = |principal: &str| {
        let a = operator_as(&addr, JSON, &call(Type::GetFrameworks), Some(principal));
        assert_eq!(a.code, 200, "{a:?}");
        op::Response::from_json(&a.body)
            .unwrap()
            .get_frameworks
            .unwrap()
            .frameworks
            .len()
    };
    let subscribe_as = |principal: &'static str| {
        let (mut s, socket) = connect(&addr);
        let mut req = Post::new("/api/v1", JSON, encode(JSON, &call(Type::Subscribe)));
        req.principal = Some(principal);
        req.write(&mut s, &addr, false);
        let mut r = BufReader::new(s);
        assert_eq!(read_head(&mut r).0, 200);
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            let mut decoder = recordio::Decoder::default();
            while let Ok(Some(chunk)) = read_chunk(&mut r) {
                for record in decoder.decode(&chunk).unwrap() {
                    if tx.send(op::Event::from_json(&record).unwrap()).is_err() {
                        return;
                    }
                }
            }
        });
        OperatorStream {
            events,
            socket,
            pending: vec![],
            seen: vec![],
        }
    };
    wait_for("the ACLs to be reloaded", 10 * SECOND, || {
        (frameworks_seen_by(pki::TEAM_A) == 0).then_some(())
    });
    assert_eq!(frameworks_seen_by(pki::ADMIN), 1);
    let mut admin = subscribe_as(pki::ADMIN);
    let mut team = subscribe_as(pki::TEAM_A);
    for ops in [&mut admin, &mut team] {
        ops.next(10 * SECOND, |e| e.subscribed.clone());
    }

    let fw = Framework::subscribe(&addr, "second");
    assert_eq!(frameworks_seen_by(pki::TEAM_A), 0);
    assert_eq!(frameworks_seen_by(pki::ADMIN), 2);
    let added = admin.next(10 * SECOND, |e| e.framework_added.clone());
    assert_eq!(
        added.framework.framework_info.id.unwrap().value,
        fw.id.as_str()
    );
    // An agent after it: the team's stream shows the agent and nothing of the framework.
    let client = {
        let _runtime = rt.enter();
        cluster.client()
    };
    rt.block_on(register(&client, 7)).unwrap();
    let first = team.next(10 * SECOND, |e| Some(e.clone()));
    assert_eq!(first.r#type(), op::event::Type::AgentAdded, "{first:?}");
    let state = operator_as(&addr, JSON, &call(Type::GetState), Some(pki::TEAM_A));
    let state = op::Response::from_json(&state.body)
        .unwrap()
        .get_state
        .unwrap();
    assert!(state.get_frameworks.unwrap().frameworks.is_empty());
    assert_eq!(state.get_agents.unwrap().agents.len(), 1);
    let s = get(&addr, "/master/state", Some(pki::TEAM_A));
    let s: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    assert!(s["frameworks"].as_array().unwrap().is_empty(), "{s}");
    assert_eq!(s["slaves"].as_array().unwrap().len(), 1, "{s}");
    // gRPC GetState shows the team the same.
    let grpc = rt.block_on(async {
        let channel = pki::pki()
            .client_security(Some(pki::TEAM_A))
            .connect_lazy(&addr, 2 * SECOND)
            .unwrap();
        agora_proto::v1::master_client::MasterClient::new(channel)
            .get_state(agora_proto::v1::GetStateRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    assert!(grpc.frameworks.is_empty());
    assert_eq!(grpc.agents.len(), 1);
}
