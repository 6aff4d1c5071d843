//! Where the master's tasks may interleave: on the multi-threaded runtime, tasks spawned
//! one after the other (the handlers of one agent session's updates, the Writer's batches)
//! run in parallel, and which of them reaches the Raft log first is not fixed. A
//! deterministic simulation runs everything on one thread, where they would always run
//! in the order they were spawned; there, [`point`] lets them overtake each other in an
//! order drawn from the run's seed, so the races the multi-threaded runtime allows are
//! explored and replayed.
//!
//! What it must not do: change anything outside a simulation. Production never turns it
//! on ([`enable`] is called only by `agora-sim`, on its own thread), and [`point`] is then
//! one thread-local read.

use std::cell::Cell;

use rand::RngCore;

thread_local! {
    /// Whether this thread's tasks interleave at random.
    static ENABLED: Cell<bool> = const { Cell::new(false) };
}

/// Makes the tasks of this thread's runtime interleave at every [`point`], drawing from
/// the thread's generator (`agora_raft_store::runtime`, seeded by the simulation). Only a
/// simulation calls this.
pub fn enable(on: bool) {
    ENABLED.with(|e| e.set(on));
}

/// A place where, on the multi-threaded runtime, another task could get ahead of this one:
/// in a simulation, yields to the scheduler 0-3 times.
pub async fn point() {
    if !ENABLED.with(Cell::get) {
        return;
    }
    let yields = agora_raft_store::runtime::ThreadRng::default().next_u32() % 4;
    for _ in 0..yields {
        tokio::task::yield_now().await;
    }
}
