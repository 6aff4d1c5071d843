//! The run's event log: one text line per event, stamped with virtual time since the run
//! began (`   12.345 n2   leader term=4`). Its bytes are a function of the seed alone,
//! which is what the determinism test compares.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// Shared by every part of the run.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Mutex<Inner>>,
    start: Instant,
}

struct Inner {
    text: String,
    /// Also log every message sent, delivered and dropped (else one summary a second).
    verbose: bool,
}

impl EventLog {
    /// A log whose clock starts now (virtual time).
    pub fn new(verbose: bool) -> EventLog {
        EventLog {
            inner: Arc::new(Mutex::new(Inner {
                text: String::new(),
                verbose,
            })),
            start: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Virtual milliseconds since the run began.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Whether per-message lines are wanted.
    pub fn verbose(&self) -> bool {
        self.lock().verbose
    }

    /// Appends one line: the time, who (a node `n1`, a client `c0`, `net`, `nemesis`,
    /// `sim`), and what.
    pub fn line(&self, who: &str, what: impl std::fmt::Display) {
        let ms = self.now_ms();
        let mut inner = self.lock();
        let _ = writeln!(
            inner.text,
            "{:>5}.{:03} {who:<7} {what}",
            ms / 1000,
            ms % 1000
        );
    }

    /// The log so far.
    pub fn text(&self) -> String {
        self.lock().text.clone()
    }
}
