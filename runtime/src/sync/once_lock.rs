//! [`OnceLock`] and [`LazyLock`]: std's shapes, but a caller that finds the value being
//! initialised parks its green thread (std's block the OS thread, and with it the P).

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use super::waiter::{lock, Node, Wait};

const INCOMPLETE: u8 = 0;
const RUNNING: u8 = 1;
const COMPLETE: u8 = 2;

/// A cell written once (std's `OnceLock`): `get_or_init` runs the initialiser in the first
/// caller and parks the others, green threads or OS threads, until the value is there.
///
/// If the initialiser panics, the cell stays empty and the panic propagates to that caller;
/// a waiting caller then runs its own initialiser (std's behaviour).
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::OnceLock;
/// static CONFIG: OnceLock<String> = OnceLock::new();
/// let hs: Vec<_> = (0..8)
///     .map(|_| gort_runtime::go!(|| CONFIG.get_or_init(|| "loaded".to_string()).len()))
///     .collect();
/// assert!(hs.into_iter().all(|h| h.join().unwrap() == 6));
/// assert_eq!(CONFIG.get().map(String::as_str), Some("loaded"));
/// ```
pub struct OnceLock<T> {
    state: AtomicU8,
    waiters: StdMutex<Vec<Arc<Node>>>,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once, by the one caller that moved the state to RUNNING, and
// read only after the Release store of COMPLETE is seen with Acquire; shared readers get `&T`
// (hence `T: Sync`), and the value may be written on one thread and dropped on another
// (hence `T: Send`).
unsafe impl<T: Send + Sync> Sync for OnceLock<T> {}
// SAFETY: owning the cell is owning a `T`.
unsafe impl<T: Send> Send for OnceLock<T> {}

impl<T> OnceLock<T> {
    /// An empty cell.
    pub const fn new() -> OnceLock<T> {
        OnceLock {
            state: AtomicU8::new(INCOMPLETE),
            waiters: StdMutex::new(Vec::new()),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The value, if it is initialised.
    pub fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release store of COMPLETE.
        if self.state.load(Ordering::Acquire) == COMPLETE {
            // SAFETY: COMPLETE seen with Acquire: the value is written and never again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// The value, mutably, if it is initialised.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        if *self.state.get_mut() == COMPLETE {
            // SAFETY: initialised, and `&mut self` excludes every other access.
            Some(unsafe { self.value.get_mut().assume_init_mut() })
        } else {
            None
        }
    }

    /// Initialises the cell with `value`; `Err(value)` if it already held one (waits if
    /// another caller is initialising it).
    pub fn set(&self, value: T) -> Result<(), T> {
        let mut value = Some(value);
        self.get_or_init(|| value.take().expect("set's value"));
        match value {
            None => Ok(()),
            Some(v) => Err(v),
        }
    }

    /// The value, initialising it with `f` if the cell is empty. Callers that arrive while
    /// another initialises park until it is done.
    pub fn get_or_init<F: FnOnce() -> T>(&self, f: F) -> &T {
        if let Some(v) = self.get() {
            return v;
        }
        let mut f = Some(f);
        loop {
            if let Some(v) = self.get() {
                return v;
            }
            // Acquire on success: a failed initialiser's reset (Release in `finish`) happened
            // before we start ours; on failure, as `get`'s load.
            if self
                .state
                .compare_exchange(INCOMPLETE, RUNNING, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
            {
                return self.initialise(f.take().expect("one initialiser per caller"));
            }
            // Being initialised: wait until it is done (or the initialiser panicked).
            let node = {
                let mut w = lock(&self.waiters);
                // Acquire: pairs with the Release store in `finish` (which also runs under
                // this lock, so a waiter either sees the new state or is woken by it).
                if self.state.load(Ordering::Acquire) != RUNNING {
                    continue;
                }
                let n = Node::new();
                w.push(n.clone());
                n
            };
            node.wait(Wait::Once);
        }
    }

    /// Runs `f` as the one initialiser (the state is RUNNING, set by the caller).
    fn initialise<F: FnOnce() -> T>(&self, f: F) -> &T {
        /// Back to INCOMPLETE if `f` panics, waking the waiters so that one retries.
        struct Reset<'a, T>(&'a OnceLock<T>);
        impl<T> Drop for Reset<'_, T> {
            fn drop(&mut self) {
                self.0.finish(INCOMPLETE);
            }
        }
        let reset = Reset(self);
        let v = f();
        std::mem::forget(reset);
        // SAFETY: RUNNING is ours: nobody else reads or writes the value until COMPLETE.
        unsafe { (*self.value.get()).write(v) };
        self.finish(COMPLETE);
        // SAFETY: written just above, and never again.
        unsafe { (*self.value.get()).assume_init_ref() }
    }

