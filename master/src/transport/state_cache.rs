//! `/state`: the document, its renders shared between requests (Mesos batches its `/state`
//! the same way), and each task's JSON kept between renders.
//!
//! A render is CPU work that grows with the registry (10,000 tasks are megabytes of JSON),
//! so it runs on the blocking pool, one at a time. A request is answered by the first
//! render that *started after it arrived* (so it sees every write applied before it asked),
//! or by the last render if nothing was applied since that one began. Fifty clients
//! asking at once cost one or two renders, not fifty.
//!
//! Tasks are most of the document and few change between two renders, so each task's JSON
//! is kept ([`TaskFragments`]) and written again only when the task changed: a render of
//! 10,000 unchanged tasks is a walk and a copy, and holds the registry's read lock (which
//! the state machine's writes wait for) only for the walk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_registry::{FrameworkId, Registry, Task, TaskId, TaskState, TimestampMs};
use axum::body::Bytes;
use serde_json::json;

use crate::convert::resources_json;
use crate::leader::Leader;

/// Renders kept, one per principal (their views differ by ACL); the oldest goes first.
const MAX_VIEWS: usize = 64;

/// One render of one principal's view.
#[derive(Clone)]
struct Render {
    /// The render's number: renders are numbered as they start.
    number: u64,
    /// Applied log index and term read before it began.
    applied: u64,
    term: u64,
    body: Bytes,
}

#[derive(Default)]
pub struct StateCache {
    /// Renders started so far.
    started: AtomicU64,
    /// One render at a time; the lock also guards the kept renders and task fragments.
    renders: tokio::sync::Mutex<Renders>,
}

#[derive(Default)]
struct Renders {
    by_principal: HashMap<Option<String>, Render>,
    tasks: TaskFragments,
}

impl StateCache {
    /// The `/state` document `principal` may see, as of no earlier than this call.
    pub async fn get(&self, leader: &Leader, principal: Option<String>) -> Result<Bytes, String> {
        let arrived = self.started.load(Ordering::SeqCst);
        let mut guard = self.renders.lock().await;
        let Renders {
            by_principal: renders,
            tasks,
        } = &mut *guard;
        let status = leader.quorum().status();
        let (applied, term) = (status.last_applied, status.view.term);
        if let Some(r) = renders.get(&principal) {
            let fresh = r.number > arrived || (r.applied == applied && r.term == term);
            if fresh {
                leader.metrics().state_shared.inc();
                return Ok(r.body.clone());
            }
        }
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let (body, kept) = {
            let leader = leader.clone();
            let principal = principal.clone();
            let mut fragments = std::mem::take(tasks);
            tokio::task::spawn_blocking(move || {
                let timer = leader.metrics().state_render_seconds.start_timer();
                let body = render(&leader, term, principal.as_deref(), &mut fragments);
                timer.observe_duration();
                (Bytes::from(body), fragments)
            })
            .await
            .map_err(|e| format!("rendering /state failed: {e}"))?
        };
        *tasks = kept;
        if renders.len() >= MAX_VIEWS && !renders.contains_key(&principal) {
            let oldest = renders
                .iter()
                .min_by_key(|(_, r)| r.number)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                renders.remove(&k);
            }
        }
        renders.insert(
            principal,
            Render {
                number,
                applied,
                term,
                body: body.clone(),
            },
        );
        Ok(body)
    }
}

/// Each task's JSON as of the last render that saw it, by framework and task id.
#[derive(Default)]
pub struct TaskFragments {
    by_framework: HashMap<FrameworkId, HashMap<TaskId, Fragment>>,
    /// Renders so far: a fragment no render has seen in this one belongs to a task the
    /// registry dropped.
    render: u64,
}

struct Fragment {
    /// What can change in a task once launched (and what a task id reused after its
    /// eviction would differ in).
    state: TaskState,
    updated_at_ms: TimestampMs,
    message: Option<String>,
    seen: u64,
    json: Bytes,
}

impl Fragment {
    fn shows(&self, t: &Task) -> bool {
        self.state == t.state && self.updated_at_ms == t.updated_at_ms && self.message == t.message
    }
}

impl TaskFragments {
    /// Starts a render.
    fn begin(&mut self) {
        self.render += 1;
    }

