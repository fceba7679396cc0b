#![doc = include_str!("../README.md")]
//!
//! This facade re-exports the runtime (`gort-runtime`); `docs/ARCHITECTURE.md` explains how
//! G's, P's and M's fit together.
#![warn(missing_docs)]

pub use gort_runtime::*;

/// The pool of reusable green threads (package `gort-pool`).
pub use gort_pool as pool;

/// The examples of docs/CAVEATS.md, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../docs/CAVEATS.md")]
pub struct CaveatsExamples;

/// The examples of docs/POOL.md, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/POOL.md")]
pub struct PoolExamples;
