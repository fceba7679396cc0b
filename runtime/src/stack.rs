//! Green-thread stacks: carved out of large `MAP_NORESERVE` arenas, guarded, recycled.
//!
//! # Layout
//!
//! A *class* is one usable stack size (rounded to pages). Each class maps arenas of many
//! slots; a slot is `guard` bytes of guard pages at the bottom and `size` usable bytes above
//! them, the stack's base (highest address) at the top of the slot:
//!
//! ```text
//!  arena: | guard | stack 0 ....... | guard | stack 1 ....... | ...
//!         lo      lo+guard       hi=lo+stride
//! ```
//!
//! Memory is committed by the kernel page by page as a G touches it; a shallow G costs one
//! or two pages. Arenas get `MADV_NOHUGEPAGE` so a small G never costs a 2 MiB huge page.
//!
//! # Guards
//!
//! A slot's guard is installed when the slot is first handed out, with
//! `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+): guard regions live inside the arena's single
//! mapping, so a million stacks cost a few hundred lines of `/proc/self/maps`, not two
//! million. Where the kernel answers `EINVAL` the allocator switches, once and for the whole
//! process, to `mprotect(PROT_NONE)`, which splits the mapping (two mappings per stack) and
//! so runs into `vm.max_map_count`; that failure is an `io::Error`, never a crash.
//!
//! # Recycling
//!
//! Stacks are never unmapped. A dead G's stack goes to its P's cache (see `sched.rs`), and
//! from there in batches to this class's global lists: `dirty` (used since its last scrub,
//! possibly deep), `clean` (pages below the top [`KEEP_TOP`] bytes given back with
//! `MADV_DONTNEED`) and `cold` (every page given back). Scrubbing is done by M's that have
//! run out of work, never on the spawn path. Guard regions survive `MADV_DONTNEED`.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use corosensei::stack::valgrind::ValgrindStackRegistration;
use corosensei::stack::{Stack, StackPointer};

use crate::config::GuardMode;

/// Bytes at the top of a stack that stay committed when a cached stack is scrubbed: the
/// depth a typical G reaches, so the next G to take the stack does not fault.
pub(crate) const KEEP_TOP: usize = 16 * 1024;

/// Bytes of guard below every stack. Several pages, so that one frame larger than a page
/// that skips a page probe still lands in the guard; guard regions cost no memory.
pub(crate) const GUARD_SIZE: usize = 16 * 1024;

/// Virtual bytes per arena; an arena holds `ARENA_BYTES / stride` stacks (at least one).
const ARENA_BYTES: usize = 256 << 20;

/// Clean stacks kept with their top pages committed; scrubbed stacks beyond this many are
/// released entirely ("cold").
const WARM_STACKS: usize = 1024;

/// Cache colours: consecutive slots start their frames `COLOUR_STEP` bytes apart, over
/// `COLOURS` steps (2 KiB), then the pattern repeats. Page-aligned stack tops put the same
/// frame of every G at the same page offset, so in the same few cache sets: a cache indexes
/// its sets by address bits from 6 up (L1 and L2 alike), and the bits inside a page are
/// the same for every G's frame. 1,000 G's touching ten lines each then get 512 lines of a
/// 2 MiB, 16-way L2 between them and miss on every switch (measured: 38 ns per line against
/// 9 ns with 32 colours). 2 KiB leaves a shallow G (an echo connection's 1 KiB buffer and
/// frames) within its one top page.
pub(crate) const COLOURS: usize = 32;
const COLOUR_STEP: usize = 64;
/// The deepest colour's offset; every class reserves it on top of the size asked for.
const MAX_COLOUR: usize = (COLOURS - 1) * COLOUR_STEP;

/// The colour of the slot at `lo` in a class of stride `stride`.
fn colour(lo: usize, stride: usize) -> usize {
    (lo / stride % COLOURS) * COLOUR_STEP
}

/// `MADV_GUARD_INSTALL`, Linux 6.13+ (not yet in every libc crate version).
const MADV_GUARD_INSTALL: libc::c_int = 102;

const GUARD_UNKNOWN: u8 = 0;
const GUARD_MADVISE: u8 = 1;
const GUARD_MPROTECT: u8 = 2;

