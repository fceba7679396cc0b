//! Blocking calls, the monitor thread, and the scheduler's figures: Go's
//! `entersyscall`/`exitsyscall`, `sysmon`, `schedtrace`.
//!
//! # Hand-off
//!
//! A P is in one of three states (`P::status`): `P_IDLE` (on the idle list, or in transit
//! from sysmon to an M), `P_RUNNING` (held by an M running G's) or `P_SYSCALL` (held by an M
//! whose G is inside [`blocking`]). Only the holder moves `P_RUNNING -> P_SYSCALL`, on the
//! way into `blocking`. A P in `P_SYSCALL` belongs to whoever wins a compare-exchange out of
//! it: the M itself on the way out (`P_SYSCALL -> P_RUNNING`, the fast path: one CAS), or
//! sysmon (`P_SYSCALL -> P_IDLE`), which then hands the P to another M (`Sched::handoffp`).
//! The loser of that race never touches the P again: an M that comes out of `blocking` and
//! finds its P gone takes any idle P, or else suspends its G into the global queue and
//! goes to sleep as an idle M.
//!
//! While inside `blocking`, the thread is a plain OS thread to the runtime (no current G
//! or P): gort calls made from `f` block the thread, spawns go to the global queue. That is
//! what makes it safe for another M to run the P meanwhile.
//!
//! # Sysmon
//!
//! One thread, started with the first M (counted under `GORT_MAXTHREADS`). Each round it
//! looks at every P: a P seen in the same `blocking` call on two rounds in a row (so for at
//! least one sysmon delay, 20 µs or more) is taken and handed off, unless it has no queued
//! work and another M or P is free to run what comes (then it waits up to 10 ms, as Go's
//! `retake` does); at the thread cap it waits for an M to come back. A P seen running the
//! same G for longer than `GORT_DEBUG=hogs=<ms>` is reported once. The delay between rounds
//! is 20 µs, doubling after 50 rounds that took nothing, up to 10 ms; when every P is idle
//! (and no debug output is asked for) sysmon sleeps until a G enters `blocking`.

use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::g::Suspend;
use crate::protocol::p_status;
use crate::sched::{
    current_g, current_p, sched, set_blocking_g, set_current_g, set_current_p, suspend, Sched,
    NO_P, P_RUNNING, P_SYSCALL,
};

/// Sysmon's shortest and longest delay between rounds.
const MIN_DELAY: Duration = Duration::from_micros(20);
const MAX_DELAY: Duration = Duration::from_millis(10);
/// Rounds that took nothing before the delay starts doubling.
const PATIENT_ROUNDS: u32 = 50;
/// How long a blocked P with nothing queued may keep its P while others are free.
const SYSCALL_GRACE: Duration = Duration::from_millis(10);
/// Sleeps at least this long are announced in `sysmon_sleeping`, so that `blocking` wakes
/// sysmon instead of waiting the sleep out.
const LONG_SLEEP: Duration = Duration::from_millis(1);
/// Stacks per class sysmon scrubs from the `deep` lists per round.
const DEEP_SCRUB_STEP: usize = 32;
/// How often sysmon polls the network when no idle M sleeps in the poller (Go: 10 ms).
const NETPOLL_EVERY: Duration = Duration::from_millis(10);

