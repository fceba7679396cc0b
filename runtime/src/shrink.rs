//! Giving back the stack pages of parked green threads that once went deep.
//!
//! A G's stack is committed page by page as it goes deeper and, without this module, stays
//! committed for as long as the G lives: a G that recursed 64 KiB deep once and then parks
//! shallow on a channel for an hour keeps 64 KiB. Go halves such stacks during GC by
//! copying them; gort's stacks cannot move (Rust code holds pointers into them), but what
//! lies below a suspended coroutine's stack pointer is dead, so its pages can be given back
//! in place (`MADV_DONTNEED`) and the kernel hands out zeroed pages if the G goes deep again.
//!
//! # Finding out cheaply who has something to give back: the band
//!
//! Every stack carries a *band*: the lowest 64 bytes of its top page, filled with a
//! [`CANARY`] pattern when the slot is first carved (or comes back from being released
//! entirely). A G that stays within its top page never writes there; a G that goes deeper
//! passes through it with its frames (return addresses, saved registers, initialised
//! locals) and overwrites it. So at each park a G compares one cache line of its own stack
//! with the pattern: intact means nothing below the top page can be resident — the shallow
//! case costs no system call, ever. (A frame that crosses the band without writing it — a
//! large `MaybeUninit` buffer and nothing else — escapes the check: that stack is then not
//! shrunk, which wastes memory but never breaks anything.)
//!
//! # Nomination and age
//!
//! A G that finds its band disturbed records its stack pointer (minus [`SLACK`] for the
//! frames the switch itself pushes) and the current [`EPOCH`] in its G, and queues itself
//! once (the `shrink_queued` flag) on [`QUEUE`]. Sysmon advances the epoch every period
//! (`GORT_STACK_SHRINK`, default 100 ms) while anything is queued, and shrinks the stacks
//! of queued G's that have been parked for two epochs, i.e. 100 to 200 ms: giving 16 pages
//! back and faulting them in again costs about 15 µs, so a G parked that long pays well
//! under a thousandth of its time for it, while a G that parks for microseconds between
//! requests is never shrunk. G's still running when looked at are looked at again after
//! the next epoch; dead G's leave the queue.
//!
//! # The hand-over with wakers
//!
//! The shrinker takes a G with the state word: `PARKED -> SHRINKING` (Acquire: the M's
//! Release `ACTIVE -> PARKED` published the suspended stack and the recorded bound). While
//! SHRINKING the G is in no run queue and nobody may run it. An `unpark` that finds it
//! SHRINKING moves it to SHRINK_WOKEN and queues nothing; the shrinker, done, tries
//! `SHRINKING -> PARKED` (Release) and, if a waker got in first, moves `SHRINK_WOKEN ->
//! ACTIVE` and queues the G itself with the parked G's own reference, exactly as the waker
//! would have. So the pages are gone, or kept, before the G can run and write new ones:
//! *a G never runs while its stack is being shrunk*, and every wake-up that arrived during
//! the shrink is delivered once.

use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::g::{GRef, G, PARKED, SHRINKING};
use crate::stack::{page_size, GUARD_SIZE};

/// The band's pattern (eight copies); any value a program is unlikely to store.
const CANARY: u64 = 0x5f3c_a7e1_9b24_d60f;

/// Bytes of the band: one cache line at the bottom of the top page.
const BAND_WORDS: usize = 8;

/// Bytes below the recorded stack pointer that are kept anyway: the recording point is in
/// `suspend`, right before the switch, which pushes three words below it (and, were the
/// yielder's `suspend` not inlined, its small frame).
const SLACK: usize = 256;