/// How guards are installed, decided once per process (Relaxed: every value is valid and
/// any thread may decide it; installing a guard the other way is merely slower).
static GUARD_KIND: AtomicU8 = AtomicU8::new(GUARD_UNKNOWN);

/// The size of a page, read once.
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize)
}

/// Applies the configured guard mode (called once, at runtime start).
pub(crate) fn set_guard_mode(mode: GuardMode) {
    if mode == GuardMode::Mprotect {
        GUARD_KIND.store(GUARD_MPROTECT, Ordering::Relaxed);
    }
}

/// Which guard mechanism is in use: "madvise", "mprotect", or "undecided" before the first
/// stack was handed out.
pub(crate) fn guard_kind() -> &'static str {
    match GUARD_KIND.load(Ordering::Relaxed) {
        GUARD_MADVISE => "madvise",
        GUARD_MPROTECT => "mprotect",
        _ => "undecided",
    }
}

/// A stack owned by one G (or sitting in a cache). Plain addresses: the memory belongs to an
/// arena that lives for the whole process.
#[derive(Debug)]
pub(crate) struct GStack {
    /// Where the frames start: the slot's top less its colour (stored: corosensei asks for
    /// it at every resume; the slot's bounds, wanted off the hot path, are computed).
    base: usize,
    /// The class it belongs to, where it returns.
    class: &'static StackClass,
    /// How far below the slot's top the frames start. Beside `dirty` in one word instead of
    /// a stored lowest address: every G embeds a `GStack`, and 8 bytes fewer keep the G
    /// struct in a 224-byte malloc chunk.
    colour: u32,
    /// Used since it was last scrubbed.
    pub(crate) dirty: bool,
}

// SAFETY: `limit` and `base` lie in `[lo, lo + stride)`, a slot of an arena that is never
// unmapped, whose lowest `GUARD_SIZE` bytes are a guard (installed before the slot is ever
// handed out); `base` is the slot's top less its colour (at most `MAX_COLOUR`, which every
// class reserves on top of its size), so at least `MIN_STACK_SIZE` (16 KiB) usable bytes lie
// between them. `limit` is page-aligned and `base` a multiple of 64 bytes below a page
// boundary, so both are aligned to `STACK_ALIGNMENT` (16).
unsafe impl Stack for GStack {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.base).expect("stack base is not null")
    }
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.lo()).expect("stack limit is not null")
    }
}

impl GStack {
    /// The top of the slot (highest address, page-aligned); the frames start a colour
    /// (`COLOURS`) below it.
    pub(crate) fn top(&self) -> usize {
        self.base + self.colour as usize
    }

    /// The lowest address of the slot (where its guard starts).
    pub(crate) fn lo(&self) -> usize {
        self.top() - self.class.stride
    }

    /// How far below the slot's top the frames start: a different cache colour per slot.
    #[cfg(test)]
    fn colour(&self) -> usize {
        self.colour as usize
    }

    /// The G that last ran on this (cached) stack went past its top page, by the shrink
    /// band (`shrink.rs`); always false with shrinking off.
    pub(crate) fn went_deep(&self) -> bool {
        // SAFETY: a cached stack: nobody runs on it, and its top page is mapped.
        crate::shrink::enabled() && !unsafe { crate::shrink::armed(self.top()) }
    }

    /// The guard range `[lo, hi)`.
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.lo(), self.lo() + GUARD_SIZE)
    }

    /// The usable range `[lo, hi)`.
    pub(crate) fn usable(&self) -> (usize, usize) {
        (self.lo() + GUARD_SIZE, self.top())
    }

    pub(crate) fn class(&self) -> &'static StackClass {
        self.class
    }

    /// Gives back every page below the top `keep` bytes. Returns false if the kernel
    /// refused (the stack is still usable; its memory just stays committed).
    pub(crate) fn release_below(&self, keep: usize) -> bool {
        let (lo, hi) = self.usable();
        let end = hi.saturating_sub(keep).max(lo);
        if end == lo {
            return true;
        }
        // `[lo, end)` lies inside this slot's usable range, which belongs to a live arena
        // mapping, and no G runs on this stack (it is cached): discarding its contents is
        // exactly what we want. The guard below `lo` is not touched.
        // SAFETY: as just said.
        unsafe { libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_DONTNEED) == 0 }
    }
}

