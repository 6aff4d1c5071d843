//! The agent's checkpoints in its work dir: for every task, what it is (its TaskInfo) and a
//! journal of its status updates and their acknowledgements.
//!
//! Layout: `<work_dir>/meta/frameworks/<framework>/tasks/<task>/{task.json,updates.jsonl}`,
//! and `executor.token` while the task's executor runs (the secret it authenticates with;
//! see [`crate::tasks`]), and `sandbox.finished` once its sandbox is finished and scheduled
//! for removal (when, in ms since the Unix epoch; see [`crate::gc`]). Every directory is 0700 and every file 0600: only the agent's
//! user reads them. Every update is appended and fsynced before anyone is told it is
//! checkpointed, and an acknowledgement is appended the same way, so after a crash the
//! unacknowledged updates of each task are exactly the ones to send again, in order.
//!
//! Damage: a journal line that cannot be read (a byte changed, a line cut by a crash and
//! sealed by the next append) is skipped and named in [`TaskJournal::damage`], and the
//! lines after it are still read; a `task.json` that cannot be read does not stop the
//! agent: the task comes back from its directory's names and its journal, marked
//! [`TaskJournal::record_lost`], and the agent fails it ([`crate::tasks`]). A write that
//! fails (a full disk: ENOSPC; EIO) is cut back off the journal, so no half line is left
//! for the next append to run into, and the caller hears the error: the update it carried
//! is not checkpointed, so nobody is told it is.
//!
//! Task states are written as their Mesos names (TASK_RUNNING), through the domain
//! [`TaskState`]'s serde, as every journal ever written holds them.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::workdir::{PRIVATE_DIR, PRIVATE_FILE};

use agora_registry::TaskState;
use serde::{Deserialize, Serialize};

/// A status update as checkpointed (the wire message minus transport).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub uuid: String,
    pub framework_id: String,
    pub task_id: String,
    pub state: TaskState,
    pub message: String,
    pub exit_code: Option<i32>,
    pub timestamp_ms: u64,
}

/// A task as checkpointed at launch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub framework_id: String,
    pub task_id: String,
    pub name: String,
    /// Mesos text of its resources.
    pub resources: String,
    pub command: String,
    pub env: Vec<(String, String)>,
    /// The framework's own executor command, when it brings one.
    #[serde(default)]
    pub executor_command: Option<String>,
    /// The user the task runs as (empty: the agent's own).
    #[serde(default)]
    pub user: String,
    /// Files fetched into the sandbox before the task (or its own executor) starts.
    #[serde(default)]
    pub uris: Vec<crate::fetch::FetchUri>,
    /// The framework's own id for its executor (Mesos' `executor_id`); `None`: the
    /// task's id.
    #[serde(default)]
    pub executor_id: Option<String>,
    /// The environment of the framework's own executor's command.
    #[serde(default)]
    pub executor_env: Vec<(String, String)>,
    /// The task as a Mesos framework gave it (protobuf), for Mesos executors' LAUNCH.
    #[serde(default)]
    pub mesos_task_info: Vec<u8>,
    /// The executor as a Mesos framework gave it (protobuf), for its SUBSCRIBED event.
    #[serde(default)]
    pub mesos_executor_info: Vec<u8>,
    /// The task's container, when it runs from an image.
    #[serde(default)]
    pub container: Option<crate::image::ContainerSpec>,
}

