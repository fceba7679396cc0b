//! Green-local storage: `thread_local!` for green threads.
//!
//! A `std::thread_local!` belongs to the OS thread, and a green thread moves between OS
//! threads at every blocking point, so a value read before a park may be another G's after it
//! (CAVEATS §4). A [`green_local!`](crate::green_local) value belongs to the green thread: it
//! follows the G from M to M, is created on the G's first access, and is dropped when the G
//! ends (after its closure returns, before `join` sees the result; a panic in a value's `Drop`
//! is contained and reported, the other values are still dropped). A recycled G starts with
//! none. On a plain OS thread (not a G) the same key falls back to a value per OS thread,
//! dropped when the thread exits.
//!
//! Each G holds a vector of slots indexed by key (keys number themselves on first use), made
//! on the G's first green-local access: a G that uses none pays one null pointer.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::unwind::drop_contained;

/// The values of one green thread (or one plain OS thread), by key index.
#[derive(Default)]
pub(crate) struct Locals {
    /// Each value is boxed on its own, so a reference handed to `with` stays valid while the
    /// vector grows (a `with` inside a `with`).
    slots: Vec<Option<NonNull<dyn Any>>>,
}

impl Locals {
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The value for key `index`, made with `init` if absent.
    ///
    /// # Safety
    /// `this` is the current thread's (or G's) map, and nothing else accesses it during the
    /// call except re-entrant calls through `init`.
    unsafe fn get_or_init<T: 'static>(
        this: *mut Locals,
        index: usize,
        init: fn() -> T,
    ) -> *const T {
        // SAFETY: the caller's contract; the borrow ends before `init` runs.
        let slots: &Vec<_> = unsafe { &(*this).slots };
        if let Some(Some(p)) = slots.get(index) {
            return p.as_ptr() as *const T;
        }
        // `init` may use other green-locals (or, recursively, this one: then the value made
        // last wins and the others are dropped, never a dangling reference: nobody holds one
        // to a value still being made).
        let value = init();
        let p: NonNull<dyn Any> = NonNull::from(Box::leak(Box::new(value) as Box<dyn Any>));
        // SAFETY: as above; no reference into `slots` is live.
        let slots = unsafe { &mut (*this).slots };
        if slots.len() <= index {
            slots.resize(index + 1, None);
        }
        if let Some(old) = slots[index].replace(p) {
            // SAFETY: made by `Box::leak` above (in a recursive call); no reference to it is
            // live (that call returned it to an `init` that was discarded).
            let old = unsafe { Box::from_raw(old.as_ptr()) };
            drop_contained(old, format_args!("a green-local value"));
        }
        p.as_ptr() as *const T
    }

    /// Drops every value, in key order, each with its panic contained (reported under
    /// `owner`).
    pub(crate) fn drop_values(mut self, owner: fmt::Arguments<'_>) {
        for p in self.slots.drain(..).flatten() {
            // SAFETY: made by `Box::leak` in `get_or_init`, owned by this map, and no
            // reference to it outlives the `with` call that handed it out.
            let b = unsafe { Box::from_raw(p.as_ptr()) };
            drop_contained(b, format_args!("{owner}'s green-local value"));
        }
    }
}

impl Drop for Locals {
    fn drop(&mut self) {
        for p in self.slots.drain(..).flatten() {
            // SAFETY: as in `drop_values`.
            drop(unsafe { Box::from_raw(p.as_ptr()) });
        }
    }
}

thread_local! {
    /// The values of a plain OS thread (the fallback off green threads).
    static THREAD_LOCALS: RefCell<Locals> = RefCell::new(Locals::default());
}

/// Key indices: 0 means "not yet numbered".
static NEXT_INDEX: AtomicUsize = AtomicUsize::new(1);

/// A key to a green-local value, made by [`green_local!`](crate::green_local) (std's
/// `LocalKey`, for green threads).
pub struct GreenLocalKey<T: 'static> {
    init: fn() -> T,
    /// 1 + the slot index, or 0 until the first access numbers the key.
    index: AtomicUsize,
}

impl<T: 'static> fmt::Debug for GreenLocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenLocalKey").finish_non_exhaustive()
    }
}