struct ClassLists {
    /// Newest last (taken first); the scrubber takes the oldest from the front, so a deque:
    /// draining the front of a million-entry `Vec` would move it all each time.
    dirty: VecDeque<usize>,
    clean: Vec<usize>,
    cold: Vec<usize>,
    /// Used by a G that went deep (see [`StackClass::free_deep`]); band still disturbed.
    deep: Vec<usize>,
    /// Slots handed out before whose guard could not be installed; retried first.
    unguarded: Vec<usize>,
    /// The arena being carved: next slot address and end.
    carve_next: usize,
    carve_end: usize,
    /// Arenas mapped so far, and their bytes.
    arenas: usize,
    reserved: usize,
}

/// All stacks of one usable size.
#[derive(Debug)]
pub(crate) struct StackClass {
    /// Usable bytes per stack.
    pub(crate) size: usize,
    /// `GUARD_SIZE + size`: distance between two slots.
    stride: usize,
    lists: Mutex<ClassLists>,
}

impl std::fmt::Debug for ClassLists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassLists")
            .field("dirty", &self.dirty.len())
            .field("clean", &self.clean.len())
            .field("cold", &self.cold.len())
            .field("deep", &self.deep.len())
            .field("arenas", &self.arenas)
            .finish()
    }
}

/// The classes created so far; never shrinks (classes are leaked, like arenas).
static CLASSES: Mutex<Vec<&'static StackClass>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in this module panics while holding a lock; recover from poisoning anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StackClass {
    /// The class for stacks of at least `size` usable bytes below the deepest colour
    /// (rounded up to whole pages).
    pub(crate) fn for_size(size: usize) -> &'static StackClass {
        let page = page_size();
        let size = (size + MAX_COLOUR).div_ceil(page) * page;
        let mut classes = lock(&CLASSES);
        if let Some(c) = classes.iter().find(|c| c.size == size) {
            return c;
        }
        let class: &'static StackClass = Box::leak(Box::new(StackClass {
            size,
            stride: size + GUARD_SIZE,
            lists: Mutex::new(ClassLists {
                dirty: VecDeque::new(),
                clean: Vec::new(),
                cold: Vec::new(),
                deep: Vec::new(),
                unguarded: Vec::new(),
                carve_next: 0,
                carve_end: 0,
                arenas: 0,
                reserved: 0,
            }),
        }));
        classes.push(class);
        class
    }

    /// Distance between two slots: the base (highest address) of a stack whose slot starts
    /// at `lo` is `lo + stride`.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    fn stack(&'static self, lo: usize, dirty: bool) -> GStack {
        GStack {
            base: lo + self.stride - colour(lo, self.stride),
            class: self,
            colour: colour(lo, self.stride) as u32,
            dirty,
        }
    }

    /// Takes a stack: a cached one if any (most recently used first), else a fresh slot.
    pub(crate) fn alloc(&'static self) -> io::Result<GStack> {
        let mut l = lock(&self.lists);
        if let Some(lo) = l.dirty.pop_back() {
            return Ok(self.stack(lo, true));
        }
        if let Some(lo) = l.clean.pop() {
            return Ok(self.stack(lo, false));
        }
        if let Some(lo) = l.cold.pop() {
            drop(l);
            // Its top page was given back, band and all: fill the band again.
            // SAFETY: the slot is ours, mapped, and nobody runs on it.
            unsafe { crate::shrink::arm(lo + self.stride) };
            return Ok(self.stack(lo, false));
        }
        if let Some(lo) = l.deep.pop() {
            // Not scrubbed yet: its band stays disturbed, so the G that takes it queues
            // itself for the shrinker if it parks (the pages it inherits are seen).
            DEEP_STACKS.fetch_sub(1, Ordering::Relaxed);
            return Ok(self.stack(lo, true));
        }
        let lo = match l.unguarded.pop() {
            Some(lo) => lo,
            None => {
                if l.carve_next == l.carve_end {
                    let (start, end) = self.map_arena()?;
                    l.carve_next = start;
                    l.carve_end = end;
                    l.arenas += 1;
                    l.reserved += end - start;
                }
                let lo = l.carve_next;
                l.carve_next += self.stride;
                lo
            }
        };
        drop(l);
        if let Err(e) = install_guard(lo) {
            lock(&self.lists).unguarded.push(lo);
            return Err(e);
        }
        // Tell Valgrind this range is a stack (a no-op instruction sequence when not under
        // Valgrind), so that `valgrind ./program` understands gort's stack switches. Slots
        // are never unmapped, so the registration is never withdrawn.
        std::mem::forget(ValgrindStackRegistration::new(
            (lo + GUARD_SIZE) as *mut u8,
            self.size,
        ));
        // SAFETY: a fresh slot, mapped, that nobody runs on yet.
        unsafe { crate::shrink::arm(lo + self.stride) };
        Ok(self.stack(lo, false))
    }

    /// Takes up to `n` cached stacks at once (for a P's cache); no fresh slots.
    pub(crate) fn take_cached(&'static self, n: usize, out: &mut Vec<GStack>) {
        let mut l = lock(&self.lists);
        for _ in 0..n {
            let s = if let Some(lo) = l.dirty.pop_back() {
                self.stack(lo, true)
            } else if let Some(lo) = l.clean.pop() {
                self.stack(lo, false)
            } else {
                break;
            };
            out.push(s);
        }
    }

    /// Returns stacks to the global lists.
    pub(crate) fn free_many(&self, stacks: impl Iterator<Item = GStack>) {
        let mut l = lock(&self.lists);
        for s in stacks {
            debug_assert!(std::ptr::eq(s.class, self));
            if s.dirty {
                l.dirty.push_back(s.lo());
            } else {
                l.clean.push(s.lo());
            }
        }
    }

    /// Returns a stack whose last G went deep (its shrink band is disturbed) to the `deep`
    /// list: scrubbed first (by sysmon, or an idle M), handed out last.
    pub(crate) fn free_deep(&self, s: GStack) {
        debug_assert!(std::ptr::eq(s.class, self));
        lock(&self.lists).deep.push(s.lo());
        DEEP_STACKS.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns one stack to the global lists.
    pub(crate) fn free(&self, s: GStack) {
        self.free_many(std::iter::once(s));
    }

    /// Scrubs up to `max` dirty stacks: their deep pages (or, past [`WARM_STACKS`] clean
    /// ones, all pages) go back to the kernel. Returns how many were scrubbed. Called by
    /// idle M's, off the hot path; the syscalls run without the lock held.
    pub(crate) fn scrub(&'static self, max: usize) -> usize {
        let (batch, warm_room) = {
            let mut l = lock(&self.lists);
            // Deep ones first (they are the reason sysmon calls this), then the oldest
            // dirty ones: the most recently freed stay hot for the next taker.
            let d = l.deep.len().min(max);
            let from = l.deep.len() - d;
            let mut batch: Vec<usize> = l.deep.drain(from..).collect();
            DEEP_STACKS.fetch_sub(d, Ordering::Relaxed);
            let n = l.dirty.len().min(max - d);
            batch.extend(l.dirty.drain(..n));
            (batch, WARM_STACKS.saturating_sub(l.clean.len()))
        };
        if batch.is_empty() {
            return 0;
        }
        let mut clean = Vec::with_capacity(batch.len());
        let mut cold = Vec::new();
        for (i, lo) in batch.iter().enumerate() {
            let s = self.stack(*lo, true);
            if i < warm_room {
                s.release_below(KEEP_TOP);
                // Nothing lives below the kept top any more: the band (in the top page,
                // kept) may be filled again.
                // SAFETY: the slot is cached (nobody runs on it) and its top page mapped.
                unsafe { crate::shrink::arm(*lo + self.stride) };
                clean.push(*lo);
            } else {
                s.release_below(0);
                cold.push(*lo);
            }
        }
        let n = batch.len();
        let mut l = lock(&self.lists);
        l.clean.extend(clean);
        l.cold.extend(cold);
        n
    }

    /// Scrubs up to `max` stacks of the `deep` list only.
    fn scrub_deep(&'static self, max: usize) -> usize {
        let n = lock(&self.lists).deep.len().min(max);
        if n == 0 {
            return 0;
        }
        self.scrub(n)
    }

    /// Maps a new arena; a smaller one (a single slot) if the large reservation is refused.
    fn map_arena(&self) -> io::Result<(usize, usize)> {
        let slots = (ARENA_BYTES / self.stride).max(1);
        match map_region(slots * self.stride) {
            Ok(start) => Ok((start, start + slots * self.stride)),
            Err(_) if slots > 1 => map_region(self.stride).map(|s| (s, s + self.stride)),
            Err(e) => Err(e),
        }
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "gort: cannot reserve address space for a {} KiB green-thread stack: {e} \
                     (the process is out of address space, or has reached \
                     vm.max_map_count = {})",
                    self.size / 1024,
                    max_map_count()
                ),
            )
        })
    }
}

