//! Start-up configuration read from the environment: `GORT_MAXPROCS`, `GORT_MAXTHREADS`,
//! `GORT_STACK_SIZE`, `GORT_STACK_SHRINK`, `GORT_DEBUG`, `GORT_RAISE_NOFILE` and the `GORT_STACK_GUARD` test
//! knob.
//!
//! Every bad value prints exactly one warning line to stderr that names the variable and
//! the value, and the default is used instead: the runtime never refuses to start over an
//! environment variable.

use std::io::Write;

/// The most P's a process may have (Go has no such cap; ours keeps per-P arrays small).
pub(crate) const MAX_PROCS: usize = 256;

/// Default cap on the OS threads the runtime starts (M's and sysmon), as Go's.
pub(crate) const DEFAULT_MAX_THREADS: usize = 10_000;

/// Default usable bytes of a green thread's stack (the guard pages come on top).
pub(crate) const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Smallest stack a user may ask for: room for the coroutine's entry frame, the panic
/// machinery and a few frames of user code.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;

/// Largest stack a user may ask for (1 GiB, Go's own maximum on 64-bit targets).
pub(crate) const MAX_STACK_SIZE: usize = 1 << 30;

/// Default period of the stack shrinker (`shrink.rs`): parked G's are shrunk after two.
pub(crate) const DEFAULT_SHRINK_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

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
    /// Cap on OS threads the runtime starts: M's (incl. those blocked in `blocking`) and
    /// sysmon. At least `procs + 1`.
    pub(crate) max_threads: usize,
    /// `GORT_DEBUG=schedtrace=<ms>`: print a scheduler summary line every interval.
    pub(crate) schedtrace: Option<std::time::Duration>,
    /// `GORT_DEBUG=hogs=<ms>`: report G's that hold their P longer than this.
    pub(crate) hogs: Option<std::time::Duration>,
    /// `GORT_DEBUG=dump`: SIGQUIT prints the green-thread dump and exits with status 2.
    pub(crate) dump: bool,
    pub(crate) stack_size: usize,
    pub(crate) guard_mode: GuardMode,
    /// Raise the soft `RLIMIT_NOFILE` to the hard limit at start (`GORT_RAISE_NOFILE`,
    /// default on, as Go since 1.19).
    pub(crate) raise_nofile: bool,
    /// `GORT_STACK_SHRINK=<ms>`: the stack shrinker's period (0: off); default 100 ms.
    pub(crate) shrink_period: std::time::Duration,
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

/// A whole number as the user wrote it: optional `+`, then digits only. Values too large
/// for a `u64` saturate (they are "very large", not "bad"). None for anything else
/// (negative, fractional, empty, words).
fn parse_count(raw: &str) -> Option<u64> {
    let v = raw.trim();
    let digits = v.strip_prefix('+').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

/// Parses a `GORT_MAXPROCS` value. `Err` carries the warning to print and the count to use:
/// values above [`MAX_PROCS`] (however many digits) become `MAX_PROCS`, bad ones `default`.
pub(crate) fn parse_procs(raw: &str, default: usize) -> Result<usize, (String, usize)> {
    match parse_count(raw) {
        Some(n) if n >= 1 && n <= MAX_PROCS as u64 => Ok(n as usize),
        Some(n) if n > MAX_PROCS as u64 => Err((
            format!("GORT_MAXPROCS={raw:?} is above the maximum of {MAX_PROCS}; using {MAX_PROCS}"),
            MAX_PROCS,
        )),
        _ => Err((
            format!(
                "ignoring GORT_MAXPROCS={raw:?}: expected a whole number from 1 to {MAX_PROCS}; \
                 using {default} (the CPU count)"
            ),
            default,
        )),
    }
}

/// Parses a `GORT_MAXTHREADS` value given the P count. `Err` carries the warning to print
/// and the value to use.
pub(crate) fn parse_max_threads(raw: &str, procs: usize) -> Result<usize, (String, usize)> {
    let floor = procs + 1;
    match parse_count(raw) {
        Some(n) if n >= floor as u64 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) if n >= 1 => Err((
            format!(
                "GORT_MAXTHREADS={raw:?} is below {floor} (one thread per P plus the monitor); \
                 using {floor}"
            ),
            floor,
        )),
        _ => Err((
            format!(
                "ignoring GORT_MAXTHREADS={raw:?}: expected a whole number of at least {floor}; \
                 using {DEFAULT_MAX_THREADS}"
            ),
            DEFAULT_MAX_THREADS.max(floor),
        )),
    }
}

/// The settings of `GORT_DEBUG`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Debug {
    pub(crate) schedtrace: Option<std::time::Duration>,
    pub(crate) hogs: Option<std::time::Duration>,
    pub(crate) dump: bool,
}

