//! `/state` renders shared between requests (Mesos batches its `/state` the same way).
//!
//! A render is CPU work that grows with the registry (10,000 tasks are megabytes of JSON),
//! so it runs on the blocking pool, one at a time. A request is answered by the first
//! render that *started after it arrived* (so it sees every write applied before it asked),
//! or by the last render if nothing was applied since that one began. Fifty clients
//! asking at once cost one or two renders, not fifty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;

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
    /// One render at a time; the lock also guards the kept renders.
    renders: tokio::sync::Mutex<HashMap<Option<String>, Render>>,
}

impl StateCache {
    /// The `/state` document `principal` may see, as of no earlier than this call.
    pub async fn get(&self, leader: &Leader, principal: Option<String>) -> Result<Bytes, String> {
        let arrived = self.started.load(Ordering::SeqCst);
        let mut renders = self.renders.lock().await;
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
        let body = {
            let leader = leader.clone();
            let principal = principal.clone();
            tokio::task::spawn_blocking(move || {
                let timer = leader.metrics().state_render_seconds.start_timer();
                let json = super::http::state_json(&leader, term, principal.as_deref());
                let body = Bytes::from(json.to_string());
                timer.observe_duration();
                body
            })
            .await
            .map_err(|e| format!("rendering /state failed: {e}"))?
        };
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
