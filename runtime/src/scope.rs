//! Scoped green threads: [`scope`], the green-thread version of `std::thread::scope`.
//!
//! A scoped green thread may borrow from the caller's stack, because `scope` does not return
//! before every green thread spawned in it has finished and dropped what it borrowed. The
//! bookkeeping follows std's: each spawned green thread shares a *packet* with its handle,
//! holding the result; the last of the two to let go of the packet drops the result and
//! counts the green thread out of the scope, noting a panic nobody joined. `scope` waits
//! for the count to reach zero (a gort `WaitGroup`: parking only the green thread, or the
//! OS thread, that called it), then panics if an unjoined green thread panicked.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use crate::join::JoinHandle;
use crate::sync::WaitGroup;

/// What a scope shares with its green threads.
struct ScopeData {
    /// Green threads of the scope not yet counted out.
    running: WaitGroup,
    /// A green thread panicked and nobody joined it.
    a_thread_panicked: AtomicBool,
}

/// A scope to spawn green threads in (see [`scope`]).
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    /// Invariance over 'scope and 'env, as std's `Scope`.
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// A handle to join a scoped green thread (see [`Scope::spawn`]).
pub struct ScopedJoinHandle<'scope, T> {
    handle: JoinHandle<()>,
    packet: Arc<Packet<'scope, T>>,
}

/// The result of one scoped green thread, shared by the green thread and its handle.
struct Packet<'scope, T> {
    scope: Arc<ScopeData>,
    /// Written by the green thread before it lets go of the packet; read by the handle
    /// after `join` (which orders the two).
    result: UnsafeCell<Option<thread::Result<T>>>,
    _marker: PhantomData<Option<&'scope ScopeData>>,
}

// SAFETY: `result` is written by the green thread and read by the joiner only after the join
// word (Release/Acquire in the runtime) says the green thread is done; `T: Send` moves it
// across threads.
unsafe impl<T: Send> Sync for Packet<'_, T> {}

impl<T> Drop for Packet<'_, T> {
    fn drop(&mut self) {
        let unhandled = matches!(self.result.get_mut(), Some(Err(_)));
        // Dropping the result (or the panic payload) may panic in its turn: contain it, the
        // scope must still count this green thread out.
        if let Err(again) = catch_unwind(AssertUnwindSafe(|| *self.result.get_mut() = None)) {
            std::mem::forget(again);
        }
        if unhandled {
            self.scope.a_thread_panicked.store(true, Ordering::Relaxed);
        }
        // Release (in `done`): everything this green thread did, its borrows' last uses
        // included, happens before `scope` returns.
        self.scope.running.done();
    }
}

/// Creates a scope for spawning green threads that borrow from the caller (the green-thread
/// version of `std::thread::scope`). Every green thread spawned in it is joined before
/// `scope` returns; if one panicked and was not joined, `scope` panics after they have all
/// finished, and a panic of `f` itself is resumed likewise.
///
/// # Examples
///
/// ```
/// let mut counts = vec![0u32; 4];
/// let words = ["a", "bb", "ccc", "dddd"];
/// gort_runtime::scope(|s| {
///     for (c, w) in counts.iter_mut().zip(words.iter()) {
///         s.spawn(move || *c = w.len() as u32);
///     }
/// });
/// assert_eq!(counts, [1, 2, 3, 4]);
/// ```
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        data: Arc::new(ScopeData {
            running: WaitGroup::new(),
            a_thread_panicked: AtomicBool::new(false),
        }),
        scope: PhantomData,
        env: PhantomData,
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    // Every handle of this scope is gone now (none can outlive `f`): wait for the green
    // threads themselves.
    scope.data.running.wait();
    match result {
        Err(payload) => resume_unwind(payload),
        Ok(_) if scope.data.a_thread_panicked.load(Ordering::Relaxed) => {
            panic!("a scoped green thread panicked")
        }
        Ok(r) => r,
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Spawns a green thread that may borrow anything that outlives the scope. Join it with
    /// the handle, or let `scope` join it.
    #[track_caller]
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let packet: Arc<Packet<'scope, T>> = Arc::new(Packet {
            scope: self.data.clone(),
            result: UnsafeCell::new(None),
            _marker: PhantomData,
        });
        self.data.running.add(1);
        let theirs = packet.clone();
        let main = move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            // SAFETY: the green thread's write, before it lets go of the packet; the
            // handle reads only after joining (see `Packet`).
            unsafe { *theirs.result.get() = Some(r) };
            drop(theirs);
        };
        let main: Box<dyn FnOnce() + Send + 'scope> = Box::new(main);
        // Why 'static is safe to claim: `scope` waits until every packet is dropped, and this
        // green thread's packet reference is dropped at the end of the closure, after the
        // closure `f` and its captures (consumed by the call), with nothing of 'scope left
        // but the result, which lives in the packet.
        // SAFETY: only the lifetime changes; nothing borrowed outlives `scope` (above).
        let main: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(main) };
        let handle = crate::join::spawn(main);
        ScopedJoinHandle { handle, packet }
    }
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the green thread and returns its result (`Err` with the payload if it
    /// panicked: then `scope` does not panic for it).
    pub fn join(self) -> thread::Result<T> {
        // The green thread catches its own panic, so this join is Ok.
        let _ = self.handle.join();
        // SAFETY: joined: the green thread wrote the result and is done with it.
        unsafe { (*self.packet.result.get()).take() }
            .expect("a joined scoped green thread left its result")
    }

    /// Whether the green thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// The green thread's id (as [`JoinHandle::id`]).
    pub fn id(&self) -> u64 {
        self.handle.id()
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("running", &self.data.running.count())
            .finish()
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("id", &self.id())
            .finish()
    }
}