/// Parses `GORT_DEBUG`: comma-separated `key=value` pairs, as Go's `GODEBUG`. Returns the
/// settings and one warning per bad pair (which is ignored).
pub(crate) fn parse_debug(raw: &str) -> (Debug, Vec<String>) {
    let mut d = Debug::default();
    let mut warnings = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        if key.trim() == "dump" {
            match value.trim() {
                "" | "1" => d.dump = true,
                "0" => d.dump = false,
                other => warnings.push(format!(
                    "ignoring dump={other:?} in GORT_DEBUG: expected dump, dump=1 or dump=0"
                )),
            }
            continue;
        }
        let ms = value.trim().parse::<u64>().ok().filter(|&ms| ms >= 1);
        let slot = match key.trim() {
            "schedtrace" => &mut d.schedtrace,
            "hogs" => &mut d.hogs,
            other => {
                warnings.push(format!(
                    "ignoring {other:?} in GORT_DEBUG: known settings are schedtrace=<ms>, hogs=<ms> and dump"
                ));
                continue;
            }
        };
        match ms {
            Some(ms) => *slot = Some(std::time::Duration::from_millis(ms)),
            None => warnings.push(format!(
                "ignoring {item:?} in GORT_DEBUG: expected a whole number of milliseconds, at least 1"
            )),
        }
    }
    (d, warnings)
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
            Ok(raw) => parse_procs(&raw, default_procs).unwrap_or_else(|(msg, n)| {
                warn(&msg);
                n
            }),
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
        let max_threads = match std::env::var("GORT_MAXTHREADS") {
            Ok(raw) if raw.trim().is_empty() => DEFAULT_MAX_THREADS.max(procs + 1),
            Ok(raw) => parse_max_threads(&raw, procs).unwrap_or_else(|(msg, n)| {
                warn(&msg);
                n
            }),
            Err(std::env::VarError::NotPresent) => DEFAULT_MAX_THREADS.max(procs + 1),
            Err(std::env::VarError::NotUnicode(raw)) => {
                warn(&format!(
                    "ignoring GORT_MAXTHREADS={raw:?}: not valid UTF-8; using {DEFAULT_MAX_THREADS}"
                ));
                DEFAULT_MAX_THREADS.max(procs + 1)
            }
        };
        let debug = match std::env::var("GORT_DEBUG") {
            Ok(raw) => {
                let (d, warnings) = parse_debug(&raw);
                for w in warnings {
                    warn(&w);
                }
                d
            }
            Err(std::env::VarError::NotPresent) => Debug::default(),
            Err(std::env::VarError::NotUnicode(raw)) => {
                warn(&format!("ignoring GORT_DEBUG={raw:?}: not valid UTF-8"));
                Debug::default()
            }
        };
        let raise_nofile = match std::env::var("GORT_RAISE_NOFILE").as_deref() {
            Ok("1") | Ok("") | Err(_) => true,
            Ok("0") => false,
            Ok(other) => {
                warn(&format!(
                    "ignoring GORT_RAISE_NOFILE={other:?}: expected 0 or 1; using 1"
                ));
                true
            }
        };
        let shrink_period = match std::env::var("GORT_STACK_SHRINK") {
            Ok(raw) if raw.trim().is_empty() => DEFAULT_SHRINK_PERIOD,
            Ok(raw) => match raw.trim().parse::<u64>() {
                Ok(ms) if ms <= 60_000 => std::time::Duration::from_millis(ms),
                _ => {
                    warn(&format!(
                        "ignoring GORT_STACK_SHRINK={raw:?}: expected milliseconds from 0 (off) \
                         to 60000; using {}",
                        DEFAULT_SHRINK_PERIOD.as_millis()
                    ));
                    DEFAULT_SHRINK_PERIOD
                }
            },
            Err(_) => DEFAULT_SHRINK_PERIOD,
        };
        Config {
            procs,
            max_threads,
            raise_nofile,
            shrink_period,
            schedtrace: debug.schedtrace,
            hogs: debug.hogs,
            dump: debug.dump,
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
        assert_eq!(parse_procs("+4", 2), Ok(4));
        // Any all-digit value above the maximum clamps, however long.
        for big in [
            "300",
            "9223372036854775808",
            "99999999999999999999",
            "1".repeat(400).as_str(),
        ] {
            let (msg, n) = parse_procs(big, 2).unwrap_err();
            assert!(msg.contains("maximum of 256"), "{msg}");
            assert_eq!(n, 256, "{big}");
        }
        for bad in [
            "0",
            "-1",
            "abc",
            "1.5",
            "",
            "+",
            "1e3",
            "-99999999999999999999",
        ] {
            let (msg, n) = parse_procs(bad, 2).unwrap_err();
            assert!(msg.contains("GORT_MAXPROCS"), "{msg}");
            assert_eq!(n, 2, "{bad}");
        }
    }

    #[test]
    fn max_threads_values() {
        assert_eq!(parse_max_threads("16", 2), Ok(16));
        assert_eq!(parse_max_threads(" 3 ", 2), Ok(3));
        assert_eq!(parse_max_threads("99999999999999999999", 2), Ok(usize::MAX));
        let (msg, n) = parse_max_threads("2", 2).unwrap_err();
        assert!(msg.contains("below 3"), "{msg}");
        assert_eq!(n, 3);
        for bad in ["0", "-4", "many", "1.5", ""] {
            let (msg, n) = parse_max_threads(bad, 2).unwrap_err();
            assert!(msg.contains("GORT_MAXTHREADS"), "{msg}");
            assert_eq!(n, DEFAULT_MAX_THREADS);
        }
    }

    #[test]
    fn debug_values() {
        use std::time::Duration;
        let (d, w) = parse_debug("schedtrace=100, hogs=5");
        assert_eq!(d.schedtrace, Some(Duration::from_millis(100)));
        assert_eq!(d.hogs, Some(Duration::from_millis(5)));
        assert!(w.is_empty());
        let (d, w) = parse_debug("schedtrace=0,hogs=x,gctrace=1,schedtrace");
        assert_eq!(d, Debug::default());
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[2].contains("\"gctrace\""), "{w:?}");
        assert_eq!(parse_debug("").0, Debug::default());
        let (d, w) = parse_debug("dump, hogs=5");
        assert!(d.dump && w.is_empty());
        assert_eq!(d.hogs, Some(Duration::from_millis(5)));
        let (d, w) = parse_debug("dump=yes");
        assert!(!d.dump && w.len() == 1, "{w:?}");
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