    /// Leaves RUNNING for `state` and wakes the waiters.
    fn finish(&self, state: u8) {
        let wake = {
            let mut w = lock(&self.waiters);
            // Release: publishes the value; under the lock so that a waiter either sees the
            // new state or is in the list we drain.
            self.state.store(state, Ordering::Release);
            std::mem::take(&mut *w)
        };
        wake.iter().for_each(|n| n.signal());
    }

    /// The value, if any, taking the cell apart.
    pub fn into_inner(mut self) -> Option<T> {
        self.take()
    }

    /// Takes the value out, leaving the cell empty.
    pub fn take(&mut self) -> Option<T> {
        if *self.state.get_mut() == COMPLETE {
            *self.state.get_mut() = INCOMPLETE;
            // SAFETY: initialised, and marked empty first so that it is read out once.
            Some(unsafe { self.value.get_mut().assume_init_read() })
        } else {
            None
        }
    }
}

impl<T> Drop for OnceLock<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == COMPLETE {
            // SAFETY: initialised, dropped once.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

impl<T> Default for OnceLock<T> {
    fn default() -> Self {
        OnceLock::new()
    }
}

impl<T> From<T> for OnceLock<T> {
    fn from(value: T) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(value);
        cell
    }
}

impl<T: Clone> Clone for OnceLock<T> {
    fn clone(&self) -> Self {
        match self.get() {
            Some(v) => OnceLock::from(v.clone()),
            None => OnceLock::new(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for OnceLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(v) => f.debug_tuple("OnceLock").field(v).finish(),
            None => f.write_str("OnceLock(<uninit>)"),
        }
    }
}

/// A value initialised on first use (std's `LazyLock`); callers that arrive while it is
/// being initialised park their green thread. If the initialiser panics, the lock is
/// poisoned: that access and every later one panic.
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::LazyLock;
/// static TABLE: LazyLock<Vec<u64>> = LazyLock::new(|| (0..10).map(|i| i * i).collect());
/// let h = gort_runtime::go!(|| TABLE[3]);
/// assert_eq!(h.join().unwrap(), 9);
/// assert_eq!(TABLE.len(), 10);
/// ```
pub struct LazyLock<T, F = fn() -> T> {
    cell: OnceLock<T>,
    /// Taken by the one initialiser (the caller that moves the cell to RUNNING).
    init: UnsafeCell<Option<F>>,
}

// SAFETY: `init` is touched only by the one initialiser, under the cell's RUNNING state; the
// value is shared as `&T` (`T: Sync`) and may be dropped anywhere (`T: Send`); `F` is moved
// into whichever thread initialises (`F: Send`).
unsafe impl<T: Send + Sync, F: Send> Sync for LazyLock<T, F> {}

impl<T, F: FnOnce() -> T> LazyLock<T, F> {
    /// A lazy value, initialised by `f` on first use.
    pub const fn new(f: F) -> LazyLock<T, F> {
        LazyLock {
            cell: OnceLock::new(),
            init: UnsafeCell::new(Some(f)),
        }
    }

    /// The value, initialising it if this is the first use.
    pub fn force(this: &LazyLock<T, F>) -> &T {
        this.cell.get_or_init(|| {
            // SAFETY: we are the one initialiser (the cell is RUNNING for us).
            let f = unsafe { (*this.init.get()).take() };
            match f {
                Some(f) => f(),
                None => panic!("LazyLock instance has previously been poisoned"),
            }
        })
    }
}

impl<T, F: FnOnce() -> T> Deref for LazyLock<T, F> {
    type Target = T;
    fn deref(&self) -> &T {
        LazyLock::force(self)
    }
}

impl<T: fmt::Debug, F> fmt::Debug for LazyLock<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cell.get() {
            Some(v) => f.debug_tuple("LazyLock").field(v).finish(),
            None => f.write_str("LazyLock(<uninit>)"),
        }
    }
}