impl TaskRecord {
    /// The executor's id as its framework knows it (the task's id unless the framework
    /// named its own executor).
    pub fn executor_id(&self) -> &str {
        self.executor_id.as_deref().unwrap_or(&self.task_id)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JournalLine {
    Update(Update),
    Ack { uuid: String },
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {reason}")]
pub struct CheckpointError {
    pub path: String,
    pub reason: String,
}

/// The file holding a running executor's token.
const TOKEN_FILE: &str = "executor.token";

/// The file holding when a task's sandbox finished (ms since the Unix epoch).
const SANDBOX_FINISHED_FILE: &str = "sandbox.finished";

/// Creates `dir` and its missing parents, private to the agent.
fn private_dir(dir: &Path) -> Result<(), CheckpointError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
        .map_err(|e| err(dir, e))
}

fn err(path: &Path, reason: impl std::fmt::Display) -> CheckpointError {
    CheckpointError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// What the journal of one task says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskJournal {
    /// Every update, in order.
    pub updates: Vec<Update>,
    /// Updates not yet acknowledged, in order.
    pub unacknowledged: Vec<Update>,
    /// What of this task's checkpoint could not be read, each naming the file (and line).
    pub damage: Vec<String>,
    /// Its `task.json` is missing or unreadable: the record holds only the task's ids.
    pub record_lost: bool,
}

impl TaskJournal {
    /// The state of the last update, if any.
    pub fn last_state(&self) -> Option<TaskState> {
        self.updates.last().map(|u| u.state)
    }
}

/// The checkpoint store of one agent.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    root: PathBuf,
}

impl Checkpoints {
    pub fn new(work_dir: &Path) -> Self {
        Checkpoints {
            root: work_dir.join("meta").join("frameworks"),
        }
    }

    fn task_dir(&self, framework: &str, task: &str) -> PathBuf {
        self.root.join(framework).join("tasks").join(task)
    }

    /// Records a task at launch (before anything runs).
    pub fn save_task(&self, task: &TaskRecord) -> Result<(), CheckpointError> {
        let dir = self.task_dir(&task.framework_id, &task.task_id);
        private_dir(&dir)?;
        let path = dir.join("task.json");
        let tmp = dir.join("task.json.tmp");
        let bytes = serde_json::to_vec(task).map_err(|e| err(&path, e))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE)
            .open(&tmp)
            .map_err(|e| err(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| err(&tmp, e))?;
        f.sync_all().map_err(|e| err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err(&dir, e))?;
        Ok(())
    }

    fn append(
        &self,
        framework: &str,
        task: &str,
        line: &JournalLine,
    ) -> Result<(), CheckpointError> {
        let dir = self.task_dir(framework, task);
        private_dir(&dir)?;
        let path = dir.join("updates.jsonl");
        let mut bytes = serde_json::to_vec(line).map_err(|e| err(&path, e))?;
        bytes.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(PRIVATE_FILE)
            .open(&path)
            .map_err(|e| err(&path, e))?;
        let len = f.metadata().map_err(|e| err(&path, e))?.len();
        if len > 0 {
            // A line cut by a crash mid-append is sealed off, so this line stays whole.
            let mut last = [0u8; 1];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut last, len - 1)
                .map_err(|e| err(&path, e))?;
            if last[0] != b'\n' {
                bytes.insert(0, b'\n');
            }
        }
        let written = f.write_all(&bytes).and_then(|()| f.sync_data());
        if let Err(e) = written {
            // Whatever part of the line got in goes again: the next append must not follow
            // half a line (ENOSPC mid-write), and a line whose fsync failed was never
            // reported checkpointed.
            let _ = f.set_len(len).and_then(|()| f.sync_data());
            return Err(err(&path, e));
        }
        Ok(())
    }

    /// Appends an update and fsyncs it.
    pub fn record_update(&self, update: &Update) -> Result<(), CheckpointError> {
        self.append(
            &update.framework_id,
            &update.task_id,
            &JournalLine::Update(update.clone()),
        )
    }

    /// Appends an acknowledgement and fsyncs it.
    pub fn record_ack(
        &self,
        framework: &str,
        task: &str,
        uuid: &str,
    ) -> Result<(), CheckpointError> {
        self.append(
            framework,
            task,
            &JournalLine::Ack {
                uuid: uuid.to_string(),
            },
        )
    }

    /// Records the token of a task's executor (0600, fsynced), before the executor starts,
    /// so that an agent restarted while it runs still accepts it.
    pub fn save_executor_token(
        &self,
        framework: &str,
        task: &str,
        token: &str,
    ) -> Result<(), CheckpointError> {
        let dir = self.task_dir(framework, task);
        private_dir(&dir)?;
        let path = dir.join(TOKEN_FILE);
        crate::workdir::write_private(&path, token.as_bytes()).map_err(|e| err(&path, e))
    }

