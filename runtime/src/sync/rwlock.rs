//! [`RwLock`]: many readers or one writer, waiters served in arrival order.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex as StdMutex};

use super::waiter::{lock, Node, Wait};

struct RwState {
    /// Readers holding the lock.
    readers: usize,
    /// A writer holds the lock.
    writer: bool,
    /// Waiters in arrival order; `true` marks a writer.
    queue: VecDeque<(bool, Arc<Node>)>,
}

/// A reader-writer lock for green threads (Go's `sync.RWMutex`), protecting a `T`.
///
/// Fair: waiters are served in arrival order, consecutive readers together; a reader that
/// arrives while a writer waits queues behind it, so writers are not starved by a stream of
/// readers. The lock is handed directly to the woken waiters.
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::RwLock;
/// let l = RwLock::new(5);
/// {
///     let a = l.read();
///     let b = l.read();
///     assert_eq!(*a + *b, 10);
/// }
/// *l.write() += 1;
/// assert_eq!(*l.read(), 6);
/// ```
pub struct RwLock<T: ?Sized> {
    state: StdMutex<RwState>,
    data: UnsafeCell<T>,
}

// SAFETY: writers get exclusive access, readers shared access (hence T: Sync for Sync);
// holders may be on any thread (T: Send).
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// RAII shared access to a [`RwLock`].
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

/// RAII exclusive access to a [`RwLock`].
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

// SAFETY: a read guard only gives `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: a write guard gives `&T`/`&mut T` to its one holder.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: StdMutex::new(RwState {
                readers: 0,
                writer: false,
                queue: VecDeque::new(),
            }),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock, returning the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, parking while a writer holds or waits for the lock.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let node = {
            let mut st = lock(&self.state);
            if !st.writer && st.queue.is_empty() {
                st.readers += 1;
                return RwLockReadGuard { lock: self };
            }
            let n = Node::new();
            st.queue.push_back((false, n.clone()));
            n
        };
        // Signalled: the unlocker counted us in `readers`.
        node.wait(Wait::RwLock);
        RwLockReadGuard { lock: self }
    }

    /// Locks for reading if that is possible without waiting.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let mut st = lock(&self.state);
        if !st.writer && st.queue.is_empty() {
            st.readers += 1;
            return Some(RwLockReadGuard { lock: self });
        }
        None
    }

    /// Locks for writing, parking while anyone holds the lock.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let node = {
            let mut st = lock(&self.state);
            if !st.writer && st.readers == 0 && st.queue.is_empty() {
                st.writer = true;
                return RwLockWriteGuard { lock: self };
            }
            let n = Node::new();
            st.queue.push_back((true, n.clone()));
            n
        };
        // Signalled: the unlocker set `writer` for us.
        node.wait(Wait::RwLock);
        RwLockWriteGuard { lock: self }
    }

    /// Locks for writing if that is possible without waiting.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let mut st = lock(&self.state);
        if !st.writer && st.readers == 0 && st.queue.is_empty() {
            st.writer = true;
            return Some(RwLockWriteGuard { lock: self });
        }
        None
    }

    /// A mutable reference, without locking.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Hands the lock to the next waiters, if it is free: one writer, or every reader at
    /// the front of the queue. Called with the state locked; returns whom to signal.
    fn grant(st: &mut RwState) -> Vec<Arc<Node>> {
        let mut wake = Vec::new();
        if st.writer {
            return wake;
        }
        while let Some((is_writer, _)) = st.queue.front() {
            if *is_writer {
                if st.readers == 0 && wake.is_empty() {
                    let (_, n) = st.queue.pop_front().expect("front exists");
                    st.writer = true;
                    wake.push(n);
                }
                break;
            }
            let (_, n) = st.queue.pop_front().expect("front exists");
            st.readers += 1;
            wake.push(n);
        }
        wake
    }

    fn read_unlock(&self) {
        let wake = {
            let mut st = lock(&self.state);
            st.readers -= 1;
            Self::grant(&mut st)
        };
        wake.iter().for_each(|n| n.signal());
    }

    fn write_unlock(&self) {
        let wake = {
            let mut st = lock(&self.state);
            st.writer = false;
            Self::grant(&mut st)
        };
        wake.iter().for_each(|n| n.signal());
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read lock is held: no writer.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write lock is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write lock is held: exclusive.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_read() {
            Some(g) => f.debug_struct("RwLock").field("data", &&*g).finish(),
            None => f.debug_struct("RwLock").field("data", &"<locked>").finish(),
        }
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}
