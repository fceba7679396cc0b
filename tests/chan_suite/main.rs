//! The channel suite: what a crossbeam-channel user relies on, checked on `gort::chan`.
//!
//! It covers the ground of crossbeam-channel's own test suite (written anew for gort, in
//! gort's terms: `Closed` where crossbeam says `Disconnected`, `Sender::close`, Go's rules
//! where CAVEATS §10 lists a difference) and of the Go channel tests it grew from: the three
//! flavours (a buffer, unbounded, rendezvous) with the same generic tests, `select!` in every
//! form, `after`/`tick`/`never`, std-mpsc usage, and Go's classic channel programs.
//!
//! Every test runs in two worlds: `os::` on OS threads (`std::thread::scope`, the body on the
//! test's thread) and `green::` on green threads (`gort::scope`, the body inside a G).
//! `maxprocs_1_and_4` reruns the green world under `GORT_MAXPROCS=1` and `4` in child
//! processes. Orderings are forced with channels; a `sleep` only makes an interleaving
//! likely, and no outcome depends on it. Counts are checked exactly.

use std::time::Duration;

/// Expands each test twice: `os::name` and `green::name`. Inside the bodies `scope` is
/// `std::thread::scope` or `gort::scope` (same shape); `gort::time::sleep` and every channel
/// operation work in both worlds.
macro_rules! suite {
    ($($(#[$m:meta])* fn $name:ident() $body:block)*) => {
        mod os {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use std::thread::scope;
            $( $(#[$m])* #[test] fn $name() $body )*
        }
        mod green {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use gort::scope;
            $(
                $(#[$m])*
                #[test]
                fn $name() {
                    let h = gort::go!(move || $body);
                    if let Err(p) = h.join() {
                        std::panic::resume_unwind(p);
                    }
                }
            )*
        }
    };
}

#[allow(dead_code)]
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Long enough never to expire in a test that passes.
#[allow(dead_code)]
const FOREVER: Duration = Duration::from_secs(3600);

mod flavors;
mod golang;
mod mpsc;
mod select_macro;
mod timers;

/// The green world again with one P and with four (more P's than cores).
#[test]
fn maxprocs_1_and_4() {
    const NESTED: &str = "GORT_CHAN_SUITE_NESTED";
    if std::env::var_os(NESTED).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    for procs in ["1", "4"] {
        let out = std::process::Command::new(&exe)
            .args(["green::", "--test-threads=2"])
            .env("GORT_MAXPROCS", procs)
            .env(NESTED, "1")
            .output()
            .expect("run the suite in a child");
        assert!(
            out.status.success(),
            "green suite failed with GORT_MAXPROCS={procs}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("test result: ok") && !stdout.contains(" 0 passed"),
            "the child ran no test:\n{stdout}"
        );
    }
}
