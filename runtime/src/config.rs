//! Start-up configuration read from the environment: `GORT_MAXPROCS`, `GORT_STACK_SIZE`
//! and the `GORT_STACK_GUARD` test knob.
//!
//! Every bad value prints exactly one warning line to stderr that names the variable and
//! the value, and the default is used instead: the runtime never refuses to start over an
//! environment variable.

use std::io::Write;

/// The most P's a process may have (Go has no such cap; ours keeps per-P arrays small).
pub(crate) const MAX_PROCS: usize = 256;

/// Default usable bytes of a green thread's stack (the guard pages come on top).
pub(crate) const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Smallest stack a user may ask for: room for the coroutine's entry frame, the panic
/// machinery and a few frames of user code.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;

/// Largest stack a user may ask for (1 GiB, Go's own maximum on 64-bit targets).
pub(crate) const MAX_STACK_SIZE: usize = 1 << 30;

/// How guard pages are put under stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardMode {
    /// `madvise(MADV_GUARD_INSTALL)` where the kernel has it, `mprotect` otherwise.
    Auto,
    /// Always `mprotect` (two kernel mappings per stack); forced by `GORT_STACK_GUARD=mprotect`.
    Mprotect,
}

/// The configuration the runtime starts with.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) procs: usize,
    pub(crate) stack_size: usize,
    pub(crate) guard_mode: GuardMode,
}

fn warn(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "gort: {line}");
}

fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Parses a `GORT_MAXPROCS` value. `Err` carries the warning to print.
pub(crate) fn parse_procs(raw: &str, default: usize) -> Result<usize, String> {
    let v = raw.trim();
    match v.parse::<i64>() {
        Ok(n) if n >= 1 && n as u64 <= MAX_PROCS as u64 => Ok(n as usize),
        Ok(n) if n > MAX_PROCS as i64 => Err(format!(
            "GORT_MAXPROCS={raw:?} is above the maximum of {MAX_PROCS}; using {MAX_PROCS}"
        )),
        _ => Err(format!(
            "ignoring GORT_MAXPROCS={raw:?}: expected a whole number from 1 to {MAX_PROCS}; \
             using {default} (the CPU count)"
        )),
    }
}

/// Parses a stack size: a number of bytes with an optional `k`/`K`/`KiB` or `m`/`M`/`MiB`
/// suffix. The result is not yet rounded to pages.
pub(crate) fn parse_size(raw: &str) -> Option<usize> {
    let v = raw.trim();
    let (digits, mult) = if let Some(d) = v
        .strip_suffix("KiB")
        .or_else(|| v.strip_suffix('K'))
        .or_else(|| v.strip_suffix('k'))
    {
        (d, 1024)
    } else if let Some(d) = v
        .strip_suffix("MiB")
        .or_else(|| v.strip_suffix('M'))
        .or_else(|| v.strip_suffix('m'))
    {
        (d, 1024 * 1024)
    } else {
        (v, 1)
    };
    digits.trim().parse::<usize>().ok()?.checked_mul(mult)
}

impl Config {
    /// Reads the environment once, printing a warning per bad value.
    pub(crate) fn from_env() -> Config {
        let default_procs = cpu_count().clamp(1, MAX_PROCS);
        let procs = match std::env::var("GORT_MAXPROCS") {
            Ok(raw) if raw.trim().is_empty() => default_procs,
            Ok(raw) => match parse_procs(&raw, default_procs) {
                Ok(n) => n,
                Err(msg) => {
                    warn(&msg);
                    if raw
                        .trim()
                        .parse::<i64>()
                        .is_ok_and(|n| n > MAX_PROCS as i64)
                    {
                        MAX_PROCS
                    } else {
                        default_procs
                    }
                }
            },
            Err(std::env::VarError::NotPresent) => default_procs,
            Err(std::env::VarError::NotUnicode(raw)) => {
                warn(&format!(
                    "ignoring GORT_MAXPROCS={raw:?}: not valid UTF-8; using {default_procs} (the CPU count)"
                ));
                default_procs
            }
        };
        let stack_size = match std::env::var("GORT_STACK_SIZE") {
            Ok(raw) if raw.trim().is_empty() => DEFAULT_STACK_SIZE,
            Ok(raw) => match parse_size(&raw) {
                Some(n) if (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&n) => n,
                _ => {
                    warn(&format!(
                        "ignoring GORT_STACK_SIZE={raw:?}: expected bytes from {MIN_STACK_SIZE} \
                         to {MAX_STACK_SIZE} (suffixes K, KiB, M, MiB allowed); using {DEFAULT_STACK_SIZE}"
                    ));
                    DEFAULT_STACK_SIZE
                }
            },
            Err(_) => DEFAULT_STACK_SIZE,
        };
        let guard_mode = match std::env::var("GORT_STACK_GUARD").as_deref() {
            Ok("mprotect") => GuardMode::Mprotect,
            Ok("") | Ok("auto") | Err(_) => GuardMode::Auto,
            Ok(other) => {
                warn(&format!(
                    "ignoring GORT_STACK_GUARD={other:?}: expected \"auto\" or \"mprotect\"; using auto"
                ));
                GuardMode::Auto
            }
        };
        Config {
            procs,
            stack_size,
            guard_mode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procs_values() {
        assert_eq!(parse_procs("1", 2), Ok(1));
        assert_eq!(parse_procs(" 3 ", 2), Ok(3));
        assert_eq!(parse_procs("256", 2), Ok(256));
        assert!(parse_procs("300", 2)
            .unwrap_err()
            .contains("maximum of 256"));
        for bad in ["0", "-1", "abc", "1.5", ""] {
            let msg = parse_procs(bad, 2).unwrap_err();
            assert!(msg.contains("GORT_MAXPROCS"), "{msg}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("2 MiB"), Some(2 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("-5"), None);
    }
}