/// Stacks in the global caches of every class, and the virtual bytes of every arena mapped
/// (for `stats`).
pub(crate) fn totals() -> (usize, usize) {
    let classes: Vec<&'static StackClass> = lock(&CLASSES).clone();
    let mut cached = 0;
    let mut reserved = 0;
    for c in classes {
        let l = lock(&c.lists);
        cached += l.dirty.len() + l.clean.len() + l.cold.len() + l.deep.len();
        reserved += l.reserved;
    }
    (cached, reserved)
}

/// Stacks on the classes' `deep` lists (a hint for sysmon; exact under the locks).
static DEEP_STACKS: AtomicUsize = AtomicUsize::new(0);

/// Scrubs up to `max` stacks per class from the `deep` lists, if there are any: sysmon's
/// share of the scrubbing, for runtimes too busy to have idle M's. Returns how many.
pub(crate) fn scrub_deep(max: usize) -> usize {
    if DEEP_STACKS.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let classes: Vec<&'static StackClass> = lock(&CLASSES).clone();
    classes.into_iter().map(|c| c.scrub_deep(max)).sum()
}

/// Whether any class has dirty stacks in its global lists (under each class's lock).
pub(crate) fn any_dirty() -> bool {
    let classes: Vec<&'static StackClass> = lock(&CLASSES).clone();
    classes.into_iter().any(|c| {
        let l = lock(&c.lists);
        !l.dirty.is_empty() || !l.deep.is_empty()
    })
}

