//! Reading `errno` on a green thread.
//!
//! LLVM takes `__errno_location` (what `io::Error::last_os_error` calls) for a pure function:
//! within one function it computes the address of the calling thread's `errno` once and keeps
//! it. A green thread can move to another OS thread whenever it parks, so a function that read
//! `errno`, parked, failed a system call again and read `errno` again read the *old* thread's
//! variable: whatever another green thread's call left there. (A 30 s soak under 4 P's saw a
//! socket read fail with `EINPROGRESS`, a `connect`'s error from another thread;
//! `retried_calls_report_their_own_errno` in tests/net.rs makes it happen in a fraction of a
//! second.) The same goes for any thread-local (CAVEATS, "Thread-locals").
//!
//! The rule in the runtime: read `errno` only through [`last_os_error`] (never inlined, so
//! each read computes the address afresh on the thread that runs it), and run a system call
//! that a park may follow through [`attempt`], so that the call and its `errno` read sit in
//! one frame with no park inside.

use std::io;

/// `io::Error::last_os_error()`, for the thread running the caller now.
#[inline(never)]
pub(crate) fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

/// Calls `f(x)` in a frame of its own (never inlined): whatever `f` reads of `errno` (or of
/// any thread-local) is read on the thread running it now, even if the caller parked and
/// moved to another OS thread since its last call.
#[inline(never)]
pub(crate) fn attempt<X: ?Sized, R>(
    f: &mut impl FnMut(&X) -> io::Result<R>,
    x: &X,
) -> io::Result<R> {
    f(x)
}
