//! Spawning and joining: [`Builder`], [`spawn`], [`JoinHandle`], and the packet a G's
//! result travels in.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;

use crate::config::{MAX_STACK_SIZE, MIN_STACK_SIZE};
use crate::g::{Task, G};
use crate::park::{park, Unparker};
use crate::sched::{new_coro, sched};
use crate::stack::StackClass;

// Packet states.
/// The G has not finished; nobody waits.
const RUNNING: u8 = 0;
/// A joiner registered its `Unparker` and waits.
const WAITING: u8 = 1;
/// The result is in `result`.
const DONE: u8 = 2;

/// One allocation per spawn: the closure, then its outcome, and the joiner's handle.
struct Packet<F, T> {
    state: AtomicU8,
    f: UnsafeCell<Option<F>>,
    result: UnsafeCell<Option<thread::Result<T>>>,
    waiter: UnsafeCell<Option<Unparker>>,
}

// SAFETY: `f` is taken once, by the G that runs the packet (`Task::run`, called once).
// `result` is written by that G before the Release swap to DONE and read only by the one
// joiner (`join` takes `self` by value) after an Acquire load of DONE. `waiter` is written
// by the joiner before its Release CAS to WAITING and read by the G after its AcqRel swap
// observed WAITING. F and T cross threads, hence the bounds.
unsafe impl<F: Send, T: Send> Sync for Packet<F, T> {}

impl<F, T> Packet<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn complete(&self, r: thread::Result<T>) {
        // SAFETY: only the running G writes `result`, before publishing DONE.
        unsafe { *self.result.get() = Some(r) };
        sched().note_finished();
        // AcqRel: Release publishes `result` to the joiner's Acquire load; Acquire takes
        // the joiner's `waiter` if it registered one.
        if self.state.swap(DONE, Ordering::AcqRel) == WAITING {
            // SAFETY: the joiner wrote `waiter` before its Release CAS to WAITING, which
            // our swap read; it no longer touches `waiter`.
            if let Some(w) = unsafe { (*self.waiter.get()).take() } {
                w.unpark();
            }
        }
    }
}

impl<F, T> Task for Packet<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Arc<Self>) {
        // SAFETY: `run` is called once, by the G; nobody else touches `f`.
        let f = unsafe { (*self.f.get()).take() }.expect("a task runs once");
        let r = panic::catch_unwind(AssertUnwindSafe(f));
        self.complete(r);
    }

    fn fail(self: Arc<Self>, err: io::Error) {
        // SAFETY: as in `run`: the G that would have run `f` drops it instead.
        drop(unsafe { (*self.f.get()).take() });
        let msg = format!("green thread could not start: {err}");
        eprintln!("gort: {msg}");
        self.complete(Err(Box::new(msg)));
    }
}

trait JoinPacket<T>: Send + Sync {
    fn join(&self) -> thread::Result<T>;
    fn is_finished(&self) -> bool;
}

impl<F, T> JoinPacket<T> for Packet<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn join(&self) -> thread::Result<T> {
        // Acquire: pairs with the G's Release swap to DONE.
        if self.state.load(Ordering::Acquire) != DONE {
            // SAFETY: nobody reads `waiter` before we publish WAITING.
            unsafe { *self.waiter.get() = Some(Unparker::current()) };
            // Release publishes `waiter`; Acquire (on failure: DONE) takes `result`.
            if self
                .state
                .compare_exchange(RUNNING, WAITING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Spurious wake-ups and stale tokens are possible: loop on the state.
                while self.state.load(Ordering::Acquire) != DONE {
                    park();
                }
            }
        }
        // SAFETY: DONE was observed with Acquire: `result` is written and the G no longer
        // touches it; `join` runs once (JoinHandle::join takes self).
        unsafe { (*self.result.get()).take() }.expect("a finished G left its result")
    }

    fn is_finished(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }
}

/// An owned permission to join a green thread (wait for it to finish and take its result).
///
/// Dropping a `JoinHandle` detaches the green thread: it runs to completion and its result
/// is dropped.
pub struct JoinHandle<T> {
    packet: Arc<dyn JoinPacket<T>>,
    id: u64,
}

impl<T> JoinHandle<T> {
    /// Waits for the green thread to finish and returns its result: `Ok(value)`, or
    /// `Err(payload)` if it panicked (or could not be given a stack).
    ///
    /// Called from a green thread, it parks only that green thread; from a plain OS thread
    /// (such as `main`), it blocks the OS thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = gort_runtime::go!(|| 6 * 7);
    /// assert_eq!(h.join().unwrap(), 42);
    /// ```
    pub fn join(self) -> thread::Result<T> {
        self.packet.join()
    }

    /// Whether the green thread has finished (its result is ready; `join` will not block).
    pub fn is_finished(&self) -> bool {
        self.packet.is_finished()
    }

