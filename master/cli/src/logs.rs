//! A task's output: `agora logs TASK [--stderr] [-f] [--tail N]`, and the live copy of a
//! task's stdout and stderr that `agora run` prints while the task runs.
//!
//! Both ask the leader where the task's sandbox is and for a grant to read it
//! (`Master.SandboxAccess`), then read the agent's sandbox API directly
//! (`/files/read`, long-polling with `wait_ms` to follow). A grant that expired or an agent
//! that restarted (new key) is answered 401: the grant is asked for again. A file that
//! shrank (rotated at `--output-max-size`) is read again from its start.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use agora_driver::MasterClient;
use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use clap::Args;
use serde::Deserialize;

/// `agora logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The task.
    task: String,
    /// Its framework (needed only when several frameworks have a task of that id).
    #[arg(long)]
    framework: Option<String>,
    /// Show stderr instead of stdout.
    #[arg(long)]
    stderr: bool,
    /// Keep printing what the task writes until it ends.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Start with the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
}

/// The biggest piece asked for at once.
const CHUNK: u64 = 1024 * 1024;
/// How long one read waits for new output when following.
const FOLLOW_WAIT_MS: u64 = 2_000;

#[derive(Debug, Deserialize)]
struct Chunk {
    data: String,
    offset: u64,
    #[serde(default)]
    length: Option<u64>,
}

impl Chunk {
    /// Bytes of the file this piece covers.
    fn consumed(&self) -> u64 {
        self.length.unwrap_or(self.data.len() as u64)
    }
}

/// What a read found.
enum Read {
    Data(Chunk),
    /// The offset is past the file's end: it was rotated (or truncated).
    PastEnd,
}

/// One task's sandbox on its agent.
pub struct Sandbox {
    client: MasterClient,
    task: String,
    framework: Option<String>,
    access: Option<pb::SandboxAccessReply>,
}

/// Why a sandbox could not be read; one line.
#[derive(Debug)]
pub enum SandboxError {
    /// The leader refused or does not know the task (no use retrying).
    Refused(String),
    /// The agent refused (bad path, not a file, ...).
    Agent(String),
    /// Could not reach the leader or the agent.
    Unreachable(String),
}

impl std::fmt::Display for SandboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SandboxError::Refused(m) | SandboxError::Agent(m) | SandboxError::Unreachable(m) => {
                f.write_str(m)
            }
        }
    }
}

impl Sandbox {
    pub fn new(client: MasterClient, task: String, framework: Option<String>) -> Self {
        Sandbox {
            client,
            task,
            framework,
            access: None,
        }
    }

    /// The leader's answer (asked again when `fresh`).
    async fn access(&mut self, fresh: bool) -> Result<&pb::SandboxAccessReply, SandboxError> {
        if fresh || self.access.is_none() {
            let req = pb::SandboxAccessRequest {
                task_id: self.task.clone(),
                framework_id: self.framework.clone().unwrap_or_default(),
            };
            let reply = self
                .client
                .call(|ch| {
                    let req = req.clone();
                    async move { MasterRpc::new(ch).sandbox_access(req).await }
                })
                .await
                .map_err(|e| match e.status() {
                    Some(_) => SandboxError::Refused(e.to_string()),
                    None => SandboxError::Unreachable(e.to_string()),
                })?;
            self.access = Some(reply);
        }
        Ok(self.access.as_ref().expect("set above"))
    }

    /// Whether the leader says the task has ended (asks it again).
    pub async fn ended(&mut self) -> Result<bool, SandboxError> {
        let state = self.access(true).await?.state;
        Ok(pb::TaskState::try_from(state).is_ok_and(is_terminal))
    }

    async fn read(&mut self, file: &str, offset: i64, wait_ms: u64) -> Result<Read, SandboxError> {
        for attempt in 0..2 {
            let access = self.access(attempt > 0).await?.clone();
            let query = agora_security_query(&[
                ("path", &format!("{}/{file}", access.path)),
                ("offset", &offset.to_string()),
                ("length", &CHUNK.to_string()),
                ("wait_ms", &wait_ms.to_string()),
            ]);
            let reply = agora_driver::security::http_client::get(
                self.client.security().tls.as_ref(),
                &access.agent_address,
                &format!("/files/read?{query}"),
                Some(&format!("Bearer {}", access.token)),
                (CHUNK as usize) * 8,
                Duration::from_millis(wait_ms) + Duration::from_secs(15),
            )
            .await
            .map_err(|e| SandboxError::Unreachable(e.to_string()))?;
            match reply.status {
                200 => {
                    return serde_json::from_slice(&reply.body)
                        .map(Read::Data)
                        .map_err(|e| SandboxError::Agent(format!("agent answered: {e}")))
                }
                // The grant expired, or the agent restarted with a new key: ask again.
                401 if attempt == 0 => continue,
                400 if error_text(&reply.body).contains("past the end") => {
                    return Ok(Read::PastEnd)
                }
                _ => return Err(SandboxError::Agent(error_text(&reply.body))),
            }
        }
        Err(SandboxError::Agent(
            "the agent refused the leader's grant".into(),
        ))
    }
}

fn agora_security_query(pairs: &[(&str, &str)]) -> String {
    agora_driver::security::http_client::query(pairs)
}

fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

