//! The web UI in a real headless browser (Debian's Chromium): markup in an agent's
//! hostname, an attribute and a framework's name is shown as text and never runs.
//!
//! Needs `chromium` on the PATH (CI installs it): fails when it is missing, unless
//! AGORA_SKIP_BROWSER=1.

mod common;

use std::process::Command;
use std::time::Duration;

use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use agora_proto::v1::scheduler_client::SchedulerClient;
use common::*;

const AGENT_MARKUP: &str = r#"<img src=x onerror="document.title='owned-by-agent'">"#;
const FRAMEWORK_MARKUP: &str = r#"<script>document.title='owned-by-framework'</script>"#;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_cluster_data_is_shown_as_text() {
    let Some(browser) = chromium() else {
        if std::env::var("AGORA_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("AGORA_SKIP_BROWSER=1: skipping the browser test");
            return;
        }
        panic!("chromium is not installed (apt-get install chromium), or set AGORA_SKIP_BROWSER=1");
    };
    let cluster = Cluster::start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let client = cluster.client();
    let mut agent = agent_info(1);
    agent.hostname = AGENT_MARKUP.into();
    agent.attributes = vec![pb::Attribute {
        key: "rack".into(),
        value: "<b>r1</b>".into(),
    }];
    client
        .call(|ch| {
            let agent = Some(agent.clone());
            async move {
                MasterRpc::new(ch)
                    .register_agent(pb::RegisterAgentRequest {
                        tasks: vec![],
                        agent,
                    })
                    .await
            }
        })
        .await
        .expect("an agent with markup in its hostname registers");
    let req = pb::SubscribeRequest {
        framework: Some(pb::FrameworkInfo {
            user: String::new(),
            id: String::new(),
            name: FRAMEWORK_MARKUP.into(),
            roles: vec!["*".into()],
            principal: String::new(),
            failover_timeout_seconds: 60.0,
            capabilities: vec![],
        }),
    };
    let _events = client
        .stream(|ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).subscribe(req).await }
        })
        .await
        .expect("a framework with markup in its name subscribes");

    let addr = cluster.addrs()[0].clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=5000",
                "--dump-dom",
                &format!("http://{addr}/"),
            ])
            .output()
            .expect("running chromium")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The tables were filled (the script ran) and hold the names as text.
    assert!(
        dom.contains("agent-1"),
        "the UI did not load the state:\n{dom}"
    );
    assert!(
        dom.contains("&lt;img src=x onerror=\"document.title='owned-by-agent'\"&gt;"),
        "the hostname is not shown as text:\n{dom}"
    );
    assert!(
        dom.contains("&lt;script&gt;document.title='owned-by-framework'&lt;/script&gt;"),
        "the framework name is not shown as text:\n{dom}"
    );
    // Nothing of it became markup, and nothing ran.
    assert!(!dom.contains("<img"), "markup became an element:\n{dom}");
    assert!(!dom.contains("owned-by-agent</title>") && !dom.contains("owned-by-framework</title>"));
    assert!(dom.contains("<title>Agora</title>"), "{dom}");
}
