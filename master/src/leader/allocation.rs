//! The leader's allocation loop: every `--allocation-interval` (or sooner when woken), it
//! expires what is due, rebuilds the DRF allocator from the registry with this leader's soft
//! state (filters, suppression), runs one cycle, commits the offers as one command, and
//! sends them.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_allocator::{Allocator, AllocatorConfig};
use agora_registry::{Command, FrameworkId, FrameworkStatus, Offer, OfferId, Registry};

use super::messages::{FrameworkEvent, OfferView};
use super::sessions::Delivery;
use super::soft_state::SoftState;
use super::{Leader, WriteError};

/// A fresh allocator matching the registry, with the soft state applied at `now`.
/// `subscribed` says which frameworks have a live subscription (only they get offers).
pub fn rebuild(
    reg: &Registry,
    soft: &mut SoftState,
    subscribed: impl Fn(&FrameworkId) -> bool,
    now: u64,
) -> Allocator {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    for (role, w) in reg.weights() {
        alloc.set_weight(role, *w);
    }
    for a in reg.agents() {
        let held = reg.agent_allocation(&a.info.id);
        alloc.add_agent(
            a.info.id.clone(),
            a.info.resources.clone(),
            held.used.plus(&held.offered),
        );
        if !a.in_pool() {
            alloc.set_agent_active(&a.info.id, false);
        }
    }
    for f in reg.frameworks() {
        // What it holds on each agent (live tasks and outstanding offers), for DRF.
        let held = reg.framework_holdings(&f.info.id);
        alloc.add_framework(f.info.id.clone(), f.info.role.clone(), held);
        if f.status != FrameworkStatus::Active || !subscribed(&f.info.id) {
            alloc.set_framework_active(&f.info.id, false);
        }
        if soft.is_suppressed(&f.info.id) {
            alloc.suppress(&f.info.id);
        }
        alloc.set_offers_made(&f.info.id, soft.offers_made(&f.info.id));
    }
    for (f, a, filter) in soft.live_filters(now) {
        alloc.decline_resources(&f, &a, filter.resources, filter.until_ms);
    }
    alloc
}

/// Runs on every replica; allocates only while it leads.
pub(super) async fn run(leader: Leader) {
    let interval = leader.config().allocation_interval;
    let mut was_leader = false;
    let mut seq: u64 = 0;
    let mut prefix = String::new();
    // Raft's view changes; while this replica does not lead, any change may be its
    // election, and a new leader offers at once rather than an interval later.
    let mut raft_view = leader.quorum().watch();
    // How long the last cycle took: a woken cycle waits at least twice that after the
    // last one began, so a burst of wake-ups (every registration, every finished task)
    // cannot keep the leader rebuilding back to back on a large cluster.
    let mut last_cycle = Duration::ZERO;
    loop {
        tokio::select! {
            // In the order written: a deterministic simulation replays the same choice.
            biased;
            _ = tokio::time::sleep(interval) => {},
            _ = leader.shared.wake.notified() => {
                // Coalesce a burst of wake-ups.
                let pause = (last_cycle * 2).clamp(Duration::from_millis(5), interval);
                tokio::time::sleep(pause).await;
            },
            Ok(()) = raft_view.changed(), if !was_leader => {},
        }
        let view = leader.view();
        if !view.is_leader {
            if was_leader {
                leader.set_leading(false);
                leader.frameworks_step_down(view.leader_address);
            }
            was_leader = false;
            continue;
        }
        if !was_leader {
            leader.set_leading(true);
            leader.became_leader().await;
            // Drawn from the thread's generator (the OS's entropy; a simulation's seed).
            let random =
                rand::RngCore::next_u32(&mut agora_raft_store::runtime::ThreadRng::default());
            prefix = format!("{random:08x}-{}", view.term);
            seq = 0;
        }
        was_leader = true;
        let now = leader.now_ms();
        leader.replicate_retention().await;
        leader.expire(now).await;
        let subscribed = leader.subscribed_frameworks();
        // Only subscribed frameworks that have not suppressed offers can be offered
        // anything: with none, the cycle costs nothing, however large the cluster.
        let wanting = {
            let soft = leader.soft();
            subscribed.iter().any(|f| !soft.is_suppressed(f))
        };
        if !wanting {
            continue;
        }
        // The cycle is CPU work that grows with the cluster: it runs on the blocking pool,
        // never on the runtime that serves Raft heartbeats. On a current-thread runtime (the
        // deterministic simulation, whose one thread is the whole run) it runs in place.
        let cycle = {
            let leader = leader.clone();
            move || {
                let started = tokio::time::Instant::now();
                let timer = leader.metrics().allocation_seconds.start_timer();
                let mut soft = leader.soft();
                let mut allocator =
                    leader.read(|reg| rebuild(reg, &mut soft, |f| subscribed.contains(f), now));
                let proposals = allocator.allocate(now);
                for p in &proposals {
                    soft.offered(&p.framework_id);
                }
                drop(soft);
                timer.observe_duration();
                (proposals, started.elapsed())
            }
        };
        let in_place = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread;
        let outcome = if in_place {
            Ok(cycle())
        } else {
            tokio::task::spawn_blocking(cycle).await
        };
        let proposals = match outcome {
            Ok((proposals, took)) => {
                last_cycle = took;
                proposals
            }
            Err(e) => {
                tracing::error!(error = %e, "allocation cycle failed");
                continue;
            }
        };
        if proposals.is_empty() {
            continue;
        }
        // A random prefix per leadership and a sequence keep ids unique across leaders.
        let offers: Vec<Offer> = proposals
            .into_iter()
            .map(|p| {
                seq += 1;
                Offer {
                    id: OfferId::new(format!("{prefix}-O{seq}")).expect("valid id"),
                    framework_id: p.framework_id,
                    agent_id: p.agent_id,
                    resources: p.resources,
                    created_at_ms: now,
                }
            })
            .collect();
        leader.send_offers(offers).await;
    }
}