/// Shrinking is on (`GORT_STACK_SHRINK` not 0, not under Valgrind).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Period of an epoch, in microseconds.
static PERIOD_US: AtomicU64 = AtomicU64::new(100_000);
/// Advanced by sysmon every period while G's are queued.
pub(crate) static EPOCH: AtomicU32 = AtomicU32::new(0);
/// G's that found their band disturbed at park, each queued at most once.
static QUEUE: Mutex<Vec<GRef>> = Mutex::new(Vec::new());
/// Entries pushed and not yet taken by sysmon (SeqCst: read by sysmon before it sleeps
/// for good, see `nominate`).
pub(crate) static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Stacks shrunk, and bytes given back (resident pages released).
static SHRUNK_STACKS: AtomicU64 = AtomicU64::new(0);
static SHRUNK_BYTES: AtomicU64 = AtomicU64::new(0);
/// System calls the shrinker made (`mincore` and `madvise`), for the no-work-when-shallow
/// promise.
static SHRINK_SYSCALLS: AtomicU64 = AtomicU64::new(0);

/// Called once at runtime start. `period` zero turns shrinking off.
pub(crate) fn configure(period: Duration) {
    let on = !period.is_zero() && !running_on_valgrind();
    PERIOD_US.store(period.as_micros().max(1) as u64, Ordering::Relaxed);
    ENABLED.store(on, Ordering::Relaxed);
}

/// Shrinking is on.
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The band's address in the stack whose base (highest address) is `top`.
fn band(top: usize) -> *mut u64 {
    (top - page_size()) as *mut u64
}

/// Fills the band of the stack with base `top` with the pattern.
///
/// # Safety
/// The top page of that stack is mapped and nobody runs on it (or its frames are above
/// the band).
pub(crate) unsafe fn arm(top: usize) {
    if !enabled() {
        return; // leave the page untouched
    }
    let b = band(top);
    for i in 0..BAND_WORDS {
        // SAFETY: the band lies in the stack's top page, mapped, unused (caller).
        unsafe { b.add(i).write_volatile(CANARY) };
    }
}

/// The band of the stack with base `top` still holds the pattern.
///
/// # Safety
/// Called by the G running on that stack (or its exclusive owner), whose top page is
/// mapped.
#[inline]
pub(crate) unsafe fn armed(top: usize) -> bool {
    let b = band(top);
    let mut all = true;
    for i in 0..BAND_WORDS {
        // SAFETY: as above; a volatile read, since frames of this G may have written the
        // band through other pointers the compiler cannot see.
        all &= unsafe { b.add(i).read_volatile() } == CANARY;
    }
    all
}

/// Park-side bookkeeping of the running G `g` on its way to park: if its band is
/// disturbed, record the bound of its live stack and queue it once.
///
/// # Safety
/// `g` is the G running on this thread.
#[inline]
pub(crate) unsafe fn on_park(g: *const G) {
    if !enabled() {
        return;
    }
    // SAFETY: the running G's own fields (caller).
    let o = unsafe { (*g).owned() };
    if o.stack_lo == 0 {
        return;
    }
    let top = o.stack_lo + o.class.stride();
    // SAFETY: our own stack's top page, mapped while we run on it.
    if unsafe { armed(top) } {
        return;
    }
    // SAFETY: `g` is running here (caller).
    unsafe { nominate(g) };
}

/// The stack pointer of the caller (near enough: the caller's frame).
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let sp: usize;
        // SAFETY: reads a register; no memory, no stack, no flags touched.
        unsafe {
            std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }
    #[cfg(target_arch = "aarch64")]
    {
        let sp: usize;
        // SAFETY: reads a register; no memory, no stack, no flags touched.
        unsafe {
            std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // A local's address, less a page for whatever the caller's frame holds below it.
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as usize - 4096
    }
}