fn is_terminal(state: pb::TaskState) -> bool {
    use pb::TaskState::*;
    matches!(
        state,
        TaskFinished
            | TaskFailed
            | TaskKilled
            | TaskLost
            | TaskError
            | TaskDropped
            | TaskGone
            | TaskGoneByOperator
    )
}

/// Where to print a file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn file(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn write(self, text: &str) {
        let _ = match self {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|_| out.flush())
            }
            Stream::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(text.as_bytes()).and_then(|_| err.flush())
            }
        };
    }
}

/// Prints `stream` of the sandbox from `offset` until the end of the file, or, with
/// `until_ended`, until the task has ended and everything it wrote was printed. Returns
/// the offset reached.
async fn copy(
    sandbox: &mut Sandbox,
    stream: Stream,
    mut offset: u64,
    follow: bool,
) -> Result<u64, SandboxError> {
    loop {
        let wait = if follow { FOLLOW_WAIT_MS } else { 0 };
        match sandbox.read(stream.file(), offset as i64, wait).await? {
            Read::PastEnd => offset = 0,
            Read::Data(chunk) if chunk.consumed() > 0 => {
                stream.write(&chunk.data);
                offset = chunk.offset + chunk.consumed();
            }
            Read::Data(_) => {
                if !follow || sandbox.ended().await? {
                    // One more read: what it wrote just before it ended.
                    if follow {
                        if let Read::Data(chunk) =
                            sandbox.read(stream.file(), offset as i64, 0).await?
                        {
                            if chunk.consumed() > 0 {
                                stream.write(&chunk.data);
                                offset = chunk.offset + chunk.consumed();
                                continue;
                            }
                        }
                    }
                    return Ok(offset);
                }
            }
        }
    }
}

/// Where the last `lines` lines of `file` start.
async fn tail_offset(sandbox: &mut Sandbox, file: &str, lines: usize) -> Result<u64, SandboxError> {
    let size = match sandbox.read(file, -1, 0).await? {
        Read::Data(c) => c.offset,
        Read::PastEnd => 0,
    };
    let mut window: u64 = 64 * 1024;
    loop {
        let start = size.saturating_sub(window);
        let mut text = Vec::new();
        let mut at = start;
        while at < size {
            match sandbox.read(file, at as i64, 0).await? {
                Read::Data(c) if c.consumed() > 0 => {
                    text.extend_from_slice(c.data.as_bytes());
                    at = c.offset + c.consumed();
                }
                _ => break,
            }
        }
        // Newlines from the end (a final newline ends the last line, it starts none).
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        let mut seen = 0;
        for (i, b) in body.iter().enumerate().rev() {
            if *b == b'\n' {
                seen += 1;
                if seen == lines {
                    // Bytes of the text map to the file one to one unless it held invalid
                    // UTF-8; then the line start is approximate.
                    return Ok(start + (i as u64) + 1);
                }
            }
        }
        if start == 0 || lines == 0 {
            return Ok(if lines == 0 { size } else { 0 });
        }
        window *= 4;
    }
}

/// `agora logs`.
pub async fn logs(client: MasterClient, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let stream = if args.stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    let mut sandbox = Sandbox::new(client, args.task.clone(), args.framework.clone());
    let result = async {
        let start = match args.tail {
            Some(n) => tail_offset(&mut sandbox, stream.file(), n).await?,
            None => 0,
        };
        copy(&mut sandbox, stream, start, args.follow).await
    }
    .await;
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("agora: {e}");
            Ok(ExitCode::from(match e {
                SandboxError::Refused(_) | SandboxError::Agent(_) => 2,
                SandboxError::Unreachable(_) => 1,
            }))
        }
    }
}

/// Prints a running task's stdout and stderr as it writes them, until it has ended and all
/// it wrote was printed (`agora run`). Errors are said once, at the end.
pub async fn stream_task(client: MasterClient, task: String, framework: String) {
    let out = {
        let mut sandbox = Sandbox::new(like(&client), task.clone(), Some(framework.clone()));
        async move { copy_when_there(&mut sandbox, Stream::Stdout).await }
    };
    let err = {
        let mut sandbox = Sandbox::new(client, task, Some(framework));
        async move { copy_when_there(&mut sandbox, Stream::Stderr).await }
    };
    let (a, b) = tokio::join!(out, err);
    if let Some(e) = a.err().or(b.err()) {
        eprintln!("agora: the task's output could not be shown: {e}");
    }
}

/// Another client of the same masters, with the same security.
pub fn like(client: &MasterClient) -> MasterClient {
    MasterClient::with_security(
        client.masters().to_vec(),
        agora_driver::RetryPolicy::default(),
        client.security().clone(),
    )
    .expect("the same settings were accepted before")
}

/// Like `copy` following from the start, waiting first for the file to exist (the task may
/// not have started yet).
async fn copy_when_there(sandbox: &mut Sandbox, stream: Stream) -> Result<u64, SandboxError> {
    let mut tries = 0;
    loop {
        match copy(sandbox, stream, 0, true).await {
            Ok(at) => return Ok(at),
            Err(SandboxError::Agent(m))
                if m.contains("no such file") || m.contains("sandbox is gone") =>
            {
                // Not created yet, or never (a launch that failed before its sandbox).
                if sandbox.ended().await.unwrap_or(false) {
                    return Ok(0);
                }
            }
            // Its agent's session may be moving to a new leader: a while, then say so.
            Err(e) if tries >= 50 => return Err(e),
            Err(_) => {}
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