/// Every stack class's dirty stacks, scrubbed in batches of at most `max` per class.
pub(crate) fn scrub_all(max: usize) -> usize {
    let classes: Vec<&'static StackClass> = lock(&CLASSES).clone();
    classes.into_iter().map(|c| c.scrub(max)).sum()
}

fn map_region(len: usize) -> io::Result<usize> {
    // SAFETY: an anonymous private mapping at an address the kernel chooses; no existing
    // memory is affected. The result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(crate::errno::last_os_error());
    }
    // SAFETY: `[p, p + len)` is the mapping just created. A failure only means the kernel
    // may use huge pages here (more memory, still correct), so the result is ignored.
    unsafe {
        libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
    }
    Ok(p as usize)
}

fn max_map_count() -> String {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Installs the guard of the slot starting at `lo`.
fn install_guard(lo: usize) -> io::Result<()> {
    let addr = lo as *mut libc::c_void;
    if GUARD_KIND.load(Ordering::Relaxed) != GUARD_MPROTECT {
        // SAFETY: `[lo, lo + GUARD_SIZE)` is the bottom of a slot of one of our arenas, not
        // yet handed to any G; turning it into a guard region discards nothing of value.
        let r = unsafe { libc::madvise(addr, GUARD_SIZE, MADV_GUARD_INSTALL) };
        if r == 0 {
            GUARD_KIND.store(GUARD_MADVISE, Ordering::Relaxed);
            return Ok(());
        }
        let e = crate::errno::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            // The kernel predates guard regions: fall back for good.
            GUARD_KIND.store(GUARD_MPROTECT, Ordering::Relaxed);
        } else {
            return Err(io::Error::new(
                e.kind(),
                format!("gort: cannot install a green-thread stack guard: {e}"),
            ));
        }
    }
    // SAFETY: as above; the range becomes inaccessible, which is what a guard is.
    let r = unsafe { libc::mprotect(addr, GUARD_SIZE, libc::PROT_NONE) };
    if r == 0 {
        return Ok(());
    }
    let e = crate::errno::last_os_error();
    Err(io::Error::new(
        e.kind(),
        format!(
            "gort: cannot install a green-thread stack guard with mprotect: {e} \
             (without MADV_GUARD_INSTALL every stack costs two kernel mappings, and the \
             process may have reached vm.max_map_count = {})",
            max_map_count()
        ),
    ))
}