impl Leader {
    /// This replica has just become leader (fault hooks of the self-test live here).
    async fn became_leader(&self) {
        let faults = &self.config().faults;
        if faults.slow_failover {
            tracing::warn!("FAULT slow-failover: waiting 8 s before the first allocation");
            tokio::time::sleep(Duration::from_secs(8)).await;
        }
        if faults.forget_frameworks {
            let all: Vec<FrameworkId> =
                self.read(|reg| reg.frameworks().map(|f| f.info.id.clone()).collect());
            for f in all {
                tracing::warn!(framework = %f, "FAULT forget-frameworks: removing a registered framework");
                let _ = self.remove_framework(&f, "FAULT forget-frameworks").await;
            }
        }
    }

    /// Makes the registry keep what this leader's flags say (`--max-completed-*`): the
    /// setting is replicated, so every replica evicts the same history at the same entry.
    /// Checked every cycle; written only when it differs.
    async fn replicate_retention(&self) {
        let wanted = self.config().retention;
        if self.read(|reg| reg.retention()) == wanted {
            return;
        }
        match self
            .write(Command::SetRetention { retention: wanted })
            .await
        {
            Ok(_) => tracing::info!(
                tasks_per_framework = wanted.max_completed_tasks_per_framework,
                frameworks = wanted.max_completed_frameworks,
                "registry retention set"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not set the registry's retention; next cycle")
            }
        }
    }

    /// Commits offers as one command, then sends each framework its own.
    async fn send_offers(&self, offers: Vec<Offer>) {
        match self
            .write(Command::AddOffers {
                offers: offers.clone(),
            })
            .await
        {
            Ok(_) => {
                self.metrics().offers_made.inc_by(offers.len() as u64);
                let mut by_framework: BTreeMap<FrameworkId, Vec<OfferView>> = BTreeMap::new();
                self.read(|reg| {
                    for o in &offers {
                        by_framework
                            .entry(o.framework_id.clone())
                            .or_default()
                            .push(OfferView::of(reg, o));
                    }
                });
                // An offer that cannot reach its framework (its stream is full, or it
                // went away) is withdrawn at once: held in the registry, it would keep
                // its resources from everyone with nobody to accept or decline it.
                let mut undelivered = Vec::new();
                for (f, offers) in by_framework {
                    let ids: Vec<_> = offers.iter().map(|o| o.offer.id.clone()).collect();
                    if self.to_framework(&f, FrameworkEvent::Offers(offers)) == Delivery::Dropped {
                        tracing::warn!(framework = %f, offers = ids.len(), "offers not delivered (the framework's stream is full or gone); withdrawn");
                        undelivered.extend(ids);
                    }
                }
                if !undelivered.is_empty() {
                    self.metrics()
                        .offers_undelivered
                        .inc_by(undelivered.len() as u64);
                    if let Err(e) = self.write(Command::RemoveOffers { ids: undelivered }).await {
                        tracing::warn!(error = %e, "could not withdraw undelivered offers; they go with the framework or the leader");
                    }
                    self.wake();
                }
            }
            Err(WriteError::Rejected(r)) => {
                tracing::debug!(reason = %r, "allocation raced a registry change; next cycle")
            }
            Err(e) => tracing::warn!(error = %e, "could not commit offers"),
        }
    }

    /// This replica stopped leading: end every subscription (frameworks subscribe to the
    /// new leader) and forget the soft state.
    pub(super) fn frameworks_step_down(&self, leader: Option<String>) {
        self.shared
            .frameworks
            .end_all(|| super::messages::SessionEnd::NotLeader(leader.clone()));
        *self.soft() = SoftState::default();
    }
}