#[cold]
#[inline(never)]
unsafe fn nominate(g: *const G) {
    // SAFETY: `g` is the running G (caller).
    let gr = unsafe { &*g };
    // Written before the switch, on the thread of the M whose Release `ACTIVE -> PARKED`
    // publishes it to the shrinker's Acquire claim (with `park_sp`, which `suspend`
    // writes on the way into the switch).
    gr.park_epoch
        .store(EPOCH.load(Ordering::Relaxed), Ordering::Relaxed);
    if gr.shrink_queued.swap(true, Ordering::Relaxed) {
        return; // already queued: the fields above are what the shrinker will read
    }
    // SAFETY: `g` is alive: it is running.
    let r = unsafe { GRef::clone_from_ptr(g) };
    let prev = {
        let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
        q.push(r);
        // Counted under the lock, so sysmon never takes an entry before its count.
        // SeqCst: pairs with sysmon's SeqCst store of `sysmon_indefinite` and its later
        // SeqCst read of PENDING: either sysmon sees our entry, or we see it asleep with
        // no deadline and wake it. Only the first of a run of entries needs to look: a
        // later one's predecessor looked after counting, so sysmon either saw that count
        // or was woken. A sysmon asleep with a deadline is not woken: it wakes within an
        // epoch anyway, and this G must stay parked for two before it is shrunk (waking
        // sysmon for every short-lived G that went deep cost skynet 15%).
        PENDING.fetch_add(1, Ordering::SeqCst)
    };
    if prev == 0 {
        crate::sysmon::wake_sysmon_if_indefinite();
    }
}

/// What `gort::stats()` reports: (stacks shrunk, bytes given back, system calls made).
pub(crate) fn totals() -> (u64, u64, u64) {
    (
        SHRUNK_STACKS.load(Ordering::Relaxed),
        SHRUNK_BYTES.load(Ordering::Relaxed),
        SHRINK_SYSCALLS.load(Ordering::Relaxed),
    )
}

/// Sysmon's side: the queue taken so far and the next epoch.
pub(crate) struct Shrinker {
    /// Entries to look at now.
    todo: Vec<GRef>,
    /// Entries looked at and not ready (running, or parked too recently): again next epoch.
    wait: Vec<GRef>,
    next_epoch: Instant,
    /// `mincore`'s answer buffer.
    vec: Vec<u8>,
}

/// How long one sysmon round may spend shrinking before it goes back to its other work.
const BUDGET: Duration = Duration::from_millis(2);

impl Shrinker {
    pub(crate) fn new() -> Shrinker {
        Shrinker {
            todo: Vec::new(),
            wait: Vec::new(),
            next_epoch: Instant::now(),
            vec: Vec::new(),
        }
    }

    /// Anything to do, now or at a later epoch.
    pub(crate) fn busy(&self) -> bool {
        !self.todo.is_empty() || !self.wait.is_empty() || PENDING.load(Ordering::SeqCst) != 0
    }

    /// How long sysmon may sleep before the shrinker wants it again (None: no wish).
    pub(crate) fn due_in(&self, now: Instant) -> Option<Duration> {
        // SeqCst: see `nominate`.
        if !self.todo.is_empty() {
            Some(Duration::ZERO)
        } else if !self.wait.is_empty() || PENDING.load(Ordering::SeqCst) != 0 {
            // Queued G's are shrunk no sooner than two epochs after they parked: sleep
            // until the next one.
            Some(self.next_epoch.saturating_duration_since(now))
        } else {
            None
        }
    }

    /// One round: advance the epoch if due, take new entries, shrink for at most [`BUDGET`].
    pub(crate) fn run(&mut self, now: Instant) {
        if !enabled() {
            return;
        }
        if now >= self.next_epoch {
            EPOCH.fetch_add(1, Ordering::Relaxed);
            let period = Duration::from_micros(PERIOD_US.load(Ordering::Relaxed));
            self.next_epoch = now + period;
            self.todo.append(&mut self.wait);
        }
        if PENDING.load(Ordering::Relaxed) != 0 {
            let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
            PENDING.fetch_sub(q.len(), Ordering::Relaxed);
            self.todo.append(&mut q);
        }
        let epoch = EPOCH.load(Ordering::Relaxed);
        while !self.todo.is_empty() {
            self.batch(epoch);
            if now.elapsed() >= BUDGET {
                break;
            }
        }
    }

