//! openraft's async runtime for Agora: tokio, exactly as `openraft::TokioRuntime`, except
//! for the random numbers openraft draws (its election timeouts), which come from a
//! thread-local generator a simulation can seed.
//!
//! Production never seeds it: each thread's generator is seeded from the OS's entropy the
//! first time it is used, so election timeouts are as random as with `TokioRuntime`. The
//! deterministic simulator (`agora-sim`) calls [`seed_thread_rng`] on the one thread its
//! whole run happens on, so the same seed draws the same timeouts.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use openraft::async_runtime::{AsyncRuntime, TokioOneShotSender};
use openraft::{OptionalSend, TokioInstant};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    /// This thread's generator; None until first used or seeded.
    static THREAD_RNG: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Seeds the calling thread's generator: from now on, every number openraft draws on this
/// thread follows from `seed`. Only a simulation calls this.
pub fn seed_thread_rng(seed: u64) {
    THREAD_RNG.with(|rng| *rng.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

fn with_thread_rng<T>(f: impl FnOnce(&mut StdRng) -> T) -> T {
    THREAD_RNG.with(|rng| {
        let mut rng = rng.borrow_mut();
        f(rng.get_or_insert_with(StdRng::from_entropy))
    })
}

/// A handle on the calling thread's generator (what [`AgoraRuntime::thread_rng`] returns).
/// Like `rand::rngs::ThreadRng`, it is not `Send`: it draws from the thread it is used on.
#[derive(Clone, Debug, Default)]
pub struct ThreadRng {
    not_send: PhantomData<*const ()>,
}

impl RngCore for ThreadRng {
    fn next_u32(&mut self) -> u32 {
        with_thread_rng(|r| r.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        with_thread_rng(|r| r.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        with_thread_rng(|r| r.fill_bytes(dest))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        with_thread_rng(|r| r.try_fill_bytes(dest))
    }
}

/// tokio, with [`ThreadRng`] as openraft's random numbers (see the module docs).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AgoraRuntime;

impl AsyncRuntime for AgoraRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = ThreadRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

    #[inline]
    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    #[inline]
    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    #[inline]
    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    #[inline]
    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    #[inline]
    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    #[inline]
    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    #[inline]
    fn thread_rng() -> Self::ThreadLocalRng {
        ThreadRng::default()
    }

    #[inline]
    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn draws() -> Vec<u64> {
        let mut rng = AgoraRuntime::thread_rng();
        (0..8).map(|_| rng.gen_range(150..300)).collect()
    }

    #[test]
    fn a_seeded_thread_draws_the_same_numbers_again() {
        seed_thread_rng(7);
        let first = draws();
        seed_thread_rng(7);
        assert_eq!(draws(), first);
        seed_thread_rng(8);
        assert_ne!(draws(), first);
    }

    #[test]
    fn an_unseeded_thread_draws_from_entropy() {
        let a = std::thread::spawn(draws).join().unwrap();
        let b = std::thread::spawn(draws).join().unwrap();
        assert_ne!(
            a, b,
            "two threads seeded from entropy drew the same 8 numbers"
        );
    }
}
