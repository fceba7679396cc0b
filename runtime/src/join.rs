//! Spawning and joining: [`Builder`], [`spawn`], [`JoinHandle`].

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{MAX_STACK_SIZE, MIN_STACK_SIZE};
use crate::g::GRef;
use crate::sched::sched;
use crate::stack::StackClass;

/// An owned permission to join a green thread (wait for it to finish and take its result).
///
/// Dropping a `JoinHandle` detaches the green thread: it runs to completion and its result
/// is dropped.
pub struct JoinHandle<T> {
    /// The G; `None` once joined.
    g: Option<GRef>,
    _result: PhantomData<fn() -> T>,
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
    pub fn join(mut self) -> thread::Result<T> {
        let g = self.g.take().expect("a JoinHandle is joined once");
        // SAFETY: the handle's G was spawned with a closure returning T; `join` takes the
        // handle by value, so this is the one join, and `Drop` will not detach.
        unsafe { g.join::<T>() }
    }

    /// [`join`](JoinHandle::join), waiting at most `timeout`: `Err` gives the handle back
    /// if the green thread has not finished by then (join again later, or drop it to
    /// detach).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (tx, rx) = gort_runtime::chan::bounded::<()>(0);
    /// let h = gort_runtime::go!(move || rx.recv().is_ok());
    /// let h = h.join_timeout(Duration::from_millis(5)).unwrap_err(); // still waiting
    /// tx.send(()).unwrap();
    /// assert!(h.join_timeout(Duration::from_secs(10)).ok().unwrap().unwrap());
    /// ```
    pub fn join_timeout(mut self, timeout: Duration) -> Result<thread::Result<T>, JoinHandle<T>> {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return Ok(self.join());
        };
        let g = self.g.take().expect("a JoinHandle is joined once");
        // SAFETY: as in `join`; on timeout the handle keeps the G (put back below), so a
        // later join or the drop's detach is still the one departure.
        match unsafe { g.join_until::<T>(Some(deadline)) } {
            Some(r) => Ok(r),
            None => {
                self.g = Some(g);
                Err(self)
            }
        }
    }

    /// The G, unless joined (for `JoinFuture`).
    pub(crate) fn g_ref(&self) -> Option<&GRef> {
        self.g.as_ref()
    }

    /// Joins a G known to have finished (for `JoinFuture`; does not block).
    pub(crate) fn take_join(&mut self) -> thread::Result<T> {
        let g = self.g.take().expect("a JoinHandle is joined once");
        // SAFETY: as in `join`: the one join, and `Drop` will not detach (`g` is taken).
        unsafe { g.join::<T>() }
    }

    /// Whether the green thread has finished (its result is ready; `join` will not block).
    pub fn is_finished(&self) -> bool {
        self.g.as_ref().is_some_and(|g| g.is_finished())
    }

    /// The green thread's id: unique among all green threads of the process, never 0.
    pub fn id(&self) -> u64 {
        self.g.as_ref().map_or(0, |g| g.id())
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(g) = self.g.take() {
            // SAFETY: not joined (join takes `g` out): this is the handle's one departure.
            unsafe { g.detach() };
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
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
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let s = sched();
    let g = s.spawn_g(f, None, s.stacks, None);
    JoinHandle {
        g: Some(g),
        _result: PhantomData,
    }
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

/// A green thread, as [`current`] describes it: its id and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreenThread {
    id: u64,
    name: Option<Arc<str>>,
}

impl GreenThread {
    /// The id: unique among all green threads of the process, never 0 (the same as
    /// [`JoinHandle::id`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name given with [`Builder::name`], if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for GreenThread {
    /// `#7`, or `#7 'worker'` for a named one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "#{} '{}'", self.id, n),
            None => write!(f, "#{}", self.id),
        }
    }
}

/// The green thread the caller runs on (also inside [`blocking`](crate::blocking)); `None`
/// on a plain OS thread.
///
/// # Examples
///
/// ```
/// assert!(gort_runtime::current().is_none()); // main is an OS thread
/// let h = gort_runtime::Builder::new()
///     .name("worker".to_string())
///     .spawn(|| {
///         let me = gort_runtime::current().unwrap();
///         (me.id(), me.name().map(str::to_owned))
///     })
///     .unwrap();
/// let id = h.id();
/// assert_eq!(h.join().unwrap(), (id, Some("worker".to_string())));
/// ```
pub fn current() -> Option<GreenThread> {
    let g = crate::sched::current_or_blocking_g();
    if g.is_null() {
        return None;
    }
    // SAFETY: the G running on (or blocked in `blocking` on) this thread is alive, and its
    // owned fields are ours: we are its code.
    let (id, name) = unsafe { ((*g).id(), (*g).owned().name().map(Arc::from)) };
    Some(GreenThread { id, name })
}

/// Wraps the panic hook in place when the runtime starts (unless a panic is under way, when
/// the hook cannot be changed): after whatever the previous hook prints — std's message
/// names the OS thread, `gort-m0`, which means nothing to the user — one line names the
/// green thread that panicked. A hook set later replaces this one.
pub(crate) fn install_panic_note() {
    if std::thread::panicking() {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if let Some(g) = current() {
            eprintln!("gort: the panic above is in green thread {g}");
        }
    }));
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
    #[track_caller]
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
        let name = self.name.map(String::into_boxed_str);
        let g = s.spawn_g(f, name, class, Some(stack));
        Ok(JoinHandle {
            g: Some(g),
            _result: PhantomData,
        })
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

/// P's with nothing to run right now: idle, or held by an M that is looking for work. A
/// snapshot, for heuristics such as a pool deciding whether one more worker would run in
/// parallel or only queue behind the others.
///
/// # Examples
///
/// ```
/// assert!(gort_runtime::idle_procs() <= gort_runtime::max_procs());
/// ```
pub fn idle_procs() -> usize {
    let s = sched();
    let idle = s.npidle.load(std::sync::atomic::Ordering::Relaxed)
        + s.nmspinning.load(std::sync::atomic::Ordering::Relaxed);
    idle.min(s.procs)
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

/// Whether the caller runs on a green thread (as opposed to a plain OS thread such as
/// `main`). Blocking primitives behave the same either way; this is for code that wants to
/// choose, say, between spinning and parking.
///
/// # Examples
///
/// ```
/// assert!(!gort_runtime::is_green_thread());
/// assert!(gort_runtime::go!(gort_runtime::is_green_thread).join().unwrap());
/// ```
pub fn is_green_thread() -> bool {
    !crate::sched::current_g().is_null()
}
