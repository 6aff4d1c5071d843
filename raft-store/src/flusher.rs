//! The one place that flushes the sled database: a thread that batches waiting requests
//! into a single fsync.

use std::io;
use std::sync::mpsc;
use std::thread;

type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

pub(crate) struct Flusher {
    tx: Option<mpsc::Sender<Done>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Flusher {
    pub(crate) fn start(db: sled::Db) -> Self {
        let (tx, rx) = mpsc::channel::<Done>();
        let thread = thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || {
                // Appends and votes wait on this thread: it runs before client work.
                if let Err(e) = crate::raise_thread_priority() {
                    tracing::debug!(error = %e, "the flusher keeps the default priority");
                }
                // Ends when every sender (every store handle) is dropped.
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let result = db.flush().map(|_| ());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "sled flush failed");
                    }
                    for done in batch {
                        done(
                            result
                                .as_ref()
                                .map(|_| ())
                                .map_err(|e| io::Error::other(e.to_string())),
                        );
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
