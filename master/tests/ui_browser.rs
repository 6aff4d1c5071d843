//! The web UI in a real headless browser (Debian's Chromium) against a live cluster: three
//! masters, a real agent with markup in its hostname and an attribute, and two frameworks
//! (one with markup in its name and a task's name) with running, finished and failed
//! tasks. Each view (overview, agents, agent, frameworks, framework, tasks, task, roles)
//! and a follower's page are loaded; each must render the cluster's data, raise no script
//! error, and show every name as text (nothing from the cluster becomes an element).
//!
//! With AGORA_UI_SCREENSHOTS=1 it also writes a screenshot of each view to `docs/ui/`
//! (the committed ones went through `pngquant --ext .png --force docs/ui/*.png`).
//!
//! Needs `chromium` on the PATH (CI installs it): fails when it is missing, unless
//! AGORA_SKIP_BROWSER=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agora_driver::{Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_proto::v1 as pb;
use agora_proto::v1::operator_client::OperatorClient;
use common::*;

/// Markup in cluster data; none of these tags is one the UI itself ever makes.
const AGENT_MARKUP: &str = r#"<img src=x onerror="document.title='owned-by-agent'">"#;
const ATTRIBUTE_MARKUP: &str = "<b>r1</b>";
const FRAMEWORK_MARKUP: &str = r#"<script>document.title='owned-by-framework'</script>"#;
const TASK_MARKUP: &str = r#"<i onmouseover="document.title='owned-by-task'">sleeper</i>"#;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// How markup shows in `--dump-dom` output when it is text: `<` and `>` escaped.
fn as_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A framework that launches its tasks on its first offer, then either declines (for a
/// second, so the other framework gets offers too) or holds its offers (the UI shows them).
struct Launcher {
    tasks: Vec<(&'static str, String, &'static str)>,
    hold_offers: bool,
    updates: tokio::sync::mpsc::UnboundedSender<(String, TaskState)>,
}

impl Scheduler for Launcher {
    fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
        for offer in offers {
            if self.tasks.is_empty() {
                if !self.hold_offers {
                    h.decline(vec![offer.id.clone()], Some(1.0));
                }
                continue;
            }
            let role = offer
                .resources
                .iter()
                .find(|r| r.name == "cpus")
                .map(|r| r.role.clone())
                .unwrap_or_default();
            let res = |name: &str, v: f64| pb::Resource {
                name: name.into(),
                role: role.clone(),
                value: Some(pb::resource::Value::Scalar(v)),
            };
            let tasks = std::mem::take(&mut self.tasks)
                .into_iter()
                .map(|(id, name, command)| pb::TaskInfo {
                    task_id: id.into(),
                    name,
                    resources: vec![res("cpus", 0.1), res("mem", 32.0)],
                    command: command.into(),
                    ..Default::default()
                })
                .collect();
            h.accept(vec![offer.id.clone()], tasks, None);
        }
    }

    fn status_update(&mut self, _h: &SchedulerHandle, status: TaskStatus) {
        let _ = self.updates.send((status.task_id, status.state));
    }
}

/// Subscribes a framework and runs it in the background (it ends with the test).
fn start_framework(
    cluster: &Cluster,
    name: &str,
    role: &str,
    launcher: Launcher,
) -> tokio::task::JoinHandle<()> {
    let framework = pb::FrameworkInfo {
        name: name.into(),
        roles: vec![role.into()],
        failover_timeout_seconds: 60.0,
        ..Default::default()
    };
    let driver = SchedulerDriver::with_client(cluster.client(), framework);
    tokio::spawn(async move {
        let _ = driver.run(launcher).await;
    })
}

/// Waits until every (task, state) in `want` was reported.
async fn wait_states(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, TaskState)>,
    want: &[(&str, TaskState)],
) {
    let mut seen: Vec<(String, TaskState)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want
        .iter()
        .all(|(id, st)| seen.iter().any(|(i, s)| i == id && s == st))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(u)) => seen.push(u),
            _ => panic!("tasks did not reach {want:?}; saw {seen:?}"),
        }
    }
}

struct Browser {
    exe: &'static str,
    profile: tempfile::TempDir,
}

