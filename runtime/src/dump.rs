//! Seeing inside a running program: the green-thread dump (Go's SIGQUIT traceback, without
//! the stacks) and the bookkeeping behind it.
//!
//! Every G struct is in a registry from its allocation to its final free (G structs are
//! recycled, so a spawn from a warm free list does not touch it). Each G carries, in atomics
//! anyone may read: its park state word, why it waits (a [`Wait`] byte set by the primitive
//! before it parks), since when (the runtime's coarse clock, in milliseconds, stamped when
//! the G actually suspends), and where it was spawned (`#[track_caller]`). [`dump`] walks the
//! registry under its lock (so no G struct is freed meanwhile) and reads only those atomics;
//! names come from a side table kept only for named G's. What it prints is a blurred picture
//! of a busy runtime (each G is read on its own) and an exact one of a stuck one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use crate::g::{ACTIVE, DEAD, G, NOTIFIED, PARKED, SHRINKING, SHRINK_WOKEN};
use crate::sched::sched;
use crate::spin::SpinMutex;

/// Why a green thread waits (Go's `waitReason`), as the dump names it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not waiting in a gort primitive (or not said).
    None = 0,
    ChanRecv,
    ChanSend,
    Select,
    Mutex,
    RwLock,
    Condvar,
    Group,
    Semaphore,
    Barrier,
    Once,
    Sleep,
    Join,
    Park,
    Io,
    Future,
    /// Inside `gort::blocking` (the G is running, on an OS thread without a P).
    Blocking,
}

impl Wait {
    fn from_u8(b: u8) -> Wait {
        use Wait::*;
        const ALL: [Wait; 17] = [
            None, ChanRecv, ChanSend, Select, Mutex, RwLock, Condvar, Group, Semaphore, Barrier,
            Once, Sleep, Join, Park, Io, Future, Blocking,
        ];
        ALL.get(b as usize).copied().unwrap_or(None)
    }

    fn name(self) -> &'static str {
        match self {
            Wait::None => "waiting",
            Wait::ChanRecv => "chan receive",
            Wait::ChanSend => "chan send",
            Wait::Select => "select",
            Wait::Mutex => "mutex",
            Wait::RwLock => "rwlock",
            Wait::Condvar => "condvar",
            Wait::Group => "waitgroup",
            Wait::Semaphore => "semaphore",
            Wait::Barrier => "barrier",
            Wait::Once => "once",
            Wait::Sleep => "sleep",
            Wait::Join => "join",
            Wait::Park => "park",
            Wait::Io => "I/O wait",
            Wait::Future => "future",
            Wait::Blocking => "blocking call",
        }
    }
}

/// Says why the current green thread is about to wait (no-op on a plain OS thread). Call on
/// the blocking path only, just before the park loop.
pub(crate) fn set_wait(w: Wait) {
    let g = crate::sched::current_g();
    if !g.is_null() {
        // SAFETY: the G running on this thread is alive.
        unsafe { (*g).set_wait(w) };
    }
}

/// A registered G struct (dereferenced only under the registry lock).
struct Entry(NonNull<G>);

// SAFETY: the registry only stores the addresses; it reads the G's atomics under its lock,
// while the G struct cannot be freed (`unregister` takes the same lock).
unsafe impl Send for Entry {}

static REGISTRY: SpinMutex<Vec<Entry>> = SpinMutex::new(Vec::new());

/// Names of named live G's, by id (unnamed G's, the common case, never touch it).
static NAMES: Mutex<Option<HashMap<u64, Arc<str>>>> = Mutex::new(None);

/// Adds a freshly allocated G struct.
pub(crate) fn register(g: NonNull<G>) {
    let mut r = REGISTRY.lock();
    // SAFETY: the G is fresh and unpublished; its index is guarded by this lock from now on.
    unsafe { (*g.as_ptr()).set_reg_index(r.len()) };
    r.push(Entry(g));
}