    /// The token of a task's executor, if it has one (it still runs, or the agent stopped
    /// before it saw it end).
    pub fn executor_token(&self, framework: &str, task: &str) -> Option<String> {
        std::fs::read_to_string(self.task_dir(framework, task).join(TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// Forgets the token of a task's executor (it has ended).
    pub fn remove_executor_token(
        &self,
        framework: &str,
        task: &str,
    ) -> Result<(), CheckpointError> {
        let path = self.task_dir(framework, task).join(TOKEN_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&path, e)),
        }
    }

    /// Records when a task's sandbox finished (0600, fsynced): a restarted agent schedules
    /// its removal for the same moment.
    pub fn save_sandbox_finished(
        &self,
        framework: &str,
        task: &str,
        finished_at_ms: u64,
    ) -> Result<(), CheckpointError> {
        let dir = self.task_dir(framework, task);
        private_dir(&dir)?;
        let path = dir.join(SANDBOX_FINISHED_FILE);
        crate::workdir::write_private(&path, finished_at_ms.to_string().as_bytes())
            .map_err(|e| err(&path, e))
    }

    /// When a task's sandbox finished, if that was recorded.
    pub fn sandbox_finished(&self, framework: &str, task: &str) -> Option<u64> {
        std::fs::read_to_string(self.task_dir(framework, task).join(SANDBOX_FINISHED_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Reads one task's journal. A torn last line (crash mid-append, no newline) is
    /// ignored: it was never reported as checkpointed. Any other line that cannot be read
    /// is skipped and named in [`TaskJournal::damage`]; the lines after it still count.
    pub fn journal(&self, framework: &str, task: &str) -> Result<TaskJournal, CheckpointError> {
        let path = self.task_dir(framework, task).join("updates.jsonl");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TaskJournal::default()),
            Err(e) => return Err(err(&path, e)),
        };
        let mut journal = TaskJournal::default();
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        for number in 1.. {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| err(&path, e))?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // the end, or a torn last line
            }
            match serde_json::from_slice::<JournalLine>(&line) {
                Ok(JournalLine::Update(u)) => {
                    journal.updates.push(u.clone());
                    journal.unacknowledged.push(u);
                }
                // Acknowledgements are cumulative: one covers its update and every
                // earlier one (the agent's own acknowledgements of old named the oldest
                // update, so they read the same).
                Ok(JournalLine::Ack { uuid }) => {
                    if let Some(at) = journal.unacknowledged.iter().position(|u| u.uuid == uuid) {
                        journal.unacknowledged.drain(..=at);
                    }
                }
                Err(e) => journal
                    .damage
                    .push(format!("{} line {number}: {e} (skipped)", path.display())),
            }
        }
        Ok(journal)
    }

