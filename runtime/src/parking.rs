//! Parking for code built on top of the runtime: `std::thread::park` for green threads.
//!
//! [`park`] blocks the caller until its [`Unparker`] is used; the runtime's channels and
//! locks stand on the same primitive. It follows std's token semantics: an `unpark` that
//! arrives before the `park` makes that `park` return at once, and `park` may return
//! spuriously (also because of a token left by an unrelated wake-up), so callers keep their
//! condition in an atomic or under a lock and re-check it in a loop. Called from a plain OS
//! thread, these are `std::thread::park` and friends.

use std::fmt;
use std::time::{Duration, Instant};

use crate::park as imp;

/// Blocks the calling green thread (its M runs other G's meanwhile), or the calling OS
/// thread, until its [`Unparker`] is used. May return spuriously.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let done = Arc::new(AtomicBool::new(false));
/// let me = gort_runtime::Unparker::current();
/// let d = done.clone();
/// gort_runtime::go!(move || {
///     d.store(true, Ordering::Release);
///     me.unpark();
/// });
/// while !done.load(Ordering::Acquire) {
///     gort_runtime::park();
/// }
/// ```
pub fn park() {
    crate::dump::set_wait(crate::dump::Wait::Park);
    imp::park();
}

/// [`park`], but returns after `dur` at the latest. May return spuriously.
pub fn park_timeout(dur: Duration) {
    crate::dump::set_wait(crate::dump::Wait::Park);
    match Instant::now().checked_add(dur) {
        Some(deadline) => imp::park_deadline(deadline),
        None => imp::park(),
    }
}

/// A handle that wakes one green thread (or OS thread) parked in [`park`]. Cheap to clone;
/// `Send + Sync`. Holding one keeps the green thread's struct (not its stack) from being
/// recycled.
#[derive(Clone)]
pub struct Unparker {
    inner: imp::Unparker,
}

impl Unparker {
    /// The handle of the caller: its green thread, or its OS thread outside the runtime.
    pub fn current() -> Unparker {
        Unparker {
            inner: imp::Unparker::current(),
        }
    }

    /// Wakes the green thread or thread if it is parked, else leaves it a token so that its
    /// next `park` returns at once. A woken green thread runs next on the caller's P (a
    /// hand-off, like Go's `goready`). Unparking a green thread that has finished does
    /// nothing.
    pub fn unpark(&self) {
        self.inner.unpark(true);
    }
}

impl fmt::Debug for Unparker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            imp::Unparker::G(g) => f.debug_tuple("Unparker::G").field(&g.id()).finish(),
            imp::Unparker::Thread(t) => f.debug_tuple("Unparker::Thread").field(&t.id()).finish(),
            imp::Unparker::Task(_) => f.write_str("Unparker::Task"),
        }
    }
}