/// Removes a G struct about to be freed for good.
pub(crate) fn unregister(g: NonNull<G>) {
    let mut r = REGISTRY.lock();
    // SAFETY: registered, and the lock guards the index.
    let i = unsafe { (*g.as_ptr()).reg_index() };
    debug_assert!(std::ptr::eq(r[i].0.as_ptr(), g.as_ptr()));
    r.swap_remove(i);
    if let Some(moved) = r.get(i) {
        // SAFETY: registered (alive), index guarded by the lock.
        unsafe { (*moved.0.as_ptr()).set_reg_index(i) };
    }
}

/// Records the name of a named G (until `forget_name`).
pub(crate) fn note_name(id: u64, name: &str) {
    let mut n = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    n.get_or_insert_with(HashMap::new)
        .insert(id, Arc::from(name));
}

/// Forgets a named G's name when it ends.
pub(crate) fn forget_name(id: u64) {
    let mut n = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = n.as_mut() {
        m.remove(&id);
    }
}

/// The name of green thread `id`, if it has one.
pub(crate) fn name_of(id: u64) -> Option<Arc<str>> {
    let n = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    n.as_ref()?.get(&id).cloned()
}

/// One G as the dump saw it.
pub(crate) struct Seen {
    pub(crate) id: u64,
    pub(crate) state: &'static str,
    /// Milliseconds in that state, for a waiting G.
    pub(crate) waited_ms: Option<u64>,
    pub(crate) site: Option<&'static Location<'static>>,
}

/// Reads every live G (see the module docs for how blurred the picture can be).
pub(crate) fn snapshot() -> Vec<Seen> {
    let s = sched();
    // The real clock for "now" (the coarse one stands still while the runtime is idle);
    // the stamps themselves are coarse, and lag by up to sysmon's delay.
    let now = std::time::Instant::now()
        .saturating_duration_since(s.started)
        .as_millis() as u32;
    let running: Vec<u64> = s
        .ps()
        .iter()
        .map(|p| p.running_g.load(Ordering::Relaxed))
        .collect();
    let r = REGISTRY.lock();
    let mut out = Vec::new();
    for e in r.iter() {
        // SAFETY: registered G structs are alive while the lock is held.
        let g = unsafe { e.0.as_ref() };
        let st = g.state.load(Ordering::Relaxed);
        if st == DEAD {
            continue;
        }
        let id = g.id();
        let wait = Wait::from_u8(g.wait_byte());
        let since = g.wait_since();
        let waited = Some(u64::from(now.wrapping_sub(since)));
        let (state, waited_ms) = match st {
            PARKED | SHRINKING | SHRINK_WOKEN => (wait.name(), waited),
            ACTIVE | NOTIFIED if wait == Wait::Blocking => (wait.name(), waited),
            ACTIVE | NOTIFIED if running.contains(&id) => ("running", None),
            _ => ("runnable", None),
        };
        out.push(Seen {
            id,
            state,
            waited_ms,
            site: g.spawn_site(),
        });
    }
    out.sort_by_key(|g| g.id);
    out
}

/// Formats a wait like Go's traceback header does (`3 minutes`, `1.5 s`, `20 ms`).
fn fmt_wait(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=119_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} minutes", ms / 60_000),
    }
}

/// Writes the entries of `gs` (one per G) to a string.
pub(crate) fn format(gs: &[Seen]) -> String {
    let mut out = String::new();
    for g in gs {
        let _ = write!(out, "green thread {}", g.id);
        if let Some(name) = name_of(g.id) {
            let _ = write!(out, " {name:?}");
        }
        let _ = write!(out, " [{}", g.state);
        if let Some(ms) = g.waited_ms {
            let _ = write!(out, ", {}", fmt_wait(ms));
        }
        out.push_str("]:\n");
        match g.site {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "    spawned at {}:{}:{}",
                    l.file(),
                    l.line(),
                    l.column()
                );
            }
            None => out.push_str("    spawned at (unknown)\n"),
        }
    }
    out
}

