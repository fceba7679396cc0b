//! A small spin lock for the runtime's own short critical sections (a channel's queues).
//!
//! Why not `std::sync::Mutex`: its unlock is an atomic swap (it must learn whether a thread
//! sleeps on the futex); this lock's unlock is a plain Release store, which on a channel
//! hand-off saves one of the dozen or so locked instructions a round trip costs. The
//! sections it guards are a few dozen instructions and never park, so spinning is the right
//! wait; when the holder's OS thread is preempted, waiters yield their CPU after a short
//! spin instead of burning it.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// Spins before each yield of the CPU.
const SPINS: u32 = 64;

pub(crate) struct SpinMutex<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives one holder at a time access to `data` (T: Send to move between
// threads' holders).
unsafe impl<T: Send> Sync for SpinMutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SpinMutex<T> {}

pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinMutex<T>,
}

impl<T> SpinMutex<T> {
    pub(crate) const fn new(v: T) -> SpinMutex<T> {
        SpinMutex {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(v),
        }
    }

    /// The data, through exclusive access (no locking needed).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        // Acquire: pairs with the Release store of the previous unlock.
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    fn lock_slow(&self) {
        loop {
            let mut spins = 0;
            while self.locked.load(Ordering::Relaxed) {
                if spins < SPINS {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                    spins = 0;
                }
            }
            // Acquire: as in `lock`.
            if self
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // Release: publishes the section's writes to the next holder's Acquire.
        self.lock.locked.store(false, Ordering::Release);
    }
}
