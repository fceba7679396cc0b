//! The waiter queue every primitive of this module shares (see the module docs: a `Node`
//! per waiter, queued under a short internal lock, signalled by whoever releases).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};
use std::time::Instant;

pub(super) use crate::dump::Wait;
use crate::park::{park, park_until, Unparker};

/// One waiting green thread or OS thread.
pub(super) struct Node {
    pub(super) unparker: Unparker,
    /// Set (Release) by the signaller once the waiter may proceed.
    pub(super) flag: AtomicBool,
    /// For `Mutex`: the lock itself was handed over (starvation mode). Written before
    /// `flag`, read after it.
    pub(super) handed: AtomicBool,
}

impl Node {
    pub(super) fn new() -> Arc<Node> {
        Arc::new(Node {
            unparker: Unparker::current(),
            flag: AtomicBool::new(false),
            handed: AtomicBool::new(false),
        })
    }

    pub(super) fn is_set(&self) -> bool {
        // Acquire: pairs with the Release in `signal`.
        self.flag.load(Ordering::Acquire)
    }

    /// Waits for the signal (`reason` says why, for the dump).
    pub(super) fn wait(&self, reason: Wait) {
        crate::dump::set_wait(reason);
        while !self.is_set() {
            park();
        }
    }

    /// Waits for the signal until `deadline`; false if it did not come by then (the caller
    /// must then withdraw the node under its lock, and re-check `is_set`).
    pub(super) fn wait_until(&self, deadline: Instant, reason: Wait) -> bool {
        crate::dump::set_wait(reason);
        let mut gave_way = false;
        while !self.is_set() {
            if !park_until(deadline, &mut gave_way) {
                return false;
            }
        }
        true
    }

    /// Lets the waiter proceed. Call without holding the primitive's internal lock.
    pub(super) fn signal(&self) {
        // Release: what the signaller handed over is visible to the waiter's Acquire.
        self.flag.store(true, Ordering::Release);
        self.unparker.unpark(true);
    }
}

pub(super) fn lock<T>(m: &StdMutex<T>) -> StdGuard<'_, T> {
    // The internal locks guard only queues and counters; no user code runs under them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn remove(q: &mut VecDeque<Arc<Node>>, n: &Arc<Node>) -> bool {
    match q.iter().position(|x| Arc::ptr_eq(x, n)) {
        Some(i) => {
            q.remove(i);
            true
        }
        None => false,
    }
}