impl Browser {
    fn args(&self, budget_ms: u64) -> Vec<String> {
        vec![
            "--headless".into(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            format!("--user-data-dir={}", self.profile.path().display()),
            // Virtual time (timers run without waiting): 5 s is the page's first polls,
            // every 2 s.
            format!("--virtual-time-budget={budget_ms}"),
        ]
    }

    /// The DOM of `url` once its script has run.
    async fn dom(&self, url: &str) -> String {
        let mut cmd = Command::new(self.exe);
        cmd.args(self.args(5000)).args(["--dump-dom", url]);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("running chromium"))
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "chromium failed on {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A screenshot of `url` after `budget_ms` of virtual time.
    async fn screenshot(&self, url: &str, budget_ms: u64, to: &Path) {
        let mut cmd = Command::new(self.exe);
        cmd.args(self.args(budget_ms)).args([
            "--window-size=1280,900",
            "--hide-scrollbars",
            &format!("--screenshot={}", to.display()),
            url,
        ]);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("running chromium"))
            .await
            .unwrap();
        assert!(
            out.status.success() && to.exists(),
            "no screenshot of {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What the page's error sink (#ui-errors) holds: every uncaught exception, rejected
/// promise and failed render.
fn script_errors(dom: &str) -> &str {
    dom.split_once("id=\"ui-errors\"")
        .and_then(|(_, rest)| rest.split_once('>'))
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(inside, _)| inside)
        .expect("the page has its error sink")
}

/// What every page must show: its view rendered from state, no script error, and nothing
/// from the cluster turned into an element.
fn check_page(view: &str, dom: &str, expect: &[&str]) {
    assert!(
        dom.contains(&format!("data-view=\"{view}\"")),
        "{view}: not routed:\n{dom}"
    );
    assert!(
        dom.contains("data-rendered=\"state\""),
        "{view}: the state was never rendered:\n{dom}"
    );
    let errors = script_errors(dom);
    assert!(errors.is_empty(), "{view}: script errors: {errors}");
    for e in expect {
        assert!(dom.contains(e), "{view}: {e:?} is not on the page:\n{dom}");
    }
    for tag in ["<img", "<b>", "<i ", "<i>"] {
        assert!(
            !dom.contains(tag),
            "{view}: markup became an element ({tag}):\n{dom}"
        );
    }
    assert_eq!(
        dom.matches("<script").count(),
        1,
        "{view}: a script element besides /ui.js:\n{dom}"
    );
    // The markup would have set the title had it run.
    assert!(
        dom.contains("<title>Agora</title>"),
        "{view}: the title changed:\n{dom}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_renders_the_cluster_and_shows_markup_as_text() {
    let Some(exe) = chromium() else {
        if std::env::var("AGORA_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("AGORA_SKIP_BROWSER=1: skipping the browser test");
            return;
        }
        panic!("chromium is not installed (apt-get install chromium), or set AGORA_SKIP_BROWSER=1");
    };
    let started = Instant::now();
    let cluster = Cluster::start_with(3, &["--allocation-interval", "100ms"]);
    let (leader_id, _, _) = cluster.wait_leader(1, Duration::from_secs(15)).await;
    let leader = cluster.addrs()[leader_id as usize - 1].clone();
    let follower = cluster.addrs().into_iter().find(|a| *a != leader).unwrap();
    let mut agent = AgentNode::new(
        &cluster,
        "agent-0",
        &[
            "--resources",
            "cpus:2;mem:1024;disk:1000",
            "--hostname",
            AGENT_MARKUP,
            "--attributes",
            &format!("rack:{ATTRIBUTE_MARKUP};zone:a"),
        ],
    );
    agent.start();
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;

    // Role weights for the roles view.
    cluster
        .client()
        .call(|ch| async move {
            OperatorClient::new(ch)
                .set_weight(pb::SetWeightRequest {
                    role: "analytics".into(),
                    weight: 2.0,
                })
                .await
        })
        .await
        .expect("set a weight");

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _web = start_framework(
        &cluster,
        FRAMEWORK_MARKUP,
        "*",
        Launcher {
            tasks: vec![
                ("ui-sleeper", TASK_MARKUP.into(), "echo started; sleep 120"),
                (
                    "ui-done",
                    "done".into(),
                    "echo hello-from-task; echo oops-from-task >&2",
                ),
                ("ui-failed", "failed".into(), "exit 3"),
            ],
            hold_offers: false,
            updates: tx.clone(),
        },
    );
    wait_states(
        &mut rx,
        &[
            ("ui-sleeper", TaskState::TaskRunning),
            ("ui-done", TaskState::TaskFinished),
            ("ui-failed", TaskState::TaskFailed),
        ],
    )
    .await;
    let _analytics = start_framework(
        &cluster,
        "analytics-batch",
        "analytics",
        Launcher {
            tasks: vec![("ui-analytics", "crunch".into(), "sleep 120")],
            hold_offers: true,
            updates: tx,
        },
    );
    wait_states(&mut rx, &[("ui-analytics", TaskState::TaskRunning)]).await;

    let state = cluster.http_state().expect("the leader's /state");
    let agent_id = state["agents"][0]["id"].as_str().unwrap().to_string();
    let fw_id = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == FRAMEWORK_MARKUP)
        .and_then(|f| f["id"].as_str())
        .unwrap()
        .to_string();
    assert_eq!(state["weights"]["analytics"], 2.0, "{state}");
    assert_eq!(
        state["members"].as_array().map(Vec::len),
        Some(3),
        "{state}"
    );

    let browser = Browser {
        exe,
        profile: tempfile::tempdir().unwrap(),
    };
    let agent_text = as_text(AGENT_MARKUP);
    let attribute_text = as_text(ATTRIBUTE_MARKUP);
    let framework_text = as_text(FRAMEWORK_MARKUP);
    let task_text = as_text(TASK_MARKUP);
    let views: Vec<(&str, &str, String, Vec<&str>)> = vec![
        (
            "overview",
            "overview",
            String::new(),
            vec![
                "Members of the quorum",
                &leader,
                &follower,
                "healthy",
                "Last hour",
                "cpus",
            ],
        ),
        (
            "agents",
            "agents",
            "agents".into(),
            vec![&agent_id, &agent_text, &attribute_text, "active"],
        ),
        (
            "agent",
            "agents",
            format!("agents/{agent_id}"),
            vec![
                &agent_id,
                &agent_text,
                &attribute_text,
                "ui-sleeper",
                "Outstanding offers",
            ],
        ),
        (
            "frameworks",
            "frameworks",
            "frameworks".into(),
            vec![&fw_id, &framework_text, "analytics-batch", "dominant share"],
        ),
        (
            "framework",
            "frameworks",
            format!("frameworks/{fw_id}"),
            vec![
                &framework_text,
                "ui-sleeper",
                "ui-done",
                "ui-failed",
                &task_text,
            ],
        ),
        (
            "tasks",
            "tasks",
            "tasks".into(),
            vec![
                "ui-sleeper",
                "ui-done",
                "ui-failed",
                "ui-analytics",
                &task_text,
                &framework_text,
                &agent_text,
                "running",
                "finished",
                "failed",
            ],
        ),
        (
            "task",
            "tasks",
            format!("tasks/{fw_id}/ui-done"),
            vec![
                "ui-done",
                "finished",
                "Sandbox",
                "stdout",
                &framework_text,
                &agent_text,
            ],
        ),
        (
            "roles",
            "roles",
            "roles".into(),
            vec![
                "analytics",
                "analytics-batch",
                &framework_text,
                "share / weight",
            ],
        ),
    ];
    let shots = std::env::var("AGORA_UI_SCREENSHOTS").as_deref() == Ok("1");
    let shot_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/ui");
    if shots {
        std::fs::create_dir_all(&shot_dir).unwrap();
    }
    for (name, view, route, expect) in &views {
        // Sandboxes (/files/*) are never read anonymously: the browser signs in as the
        // admin at /login (HTTP Basic, answered from the URL), which sends it back to the
        // view, and the page's fetches carry the login.
        let url = if *name == "task" {
            let admin = agora_test_cluster::pki::pki().credential(agora_test_cluster::pki::ADMIN);
            format!(
                "http://{}:{}@{leader}/login?next=%2F%23%2F{}",
                admin.principal,
                admin.secret.expose(),
                route.replace('/', "%2F")
            )
        } else {
            format!("http://{leader}/#/{route}")
        };
        let dom = browser.dom(&url).await;
        check_page(view, &dom, expect);
        if *name == "task" {
            // The sandbox, read through the leader's /files relay from the agent.
            assert!(
                dom.contains("hello-from-task"),
                "task: the task's stdout is not shown:\n{dom}"
            );
        }
        if shots {
            // The overview's charts fill as the page samples: give it ten minutes.
            let budget = if *name == "overview" { 600_000 } else { 5000 };
            browser
                .screenshot(&url, budget, &shot_dir.join(format!("{name}.png")))
                .await;
        }
    }
    // A filtered, searched task list keeps only what matches.
    let dom = browser
        .dom(&format!("http://{leader}/#/tasks?state=TASK_FAILED&q=fail"))
        .await;
    check_page("tasks", &dom, &["ui-failed", "1 of 4 tasks"]);
    assert!(
        !dom.contains("ui-sleeper"),
        "the filter kept a running task:\n{dom}"
    );

    // A follower says where the leader is, with a link to its UI.
    let dom = browser.dom(&format!("http://{follower}/#/agents")).await;
    assert!(
        dom.contains("data-rendered=\"health\"") && dom.contains("is a follower"),
        "the follower's page does not say it follows:\n{dom}"
    );
    assert!(
        dom.contains(&format!("href=\"http://{leader}/#/agents\"")),
        "the follower's page does not link to the leader:\n{dom}"
    );
    assert!(script_errors(&dom).is_empty(), "follower: {dom}");
    eprintln!("browser test: {:?}", started.elapsed());
}