    /// Claims up to [`BATCH`] queued G's, gives back their dead pages with one system call,
    /// and hands each G back (or queues it, if it was woken meanwhile).
    fn batch(&mut self, epoch: u32) {
        let page = page_size();
        let mut claimed: Vec<(GRef, usize, usize)> = Vec::with_capacity(BATCH);
        let mut ranges: Vec<libc::iovec> = Vec::with_capacity(BATCH);
        let mut resident_total = 0usize;
        while claimed.len() < BATCH {
            let Some(g) = self.todo.pop() else { break };
            match g.state.load(Ordering::Relaxed) {
                crate::g::DEAD => {
                    g.shrink_queued.store(false, Ordering::Relaxed);
                    continue; // off the queue; our reference goes
                }
                PARKED if epoch.wrapping_sub(g.park_epoch.load(Ordering::Relaxed)) >= 2 => {}
                // Running, queued, or parked too recently (a hint; checked again below).
                _ => {
                    self.wait.push(g);
                    continue;
                }
            }
            // Acquire: pairs with the M's Release `ACTIVE -> PARKED`: the suspended stack
            // and the G's recorded stack pointer and epoch are complete.
            if g.state
                .compare_exchange(PARKED, SHRINKING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                self.wait.push(g);
                continue;
            }
            // SAFETY: SHRINKING makes us the G's only owner (nobody runs or queues it).
            let (lo, top, sp) = unsafe {
                let o = g.owned();
                (
                    o.stack_lo,
                    o.stack_lo + o.class.stride(),
                    g.park_sp.load(Ordering::Relaxed),
                )
            };
            if lo == 0 || epoch.wrapping_sub(g.park_epoch.load(Ordering::Relaxed)) < 2 {
                // Re-parked since the look above: not yet.
                Self::hand_back(&g);
                self.wait.push(g);
                continue;
            }
            let bound = sp.saturating_sub(SLACK);
            let usable_lo = lo + GUARD_SIZE;
            let cut = (bound & !(page - 1)).min(top - page);
            if cut > usable_lo {
                let resident = self.resident(usable_lo, cut);
                if resident > 0 {
                    resident_total += resident;
                    ranges.push(libc::iovec {
                        iov_base: usable_lo as *mut libc::c_void,
                        iov_len: cut - usable_lo,
                    });
                }
            }
            claimed.push((g, top, bound));
        }
        if !ranges.is_empty() {
            // Every range lies below a claimed G's recorded stack pointer less the slack,
            // inside its stack's mapping, and no claimed G runs until handed back below.
            // SAFETY: so every range is dead memory for the whole call.
            if unsafe { release(&ranges) } {
                SHRUNK_STACKS.fetch_add(ranges.len() as u64, Ordering::Relaxed);
                SHRUNK_BYTES.fetch_add((resident_total * page) as u64, Ordering::Relaxed);
            }
        }
        for (g, top, bound) in claimed {
            // The band is dead memory if it lies wholly below the bound: fill it again, so
            // the G's next parks are free until it goes deep again.
            if bound >= top - page + BAND_WORDS * 8 {
                // SAFETY: the top page is kept (the cut is at most `top - page`) and the
                // band is below the G's live frames; the G is ours while SHRINKING.
                unsafe { arm(top) };
            }
            // Off the queue before it can run again: a later park queues it afresh.
            g.shrink_queued.store(false, Ordering::Relaxed);
            Self::hand_back(&g);
        }
    }

