//! Time: [`sleep`], and timer channels for `select!`: [`after`], [`tick`].
//!
//! All of them share the runtime's timers (see `timer.rs` in the source): a sleeping green
//! thread costs a heap entry, not an OS thread, and an idle M sleeps until the next deadline
//! instead of spinning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chan::{new_chan_with, Receiver, Sender};
use crate::park::park_deadline;
use crate::sched::{current_g, sched};
use crate::timer::{Action, TimerState};

/// Puts the current green thread to sleep for at least `d`; its OS thread runs other green
/// threads meanwhile. Outside the runtime it is `std::thread::sleep`.
///
/// It never returns early. How late it returns depends on load: on idle P's a due sleeper
/// is woken within about a millisecond. It is always a scheduling point: even
/// `sleep(Duration::ZERO)` lets the other green threads of the P run (it yields).
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
        crate::dump::set_wait(crate::dump::Wait::Sleep);
        loop {
            park_deadline(Instant::now() + Duration::from_secs(1 << 32));
        }
    };
    sleep_until(deadline);
}

/// Puts the current green thread to sleep until `deadline`. A deadline already past still
/// yields, as [`sleep`] does.
pub fn sleep_until(deadline: Instant) {
    if current_g().is_null() {
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        return;
    }
    crate::dump::set_wait(crate::dump::Wait::Sleep);
    // Parks until the deadline; one already past (`sleep(Duration::ZERO)`, a nanosecond)
    // still yields once, as every timed wait does (`park::park_until`): a G sleeping zero in
    // a loop until another sets a flag would otherwise never let that G run on a single P.
    let mut gave_way = false;
    while crate::park::park_until(deadline, &mut gave_way) {}
}

/// A channel that receives the current time once, after `d` (Go's `time.After`). For
/// timeouts in `select!`. The channel never closes. Dropping it before the deadline
/// cancels the timer: an abandoned `after(1 h)` costs nothing from then on (as in Go 1.23,
/// where unreferenced timers are reclaimed).
///
/// # Examples
///
/// ```
/// use gort_runtime::{chan, select, time};
/// use std::time::Duration;
///
/// let (_tx, rx) = chan::bounded::<u32>(0);
/// let timed_out = select! {
///     recv(rx) -> _ => false,
///     recv(time::after(Duration::from_millis(5))) -> _ => true,
/// };
/// assert!(timed_out);
/// ```
pub fn after(d: Duration) -> Receiver<Instant> {
    if d.is_zero() {
        // Ready at once (Go 1.23 and crossbeam): no timer.
        let (tx, rx) = new_chan_with(1, 1, None);
        let _ = tx.try_send(Instant::now());
        return rx;
    }
    let state = TimerState::new();
    let (tx, rx) = new_chan_with(1, 1, Some(state.clone()));
    let when = Instant::now().checked_add(d);
    if let Some(when) = when {
        let st = state.clone();
        add_timer_unless(
            when,
            move || {
                if st.fire() {
                    let _ = tx.try_send(Instant::now());
                }
            },
            state,
        );
    }
    rx
}

/// A channel that receives the current time every `d` (Go's `time.Tick`). A receiver that
/// falls behind misses ticks instead of queueing them (the channel holds one). The ticks stop
/// once every receiver is dropped; the channel never closes.
///
/// # Panics
///
/// If `d` is zero.
pub fn tick(d: Duration) -> Receiver<Instant> {
    assert!(
        !d.is_zero(),
        "gort::time::tick: the period must be non-zero"
    );
    let state = TimerState::new();
    let (tx, rx) = new_chan_with(1, 1, Some(state.clone()));
    if let Some(first) = Instant::now().checked_add(d) {
        schedule_tick(first, d, tx, state);
    }
    rx
}

fn schedule_tick(when: Instant, period: Duration, tx: Sender<Instant>, state: Arc<TimerState>) {
    let st = state.clone();
    add_timer_unless(
        when,
        move || {
            if tx.is_closed() {
                // Every receiver is gone: stop.
                return;
            }
            let now = Instant::now();
            let _ = tx.try_send(now);
            let mut next = when;
            while next <= now {
                match next.checked_add(period) {
                    Some(n) => next = n,
                    None => return,
                }
            }
            schedule_tick(next, period, tx, st);
        },
        state,
    );
}

/// Adds a callback timer, cancelled with `state`, making sure an M will fire it.
pub(crate) fn add_timer_unless(
    when: Instant,
    f: impl FnOnce() + Send + 'static,
    state: Arc<TimerState>,
) {
    let s = sched();
    if s.timers.add(when, Action::Call(Box::new(f), state)) {
        s.wakep(true);
    }
}
