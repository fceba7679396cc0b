//! Locks and friends that park green threads instead of blocking OS threads:
//! [`Mutex`], [`RwLock`], [`Condvar`], [`WaitGroup`], [`Semaphore`], [`Barrier`], [`Once`],
//! [`OnceLock`], [`LazyLock`].
//!
//! Every one of them also works when the caller is a plain OS thread (it then blocks in
//! `std::thread::park`), and a guard may be held across any blocking point: the green thread
//! may resume on another OS thread and unlock there.
//!
//! # Waiting
//!
//! All of them queue a `Node` (an `Unparker` and a flag) under a short internal lock that
//! is never held across a park, then park until the flag is set. Whoever releases the
//! resource *signals* a node: sets its flag (Release) and unparks it; the waiter sees the
//! flag (Acquire) and owns what was handed over. A waiter that times out takes itself out of
//! the queue under the same lock; if it is no longer there, it was signalled first and the
//! hand-over stands. (The semaphore's waiters mark themselves cancelled instead, for O(1)
//! timeouts, and the wait group's check a round number; see their files.)

mod barrier;
mod condvar;
mod mutex;
mod once;
mod once_lock;
mod rwlock;
mod semaphore;
mod wait_group;
mod waiter;

pub use barrier::*;
pub use condvar::*;
pub use mutex::*;
pub use once::*;
pub use once_lock::*;
pub use rwlock::*;
pub use semaphore::*;
pub use wait_group::*;