/// A dump of every live green thread: one entry per G with its id, name, state (why it
/// waits, or runnable / running / in a blocking call), how long it has waited (to about
/// 10 ms) and where it was spawned, as Go prints on SIGQUIT (without the stacks).
///
/// ```text
/// green thread 12 "worker" [chan receive, 2.5 s]:
///     spawned at src/main.rs:14:9
/// ```
///
/// A busy runtime changes while it is read, so a dump of one is a blurred picture; a stuck
/// one gives an exact one. With `GORT_DEBUG=dump`, SIGQUIT (Ctrl-\) prints this to stderr
/// and exits with status 2, as Go does.
///
/// # Examples
///
/// ```
/// let (tx, rx) = gort_runtime::chan::bounded::<u32>(0);
/// let h = gort_runtime::go!(move || rx.recv());
/// while !gort_runtime::dump().contains("chan receive") {
///     gort_runtime::yield_now();
/// }
/// tx.send(1).unwrap();
/// h.join().unwrap().unwrap();
/// ```
pub fn dump() -> String {
    format(&snapshot())
}

/// The write end of the pipe the SIGQUIT handler writes to (-1: not installed).
static QUIT_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigquit(_sig: libc::c_int) {
    // Only async-signal-safe work here: one write to the pipe; the dump thread does the rest.
    let fd = QUIT_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: `write(2)` of one byte from a valid buffer; async-signal-safe.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// `GORT_DEBUG=dump`: a thread waits for SIGQUIT (through a pipe its handler writes to), then
/// prints the dump to stderr and exits with status 2, as Go does.
pub(crate) fn install_sigquit() {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `pipe2` fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        eprintln!(
            "gort: GORT_DEBUG=dump: cannot make a pipe ({}); SIGQUIT keeps its default action",
            crate::errno::last_os_error()
        );
        return;
    }
    let [read_fd, write_fd] = fds;
    let spawned = std::thread::Builder::new()
        .name("gort-sigquit".into())
        .spawn(move || {
            let mut b = 0u8;
            loop {
                // SAFETY: reads one byte into a valid buffer from our pipe.
                let r = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
                if r == 1 {
                    break;
                }
                if r < 0 && crate::errno::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                return;
            }
            let d = dump();
            eprint!("SIGQUIT: quit\n\n{d}");
            std::process::exit(2);
        });
    match spawned {
        Ok(_) => {
            // SeqCst: read by the deadlock check (see `deadlock::plain_parked`).
            crate::deadlock::EXTRA_THREADS.fetch_add(1, Ordering::SeqCst);
        }
        Err(e) => {
            eprintln!("gort: GORT_DEBUG=dump: cannot start the dump thread ({e}); SIGQUIT keeps its default action");
            return;
        }
    }
    QUIT_FD.store(write_fd, Ordering::Relaxed);
    // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid; the
    // handler only writes to a pipe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigquit as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGQUIT, &sa, std::ptr::null_mut());
    }
}

/// ` "name" (spawned at file:line:col)` for green thread `id` (empty parts left out), for
/// sysmon's reports. Walks the registry: for rare messages only.
pub(crate) fn describe(id: u64) -> String {
    let mut out = String::new();
    if let Some(name) = name_of(id) {
        let _ = write!(out, " {name:?}");
    }
    let site = {
        let r = REGISTRY.lock();
        r.iter().find_map(|e| {
            // SAFETY: registered G structs are alive while the lock is held.
            let g = unsafe { e.0.as_ref() };
            (g.id() == id && g.state.load(Ordering::Relaxed) != DEAD).then(|| g.spawn_site())
        })
    };
    if let Some(Some(l)) = site {
        let _ = write!(
            out,
            " (spawned at {}:{}:{})",
            l.file(),
            l.line(),
            l.column()
        );
    }
    out
}
