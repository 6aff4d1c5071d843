//! `agora log-level [LEVEL] [--duration D] [--master HOST:PORT]...`: shows, or changes,
//! the log level of masters. Each replica has its own level and answers for itself
//! (`Operator.GetLogLevel`, `Operator.SetLogLevel`, the `set_log_level` ACL): the call
//! goes to every master named by `--master`, by default every one in `--masters`.

use std::process::ExitCode;
use std::time::Duration;

use agora_driver::MasterClient;
use agora_proto::v1 as pb;
use agora_proto::v1::operator_client::OperatorClient;
use clap::Args;
use serde_json::json;

/// How long one master may take to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct LogLevelArgs {
    /// A tracing filter: `debug`, `trace`, `agora_master=debug,info`, ...; without it,
    /// each master's level is shown.
    pub level: Option<String>,
    /// How long the level holds before the master goes back to the level it had (e.g.
    /// "10m"; default: for good).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The master to ask (HOST:PORT; repeat or separate with commas); default: every one
    /// in --masters.
    #[arg(long = "master", value_name = "HOST:PORT", value_delimiter = ',')]
    pub replicas: Vec<String>,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One master's answer.
struct Answer {
    master: String,
    reply: Result<pb::LogLevelReply, tonic::Status>,
}

/// Shows or sets the level of each master; exits 0 when every one answered, 2 when one
/// refused the level or duration as invalid, 1 otherwise.
pub async fn run(
    client: &MasterClient,
    all_masters: &[String],
    args: LogLevelArgs,
) -> anyhow::Result<ExitCode> {
    if args.duration.is_some() && args.level.is_none() {
        return usage("log-level: --duration needs a LEVEL");
    }
    if args.level.as_deref().is_some_and(|l| l.trim().is_empty()) {
        return usage("log-level: LEVEL is empty");
    }
    let targets: Vec<String> = if args.replicas.is_empty() {
        all_masters.to_vec()
    } else {
        args.replicas
            .iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect()
    };
    if targets.is_empty() {
        return usage("log-level: no master given");
    }
    let mut answers = Vec::new();
    for master in targets {
        let reply = call(client, &master, &args).await;
        answers.push(Answer { master, reply });
    }
    print(&answers, args.json)?;
    let invalid = answers.iter().any(|a| {
        a.reply
            .as_ref()
            .is_err_and(|s| s.code() == tonic::Code::InvalidArgument)
    });
    Ok(if invalid {
        ExitCode::from(2)
    } else if answers.iter().any(|a| a.reply.is_err()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn usage(msg: &str) -> anyhow::Result<ExitCode> {
    eprintln!("agora: {msg}");
    Ok(ExitCode::from(2))
}

async fn call(
    client: &MasterClient,
    master: &str,
    args: &LogLevelArgs,
) -> Result<pb::LogLevelReply, tonic::Status> {
    let channel = client
        .channel_to(master)
        .map_err(|e| tonic::Status::invalid_argument(format!("--master {master}: {e}")))?;
    let mut operator = OperatorClient::new(channel);
    let reply = match &args.level {
        Some(level) => {
            let mut req = tonic::Request::new(pb::SetLogLevelRequest {
                level: level.clone(),
                duration_ms: args.duration.map_or(0, |d| d.as_millis() as u64),
            });
            req.set_timeout(CALL_TIMEOUT);
            operator.set_log_level(req).await?
        }
        None => {
            let mut req = tonic::Request::new(pb::GetLogLevelRequest {});
            req.set_timeout(CALL_TIMEOUT);
            operator.get_log_level(req).await?
        }
    };
    Ok(reply.into_inner())
}

fn reverts_in(ms: u64) -> String {
    if ms == 0 {
        String::new()
    } else {
        // To the nearest second, or milliseconds under a second.
        let d = if ms >= 1000 {
            Duration::from_secs((ms + 500) / 1000)
        } else {
            Duration::from_millis(ms)
        };
        humantime::format_duration(d).to_string()
    }
}

fn print(answers: &[Answer], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        let v: Vec<_> = answers
            .iter()
            .map(|a| match &a.reply {
                Ok(r) => json!({"master": a.master, "id": r.id, "level": r.level,
                    "base": r.base, "reverts_in_ms": r.reverts_in_ms}),
                Err(s) => json!({"master": a.master, "error": s.message()}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    crate::table::print(
        &["MASTER", "ID", "LEVEL", "BACK TO", "IN"],
        answers.iter().filter_map(|a| {
            let r = a.reply.as_ref().ok()?;
            let pending = r.reverts_in_ms > 0;
            Some(vec![
                a.master.clone(),
                r.id.to_string(),
                r.level.clone(),
                if pending {
                    r.base.clone()
                } else {
                    String::new()
                },
                reverts_in(r.reverts_in_ms),
            ])
        }),
    );
    for a in answers {
        if let Err(s) = &a.reply {
            eprintln!("agora: {}: {}", a.master, s.message());
        }
    }
    Ok(())
}
