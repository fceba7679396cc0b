//! Futures and green threads: [`block_on`] runs a future inside a green thread (parking
//! only the green thread between polls), and a [`JoinHandle`] can be awaited from async code
//! ([`JoinFuture`]).

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use crate::join::JoinHandle;
use crate::parking::Unparker;

/// The waker of a `block_on`: notes the wake-up and unparks the blocked green thread (or
/// OS thread).
struct BlockOnWaker {
    unparker: Unparker,
    /// Woken since the last poll (so that a spurious unpark does not cost a poll, and a
    /// wake-up that comes before the park is not lost: the flag, then the park token).
    woken: AtomicBool,
}

impl Wake for BlockOnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: pairs with the Acquire swap in `block_on`, so that what the waker's caller
        // did before waking is visible to the next poll.
        if !self.woken.swap(true, Ordering::Release) {
            self.unparker.unpark();
        }
    }
}

/// Runs `future` to completion on the calling green thread, parking it between polls until
/// the future's waker is woken (from any green thread, OS thread or other runtime); on a
/// plain OS thread it parks the thread. So a runtime-agnostic async library can be called
/// from plain gort code. (A future that needs a particular runtime's reactor, such as
/// tokio's sockets, still needs that runtime running.) A future that wakes itself while it
/// is polled (an executor's yield, a future that polls a condition) is polled again only
/// after the green thread has given way, as such a task goes to the back of an executor's
/// queue.
///
/// # Examples
///
/// ```
/// let h = gort_runtime::go!(|| 40);
/// // A JoinHandle is a future too.
/// let v = gort_runtime::block_on(async { h.await.unwrap() + 2 });
/// assert_eq!(v, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let state = Arc::new(BlockOnWaker {
        unparker: Unparker::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(state.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        // Acquire: pairs with the Release swap in `wake_by_ref`.
        if state.woken.swap(false, Ordering::Acquire) {
            // Woken during its own poll (a future that wakes itself to be polled again, as
            // an executor's yield does, or one that polls a condition): go through the
            // scheduler before the next poll, as such a task goes to the back of an
            // executor's queue. Polling again at once would keep the P, and the G that would
            // make the future ready, queued behind this one, would never run.
            crate::park::yield_now();
            continue;
        }
        crate::dump::set_wait(crate::dump::Wait::Future);
        // Acquire: as above.
        while !state.woken.swap(false, Ordering::Acquire) {
            crate::park::park();
        }
    }
}

/// A [`JoinHandle`] awaited: resolves to what [`JoinHandle::join`] returns, without
/// blocking the task that awaits it (the green thread's end wakes the task's waker).
pub struct JoinFuture<T> {
    handle: JoinHandle<T>,
    /// A waker registered as the green thread's joiner, and a copy of it to compare with the
    /// next poll's.
    registered: Option<Waker>,
}

impl<T> IntoFuture for JoinHandle<T> {
    type Output = thread::Result<T>;
    type IntoFuture = JoinFuture<T>;

    fn into_future(self) -> JoinFuture<T> {
        JoinFuture {
            handle: self,
            registered: None,
        }
    }
}

impl<T> Future for JoinFuture<T> {
    type Output = thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<thread::Result<T>> {
        // Nothing in `JoinFuture` is pinned structurally.
        let this = self.get_mut();
        if this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
            && !this.handle.is_finished()
        {
            return Poll::Pending;
        }
        let mut registered = this.registered.is_some();
        let g = this
            .handle
            .g_ref()
            .expect("a JoinFuture polled after it completed");
        // SAFETY: the handle has not joined (it would have been consumed).
        let finished = unsafe { g.poll_join(cx.waker(), &mut registered) };
        if finished {
            this.registered = None;
            return Poll::Ready(this.handle.take_join());
        }
        this.registered = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> Drop for JoinFuture<T> {
    fn drop(&mut self) {
        if self.registered.take().is_some() {
            if let Some(g) = self.handle.g_ref() {
                // Take our waker back before the handle detaches (detaching expects the
                // join word without a joiner). If the green thread finished first, the
                // handle's detach finds J_DONE and drops the result.
                // SAFETY: registered by our `poll_join`, not joined.
                unsafe { g.withdraw_joiner() };
            }
        }
    }
}

impl<T> fmt::Debug for JoinFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinFuture")
            .field("handle", &self.handle)
            .finish()
    }
}