/// How many of the pages of `[lo, hi)` (page-aligned, mapped) are resident, by `mincore`,
/// with `vec` as its answer buffer; `None` if the call fails.
pub(crate) fn resident_pages_with(lo: usize, hi: usize, vec: &mut Vec<u8>) -> Option<usize> {
    let n = (hi - lo) / page_size();
    vec.clear();
    vec.resize(n, 0);
    // SAFETY: `[lo, hi)` is page-aligned and mapped (caller), and `vec` has one byte per
    // page, as mincore needs.
    let r = unsafe { libc::mincore(lo as *mut libc::c_void, hi - lo, vec.as_mut_ptr()) };
    (r == 0).then(|| vec.iter().filter(|b| **b & 1 != 0).count())
}

/// How many of the pages of `[lo, hi)` are resident (for tests).
#[cfg(test)]
pub(crate) fn resident_pages(lo: usize, hi: usize) -> usize {
    resident_pages_with(lo, hi, &mut Vec::new())
        .unwrap_or_else(|| panic!("mincore: {}", crate::errno::last_os_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_pages_are_released_and_top_kept() {
        let class = StackClass::for_size(256 * 1024 + 4096 * 3);
        let s = class.alloc().expect("stack");
        let (lo, hi) = s.usable();
        // Touch every page, as a deep G would.
        let mut p = lo;
        while p < hi {
            // SAFETY: inside the usable range of a stack no coroutine runs on.
            unsafe { (p as *mut u8).write_volatile(1) };
            p += page_size();
        }
        assert_eq!(resident_pages(lo, hi), (hi - lo) / page_size());
        let mut s = s;
        s.dirty = true;
        class.free(s);
        assert!(class.scrub(usize::MAX) >= 1);
        let resident = resident_pages(lo, hi);
        assert!(
            resident <= KEEP_TOP / page_size(),
            "{resident} pages still resident"
        );
        // The same stack comes back (LIFO) and is usable again.
        let again = class.alloc().expect("stack");
        assert_eq!(again.usable(), (lo, hi));
    }

    #[test]
    fn slots_do_not_overlap() {
        let class = StackClass::for_size(64 * 1024);
        let a = class.alloc().unwrap();
        let b = class.alloc().unwrap();
        let (alo, ahi) = (a.limit().get(), a.base().get());
        let (blo, bhi) = (b.limit().get(), b.base().get());
        assert!(ahi <= blo || bhi <= alo);
        // At least the size asked for between the guard and the frames' start.
        assert!(ahi - alo >= 64 * 1024 + GUARD_SIZE);
        assert_eq!(ahi + a.colour() - alo, class.stride());
    }

    #[test]
    fn neighbouring_slots_start_their_frames_at_different_cache_colours() {
        // A size no other test uses, so that every slot is freshly carved.
        let class = StackClass::for_size(52 * 1024);
        let stacks: Vec<GStack> = (0..COLOURS).map(|_| class.alloc().unwrap()).collect();
        let mut offsets: Vec<usize> = stacks
            .iter()
            .map(|s| {
                let base = s.base().get();
                assert_eq!(base % 16, 0, "the ABI's stack alignment");
                assert!(s.top() - base <= MAX_COLOUR);
                // Still the size asked for above the guard.
                assert!(base - (s.lo() + GUARD_SIZE) >= 52 * 1024);
                base % page_size()
            })
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        // Fresh slots are carved one after the other: every colour once.
        assert_eq!(offsets.len(), COLOURS);
    }
}
