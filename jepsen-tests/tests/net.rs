//! Network namespaces, the bridge and iptables cuts of `jepsen_tests::net`, checked with
//! real processes: this test binary re-executes itself inside each host's namespace as a
//! tiny TCP server (answers every connection with its host name) and as a prober (tries to
//! connect to a list of addresses, prints what happened).
//!
//! Needs root, `ip` and `iptables`: fails when they are missing, unless AGORA_SKIP_NETNS=1.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use jepsen_tests::net::{self, Network};

const PREFIX: &str = "agt";
const SUBNET: u8 = 213;
const PORT: u16 = 7213;
/// A dropped SYN makes a connect time out after this; a reachable one answers in a
/// millisecond (the kernel completes the handshake, no scheduling of the server needed).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Selects what a re-executed copy of this binary does (`serve` or `probe`).
const ROLE: &str = "AGT_NET_ROLE";
const NAME: &str = "AGT_NET_NAME";
const TARGETS: &str = "AGT_NET_TARGETS";
const HELPER_TEST: &str = "helper_process";

/// Not a test: the entry point of the helper processes (does nothing without AGT_NET_ROLE).
#[test]
fn helper_process() {
    match std::env::var(ROLE).as_deref() {
        Ok("serve") => serve(),
        Ok("probe") => {
            let targets = std::env::var(TARGETS).unwrap_or_default();
            let addrs: Vec<SocketAddr> = targets
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("target address"))
                .collect();
            for (addr, outcome) in probe_all(&addrs) {
                println!("\nPROBE {addr} {outcome}");
            }
        }
        _ => {}
    }
}

/// Answers every connection with this host's name; exits when stdin closes (the test
/// died or dropped it).
fn serve() -> ! {
    let name = std::env::var(NAME).unwrap_or_default();
    let listener = TcpListener::bind(("0.0.0.0", PORT)).expect("bind");
    println!("\nREADY");
    std::io::stdout().flush().unwrap();
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    for mut c in listener.incoming().flatten() {
        let _ = writeln!(c, "{name}");
    }
    std::process::exit(0)
}

/// `ok <name>` (connected and got the server's name), `timeout` (packets vanished), or
/// something else that the checks reject.
fn probe_one(addr: SocketAddr) -> String {
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reply = String::new();
            match s.read_to_string(&mut reply) {
                Ok(_) => format!("ok {}", reply.trim()),
                Err(e) => format!("connected-but-read-failed {:?}", e.kind()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "timeout".into(),
        Err(e) => format!("error {:?}", e.kind()),
    }
}

fn probe_all(addrs: &[SocketAddr]) -> Vec<(SocketAddr, String)> {
    let threads: Vec<_> = addrs
        .iter()
        .map(|&a| std::thread::spawn(move || (a, probe_one(a))))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Helper processes, killed when the test ends however it ends.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn helper(host: &net::Host, role: &str) -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = host.command(exe);
    cmd.args(["--exact", HELPER_TEST, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(NAME, &host.name);
    cmd
}

fn start_servers(net: &Network) -> Servers {
    let mut servers = Servers(Vec::new());
    for host in net.hosts() {
        let child = helper(host, "serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn server");
        servers.0.push(child);
        let child = servers.0.last_mut().unwrap();
        // libtest prints "test helper_process ... " before the server's own output.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ready = BufReader::new(stdout)
                .lines()
                .any(|l| l.is_ok_and(|l| l.contains("READY")));
            let _ = tx.send(ready);
        });
        let ready = rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false);
        assert!(ready, "server in {} did not start", host.netns);
    }
    servers
}

/// Every source (each host, and "harness" in the root namespace) probing every host's
/// server, in parallel: outcome per (source, destination).
fn matrix(net: &Network) -> BTreeMap<(String, String), String> {
    let by_ip: BTreeMap<SocketAddr, String> = net
        .hosts()
        .iter()
        .map(|h| (h.addr(PORT), h.name.clone()))
        .collect();
    let targets: Vec<SocketAddr> = by_ip.keys().copied().collect();
    let list = targets
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let probers: Vec<(String, Child)> = net
        .hosts()
        .iter()
        .map(|h| {
            let child = helper(h, "probe")
                .env(TARGETS, &list)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn prober");
            (h.name.clone(), child)
        })
        .collect();
    let mut out = BTreeMap::new();
    for (addr, outcome) in probe_all(&targets) {
        out.insert(("harness".to_string(), by_ip[&addr].clone()), outcome);
    }
    for (src, child) in probers {
        let output = child.wait_with_output().expect("prober");
        assert!(output.status.success(), "prober in {src} failed");
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some((_, rest)) = line.split_once("PROBE ") else {
                continue;
            };
            let (addr, outcome) = rest.split_once(' ').expect("probe line");
            let addr: SocketAddr = addr.parse().unwrap();
            out.insert((src.clone(), by_ip[&addr].clone()), outcome.to_string());
        }
    }
    out
}