    /// Every checkpointed task with its journal.
    pub fn tasks(&self) -> Result<Vec<(TaskRecord, TaskJournal)>, CheckpointError> {
        let mut out = Vec::new();
        let Ok(frameworks) = std::fs::read_dir(&self.root) else {
            return Ok(out);
        };
        for fw in frameworks.flatten() {
            let Ok(tasks) = std::fs::read_dir(fw.path().join("tasks")) else {
                continue;
            };
            for t in tasks.flatten() {
                let path = t.path().join("task.json");
                let read = match std::fs::read(&path) {
                    Ok(bytes) => {
                        serde_json::from_slice::<TaskRecord>(&bytes).map_err(|e| e.to_string())
                    }
                    // A directory without a record or a journal: the launch was never
                    // checkpointed (a crash between the directory and the record).
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            && !t.path().join("updates.jsonl").exists() =>
                    {
                        continue
                    }
                    Err(e) => Err(e.to_string()),
                };
                let (Some(framework), Some(task)) = (
                    fw.file_name().to_str().map(String::from),
                    t.file_name().to_str().map(String::from),
                ) else {
                    continue;
                };
                let (record, lost) = match read {
                    Ok(record) => (record, None),
                    Err(reason) => (
                        TaskRecord {
                            framework_id: framework.clone(),
                            task_id: task.clone(),
                            name: task.clone(),
                            ..Default::default()
                        },
                        Some(format!("{}: {reason}", path.display())),
                    ),
                };
                let mut journal = self.journal(&record.framework_id, &record.task_id)?;
                if let Some(lost) = lost {
                    journal.damage.insert(0, lost);
                    journal.record_lost = true;
                }
                out.push((record, journal));
            }
        }
        out.sort_by(|a, b| {
            (&a.0.framework_id, &a.0.task_id).cmp(&(&b.0.framework_id, &b.0.task_id))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(task: &str, uuid: &str, state: TaskState) -> Update {
        Update {
            uuid: uuid.into(),
            framework_id: "f1".into(),
            task_id: task.into(),
            state,
            message: String::new(),
            exit_code: None,
            timestamp_ms: 1,
        }
    }

    #[test]
    fn journal_keeps_order_and_drops_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path());
        c.save_task(&TaskRecord {
            framework_id: "f1".into(),
            task_id: "t1".into(),
            name: "t1".into(),
            resources: "cpus:1".into(),
            command: "true".into(),
            env: vec![],
            executor_command: None,
            user: String::new(),
            ..Default::default()
        })
        .unwrap();
        c.record_update(&update("t1", "u1", TaskState::TaskStarting))
            .unwrap();
        c.record_update(&update("t1", "u2", TaskState::TaskRunning))
            .unwrap();
        c.record_ack("f1", "t1", "u1").unwrap();
        c.record_update(&update("t1", "u3", TaskState::TaskFinished))
            .unwrap();
        // A reopened store (agent restart) sees the same.
        let c = Checkpoints::new(dir.path());
        let j = c.journal("f1", "t1").unwrap();
        assert_eq!(j.updates.len(), 3);
        assert_eq!(
            j.unacknowledged
                .iter()
                .map(|u| u.uuid.as_str())
                .collect::<Vec<_>>(),
            ["u2", "u3"]
        );
        assert_eq!(j.last_state(), Some(TaskState::TaskFinished));
        // Acknowledgements are cumulative: u3's covers u2; an unknown uuid covers nothing.
        c.record_ack("f1", "t1", "nothing").unwrap();
        assert_eq!(c.journal("f1", "t1").unwrap().unacknowledged.len(), 2);
        c.record_ack("f1", "t1", "u3").unwrap();
        assert!(c.journal("f1", "t1").unwrap().unacknowledged.is_empty());
        let tasks = c.tasks().unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].0.command, "true");
    }

    #[test]
    fn checkpoints_are_private_and_tokens_come_and_go() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path());
        c.record_update(&update("t1", "u1", TaskState::TaskRunning))
            .unwrap();
        assert_eq!(c.executor_token("f1", "t1"), None);
        c.save_executor_token("f1", "t1", "abc").unwrap();
        assert_eq!(c.executor_token("f1", "t1").as_deref(), Some("abc"));
        let task_dir = dir.path().join("meta/frameworks/f1/tasks/t1");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&task_dir), 0o700);
        assert_eq!(mode(&dir.path().join("meta")), 0o700);
        assert_eq!(mode(&task_dir.join("executor.token")), 0o600);
        assert_eq!(mode(&task_dir.join("updates.jsonl")), 0o600);
        c.remove_executor_token("f1", "t1").unwrap();
        c.remove_executor_token("f1", "t1").unwrap();
        assert_eq!(c.executor_token("f1", "t1"), None);
        assert_eq!(c.sandbox_finished("f1", "t1"), None);
        c.save_sandbox_finished("f1", "t1", 1234).unwrap();
        assert_eq!(c.sandbox_finished("f1", "t1"), Some(1234));
        assert_eq!(mode(&task_dir.join("sandbox.finished")), 0o600);
    }

    #[test]
    fn torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path());
        c.record_update(&update("t1", "u1", TaskState::TaskRunning))
            .unwrap();
        let path = dir.path().join("meta/frameworks/f1/tasks/t1/updates.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"update\":{\"uuid\":\"u2\",\"fram").unwrap();
        let j = c.journal("f1", "t1").unwrap();
        assert_eq!(j.updates.len(), 1);
        assert!(c.journal("f1", "nope").unwrap().updates.is_empty());
    }

    #[test]
    fn a_damaged_line_is_skipped_and_named_and_the_lines_after_it_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path());
        c.record_update(&update("t1", "u1", TaskState::TaskStarting))
            .unwrap();
        c.record_update(&update("t1", "u2", TaskState::TaskRunning))
            .unwrap();
        c.record_ack("f1", "t1", "u1").unwrap();
        let path = dir.path().join("meta/frameworks/f1/tasks/t1/updates.jsonl");
        // A byte changed in the first line.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[2] = b'#';
        std::fs::write(&path, &bytes).unwrap();
        let j = c.journal("f1", "t1").unwrap();
        assert_eq!(j.updates.len(), 1, "the second update still counts");
        assert_eq!(j.last_state(), Some(TaskState::TaskRunning));
        assert_eq!(j.damage.len(), 1);
        assert!(
            j.damage[0].contains("updates.jsonl line 1"),
            "{:?}",
            j.damage
        );
    }

    #[test]
    fn an_append_after_a_torn_line_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path());
        c.record_update(&update("t1", "u1", TaskState::TaskRunning))
            .unwrap();
        let path = dir.path().join("meta/frameworks/f1/tasks/t1/updates.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"update\":{\"uuid\":\"u2\",\"fram").unwrap();
        // The agent restarts and goes on: the next update is read back.
        c.record_update(&update("t1", "u3", TaskState::TaskFinished))
            .unwrap();
        let j = c.journal("f1", "t1").unwrap();
        assert_eq!(
            j.updates
                .iter()
                .map(|u| u.uuid.as_str())
                .collect::<Vec<_>>(),
            ["u1", "u3"]
        );
        assert_eq!(j.damage.len(), 1, "the sealed torn line is named");
    }

    #[test]
    fn an_unreadable_task_record_leaves_the_task_with_its_ids_and_journal() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path());
        for t in ["t1", "t2"] {
            c.save_task(&TaskRecord {
                framework_id: "f1".into(),
                task_id: t.into(),
                command: "sleep 1".into(),
                ..Default::default()
            })
            .unwrap();
            c.record_update(&update(t, &format!("{t}-u1"), TaskState::TaskRunning))
                .unwrap();
        }
        let record = dir.path().join("meta/frameworks/f1/tasks/t1/task.json");
        std::fs::write(&record, b"{\"framework_id\":\"f1\",\"tas").unwrap();
        let tasks = c.tasks().unwrap();
        assert_eq!(tasks.len(), 2);
        let (r1, j1) = &tasks[0];
        assert!(j1.record_lost && r1.task_id == "t1" && r1.command.is_empty());
        assert!(j1.damage[0].contains("t1/task.json"), "{:?}", j1.damage);
        assert_eq!(j1.last_state(), Some(TaskState::TaskRunning));
        let (r2, j2) = &tasks[1];
        assert!(!j2.record_lost && j2.damage.is_empty() && r2.command == "sleep 1");
        // Removed: the same.
        std::fs::remove_file(&record).unwrap();
        let tasks = c.tasks().unwrap();
        assert!(tasks[0].1.record_lost);
    }

    #[test]
    fn journals_written_before_the_typed_state_still_read() {
        // Lines as agents wrote them when the state was a string.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta/frameworks/f1/tasks/t1");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(
            path.join("updates.jsonl"),
            concat!(
                r#"{"update":{"uuid":"u1","framework_id":"f1","task_id":"t1","state":"TASK_RUNNING","message":"","exit_code":null,"timestamp_ms":1}}"#,
                "\n",
                r#"{"ack":{"uuid":"u1"}}"#,
                "\n",
                r#"{"update":{"uuid":"u2","framework_id":"f1","task_id":"t1","state":"TASK_FINISHED","message":"","exit_code":0,"timestamp_ms":2}}"#,
                "\n",
            ),
        )
        .unwrap();
        let c = Checkpoints::new(dir.path());
        let j = c.journal("f1", "t1").unwrap();
        assert_eq!(j.updates.len(), 2);
        assert_eq!(j.updates[0].state, TaskState::TaskRunning);
        assert_eq!(j.last_state(), Some(TaskState::TaskFinished));
        assert_eq!(j.unacknowledged.len(), 1);
        // And what is written now reads the same way.
        c.record_update(&update("t1", "u3", TaskState::TaskGoneByOperator))
            .unwrap();
        let text = std::fs::read_to_string(path.join("updates.jsonl")).unwrap();
        assert!(
            text.contains(r#""state":"TASK_GONE_BY_OPERATOR""#),
            "{text}"
        );
    }
}
