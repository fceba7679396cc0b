//! Time: [`sleep`], and timer channels for `select!`: [`after`], [`tick`].
//!
//! All of them share the runtime's timers (see `timer.rs` in the source): a sleeping green
//! thread costs a heap entry, not an OS thread, and an idle M sleeps until the next deadline
//! instead of spinning.

use std::time::{Duration, Instant};

use crate::park::park_deadline;
use crate::sched::current_g;

/// Puts the current green thread to sleep for at least `d`; its OS thread runs other green
/// threads meanwhile. Outside the runtime it is `std::thread::sleep`.
///
/// It never returns early. How late it returns depends on load: on idle P's a due sleeper
/// is woken within about a millisecond.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let h = gort_runtime::go!(|| {
///     let t = Instant::now();
///     gort_runtime::sleep(Duration::from_millis(5));
///     t.elapsed()
/// });
/// assert!(h.join().unwrap() >= Duration::from_millis(5));
/// ```
pub fn sleep(d: Duration) {
    if current_g().is_null() {
        std::thread::sleep(d);
        return;
    }
    let Some(deadline) = Instant::now().checked_add(d) else {
        // Longer than the clock can represent: sleep as long as we can, forever.
        loop {
            park_deadline(Instant::now() + Duration::from_secs(1 << 32));
        }
    };
    sleep_until(deadline);
}

/// Puts the current green thread to sleep until `deadline`.
pub fn sleep_until(deadline: Instant) {
    if current_g().is_null() {
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        return;
    }
    while Instant::now() < deadline {
        park_deadline(deadline);
    }
}
