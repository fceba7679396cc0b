//! gort: Go-style M:N green threads for Rust.
//!
//! This facade re-exports the runtime (`gort-runtime`). See the crate README and
//! `docs/ARCHITECTURE.md` for how G's, P's and M's fit together.
#![warn(missing_docs)]

pub use gort_runtime::*;
