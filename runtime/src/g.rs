//! G: one green thread. The struct, its park state word, and who may touch which field.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use corosensei::{Coroutine, Yielder};

use crate::signal::Running;
use crate::stack::{GStack, StackClass};

/// Why a G's coroutine handed control back to its M.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// `yield_now`: requeue at the tail of the local run queue.
    Yield,
    /// `park`: the state word says PARKING; the M decides its fate after the switch.
    Park,
}

pub(crate) type Coro = Coroutine<(), Suspend, (), GStack>;
pub(crate) type GYielder = Yielder<(), Suspend>;

/// The body of a G: what `spawn` hands the runtime. Implemented by the join packet.
pub(crate) trait Task: Send + Sync {
    /// Runs the user's closure on the G's stack and publishes its outcome.
    fn run(self: Arc<Self>);
    /// The G could not be given a stack: publish `err` as its outcome instead.
    fn fail(self: Arc<Self>, err: std::io::Error);
}

// The park state word (see `park.rs` for the protocol and its proof sketch).
/// Runnable, running, or queued; no wake-up token.
pub(crate) const ACTIVE: u8 = 0;
/// As ACTIVE, with a wake-up token: the next `park` returns at once.
pub(crate) const NOTIFIED: u8 = 1;
/// The G called `park` and is switching off its stack; its M will decide.
pub(crate) const PARKING: u8 = 2;
/// Off its stack, in nobody's queue; the next `unpark` makes it runnable.
pub(crate) const PARKED: u8 = 3;
/// Finished; unparks are ignored.
pub(crate) const DEAD: u8 = 4;

/// The fields only the G's owner touches: the spawner before the G is published, then the
/// one M running it (an M resumes a G only after taking it from a queue, and a G is in at
/// most one queue or on at most one M at a time).
pub(crate) struct GOwned {
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) task: Option<Arc<dyn Task>>,
    pub(crate) coro: Option<Coro>,
    /// The coroutine's yielder, valid while `coro` runs; set by the coroutine's first frame.
    pub(crate) yielder: *const GYielder,
    /// Class of the stack to bind at first run.
    pub(crate) class: &'static StackClass,
    /// What the overflow handler reports; filled in when the stack is bound.
    pub(crate) running: Running,
}

/// One green thread.
pub(crate) struct G {
    /// The park state word: ACTIVE, NOTIFIED, PARKING, PARKED or DEAD.
    pub(crate) state: AtomicU8,
    owned: UnsafeCell<GOwned>,
}

// SAFETY: `state` is atomic. `owned` is reached only through `owned()`, whose contract gives
// one thread at a time exclusive access (spawner, then the running M), with the hand-offs
// ordered by the run queues (push Release / pop Acquire) and the park state word. What the
// coroutine's stack holds is user data of a `Send` closure; holding a `!Send` value across a
// blocking point is the documented hazard of every stackful runtime (docs/CAVEATS.md).
unsafe impl Send for G {}
// SAFETY: as above; shared references only touch `state` unless they own the G.
unsafe impl Sync for G {}

impl G {
    pub(crate) fn new(
        id: u64,
        name: Option<Box<str>>,
        task: Arc<dyn Task>,
        class: &'static StackClass,
    ) -> G {
        G {
            state: AtomicU8::new(ACTIVE),
            owned: UnsafeCell::new(GOwned {
                id,
                name,
                task: Some(task),
                coro: None,
                yielder: std::ptr::null(),
                class,
                running: Running::NONE,
            }),
        }
    }

    /// Exclusive access to the owner's fields.
    ///
    /// # Safety
    ///
    /// The caller owns the G: it is the spawner before the G is published, or the M that
    /// took it from a queue (or the G itself, running on that M). No other reference to
    /// the returned fields may be live.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn owned(&self) -> &mut GOwned {
        // SAFETY: exclusivity is the caller's contract.
        unsafe { &mut *self.owned.get() }
    }

    /// Readies a dead G from a P's free list for a new task.
    ///
    /// # Safety
    /// The caller owns the G and no other reference to it exists (checked by `put_g`).
    pub(crate) unsafe fn reuse(
        &self,
        id: u64,
        name: Option<Box<str>>,
        task: Arc<dyn Task>,
        class: &'static StackClass,
    ) {
        self.state.store(ACTIVE, Ordering::Relaxed);
        // SAFETY: the caller owns the G.
        let o = unsafe { self.owned() };
        debug_assert!(o.coro.is_none() && o.task.is_none());
        o.id = id;
        o.name = name;
        o.task = Some(task);
        o.class = class;
        o.yielder = std::ptr::null();
        o.running = Running::NONE;
    }

    /// The overflow handler's record.
    ///
    /// # Safety
    /// Called on the thread running the G, which is then suspended inside a fault: nothing
    /// writes the record concurrently.
    pub(crate) unsafe fn running(&self) -> Running {
        // SAFETY: see above; a plain read of a Copy field.
        unsafe { (*self.owned.get()).running }
    }
}

impl Drop for G {
    fn drop(&mut self) {
        // A G dropped while suspended is one parked forever with nobody left to wake it (a
        // leaked goroutine, in Go's words). Unwinding its stack here would run its
        // destructors on whatever thread dropped the last handle, in the middle of that
        // thread's work; instead the coroutine and its stack are leaked, as Go leaks it.
        if let Some(coro) = self.owned.get_mut().coro.take() {
            if coro.started() && !coro.done() {
                std::mem::forget(coro);
            }
        }
    }
}
