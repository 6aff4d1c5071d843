//! One table of live sessions, for agents and frameworks alike: a session is opened with a
//! new serial (replacing, and ending, any older one of the same key), only the current
//! serial may close it, and messages for a key without a session wait in a bounded queue
//! until it opens one (if the caller asks for that).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::mpsc;

/// What a session's stream carries: messages, then possibly the reason it ended.
pub type Outbound<M, E> = Result<M, E>;

/// The sending half of one session's stream.
pub type SessionTx<M, E> = mpsc::Sender<Outbound<M, E>>;

/// Identifies one session of a key; a replaced session's serial is no longer current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Serial(u64);

/// Whether a message reached a live session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// No live session (or its stream is full): kept for the key's next session.
    Queued,
    /// No live session and not to be kept.
    Dropped,
}

struct Session<M, E> {
    serial: Serial,
    tx: SessionTx<M, E>,
}

struct Inner<K, M, E> {
    sessions: BTreeMap<K, Session<M, E>>,
    pending: BTreeMap<K, VecDeque<M>>,
    next_serial: u64,
}

/// The table. `M` is the message type, `E` the reason a session ends.
pub struct SessionTable<K, M, E> {
    inner: Mutex<Inner<K, M, E>>,
    /// Most messages kept for one absent key (the oldest go first).
    max_pending: usize,
}

/// Tells a session's stream that it ended. A full stream gets the reason as soon as it has
/// room (a task waits for it): other holders of the sender (a heartbeat) would otherwise
/// keep a stream the table has forgotten open for good, and its client would wait on it
/// forever instead of finding the new leader.
fn end_stream<M: Send + 'static, E: Send + 'static>(tx: SessionTx<M, E>, why: E) {
    match tx.try_send(Err(why)) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(end)) => {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = tx.send(end).await;
                });
            }
        }
    }
}

