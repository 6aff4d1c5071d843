//! # agora-agent
//!
//! Owns the agent (Mesos "slave"): advertising a host's resources to the leading master,
//! following the leader across failovers, running tasks in cgroups and delivering their
//! status updates reliably.
//!
//! - [`config`], [`detect`]: flags validated into an [`config::AgentConfig`]; resources
//!   detected from the host for whatever `--resources` does not name.
//! - [`master_link`]: register (committed before the reply), keep the id in the work dir,
//!   hold one session with the leader, answer its health checks, and find the leader again
//!   with capped, jittered backoff when the session ends. Its loop
//!   ([`master_link::follow_leader`]) serves real and simulated agents alike.
//! - [`checkpoint`]: the work dir's task records, fsynced status-update journals and the
//!   tokens of running executors.
//! - [`gc`]: collection of finished sandboxes (`--gc-delay`, `--gc-disk-headroom`,
//!   `--disk-watch-interval`, as Mesos): a sandbox whose executor has exited and whose
//!   task's updates are all acknowledged goes `--gc-delay` after it finished, or sooner
//!   when the work dir's disk fills; the decision ([`gc::policy`]) is pure, the removal
//!   and the disk measurement thin around it. Schedules survive a restart.
//! - [`workdir`]: the work dir's layout and modes (traverse-only above sandboxes, private
//!   agent state), sandboxes handed to their task's user, output files never opened
//!   through a symlink.
//! - [`user`]: the user a task runs as (`TaskInfo.user`): lookup, the decision to switch
//!   (only a root agent can run tasks as another user), and the switch in a forked child.
//! - [`tasks`]: launching each task through its own command executor (`agora-executor`,
//!   in its own session so it outlives the agent, for `--executor-recovery-timeout` at
//!   most), the executor API, reliable in-order delivery of status updates to the leader,
//!   and recovery after an agent restart (removing the cgroups of tasks it no longer has).
//! - [`mesos_executor`]: Mesos' v1 executor HTTP API (`POST /api/v1/executor`) for
//!   executors written on Mesos' libraries, on a second listener: plaintext, bound to
//!   127.0.0.1 only, serving that one path (`--executor-http-port`, checkpointed so
//!   executors reconnect after a restart). Its calls go through the same [`tasks`] calls as
//!   the gRPC executor API; callers are identified by their token or by the cgroup of the
//!   process owning their socket.
//! - [`files`]: the sandbox API (Mesos' `/files/browse`, `/files/read`, `/files/download`)
//!   for its tasks' sandboxes, each request carrying the leader's grant for one sandbox.
//! - [`observe`]: what the agent shows of itself on its listen address (TLS only, no
//!   principal): `/state` (Mesos' agent shape: resources, attributes, isolation, flags,
//!   `frameworks[].executors[].tasks` with each sandbox's `directory` in the sandbox
//!   API), `/metrics` (Prometheus: tasks by state, launch latency, update retries,
//!   sessions with the leader, each live task's cgroup usage and sandbox bytes, disk),
//!   `/flags` and `/version`; its [`observe::Observer`] is told of launches, updates and
//!   sessions as they happen.
//! - [`fetch`]: Mesos' fetcher: a task's (or its executor's) `uris` put in its sandbox
//!   before it starts, local files read as the task's user, HTTP bounded in size and time.
//! - [`convert`]: the crate's one conversion layer to the proto types: every message for
//!   the leader and for executors is built there (Mesos' executor API's in
//!   `convert::mesos`), and task states cross it as the domain
//!   [`agora_registry::TaskState`] (whose `is_terminal` is the only definition used).
//! - [`image`]: container images (issue 14, under way): layers unpacked for an overlayfs
//!   mount or applied onto a directory, on the pure [`agora_image`] core.
//! - [`clock`]: the crate's one wall clock.
//! - [`simulator`]: many simulated agents in one process, for load tests of the master,
//!   on `master_link`'s registration and session code.
//!
//! - [`isolation`]: finding the host's cgroups (v2, or v1 `cpu` + `memory` hierarchies) and
//!   managing one cgroup per task under the agent's parent cgroup: limits, membership, OOM
//!   detection, teardown (nested cgroups included), and removal of stale ones.
//! - [`supervisor`]: running one task's command (`/bin/sh -c`) in its own process group and
//!   cgroup, with output in its sandbox, killing it with a grace period, and reporting how it
//!   ended. This is the library half of the agent's built-in command executor.
//!
//! What they must not do: the isolation layer never talks to the network, spawns processes
//! or knows about frameworks and tasks beyond an opaque task key; the supervisor never speaks
//! gRPC/protobuf or depends on other workspace crates (status updates are the executor's
//! job, built on top). Neither persists state outside cgroupfs and the task's sandbox.
//! Across the crate: no proto <-> domain mapping outside `convert`, no task state spelled
//! as text (checkpoints hold Mesos names through the domain enum's serde), no wall-clock
//! read outside `clock`.
//!
//! ## What a task can and cannot reach
//!
//! A task runs as its user (`TaskInfo.user`, filled by the master; empty: the agent's own
//! user, as before), with that user's groups, in its own cgroup (joined before the switch,
//! so it cannot leave it or change its limits), with HOME its sandbox. It can read and
//! write its own sandbox (mode 0700, owned by its user, its stdout, stderr and
//! executor.log included) and whatever its user may on the host. It cannot list the work
//! dir, `sandboxes/` or its framework's directory (0711: traverse, not list), enter
//! another user's sandbox, or read the agent's state (`meta/` with checkpoints and
//! executor tokens is 0700, files 0600; `agent_id` 0600); as another user than root it
//! cannot read other users' processes' environments (`/proc/PID/environ`) or signal
//! them, PID 1 included. It cannot speak for another executor: the executor API answers
//! only calls carrying an executor's own token (`authorization: Bearer`, see [`tasks`]) or,
//! on Mesos' loopback executor API, coming from a process inside that executor's task
//! cgroup ([`mesos_executor`]), and only about that executor's framework, executor and
//! task; the built-in executor
//! keeps its token out of its task's environment (a framework's own executor gets its
//! token and may pass it on, to tasks that can then speak only for that executor). What
//! stays shared: tasks of the same user can reach each other's sandboxes and processes
//! (run them as different users to separate them); the network (the agent's port
//! included, behind the token; the loopback executor API, behind the token or the
//! caller's cgroup); and a task running as the agent's own user (root, with an empty user)
//! can reach everything the agent can.
//!
//! Invariant of the second listener: it is bound to 127.0.0.1, never TLS, and serves
//! `/api/v1/executor` only (every other path is 404): nothing else of the agent is ever
//! reachable without TLS.

mod agent;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod convert;
pub mod detect;
pub mod enforce;
pub mod fetch;
pub mod files;
pub mod gc;
pub mod image;
pub mod isolation;
pub mod master_link;
pub mod mesos_executor;
pub mod observe;
pub mod simulator;
pub mod supervisor;
pub mod tasks;
pub mod user;
pub mod workdir;

pub use agent::{run, run_until, Stop};