/// Runs `f`, letting the other green threads of this OS thread's P move to another OS
/// thread if `f` blocks for long: for file I/O, DNS, a C library, `std::thread::sleep`, a
/// `std` lock — any call that blocks the OS thread instead of parking the green thread.
///
/// The P stays with the caller while `f` runs; if `f` is still running after about 20 µs,
/// the monitor thread hands the P to another OS thread (an idle one, or a new one, up to
/// `GORT_MAXTHREADS`), so the P's other green threads keep running. When `f` returns, the
/// caller takes its P back if it is still free, else any idle P, else it waits in the
/// global run queue. The round trip when `f` is quick costs a few atomic operations.
///
/// Inside `f` the thread acts as a plain OS thread: gort's channels and locks used from `f`
/// block the thread, and `go!` spawns to the global queue. Called outside a green thread,
/// `blocking` just runs `f`. A panic in `f` propagates to the caller.
///
/// # Examples
///
/// ```
/// let h = gort_runtime::go!(|| {
///     gort_runtime::blocking(|| std::fs::read_to_string("/proc/self/status").unwrap().len())
/// });
/// assert!(h.join().unwrap() > 0);
/// ```
pub fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R,
{
    let g = current_g();
    if g.is_null() {
        return f();
    }
    let s = sched();
    let pid = current_p();
    debug_assert_ne!(pid, NO_P, "a G runs on an M holding a P");
    let p = &s.ps()[pid];
    // entersyscall. Owner-only counter and hog marker (see P).
    p.syscalltick
        .store(p.syscalltick.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    p.running_g.store(0, Ordering::Relaxed);
    set_current_g(ptr::null());
    set_current_p(NO_P);
    set_blocking_g(g);
    // SeqCst (`protocol::p_status::enter`, model-checked in tests/loom.rs): its Release
    // half publishes this M's use of the P (queues, caches) to whoever takes it with an
    // Acquire CAS (sysmon, or another M leaving `blocking`); with the SeqCst load below it
    // is one side of a store-buffer pair with sysmon, which stores `sysmon_sleeping` and
    // then reads the idle count: either sysmon sees a busy P and stays awake, or we see it
    // asleep and wake it.
    p_status::enter(&p.status);
    if s.sysmon_sleeping.load(Ordering::SeqCst) {
        wake_sysmon(s);
    }
    // SeqCst: read by the deadlock check (see `deadlock::plain_parked`).
    crate::deadlock::IN_BLOCKING.fetch_add(1, Ordering::SeqCst);
    // For the dump: in a blocking call since now.
    // SAFETY: `g` is our G, alive while it runs.
    unsafe {
        (*g).set_wait(crate::dump::Wait::Blocking);
        (*g).stamp_wait(s.coarse_now());
    }
    let r = catch_unwind(AssertUnwindSafe(f));
    // SAFETY: as above.
    unsafe { (*g).set_wait(crate::dump::Wait::None) };
    exitsyscall(s, g, pid);
    // After the G has its P back (or is queued for one): `deadlock::check` sees either
    // the count or a busy P.
    // SeqCst: as above.
    crate::deadlock::IN_BLOCKING.fetch_sub(1, Ordering::SeqCst);
    match r {
        Ok(v) => v,
        Err(payload) => resume_unwind(payload),
    }
}

/// Gets the G coming out of `blocking` a P again (see the module docs).
fn exitsyscall(s: &'static Sched, g: *const crate::g::G, pid: usize) {
    set_blocking_g(ptr::null());
    set_current_g(g);
    // SAFETY: `g` is the running G (ours), alive while it runs.
    let id = unsafe { (*g).id() };
    let p = &s.ps()[pid];
    // Acquire (`p_status::reclaim`): if the P went through other hands while we were away
    // (another M took it and entered `blocking` itself), their writes to it come with it;
    // pairs with the SeqCst store in `blocking`.
    if p_status::reclaim(&p.status) {
        set_current_p(pid);
        p.running_g.store(id, Ordering::Relaxed);
        return;
    }
    // Our P was handed off: tell our M to look its P up again when we next stop.
    // SAFETY: the G's own code owns its fields while it runs.
    unsafe { *(*g).moved_p.get() = true };
    // Any idle P will do (ours first, if it is idle).
    if let Some(np) = s.pidleget(pid) {
        set_current_p(np);
        s.ps()[np].running_g.store(id, Ordering::Relaxed);
        return;
    }
    // None: our M, without a P, queues us globally and sleeps; whichever M takes us from
    // the queue resumes us here, with its P.
    // SAFETY: `g` is the G running on this thread.
    unsafe { suspend(g, Suspend::NoP) };
}

/// Wakes sysmon if it sleeps with no deadline (for the stack shrinker's first queued G:
/// any other sleep of sysmon ends within [`MAX_DELAY`] or at the shrinker's next epoch,
/// soon enough for G's that must stay parked two epochs before they are shrunk).
pub(crate) fn wake_sysmon_if_indefinite() {
    let s = sched();
    // SeqCst: pairs with sysmon's SeqCst store of the flag before it reads PENDING (see
    // `shrink::nominate`).
    if s.sysmon_indefinite.load(Ordering::SeqCst) {
        wake_sysmon(s);
    }
}

pub(crate) fn wake_sysmon(s: &Sched) {
    // Only the waker that clears the flag pays for the system call. SeqCst, like every
    // access to the flag: the store-buffer pair described in `blocking`.
    if s.sysmon_sleeping.swap(false, Ordering::SeqCst) {
        if let Some(t) = s.sysmon_thread.get() {
            t.unpark();
        }
    }
}

/// What sysmon saw of one P on earlier rounds.
#[derive(Clone, Default)]
struct Seen {
    syscalltick: u64,
    syscall_since: Option<Instant>,
    tick: u64,
    running_g: u64,
    tick_since: Option<Instant>,
    reported: bool,
}

/// The monitor thread's loop (started by the first `newm`).
pub(crate) fn sysmon() {
    // Sysmon runs no user code; a panic here is a gort bug and must not pass silently.
    let _abort = crate::unwind::AbortOnUnwind("the monitor thread (sysmon)");
    let s = sched();
    let _ = s.sysmon_thread.set(std::thread::current());
    let n = s.procs;
    let debug = s.schedtrace.is_some() || s.hogs.is_some();
    let mut seen = vec![Seen::default(); n];
    let mut fruitless = 0u32;
    let mut delay = MIN_DELAY;
    let mut next_trace = s.schedtrace.map(|d| Instant::now() + d);
    let mut last_netpoll = Instant::now();
    let mut shrinker = crate::shrink::Shrinker::new();
    loop {
        if fruitless == 0 {
            delay = MIN_DELAY;
        } else if fruitless > PATIENT_ROUNDS {
            delay = (delay * 2).min(MAX_DELAY);
        }
        // SeqCst loads of `npidle` (written SeqCst under the idle lock) and of the flag:
        // the sysmon side of the pair described in `blocking`.
        if !debug && s.npidle.load(Ordering::SeqCst) == n {
            // Every P idle: nothing to take, nothing to report. Sleep until a G enters
            // `blocking`. SeqCst: see the pair described in `blocking`.
            s.sysmon_sleeping.store(true, Ordering::SeqCst);
            if s.npidle.load(Ordering::SeqCst) == n {
                // The shrinker's queue is read after this flag's SeqCst store (its
                // `due_in` reads PENDING SeqCst): a G queuing itself either is seen here or
                // sees the flag and wakes us (`shrink::nominate`).
                s.sysmon_indefinite.store(true, Ordering::SeqCst);
                // Before sleeping: can anything ever run again? (Reports and exits if not.)
                crate::deadlock::check(s);
                match shrinker.due_in(Instant::now()) {
                    None => {
                        // Look again now and then (200 ms, doubling to 5 s): one look can be
                        // inconclusive for a moment (a thread starting or ending, the memory
                        // trimmer, a program between two steps), and the runtime can go busy
                        // and idle again without waking us, so a deadlock reached later
                        // would otherwise never be looked at.
                        let mut recheck = Duration::from_millis(200);
                        while s.sysmon_sleeping.load(Ordering::SeqCst) {
                            std::thread::park_timeout(recheck);
                            // SeqCst, both: as every access to the flag and the loads of
                            // `npidle` above (the store-buffer pair described in `blocking`).
                            if !s.sysmon_sleeping.load(Ordering::SeqCst) {
                                break;
                            }
                            if s.npidle.load(Ordering::SeqCst) != n {
                                // Busy again and nobody woke us: the idle spell was too
                                // short for the M that ended it to (`end_all_idle`). Watch
                                // the P's again, at the calm pace: a long busy period must
                                // not go unwatched (its freeze line, the coarse clock).
                                s.sysmon_calm.store(true, Ordering::Relaxed);
                                break;
                            }
                            crate::deadlock::check(s);
                            recheck = (recheck * 2).min(Duration::from_secs(5));
                        }
                    }
                    Some(d) if !d.is_zero() => std::thread::park_timeout(d),
                    Some(_) => {}
                }
                s.sysmon_indefinite.store(false, Ordering::Relaxed);
            }
            s.sysmon_sleeping.store(false, Ordering::Relaxed);
            if s.sysmon_calm.swap(false, Ordering::Relaxed) {
                // Woken because the runtime is busy again after a long idle period: keep
                // the coarse clock and watch the P's at the slowest pace (a close look
                // comes with the next G entering `blocking`).
                fruitless = PATIENT_ROUNDS + 1;
                delay = MAX_DELAY;
            } else {
                fruitless = 0;
                delay = MIN_DELAY;
            }
        } else {
            let now = Instant::now();
            let d = match next_trace {
                Some(t) => delay.min(t.saturating_duration_since(now)),
                None => delay,
            };
            let d = shrinker.due_in(now).map_or(d, |s| d.min(s));
            if d >= LONG_SLEEP {
                // Announce a long sleep (SeqCst: as above) so that `blocking` cuts it short.
                s.sysmon_sleeping.store(true, Ordering::SeqCst);
                std::thread::park_timeout(d);
                if !s.sysmon_sleeping.swap(false, Ordering::SeqCst) {
                    // Woken by a G entering `blocking`: look closely again.
                    fruitless = 0;
                    delay = MIN_DELAY;
                }
            } else {
                std::thread::park_timeout(d);
            }
        }
        let now = Instant::now();
        s.tick_coarse(now);
        if retake(s, now, &mut seen) {
            fruitless = 0;
        } else {
            fruitless += 1;
        }
        // Go's sysmon polls the network when nobody has for 10 ms: with every P busy
        // running G's that do not reach the scheduler (and so its every-61st-schedule
        // poll), and no idle M asleep in the poller, ready sockets would otherwise wait.
        if now.duration_since(last_netpoll) >= NETPOLL_EVERY {
            last_netpoll = now;
            // What it finds does not make the next rounds closer (as Go's sysmon: only a
            // retaken P does). Resetting here kept sysmon at its 20 µs pace for as long as a
            // server was busy, taking a one-core server's CPU (10,000 switches in 3 s).
            let _ = s.netpoll_now();
        }
        if shrinker.busy() {
            shrinker.run(now);
        }
        // Stacks whose G went deep wait on their class's `deep` list: scrub them here,
        // where no G waits for the system calls, in case no M goes idle to do it.
        crate::stack::scrub_deep(DEEP_SCRUB_STEP);
        if let (Some(period), Some(t)) = (s.schedtrace, next_trace) {
            if now >= t {
                eprintln!("{}", trace_line(s));
                next_trace = Some((t + period).max(now));
            }
        }
    }
}

/// How long a G may hold its P, while other G's wait for one, before the freeze line (on by
/// default; `GORT_DEBUG=hogs=<ms>` replaces it with its own limit, reporting every hog).
const FREEZE_AFTER: Duration = Duration::from_secs(1);

/// One sysmon round over the P's; true if it handed a P off.
fn retake(s: &'static Sched, now: Instant, seen: &mut [Seen]) -> bool {
    let mut retook = false;
    for (i, p) in s.ps().iter().enumerate() {
        let seen = &mut seen[i];
        match p.status.load(Ordering::Relaxed) {
            P_SYSCALL => {
                let t = p.syscalltick.load(Ordering::Relaxed);
                if seen.syscalltick != t || seen.syscall_since.is_none() {
                    // A call we had not seen: give it one round.
                    seen.syscalltick = t;
                    seen.syscall_since = Some(now);
                    continue;
                }
                let since = seen.syscall_since.unwrap_or(now);
                if !p.has_work()
                    && s.nmspinning.load(Ordering::Relaxed) + s.npidle.load(Ordering::Relaxed) > 0
                    && now.saturating_duration_since(since) < SYSCALL_GRACE
                {
                    continue;
                }
                if !s.can_start_m() {
                    // At GORT_MAXTHREADS with no M parked: wait for one to come back.
                    continue;
                }
                // Acquire (`p_status::retake`): pairs with the SeqCst store in `blocking`
                // (the M's use of the P before the call comes with it).
                if p_status::retake(&p.status) {
                    seen.syscall_since = None;
                    s.handoffp(i);
                    retook = true;
                }
            }
            P_RUNNING => {
                let (limit, freeze) = match s.hogs {
                    Some(l) => (l, false),
                    None => (FREEZE_AFTER, true),
                };
                let tick = p.tick.load(Ordering::Relaxed);
                let gid = p.running_g.load(Ordering::Relaxed);
                if seen.tick != tick || seen.running_g != gid || seen.tick_since.is_none() {
                    seen.tick = tick;
                    seen.running_g = gid;
                    seen.tick_since = Some(now);
                    seen.reported = false;
                    continue;
                }
                let held = now.saturating_duration_since(seen.tick_since.unwrap_or(now));
                if gid != 0 && !seen.reported && held >= limit {
                    if !freeze {
                        seen.reported = true;
                        eprintln!(
                            "gort: green thread #{gid}{} has held P {i} for over {} ms without \
                             reaching a scheduling point",
                            crate::dump::describe(gid),
                            held.as_millis()
                        );
                    } else if p.has_work() || !s.global_empty() {
                        // Others wait for a P: a freeze in the making, whether the G computes
                        // or is blocked in the OS. (A G computing with nothing queued behind
                        // it is left alone; looked at again next round.) Once per G.
                        seen.reported = true;
                        if reported_once(gid) {
                            eprintln!(
                                "gort: green thread #{gid}{} has held P {i} for over {} s while \
                                 other green threads wait for a P. If it is blocked in the OS \
                                 (std::sync or std::net, crossbeam-channel, std::sync::mpsc, \
                                 rayon, a C library...), wrap that call in gort::blocking(|| ..) \
                                 or use gort's own primitives (docs/CAVEATS.md, section 3); if \
                                 it computes, call gort::yield_now() now and then.",
                                crate::dump::describe(gid),
                                held.as_secs()
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
    retook
}

/// True the first time it is called for `gid` (the freeze line is printed once per G).
fn reported_once(gid: u64) -> bool {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static REPORTED: Mutex<Option<HashSet<u64>>> = Mutex::new(None);
    let mut r = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    r.get_or_insert_with(HashSet::new).insert(gid)
}

/// The `schedtrace` line, in Go's format.
fn trace_line(s: &Sched) -> String {
    let v = s.view();
    let local: Vec<String> = v.local_queues.iter().map(|n| n.to_string()).collect();
    format!(
        "SCHED {}ms: gomaxprocs={} idleprocs={} threads={} spinningthreads={} idlethreads={} \
         iowait={} runqueue={} [{}]",
        s.started.elapsed().as_millis(),
        v.procs,
        v.idle_procs,
        v.threads,
        v.spinning_threads,
        v.idle_threads,
        crate::net::poller_if_init().map_or(0, |p| p.waiting()),
        v.global_queue,
        local.join(" ")
    )
}

/// A snapshot of the scheduler's figures: what `GORT_DEBUG=schedtrace` prints, and more.
/// Each figure is read on its own, so under load they blur; on a quiet runtime they are
/// exact.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// P's (`GORT_MAXPROCS`).
    pub max_procs: usize,
    /// P's on the idle list.
    pub idle_procs: usize,
    /// OS threads the runtime runs: M's (those in `blocking` included) and the monitor.
    pub threads: usize,
    /// M's looking for work.
    pub spinning_threads: usize,
    /// M's parked, waiting for a P.
    pub idle_threads: usize,
    /// G's in the global run queue.
    pub global_runqueue: usize,
    /// G's queued on each P (run queue, spawn stack and runnext).
    pub local_runqueues: Vec<usize>,
    /// G's spawned and not finished.
    pub live_green_threads: usize,
    /// G's parked (blocked on a channel, lock, timer, join, ...).
    pub parked_green_threads: usize,
    /// Stacks kept for reuse (P caches and global lists).
    pub stacks_cached: usize,
    /// Virtual bytes reserved for stacks (committed only as used).
    pub stack_bytes_reserved: usize,
    /// G's parked waiting for a socket or a `PollFd` to become ready (also counted in
    /// `parked_green_threads`).
    pub io_waiting_green_threads: usize,
    /// Timer entries the runtime holds: pending timers, and cancelled ones (a `time::after`
    /// channel dropped before its deadline, a `park_timeout` woken early) not yet swept.
    pub timers: usize,
    /// Times the stack of a parked G was shrunk (pages below its live frames given back).
    pub stacks_shrunk: u64,
    /// Bytes of stack given back by shrinking, in all (resident pages released).
    pub stack_bytes_shrunk: u64,
    /// System calls the stack shrinker made (`mincore`, `madvise`): zero in a program whose
    /// parked G's never went deeper than their stack's top page.
    pub shrink_syscalls: u64,
}

/// The scheduler's figures now (starts the runtime if it was not running).
///
/// # Examples
///
/// ```
/// let st = gort_runtime::stats();
/// assert_eq!(st.max_procs, gort_runtime::max_procs());
/// assert_eq!(st.local_runqueues.len(), st.max_procs);
/// ```
pub fn stats() -> Stats {
    let s = sched();
    let v = s.view();
    let (global_cached, reserved) = crate::stack::totals();
    let (stacks_shrunk, stack_bytes_shrunk, shrink_syscalls) = crate::shrink::totals();
    Stats {
        max_procs: v.procs,
        idle_procs: v.idle_procs,
        threads: v.threads,
        spinning_threads: v.spinning_threads,
        idle_threads: v.idle_threads,
        global_runqueue: v.global_queue,
        local_runqueues: v.local_queues,
        live_green_threads: v.live_gs,
        parked_green_threads: v.parked_gs,
        stacks_cached: v.stacks_cached + global_cached,
        stack_bytes_reserved: reserved,
        io_waiting_green_threads: crate::net::poller_if_init().map_or(0, |p| p.waiting()),
        timers: s.timers.len(),
        stacks_shrunk,
        stack_bytes_shrunk,
        shrink_syscalls,
    }
}

impl fmt::Display for Stats {
    /// The `schedtrace` fields, then the rest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local: Vec<String> = self.local_runqueues.iter().map(|n| n.to_string()).collect();
        write!(
            f,
            "gomaxprocs={} idleprocs={} threads={} spinningthreads={} idlethreads={} \
             iowait={} runqueue={} [{}] live={} parked={} stacks_cached={} \
             stack_bytes_reserved={} stacks_shrunk={} stack_bytes_shrunk={}",
            self.max_procs,
            self.idle_procs,
            self.threads,
            self.spinning_threads,
            self.idle_threads,
            self.io_waiting_green_threads,
            self.global_runqueue,
            local.join(" "),
            self.live_green_threads,
            self.parked_green_threads,
            self.stacks_cached,
            self.stack_bytes_reserved,
            self.stacks_shrunk,
            self.stack_bytes_shrunk
        )
    }
}