    /// `t`'s JSON, written again only if it changed since the last render.
    fn json(&mut self, t: &Task) -> Bytes {
        let render = self.render;
        if !self.by_framework.contains_key(&t.framework_id) {
            self.by_framework
                .insert(t.framework_id.clone(), HashMap::new());
        }
        let Some(tasks) = self.by_framework.get_mut(&t.framework_id) else {
            return Bytes::from(task_json(t).to_string());
        };
        if let Some(f) = tasks.get_mut(&t.id).filter(|f| f.shows(t)) {
            f.seen = render;
            return f.json.clone();
        }
        let json = Bytes::from(task_json(t).to_string());
        tasks.insert(
            t.id.clone(),
            Fragment {
                state: t.state,
                updated_at_ms: t.updated_at_ms,
                message: t.message.clone(),
                seen: render,
                json: json.clone(),
            },
        );
        json
    }

    /// Ends a render that saw every task: forgets the tasks it did not see.
    fn end(&mut self) {
        let render = self.render;
        self.by_framework.retain(|_, tasks| {
            tasks.retain(|_, f| f.seen == render);
            !tasks.is_empty()
        });
    }
}

fn task_json(t: &Task) -> serde_json::Value {
    json!({
        "user": t.user,
        "id": t.id,
        "framework_id": t.framework_id,
        "agent_id": t.agent_id,
        "name": t.name,
        "state": t.state.name(),
        "resources": resources_json(&t.resources),
        "message": t.message,
        "image": crate::convert::task_image(&t.launch),
        "exit_code": t.exit_code,
        "updated_at_ms": t.updated_at_ms,
    })
}

/// The cluster state as JSON, from the leader's registry: what `principal` may see of it
/// (the `view_frameworks`, `view_tasks` and `view_agents` ACLs).
fn render(
    leader: &Leader,
    term: u64,
    principal: Option<&str>,
    fragments: &mut TaskFragments,
) -> Vec<u8> {
    fragments.begin();
    let (head, tasks) = leader.read(|reg| {
        let tasks: Vec<Bytes> = reg
            .tasks()
            .map(|t| (t, fragments.json(t)))
            .filter(|(t, _)| leader.may_see_task(principal, t))
            .map(|(_, json)| json)
            .collect();
        (head_json(leader, reg, principal), tasks)
    });
    fragments.end();
    let mut head = serde_json::to_vec(&json!({
        "leader": leader.quorum().advertise(),
        "term": term,
        "members": members_json(leader),
        "agents": head.0,
        "frameworks": head.1,
        "completed_frameworks": head.2,
        "offers": head.3,
        "weights": head.4,
    }))
    .unwrap_or_else(|_| b"{}".to_vec());
    // `head` is an object: reopen it for the tasks.
    head.pop();
    let mut body = head;
    body.reserve(tasks.iter().map(|t| t.len() + 1).sum::<usize>() + 16);
    body.extend_from_slice(b",\"tasks\":[");
    for (i, t) in tasks.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(t);
    }
    body.extend_from_slice(b"]}");
    body
}

type Head = (
    Vec<serde_json::Value>,
    Vec<serde_json::Value>,
    Vec<serde_json::Value>,
    Vec<serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
);

/// The quorum's members as the leader sees them (the web UI's overview).
fn members_json(leader: &Leader) -> Vec<serde_json::Value> {
    leader
        .quorum()
        .members_health()
        .into_iter()
        .map(|m| {
            json!({
                "id": m.member.id,
                "address": m.member.address,
                "voter": m.member.voter,
                "role": m.role,
                "healthy": m.healthy,
                "last_contact_ms": m.last_contact.map(|d| d.as_millis() as u64),
                "matched_index": m.matched_index,
            })
        })
        .collect()
}

