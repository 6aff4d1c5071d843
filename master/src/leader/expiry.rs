//! What expires on the leader's clock: offers held past `--offer-timeout` are rescinded,
//! frameworks that did not subscribe to a new leader count as disconnected after a grace
//! period, and frameworks disconnected past their failover timeout are removed with their
//! tasks killed. The decisions are pure functions of the registry and `now`.

use agora_registry::{Command, FrameworkId, FrameworkStatus, OfferId, Registry};

use super::messages::FrameworkEvent;
use super::{Leader, RESUBSCRIBE_GRACE};

/// Offers older than `timeout_ms` at `now`, with their frameworks.
pub fn offers_past_timeout(
    reg: &Registry,
    now: u64,
    timeout_ms: u64,
) -> Vec<(OfferId, FrameworkId)> {
    reg.offers()
        .filter(|o| now.saturating_sub(o.created_at_ms) > timeout_ms)
        .map(|o| (o.id.clone(), o.framework_id.clone()))
        .collect()
}

/// Frameworks disconnected for longer than their failover timeout at `now`.
pub fn frameworks_past_failover(reg: &Registry, now: u64) -> Vec<FrameworkId> {
    reg.frameworks()
        .filter(|f| match f.status {
            FrameworkStatus::Disconnected { since_ms } => {
                now.saturating_sub(since_ms) > f.info.failover_timeout_ms
            }
            FrameworkStatus::Active => false,
        })
        .map(|f| f.info.id.clone())
        .collect()
}

impl Leader {
    /// Offer timeouts and framework failover timeouts, at `now`.
    pub(super) async fn expire(&self, now: u64) {
        if let Some(timeout) = self.config().offer_timeout {
            let old = self.read(|reg| offers_past_timeout(reg, now, timeout.as_millis() as u64));
            if !old.is_empty() {
                let ids: Vec<OfferId> = old.iter().map(|(o, _)| o.clone()).collect();
                if self.write(Command::RemoveOffers { ids }).await.is_ok() {
                    for (o, f) in old {
                        self.to_framework(&f, FrameworkEvent::Rescind(o));
                    }
                }
            }
        }
        // Frameworks recorded as connected that never subscribed to this leader (they were
        // connected to the previous one, or their disconnection was not recorded): after a
        // grace period they count as disconnected since they were first missed.
        let active: Vec<FrameworkId> = self.read(|reg| {
            reg.frameworks()
                .filter(|f| f.status == FrameworkStatus::Active)
                .map(|f| f.info.id.clone())
                .collect()
        });
        let subscribed = self.subscribed_frameworks();
        let missing = self.soft().missing_subscriptions(
            &active,
            |f| subscribed.contains(f),
            now,
            RESUBSCRIBE_GRACE.as_millis() as u64,
        );
        for (f, since) in missing {
            tracing::info!(framework = %f, "framework did not subscribe to this leader; failover timeout starts");
            let written = self
                .write(Command::DisconnectFramework {
                    id: f.clone(),
                    now_ms: since,
                })
                .await;
            if written.is_ok() {
                self.soft().disconnection_recorded(&f);
            }
        }
        for f in self.read(|reg| frameworks_past_failover(reg, now)) {
            if let Err(e) = self.remove_framework(&f, "failover timeout expired").await {
                tracing::warn!(framework = %f, error = %e, "could not remove an expired framework");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_registry::{AgentId, AgentInfo, FrameworkInfo, Offer, Resources};

    fn registry() -> Registry {
        let mut reg = Registry::default();
        let apply = |reg: &mut Registry, c: Command| reg.apply(&c).unwrap();
        apply(
            &mut reg,
            Command::RegisterAgent {
                info: AgentInfo {
                    principal: None,
                    registration: None,
                    id: AgentId::new("a").unwrap(),
                    hostname: "h".into(),
                    address: "h:1".into(),
                    resources: Resources::parse("cpus:4").unwrap(),
                    attributes: vec![],
                },
                now_ms: 0,
            },
        );
        for (id, failover) in [("f", 3_000), ("g", 60_000)] {
            apply(
                &mut reg,
                Command::RegisterFramework {
                    info: FrameworkInfo {
                        user: String::new(),
                        id: FrameworkId::new(id).unwrap(),
                        name: id.into(),
                        role: "*".into(),
                        principal: None,
                        failover_timeout_ms: failover,
                    },
                    now_ms: 0,
                },
            );
        }
        apply(
            &mut reg,
            Command::AddOffers {
                offers: vec![
                    Offer {
                        id: OfferId::new("early").unwrap(),
                        framework_id: FrameworkId::new("f").unwrap(),
                        agent_id: AgentId::new("a").unwrap(),
                        resources: Resources::parse("cpus:1").unwrap(),
                        created_at_ms: 1_000,
                    },
                    Offer {
                        id: OfferId::new("late").unwrap(),
                        framework_id: FrameworkId::new("g").unwrap(),
                        agent_id: AgentId::new("a").unwrap(),
                        resources: Resources::parse("cpus:1").unwrap(),
                        created_at_ms: 4_000,
                    },
                ],
            },
        );
        reg
    }

    #[test]
    fn offers_are_rescinded_only_after_the_offer_timeout() {
        let reg = registry();
        assert!(offers_past_timeout(&reg, 6_000, 5_000).is_empty());
        assert_eq!(
            offers_past_timeout(&reg, 6_001, 5_000),
            vec![(
                OfferId::new("early").unwrap(),
                FrameworkId::new("f").unwrap()
            )]
        );
        assert_eq!(offers_past_timeout(&reg, 9_001, 5_000).len(), 2);
    }

    #[test]
    fn a_framework_away_past_its_failover_timeout_is_removed_and_not_before() {
        let mut reg = registry();
        let f = FrameworkId::new("f").unwrap();
        assert!(
            frameworks_past_failover(&reg, 1_000_000).is_empty(),
            "connected frameworks never expire"
        );
        reg.apply(&Command::DisconnectFramework {
            id: f.clone(),
            now_ms: 10_000,
        })
        .unwrap();
        assert!(frameworks_past_failover(&reg, 13_000).is_empty());
        assert_eq!(frameworks_past_failover(&reg, 13_001), vec![f.clone()]);
        // Subscribing again in time stops the clock.
        let info = reg.framework(&f).unwrap().info.clone();
        reg.apply(&Command::RegisterFramework {
            info,
            now_ms: 12_000,
        })
        .unwrap();
        assert!(frameworks_past_failover(&reg, 100_000).is_empty());
    }
}
