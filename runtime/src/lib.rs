//! gort-runtime: an M:N green-thread runtime on Go's G/P/M model.
//!
//! - **G** ([`g`](crate)): a stackful coroutine on a stack gort maps itself.
//! - **P**: a logical processor with a local run queue; `GORT_MAXPROCS` of them.
//! - **M**: an OS thread that holds a P and runs the scheduler loop.
//!
//! Start with [`go!`] / [`spawn`] and [`JoinHandle::join`]. The runtime starts itself on
//! first use. `docs/ARCHITECTURE.md` in the repository explains the machinery.
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod chan;
mod config;
pub mod context;
mod deadlock;
mod dump;
mod errno;
mod future;
mod g;
mod join;
mod local;
pub mod net;
mod park;
mod parking;
#[doc(hidden)]
pub mod protocol;
mod sched;
mod scope;
mod select;
mod shrink;
mod signal;
mod spin;
mod stack;
pub mod sync;
mod sysmon;
pub mod time;
mod timer;
mod unwind;

pub use dump::dump;
pub use future::{block_on, JoinFuture};
pub use join::{current, spawn, Builder, GreenThread, JoinHandle};
pub use join::{idle_procs, is_green_thread, max_procs, num_green_threads, yield_now};
pub use local::GreenLocalKey;
pub use parking::{park, park_timeout, Unparker};
pub use scope::{scope, Scope, ScopedJoinHandle};
pub use sysmon::{blocking, stats, Stats};
pub use time::sleep;

/// Which stack-guard mechanism the process uses: `"madvise"` (`MADV_GUARD_INSTALL`, one
/// kernel mapping per arena), `"mprotect"` (two mappings per stack), or `"undecided"` before
/// the first stack was handed out. For diagnostics and tests.
#[doc(hidden)]
pub fn __stack_guard_kind() -> &'static str {
    stack::guard_kind()
}

/// Dead G structs on the runtime's global free list, kept for reuse by later spawns and
/// trimmed when the runtime goes idle. For diagnostics and tests.
#[doc(hidden)]
pub fn __free_green_threads() -> usize {
    sched::sched().free_gs()
}