/// Checks the whole matrix: `blocked(a, b)` pairs time out, everything else (including a
/// host to itself and the harness to anyone) answers with the right name.
fn expect(net: &Network, phase: &str, blocked: impl Fn(&str, &str) -> bool) {
    let started = Instant::now();
    let got = matrix(net);
    let mut wrong = Vec::new();
    let sources = std::iter::once("harness").chain(net.hosts().iter().map(|h| h.name.as_str()));
    for src in sources {
        for dst in net.hosts().iter().map(|h| h.name.as_str()) {
            let want = if src != "harness" && blocked(src, dst) {
                "timeout".to_string()
            } else {
                format!("ok {dst}")
            };
            let key = (src.to_string(), dst.to_string());
            let outcome = got.get(&key).map(String::as_str).unwrap_or("missing");
            if outcome != want {
                wrong.push(format!("{src} -> {dst}: {outcome}, expected {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{phase}: {}", wrong.join("; "));
    eprintln!("{phase}: as expected ({:?})", started.elapsed());
}

fn ip_output(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces and root-namespace interfaces whose name starts with `PREFIX`.
fn leftovers() -> Vec<String> {
    let mut found: Vec<String> = ip_output(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .map(|n| format!("netns {n}"))
        .collect();
    for line in ip_output(&["-o", "link", "show"]).lines() {
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(PREFIX) {
            found.push(format!("link {name}"));
        }
    }
    found
}

fn s(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn namespaces_bridge_and_cuts_with_real_processes() {
    if let Err(e) = net::preflight() {
        if std::env::var("AGORA_SKIP_NETNS").as_deref() == Ok("1") {
            eprintln!("skipping the network namespace test (AGORA_SKIP_NETNS=1): {e}");
            return;
        }
        panic!(
            "the network namespace test cannot run: {e}\n(it needs root, iproute2 and \
             iptables; set AGORA_SKIP_NETNS=1 to skip it where they cannot be had)"
        );
    }
    let total = Instant::now();

    let started = Instant::now();
    let net = Network::create(PREFIX, SUBNET, &["n1", "n2", "n3"])
        .unwrap_or_else(|e| panic!("create network: {e}"));
    eprintln!("created 3 hosts in {:?}", started.elapsed());
    assert_eq!(net.hosts().len(), 3);
    let n1 = net.host("n1").unwrap();
    assert_eq!(n1.ip.to_string(), "10.213.213.1");
    assert_eq!(n1.netns, "agt-n1");
    assert_eq!(net.gateway().to_string(), "10.213.213.254");
    assert!(net.host("zz").is_none());
    let servers = start_servers(&net);

    // 1. Everyone reaches everyone; the harness reaches every host through the bridge.
    expect(&net, "connected", |_, _| false);

    // 2. A cut blocks both ways; other pairs and the harness are untouched; heal restores.
    let started = Instant::now();
    net.cut("n1", "n2").unwrap();
    net.cut("n2", "n1").unwrap(); // idempotent
    eprintln!("cut applied in {:?}", started.elapsed());
    assert_eq!(net.cuts(), pairs(&[("n1", "n2")]));
    let cut_12 = |a: &str, b: &str| (a, b) == ("n1", "n2") || (a, b) == ("n2", "n1");
    expect(&net, "cut n1|n2", cut_12);
    assert!(matches!(
        net.cut("n1", "zz"),
        Err(net::NetError::UnknownHost(_))
    ));
    assert!(net.cut("n1", "n1").is_err());
    net.heal().unwrap();
    assert!(net.cuts().is_empty());
    expect(&net, "healed", |_, _| false);

    // 3. partition([[n1], [n2, n3]]) and isolate(n2).
    net.partition(&[s(&["n1"]), s(&["n2", "n3"])]).unwrap();
    assert_eq!(net.cuts(), pairs(&[("n1", "n2"), ("n1", "n3")]));
    expect(&net, "partition n1 | n2 n3", |a, b| {
        a != b && (a == "n1" || b == "n1")
    });
    net.heal().unwrap();
    net.isolate("n2").unwrap();
    assert_eq!(net.cuts(), pairs(&[("n1", "n2"), ("n2", "n3")]));
    expect(&net, "isolate n2", |a, b| {
        a != b && (a == "n2" || b == "n2")
    });
    net.heal().unwrap();
    expect(&net, "healed again", |_, _| false);

    // 4. Drop removes every namespace and interface.
    drop(servers);
    drop(net);
    assert_eq!(leftovers(), Vec::<String>::new(), "left after drop");

    // A 7-host partition applies well under a second; a network that is never dropped (as
    // after SIGKILL) is removed by cleanup_stale.
    let names = ["m1", "m2", "m3", "m4", "m5", "a1", "a2"];
    let started = Instant::now();
    let big =
        Network::create(PREFIX, SUBNET, &names).unwrap_or_else(|e| panic!("create 7 hosts: {e}"));
    eprintln!("created 7 hosts in {:?}", started.elapsed());
    let started = Instant::now();
    big.partition(&[s(&["m1", "m2", "a1"]), s(&["m3", "m4", "m5", "a2"])])
        .unwrap();
    let took = started.elapsed();
    eprintln!("7-host partition applied in {took:?}");
    assert_eq!(big.cuts().len(), 12);
    assert!(took < Duration::from_secs(1), "partition took {took:?}");
    std::mem::forget(big);
    assert_eq!(leftovers().len(), 7 + 7 + 1, "forgotten network exists");
    net::cleanup_stale(PREFIX).unwrap();
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "left after cleanup_stale"
    );

    eprintln!("total {:?}", total.elapsed());
}