/// Agents, frameworks and completed frameworks `principal` may see.
fn head_json(leader: &Leader, reg: &Registry, principal: Option<&str>) -> Head {
    let agents = reg
        .agents()
        .filter(|a| leader.may_see_agent(principal, a))
        .map(|a| {
            let alloc = reg.agent_allocation(&a.info.id);
            json!({
                "id": a.info.id,
                "hostname": a.info.hostname,
                "address": a.info.address,
                "active": a.status == agora_registry::AgentStatus::Active,
                "registered_at_ms": a.registered_at_ms,
                "resources": resources_json(&a.info.resources),
                "used": resources_json(&alloc.used),
                "offered": resources_json(&alloc.offered),
                "attributes": a.info.attributes.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "deactivated": a.deactivated,
                "drain": a.drain.map(|d| json!({
                    "state": crate::convert::drain_state_name(d.state),
                    "started_ms": d.started_ms,
                    "deadline_ms": d.deadline_ms,
                    "mark_gone": d.mark_gone,
                })),
            })
        })
        .collect();
    let frameworks = reg
        .frameworks()
        .filter(|f| leader.may_see_framework(principal, f))
        .map(|f| {
            let alloc = reg.framework_allocation(&f.info.id);
            json!({
                "id": f.info.id,
                "name": f.info.name,
                "role": f.info.role,
                "principal": f.info.principal,
                "user": f.info.user,
                "active": f.status == agora_registry::FrameworkStatus::Active,
                "registered_at_ms": f.registered_at_ms,
                "used": resources_json(&alloc.used),
                "offered": resources_json(&alloc.offered),
            })
        })
        .collect();
    // Removed frameworks the registry still keeps (`--max-completed-frameworks`).
    let completed = reg
        .completed_frameworks()
        .filter(|c| leader.may_see_framework(principal, &c.framework))
        .map(|c| {
            json!({
                "id": c.framework.info.id,
                "name": c.framework.info.name,
                "role": c.framework.info.role,
                "user": c.framework.info.user,
                "removed_at_ms": c.removed_at_ms,
            })
        })
        .collect();
    // Outstanding offers of the frameworks `principal` may see.
    let offers = reg
        .offers()
        .filter(|o| {
            reg.framework(&o.framework_id)
                .is_some_and(|f| leader.may_see_framework(principal, f))
        })
        .map(|o| {
            json!({
                "id": o.id,
                "framework_id": o.framework_id,
                "agent_id": o.agent_id,
                "resources": resources_json(&o.resources),
                "created_at_ms": o.created_at_ms,
            })
        })
        .collect();
    // Roles' DRF weights set by operators (a role not named weighs 1).
    let weights = reg
        .weights()
        .iter()
        .map(|(role, w)| (role.clone(), json!(w)))
        .collect();
    (agents, frameworks, completed, offers, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_registry::{AgentId, Resources};

    fn task(id: &str, state: TaskState, at: TimestampMs) -> Task {
        Task {
            id: TaskId::new(id).unwrap(),
            framework_id: FrameworkId::new("fw").unwrap(),
            agent_id: AgentId::new("a1").unwrap(),
            name: id.into(),
            resources: Resources::default(),
            state,
            message: None,
            exit_code: None,
            updated_at_ms: at,
            launch: Vec::new(),
            user: "u".into(),
            unreachable_from: None,
        }
    }

    fn parsed(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn an_unchanged_task_keeps_its_json_and_a_changed_one_is_written_again() {
        let mut f = TaskFragments::default();
        let running = task("t1", TaskState::TaskRunning, 1);
        f.begin();
        let first = f.json(&running);
        f.end();
        assert_eq!(parsed(&first)["state"], "TASK_RUNNING");

        f.begin();
        let again = f.json(&running);
        f.end();
        // The same bytes: not written again.
        assert_eq!(again.as_ptr(), first.as_ptr());

        let mut finished = task("t1", TaskState::TaskFinished, 2);
        finished.message = Some("done".into());
        f.begin();
        let changed = f.json(&finished);
        f.end();
        assert_eq!(parsed(&changed)["state"], "TASK_FINISHED");
        assert_eq!(parsed(&changed)["message"], "done");

        // Only the message changed: written again too.
        finished.message = Some("done, exit 0".into());
        f.begin();
        assert_eq!(parsed(&f.json(&finished))["message"], "done, exit 0");
        f.end();
    }

    #[test]
    fn a_task_no_render_saw_is_forgotten() {
        let mut f = TaskFragments::default();
        f.begin();
        f.json(&task("t1", TaskState::TaskRunning, 1));
        f.json(&task("t2", TaskState::TaskRunning, 1));
        f.end();
        f.begin();
        f.json(&task("t2", TaskState::TaskRunning, 1));
        f.end();
        let kept: Vec<_> = f.by_framework.values().flat_map(|m| m.keys()).collect();
        assert_eq!(kept, vec![&TaskId::new("t2").unwrap()]);
        f.begin();
        f.end();
        assert!(f.by_framework.is_empty());
    }
}