    /// `SHRINKING -> PARKED`, or, if a waker came meanwhile, queue the G ourselves.
    fn hand_back(g: &GRef) {
        // Release: the pages released (and the band written) before anyone runs the G.
        // Acquire on failure: pairs with the waker's Release `SHRINKING -> SHRINK_WOKEN`,
        // so the queue push below carries the waker's writes to the G.
        if g.state
            .compare_exchange(SHRINKING, PARKED, Ordering::Release, Ordering::Acquire)
            .is_err()
        {
            g.state.store(crate::g::ACTIVE, Ordering::Relaxed);
            // SAFETY: the waker, finding SHRINKING, did not take the parked G's reference;
            // it is ours to queue with, as the waker's would have been.
            let r = unsafe { GRef::from_raw(g.as_ptr().cast_mut()) };
            crate::sched::sched().ready(r, false);
        }
    }

    /// Resident pages of `[lo, hi)` (page-aligned, a stack's); all of them if `mincore`
    /// fails.
    fn resident(&mut self, lo: usize, hi: usize) -> usize {
        SHRINK_SYSCALLS.fetch_add(1, Ordering::Relaxed);
        crate::stack::resident_pages_with(lo, hi, &mut self.vec).unwrap_or((hi - lo) / page_size())
    }
}

/// G's claimed at once: one system call gives back all their dead pages (and the kernel
/// flushes other CPUs' TLBs once, where `madvise` per range would interrupt them once per
/// range: 26 µs per range against 3.4 µs batched, measured here with another thread busy).
const BATCH: usize = 64;

/// `process_madvise` works here (0 unknown, 1 yes, 2 no: one `madvise` per range).
static BATCHED: AtomicU8 = AtomicU8::new(0);
/// This process's pidfd for `process_madvise`.
static PIDFD: AtomicI32 = AtomicI32::new(-1);

/// `MADV_DONTNEED` on every range; true if all were released.
///
/// # Safety
/// Every range is dead memory nobody may touch until the call returns.
unsafe fn release(ranges: &[libc::iovec]) -> bool {
    if BATCHED.load(Ordering::Relaxed) != 2 {
        let mut fd = PIDFD.load(Ordering::Relaxed);
        if fd < 0 {
            // SAFETY: pidfd_open has no memory arguments.
            fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) } as i32;
            if fd >= 0 {
                PIDFD.store(fd, Ordering::Relaxed);
            }
        }
        if fd >= 0 {
            SHRINK_SYSCALLS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `ranges` is a valid iovec array of that length (fewer than IOV_MAX);
            // the ranges themselves are dead (caller).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_process_madvise,
                    fd,
                    ranges.as_ptr(),
                    ranges.len(),
                    libc::MADV_DONTNEED,
                    0,
                )
            };
            let want: usize = ranges.iter().map(|r| r.iov_len).sum();
            if r >= 0 && r as usize == want {
                BATCHED.store(1, Ordering::Relaxed);
                return true;
            }
            if r < 0 && BATCHED.load(Ordering::Relaxed) == 0 {
                // Older kernels refuse MADV_DONTNEED here (EINVAL) or lack the call.
                BATCHED.store(2, Ordering::Relaxed);
            }
        } else {
            BATCHED.store(2, Ordering::Relaxed);
        }
    }
    let mut all = true;
    for r in ranges {
        SHRINK_SYSCALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: dead memory (caller), page-aligned.
        all &= unsafe { libc::madvise(r.iov_base, r.iov_len, libc::MADV_DONTNEED) } == 0;
    }
    all
}

/// Whether the process runs under Valgrind (its client request; a no-op sequence
/// natively). Under Valgrind, reading a stack below its pointer is an error report, so
/// shrinking is off there.
fn running_on_valgrind() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // RUNNING_ON_VALGRIND.
        let args: [u64; 6] = [0x1001, 0, 0, 0, 0, 0];
        let result: u64;
        // Valgrind's client-request sequence: rotations of rdi by 64 bits in all (rdi
        // unchanged) and an exchange of rbx with itself; rdx keeps its default (0).
        // SAFETY: natively it only rotates rdi back to itself and sets flags (not declared
        // preserved); it touches no memory.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                inout("rdx") 0u64 => result,
                in("rax") args.as_ptr(),
                options(nostack),
            );
        }
        result != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
