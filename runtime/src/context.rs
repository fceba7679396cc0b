//! Cancellation, Go's `context` package: a [`Context`] is done when it is cancelled, when
//! its deadline passes, or when its parent is done; [`Context::done`] is a channel that
//! closes then, usable as a `select!` arm; [`Context::err`] says why.
//!
//! ```
//! use gort_runtime::{context, select, time};
//! use std::time::Duration;
//!
//! let (ctx, cancel) = context::with_timeout(&context::background(), Duration::from_millis(20));
//! let worker = {
//!     let ctx = ctx.clone();
//!     gort_runtime::go!(move || {
//!         let mut rounds = 0;
//!         loop {
//!             select! {
//!                 recv(ctx.done()) -> _ => return (rounds, ctx.err()),
//!                 recv(time::after(Duration::from_millis(1))) -> _ => rounds += 1,
//!             }
//!         }
//!     })
//! };
//! let (rounds, why) = worker.join().unwrap();
//! assert!(rounds > 0);
//! assert_eq!(why, Some(context::ContextError::DeadlineExceeded));
//! cancel.cancel(); // releases the context's resources (also done when `cancel` drops)
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::chan::{self, Receiver, Sender};
use crate::timer::TimerState;

/// Why a context is done (Go's `context.Canceled` and `context.DeadlineExceeded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextError {
    /// Cancelled: by its [`CancelHandle`], or by its parent's.
    Canceled,
    /// Its deadline (or its parent's) passed.
    DeadlineExceeded,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextError::Canceled => "context canceled",
            ContextError::DeadlineExceeded => "context deadline exceeded",
        })
    }
}

impl std::error::Error for ContextError {}

/// A cancellation scope passed down a call tree (Go's `context.Context`). Cheap to clone;
/// `Send + Sync`.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    /// Closes (its one sender dropped) when the context is done; `never()` for background.
    done: Receiver<()>,
    /// The sender, until the context is done.
    closer: Mutex<Option<Sender<()>>>,
    /// Why it is done (set once, before `done` closes).
    reason: OnceLock<ContextError>,
    deadline: Option<Instant>,
    /// Children to cancel with this one.
    children: Mutex<Vec<Weak<Inner>>>,
    /// The timer of the deadline, cancelled when the context is done earlier.
    timer: Option<Arc<TimerState>>,
}

/// Cancels its context (and the context's children) when called or dropped (Go's
/// `CancelFunc`, with `defer cancel()` built in).
#[must_use = "dropping the handle cancels the context at once"]
pub struct CancelHandle {
    inner: Arc<Inner>,
}

impl CancelHandle {
    /// Cancels the context, with `Canceled`, unless it is done already. Idempotent.
    pub fn cancel(&self) {
        self.inner.finish(ContextError::Canceled);
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("CancelHandle { .. }")
    }
}

/// The context that is never done (Go's `context.Background()`), the root of every tree.
pub fn background() -> Context {
    Context {
        inner: Arc::new(Inner {
            done: chan::never(),
            closer: Mutex::new(None),
            reason: OnceLock::new(),
            deadline: None,
            children: Mutex::new(Vec::new()),
            timer: None,
        }),
    }
}

/// A child of `parent` that is done when the returned handle cancels it or `parent` is done.
pub fn with_cancel(parent: &Context) -> (Context, CancelHandle) {
    child(parent, parent.inner.deadline, false)
}

/// A child of `parent` that is also done at `deadline` (or the parent's, if earlier).
pub fn with_deadline(parent: &Context, deadline: Instant) -> (Context, CancelHandle) {
    match parent.inner.deadline {
        // The parent's comes first: its timer ends us too, no timer of our own.
        Some(p) if p <= deadline => child(parent, Some(p), false),
        _ => child(parent, Some(deadline), true),
    }
}

/// A child of `parent` that is also done after `timeout` (Go's `WithTimeout`). A timeout too
/// large to represent as an instant means no deadline of its own.
pub fn with_timeout(parent: &Context, timeout: Duration) -> (Context, CancelHandle) {
    match Instant::now().checked_add(timeout) {
        Some(d) => with_deadline(parent, d),
        None => with_cancel(parent),
    }
}

/// A child of `parent` with `deadline` (the earlier of its own and the parent's); with
/// `own_timer` the deadline is its own, and a timer of its own ends it (an inherited one
/// reaches it through the parent).
fn child(parent: &Context, deadline: Option<Instant>, own_timer: bool) -> (Context, CancelHandle) {
    let (tx, rx) = chan::bounded::<()>(0);
    let timer = (own_timer && deadline.is_some()).then(TimerState::new);
    let inner = Arc::new(Inner {
        done: rx,
        closer: Mutex::new(Some(tx)),
        reason: OnceLock::new(),
        deadline,
        children: Mutex::new(Vec::new()),
        timer: timer.clone(),
    });
    // Register with the parent, or inherit its end at once.
    {
        let mut kids = lock(&parent.inner.children);
        match parent.inner.reason.get() {
            Some(why) => {
                drop(kids);
                inner.finish(*why);
            }
            None => {
                // Children that are gone leave dead entries; sweep them now and then
                // (amortised: when the list doubles).
                if kids.len() >= 16 && kids.len().is_power_of_two() {
                    kids.retain(|w| w.strong_count() > 0);
                }
                kids.push(Arc::downgrade(&inner));
            }
        }
    }
    if let (Some(d), Some(state)) = (deadline, timer) {
        if inner.reason.get().is_none() {
            let weak = Arc::downgrade(&inner);
            let st = state.clone();
            crate::time::add_timer_unless(
                d,
                move || {
                    if st.fire() {
                        if let Some(inner) = weak.upgrade() {
                            inner.finish(ContextError::DeadlineExceeded);
                        }
                    }
                },
                state,
            );
        }
    }
    (
        Context {
            inner: inner.clone(),
        },
        CancelHandle { inner },
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // No user code runs under these locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Done, with `why`, unless done already: closes `done`, cancels the children and the
    /// deadline's timer.
    fn finish(&self, why: ContextError) {
        if self.reason.set(why).is_err() {
            return; // done already
        }
        // The reason is set before the channel closes: whoever sees `done` closed sees it.
        drop(lock(&self.closer).take());
        if let Some(t) = &self.timer {
            if t.cancel() {
                crate::sched::sched().timers.note_cancelled();
            }
        }
        let kids = std::mem::take(&mut *lock(&self.children));
        for k in kids {
            if let Some(k) = k.upgrade() {
                // A child of a cancelled parent is cancelled; of a parent past its deadline,
                // past its deadline (Go's rule: the child takes the parent's error).
                k.finish(why);
            }
        }
    }
}

impl Context {
    /// A channel that closes when the context is done (a `recv` on it then returns
    /// `Err(RecvError)` at once): the `select!` arm for "stop". Never closes for
    /// [`background`].
    pub fn done(&self) -> &Receiver<()> {
        &self.inner.done
    }

    /// Why the context is done, or `None` while it is not.
    pub fn err(&self) -> Option<ContextError> {
        self.inner.reason.get().copied()
    }

    /// Whether the context is done.
    pub fn is_done(&self) -> bool {
        self.inner.reason.get().is_some()
    }

    /// The deadline, if the context (or an ancestor) has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("err", &self.err())
            .field("deadline", &self.deadline())
            .finish()
    }
}