    /// The green thread's id: unique among all green threads of the process, never 0.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

fn packet<F, T>(f: F) -> (Arc<dyn Task>, Arc<dyn JoinPacket<T>>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let p = Arc::new(Packet {
        state: AtomicU8::new(RUNNING),
        f: UnsafeCell::new(Some(f)),
        result: UnsafeCell::new(None),
        waiter: UnsafeCell::new(None),
    });
    (p.clone(), p)
}

/// Spawns a green thread running `f` and returns its [`JoinHandle`].
///
/// The green thread gets the default stack size (`GORT_STACK_SIZE`, else 256 KiB); its
/// stack is bound when it first runs. If no stack can be had then, the green thread does
/// not run: its `join` returns `Err` with the reason, which is also printed to stderr. Use
/// [`Builder::spawn`] to get that error at spawn time instead.
///
/// # Examples
///
/// ```
/// let handles: Vec<_> = (0..10u64).map(|i| gort_runtime::spawn(move || i * i)).collect();
/// let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
/// assert_eq!(sum, 285);
/// ```
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let s = sched();
    let (task, packet) = packet(f);
    let id = s.spawn_g(task, None, s.stacks, None::<fn(*const G) -> _>);
    JoinHandle { packet, id }
}

/// Spawns a green thread, like Go's `go` statement: `go!(closure)` is [`spawn`]`(closure)`.
///
/// # Examples
///
/// ```
/// let h = gort_runtime::go!(move || "hello from a green thread");
/// assert_eq!(h.join().unwrap(), "hello from a green thread");
/// ```
#[macro_export]
macro_rules! go {
    ($f:expr $(,)?) => {
        $crate::spawn($f)
    };
}

/// Green-thread factory with a name and a stack size, like `std::thread::Builder`.
///
/// # Examples
///
/// ```
/// let h = gort_runtime::Builder::new()
///     .name("worker".to_string())
///     .stack_size(64 * 1024)
///     .spawn(|| 1 + 1)
///     .expect("a stack");
/// assert_eq!(h.join().unwrap(), 2);
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with no name and the default stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the green thread; the name appears in the stack-overflow message.
    pub fn name(mut self, name: String) -> Builder {
        self.name = Some(name);
        self
    }

    /// Sets the usable stack size in bytes (rounded up to whole pages; guard pages come on
    /// top). Sizes below 16 KiB or above 1 GiB make `spawn` return `InvalidInput`.
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Spawns the green thread. Its stack is mapped now, so that every reason it could not
    /// run (an invalid size, address space or `vm.max_map_count` exhausted) is returned as
    /// an error here instead.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let s = sched();
        let class = match self.stack_size {
            None => s.stacks,
            Some(n) if (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&n) => StackClass::for_size(n),
            Some(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "gort: stack size {n} is out of range: expected {MIN_STACK_SIZE} to \
                         {MAX_STACK_SIZE} bytes"
                    ),
                ))
            }
        };
        if let Some(name) = &self.name {
            if name.as_bytes().contains(&0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "gort: green thread name contains a NUL byte",
                ));
            }
        }
        let stack = class.alloc()?;
        let (task, packet) = packet(f);
        let name = self.name.map(String::into_boxed_str);
        let id = s.spawn_g(task, name, class, Some(move |g| new_coro(stack, g)));
        Ok(JoinHandle { packet, id })
    }
}

/// Yields the current green thread: it goes to the back of its P's run queue and the next
/// runnable G runs. Outside the runtime it yields the OS thread.
///
/// gort's scheduling is cooperative: a green thread that computes for a long time without
/// blocking or yielding keeps its P. Loops that poll should call `yield_now`.
///
/// # Examples
///
/// ```
/// let h = gort_runtime::go!(|| {
///     for _ in 0..3 {
///         gort_runtime::yield_now();
///     }
///     "done"
/// });
/// assert_eq!(h.join().unwrap(), "done");
/// ```
pub fn yield_now() {
    crate::park::yield_now()
}

/// The number of P's: how many green threads run in parallel at most. Fixed at start-up
/// from `GORT_MAXPROCS` (default: the CPU count; at most 256).
///
/// # Examples
///
/// ```
/// assert!(gort_runtime::max_procs() >= 1 && gort_runtime::max_procs() <= 256);
/// ```
pub fn max_procs() -> usize {
    crate::sched::procs()
}

/// Green threads spawned and not yet finished (running, runnable or blocked).
///
/// # Examples
///
/// ```
/// let h = gort_runtime::go!(|| ());
/// h.join().unwrap();
/// // Other green threads of the process may still be live, so only a bound holds here.
/// let _ = gort_runtime::num_green_threads();
/// ```
pub fn num_green_threads() -> usize {
    sched().live_gs()
}

/// A panic payload's message, if it has one.
pub(crate) fn _payload_str(p: &(dyn Any + Send)) -> Option<&str> {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
}
