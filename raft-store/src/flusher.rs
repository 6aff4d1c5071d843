//! The one place that flushes the sled database: a thread that batches waiting requests
//! into a single fsync, then records what that flush made durable in the marker
//! ([`crate::durable`]).
//!
//! A failed flush poisons the flusher for good: every later request fails with the first
//! error, and nothing is flushed again. After a failed fsync the kernel may have dropped the
//! dirty pages it could not write, so a later fsync that succeeds proves nothing about them
//! (PostgreSQL's "fsyncgate"); the store's only honest answer from then on is an error,
//! which stops openraft's core (the master then exits).

use std::io;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use crate::durable::{Durable, Marker};

type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

pub(crate) struct Flusher {
    tx: Option<mpsc::Sender<Done>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// What the log store has written to sled (vote, last log id) and wants the marker to say
/// once a flush covers it. The log store updates it after each write, before asking for
/// the flush; the flusher reads it before flushing, so the flush covers what it read.
pub(crate) type Pending = Arc<Mutex<Durable>>;

/// The error every request gets once a flush has failed: the first failure, with the path.
fn failed(first: &str) -> io::Error {
    io::Error::other(first.to_string())
}

/// sled's error in words: an I/O error as the OS names it, with its errno.
fn describe(e: &sled::Error) -> String {
    match e {
        sled::Error::Io(io) => describe_io(io),
        other => other.to_string(),
    }
}

/// "No space left on device (os error 28)", also for the copy sled hands out (its errors'
/// `Clone` rebuilds an `io::Error` from the original's debug form, `Os { code: 28, .. }`).
fn describe_io(e: &io::Error) -> String {
    let text = e.to_string();
    let code = e.raw_os_error().or_else(|| {
        let rest = text.strip_prefix("Os { code: ")?;
        rest[..rest.find(',')?].parse().ok()
    });
    match code {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => text,
    }
}

impl Flusher {
    pub(crate) fn start(db: sled::Db, dir: PathBuf, pending: Pending, mut marker: Marker) -> Self {
        let (tx, rx) = mpsc::channel::<Done>();
        let thread = thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || {
                // Appends and votes wait on this thread: it runs before client work.
                if let Err(e) = crate::raise_thread_priority() {
                    tracing::debug!(error = %e, "the flusher keeps the default priority");
                }
                let mut poisoned: Option<String> = None;
                // Ends when every sender (every store handle) is dropped.
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    if poisoned.is_none() {
                        let covered = pending.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let record = |marker: &mut Marker| {
                            marker
                                .write(&covered)
                                .map_err(|e| format!("writing {}: {e}", marker.path().display()))
                        };
                        let result = if marker.lowers(&covered) {
                            record(&mut marker)
                        } else {
                            Ok(())
                        }
                        .and_then(|()| {
                            db.flush().map(|_| ()).map_err(|e| {
                                format!("flushing the sled database in {}: {}", dir.display(), describe(&e))
                            })
                        })
                        .and_then(|()| record(&mut marker));
                        if let Err(e) = result {
                            tracing::error!(error = %e, "storage failed: nothing will be reported persisted again");
                            poisoned = Some(e);
                        }
                    }
                    for done in batch {
                        done(match &poisoned {
                            None => Ok(()),
                            Some(e) => Err(failed(e)),
                        });
                    }
                }
            })
            .expect("spawning the flusher thread");
        Flusher {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Calls `done` once everything written before this call is on disk.
    pub(crate) fn after_flush(&self, done: impl FnOnce(io::Result<()>) + Send + 'static) {
        let sent = match &self.tx {
            Some(tx) => tx.send(Box::new(done)).map_err(|mpsc::SendError(d)| d),
            None => Err(Box::new(done) as Done),
        };
        if let Err(done) = sent {
            done(Err(io::Error::other("flusher stopped")));
        }
    }

    /// Waits until everything written before this call is on disk.
    pub(crate) async fn flush(&self) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.after_flush(move |r| {
            let _ = tx.send(r);
        });
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("flusher stopped")))
    }
}

impl Drop for Flusher {
    /// Flushes what is pending, then stops the thread, so that once the last store handle
    /// is gone the database (and its file lock) is released.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