impl<T: 'static> GreenLocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> GreenLocalKey<T> {
        GreenLocalKey {
            init,
            index: AtomicUsize::new(0),
        }
    }

    fn index(&self) -> usize {
        // Relaxed: the index is only a number (no data is published through it); a race
        // between two first accesses is settled by the CAS, and both use the winner.
        let i = self.index.load(Ordering::Relaxed);
        if i != 0 {
            return i - 1;
        }
        let mine = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
        match self
            .index
            .compare_exchange(0, mine, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => mine - 1,
            Err(theirs) => theirs - 1,
        }
    }

    /// Calls `f` with this green thread's value (made with the initialiser on first access).
    /// On a plain OS thread, with that thread's value.
    ///
    /// # Panics
    ///
    /// On a plain OS thread whose thread-locals are being destroyed (as std's `with`).
    pub fn with<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        let index = self.index();
        let g = crate::sched::current_or_blocking_g();
        if !g.is_null() {
            // SAFETY: the G running on this thread (or blocked in `blocking` on it) is alive
            // and its locals are touched only by its own code, which is us.
            let locals = unsafe { (*g).locals() };
            // SAFETY: the G's own map, used only by the G (re-entrantly at most).
            let p = unsafe { Locals::get_or_init(locals, index, self.init) };
            // SAFETY: the value lives in its own box until the G ends, after this call.
            return f(unsafe { &*p });
        }
        THREAD_LOCALS.with(|l| {
            let locals = l.as_ptr();
            // SAFETY: this thread's map; the RefCell is never borrowed (only its pointer is
            // used, here, by this thread).
            let p = unsafe { Locals::get_or_init(locals, index, self.init) };
            // SAFETY: the value lives until the thread's locals are destroyed.
            f(unsafe { &*p })
        })
    }
}

impl<T: 'static> GreenLocalKey<Cell<T>> {
    /// Sets the value (std's `LocalKey<Cell<T>>::set`).
    pub fn set(&'static self, value: T) {
        self.with(|c| c.set(value));
    }

    /// A copy of the value.
    pub fn get(&'static self) -> T
    where
        T: Copy,
    {
        self.with(Cell::get)
    }

    /// Takes the value, leaving `Default::default()`.
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(Cell::take)
    }

    /// Replaces the value, returning the old one.
    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
    }
}

impl<T: 'static> GreenLocalKey<RefCell<T>> {
    /// Calls `f` with a shared borrow of the value.
    pub fn with_borrow<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        self.with(|c| f(&c.borrow()))
    }

    /// Calls `f` with a mutable borrow of the value.
    pub fn with_borrow_mut<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&mut T) -> R,
    {
        self.with(|c| f(&mut c.borrow_mut()))
    }

    /// Sets the value.
    pub fn set(&'static self, value: T) {
        self.with(|c| *c.borrow_mut() = value);
    }

    /// Takes the value, leaving `Default::default()`.
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(RefCell::take)
    }

    /// Replaces the value, returning the old one.
    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
    }
}

/// Declares green-local statics: `thread_local!` whose values belong to the green thread.
///
/// Each G gets its own value, made by the initialiser on the G's first access, kept across
/// every park and every move to another OS thread, and dropped when the G ends. On a plain
/// OS thread the key gives that thread's value instead.
///
/// # Examples
///
/// ```
/// use gort_runtime::green_local;
/// use std::cell::Cell;
///
/// green_local! {
///     static REQUEST_ID: Cell<u64> = Cell::new(0);
/// }
///
/// let handles: Vec<_> = (1..=4u64)
///     .map(|id| {
///         gort_runtime::spawn(move || {
///             REQUEST_ID.set(id);
///             gort_runtime::yield_now(); // may resume on another OS thread
///             REQUEST_ID.get()
///         })
///     })
///     .collect();
/// let ids: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
/// assert_eq!(ids, [1, 2, 3, 4]);
/// ```
#[macro_export]
macro_rules! green_local {
    () => {};
    // std's `const { ... }` initialiser form is accepted (the value is still made per G).
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const $init:block; $($rest:tt)*) => {
        $crate::green_local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::green_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const $init:block) => {
        $crate::green_local!($(#[$attr])* $vis static $name: $t = $init);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $crate::green_local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::green_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $(#[$attr])*
        $vis static $name: $crate::GreenLocalKey<$t> = $crate::GreenLocalKey::new({
            fn __gort_green_local_init() -> $t {
                $init
            }
            __gort_green_local_init
        });
    };
}