impl<K: Clone + Ord, M: Clone + Send + 'static, E: Send + 'static> SessionTable<K, M, E> {
    pub fn new(max_pending: usize) -> Self {
        SessionTable {
            inner: Mutex::new(Inner {
                sessions: BTreeMap::new(),
                pending: BTreeMap::new(),
                next_serial: 0,
            }),
            max_pending,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, M, E>> {
        // A handler that panicked while holding the lock left the table consistent (every
        // method below finishes its edits before it can panic), so carry on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens `key`'s session on `tx`: `first` goes out first, then whatever was queued for
    /// it; an older session of `key` is ended with `replaced`. Returns the new serial.
    pub fn open(
        &self,
        key: &K,
        tx: SessionTx<M, E>,
        first: impl IntoIterator<Item = M>,
        replaced: E,
    ) -> Serial {
        let mut inner = self.lock();
        inner.next_serial += 1;
        let serial = Serial(inner.next_serial);
        for m in first {
            let _ = tx.try_send(Ok(m));
        }
        for m in inner.pending.remove(key).unwrap_or_default() {
            let _ = tx.try_send(Ok(m));
        }
        if let Some(old) = inner.sessions.insert(key.clone(), Session { serial, tx }) {
            end_stream(old.tx, replaced);
        }
        serial
    }

    /// Closes `key`'s session if `serial` is still its current one; a replaced session
    /// cannot close its successor. True if it closed it.
    pub fn close(&self, key: &K, serial: Serial) -> bool {
        let mut inner = self.lock();
        let current = inner.sessions.get(key).is_some_and(|s| s.serial == serial);
        if current {
            inner.sessions.remove(key);
        }
        current
    }

    /// Ends `key`'s session, whichever it is, with `why`; forgets its queue.
    pub fn end(&self, key: &K, why: E) -> bool {
        let mut inner = self.lock();
        inner.pending.remove(key);
        match inner.sessions.remove(key) {
            Some(s) => {
                end_stream(s.tx, why);
                true
            }
            None => false,
        }
    }

    /// Ends every session (with `why(key)`) and forgets every queue.
    pub fn end_all(&self, why: impl Fn() -> E) {
        let mut inner = self.lock();
        for (_, s) in std::mem::take(&mut inner.sessions) {
            end_stream(s.tx, why());
        }
        inner.pending.clear();
    }

    /// Sends `msg` to `key`'s session. Without a live session (or with its stream full),
    /// the message is queued for the next one if `keep(&msg)`, otherwise dropped.
    pub fn send(&self, key: &K, msg: M, keep: impl FnOnce(&M) -> bool) -> Delivery {
        let mut inner = self.lock();
        let unsent = match inner.sessions.get(key) {
            Some(s) => match s.tx.try_send(Ok(msg)) {
                Ok(()) => return Delivery::Sent,
                Err(e) => match e.into_inner() {
                    Ok(m) => m,
                    Err(_) => return Delivery::Dropped,
                },
            },
            None => msg,
        };
        if !keep(&unsent) {
            return Delivery::Dropped;
        }
        let max = self.max_pending;
        let queue = inner.pending.entry(key.clone()).or_default();
        if queue.len() >= max {
            queue.pop_front();
        }
        queue.push_back(unsent);
        Delivery::Queued
    }

    /// Sends `msg` to every live session (dropped where a stream is full).
    pub fn broadcast(&self, msg: &M) {
        let inner = self.lock();
        for s in inner.sessions.values() {
            let _ = s.tx.try_send(Ok(msg.clone()));
        }
    }

    /// Forgets what was queued for `key`.
    pub fn forget(&self, key: &K) {
        self.lock().pending.remove(key);
    }

    /// Whether `serial` is still `key`'s current session.
    pub fn is_current(&self, key: &K, serial: Serial) -> bool {
        self.lock()
            .sessions
            .get(key)
            .is_some_and(|s| s.serial == serial)
    }

    pub fn is_open(&self, key: &K) -> bool {
        self.lock().sessions.contains_key(key)
    }

    /// Keys with a live session.
    pub fn keys(&self) -> Vec<K> {
        self.lock().sessions.keys().cloned().collect()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sender of every live session (to message them without holding the table).
    pub fn senders(&self) -> Vec<(K, SessionTx<M, E>)> {
        self.lock()
            .sessions
            .iter()
            .map(|(k, s)| (k.clone(), s.tx.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Table = SessionTable<&'static str, u32, &'static str>;

    fn session(
        table: &Table,
        key: &'static str,
    ) -> (Serial, mpsc::Receiver<Outbound<u32, &'static str>>) {
        let (tx, rx) = mpsc::channel(16);
        (table.open(&key, tx, [], "replaced"), rx)
    }

    fn drain(
        rx: &mut mpsc::Receiver<Outbound<u32, &'static str>>,
    ) -> Vec<Outbound<u32, &'static str>> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn a_full_stream_still_learns_that_it_ended() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let table = Table::new(10);
            let (tx, mut rx) = mpsc::channel(2);
            let serial = table.open(&"a", tx.clone(), [], "replaced");
            // The stream fills up (a client slow to read), and another sender (the
            // heartbeat) still holds it.
            assert_eq!(table.send(&"a", 1, |_| false), Delivery::Sent);
            assert_eq!(table.send(&"a", 2, |_| false), Delivery::Sent);
            table.end_all(|| "not leader");
            assert!(!table.is_current(&"a", serial));
            // What was in the stream, then the reason, though the stream was full when the
            // session ended.
            assert_eq!(rx.recv().await, Some(Ok(1)));
            assert_eq!(rx.recv().await, Some(Ok(2)));
            let end = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
            assert_eq!(end, Ok(Some(Err("not leader"))), "the stream was left open");
            drop(tx);
        });
    }

    #[test]
    fn a_replaced_session_cannot_close_its_successor() {
        let table = Table::new(10);
        let (old, mut old_rx) = session(&table, "a");
        let (new, mut new_rx) = session(&table, "a");
        assert_ne!(old, new);
        assert_eq!(drain(&mut old_rx), vec![Err("replaced")]);
        assert!(
            !table.close(&"a", old),
            "the old serial closed the new session"
        );
        assert!(table.is_open(&"a"));
        assert_eq!(table.send(&"a", 7, |_| false), Delivery::Sent);
        assert_eq!(drain(&mut new_rx), vec![Ok(7)]);
        assert!(table.close(&"a", new));
        assert!(!table.is_open(&"a"));
    }

    #[test]
    fn messages_for_an_absent_key_wait_if_kept_and_come_after_the_first() {
        let table = Table::new(2);
        assert_eq!(table.send(&"a", 1, |_| true), Delivery::Queued);
        assert_eq!(table.send(&"a", 2, |m| *m != 2), Delivery::Dropped);
        assert_eq!(table.send(&"a", 3, |_| true), Delivery::Queued);
        assert_eq!(table.send(&"a", 4, |_| true), Delivery::Queued);
        let (tx, mut rx) = mpsc::channel(16);
        table.open(&"a", tx, [0], "replaced");
        // Bounded: the oldest (1) went; the first message leads.
        assert_eq!(drain(&mut rx), vec![Ok(0), Ok(3), Ok(4)]);
    }

    #[test]
    fn a_full_stream_queues_instead_of_blocking() {
        let table = Table::new(10);
        let (tx, mut rx) = mpsc::channel(1);
        table.open(&"a", tx, [], "replaced");
        assert_eq!(table.send(&"a", 1, |_| true), Delivery::Sent);
        assert_eq!(table.send(&"a", 2, |_| true), Delivery::Queued);
        assert_eq!(table.send(&"a", 3, |_| false), Delivery::Dropped);
        assert_eq!(drain(&mut rx), vec![Ok(1)]);
    }

    #[test]
    fn end_and_end_all_say_why_and_forget_queues() {
        let table = Table::new(10);
        let (_, mut a) = session(&table, "a");
        let (_, mut b) = session(&table, "b");
        table.send(&"c", 9, |_| true);
        assert!(table.end(&"a", "removed"));
        assert!(!table.end(&"a", "removed"));
        assert_eq!(drain(&mut a), vec![Err("removed")]);
        table.broadcast(&5);
        assert_eq!(table.len(), 1);
        table.end_all(|| "not leader");
        assert_eq!(drain(&mut b), vec![Ok(5), Err("not leader")]);
        assert!(table.is_empty());
        let (tx, mut c) = mpsc::channel(16);
        table.open(&"c", tx, [], "replaced");
        assert!(drain(&mut c).is_empty(), "queue survived end_all");
    }
}
