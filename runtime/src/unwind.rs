//! Panics in user code that the runtime runs on nobody's behalf.
//!
//! A G's closure runs inside `catch_unwind`, and its panic goes to `join`. But the runtime
//! also runs user code outside any closure: it drops the result (or panic payload) of a G
//! nobody joins, and the closure of a G that could not get a stack. A `Drop` there may
//! panic. Unwinding out of those places would go through the scheduler's own frames: the M
//! would die holding its P, and with one P the whole runtime would hang.
//!
//! The rule, place by place:
//! - **Dropping what nobody owns any more** (a detached G's result or payload, a failed G's
//!   closure): [`drop_contained`]. The panic has already been reported by the panic hook;
//!   the runtime adds one line saying what panicked on drop, and goes on. std aborts the
//!   process here ("thread result panicked on drop"); gort can contain it, since nothing of
//!   the runtime's is half-updated at that point (the value was moved out of its slot
//!   first), and a runtime should not die of one value's destructor.
//! - **Anything else unwinding out of an M's or sysmon's loop** is a bug in gort, not in
//!   user code: [`AbortOnUnwind`] turns it into a clear message and an abort instead of a
//!   silently dead thread and a lost P.

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

/// Drops `x`; a panic in its destructor is reported in one line (naming `what`) and
/// contained. The panic's own payload is dropped too, and if *that* drop panics as well the
/// payload is leaked rather than risk an endless chain.
pub(crate) fn drop_contained<X>(x: X, what: fmt::Arguments<'_>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(x))) {
        eprintln!("gort: {what} panicked on drop; the panic was contained");
        drop_payload(payload);
    }
}

/// Drops a panic payload whose drop may panic again: one try, then the payload of that
/// second panic is leaked (a few bytes, and only for a type that panics in `Drop`).
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Aborts the process with a message if a panic unwinds past it: held by the frames of the
/// runtime's own threads, where an unwinding panic would kill a thread that holds a P (or
/// sysmon) without a word.
pub(crate) struct AbortOnUnwind(pub(crate) &'static str);

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "gort: fatal error: a panic unwound out of {}; aborting (this is a bug in gort: \
                 please report it with the panic message above)",
                self.0
            );
            std::process::abort();
        }
    }
}
