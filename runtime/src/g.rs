//! G: one green thread. The struct, its reference count and recycling, its park state
//! word, the slot its closure and then its result live in, and who may touch which field.
//!
//! # Lifetime
//!
//! A G is reached through [`GRef`]s, counted by hand (`refs`). The runtime holds one while
//! the G is runnable, running or finishing (the `GRef` in a run queue *is* the right to
//! run it), and keeps it while the G is parked: a parked G owns one reference to itself,
//! which the `unpark` that moves it back to ACTIVE takes to queue it. Its `JoinHandle`
//! holds one; an `Unparker` holds one. (A channel waiter holds only the G's address: the G
//! cannot go away while parked, and the completer takes a counted reference before it
//! lets the waiter go.) So the count of a live G never reaches zero, and reaches zero
//! exactly once for a dead one.
//!
//! When the last `GRef` goes, the dead G is not freed but recycled: it goes to the free
//! list of the P the dropping thread holds (or the thread's own, or the global one), and
//! the next spawn reuses it, closure and result slot included. So a steady stream of
//! spawns allocates nothing. A G parked forever (nobody left to wake it) keeps its own
//! reference and is leaked with its stack, as Go leaks a blocked goroutine.

use std::cell::UnsafeCell;
use std::mem::{self, MaybeUninit};
use std::panic::{self, AssertUnwindSafe, Location};
use std::ptr::{self, NonNull};
use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::thread;
use std::time::Instant;

use corosensei::{Coroutine, Yielder};

use crate::park::Unparker;
use crate::signal::Running;
use crate::stack::{GStack, StackClass};
use crate::unwind::drop_contained;

/// Why a G's coroutine handed control back to its M.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// `yield_now`: requeue at the tail of the local run queue.
    Yield,
    /// `park`: no token was waiting; the M decides its fate after the switch
    /// (`park_word::commit`).
    Park,
    /// `blocking` returned and found no P for its M: queue the G globally; the M, which
    /// holds no P now, goes to sleep.
    NoP,
}

pub(crate) type Coro = Coroutine<(), Suspend, (), GStack>;
pub(crate) type GYielder = Yielder<(), Suspend>;

// The park state word: its values and transitions are in `protocol::park_word`.
pub(crate) use crate::protocol::park_word::{
    ACTIVE, DEAD, NOTIFIED, PARKED, SHRINKING, SHRINK_WOKEN,
};

// The join word: its values and transitions are in `protocol::join_word`.
use crate::protocol::join_word::{self, J_DETACHED, J_RUNNING, J_WAITING};

/// Bytes of closure or result stored inside the G; larger ones are boxed.
const SLOT_BYTES: usize = 64;

/// Storage for the closure, then (the closure consumed) for its result. 8-aligned, not 16:
/// a 16-aligned slot would make the whole G 16-aligned and round it up to 224 bytes (a
/// 240-byte malloc chunk instead of 224); the rare closure or result that needs 16 (one
/// holding a `u128`, say) is boxed instead.
#[repr(C, align(8))]
struct SlotBuf([MaybeUninit<u8>; SLOT_BYTES]);

fn fits<X>() -> bool {
    mem::size_of::<X>() <= SLOT_BYTES && mem::align_of::<X>() <= mem::align_of::<SlotBuf>()
}

/// Writes `x` into the slot, inline or boxed.
///
/// # Safety
/// The slot is empty (holds nothing that needs dropping).
unsafe fn slot_put<X>(buf: *mut SlotBuf, x: X) {
    // SAFETY: the buffer is 64 bytes, 8-aligned: it holds an X that `fits`, or a Box.
    unsafe {
        if fits::<X>() {
            ptr::write(buf.cast::<X>(), x);
        } else {
            ptr::write(buf.cast::<Box<X>>(), Box::new(x));
        }
    }
}

/// Moves the X out of the slot, leaving it empty.
///
/// # Safety
/// The slot holds an X written by `slot_put::<X>`.
unsafe fn slot_take<X>(buf: *mut SlotBuf) -> X {
    // SAFETY: the caller's contract: the slot holds an X, inline or boxed as `fits` says.
    unsafe {
        if fits::<X>() {
            ptr::read(buf.cast::<X>())
        } else {
            *ptr::read(buf.cast::<Box<X>>())
        }
    }
}

/// The typed operations on a G's slot, for one closure type F returning T.
struct SlotOps {
    /// Takes F out, runs it (catching a panic), puts `thread::Result<T>` in.
    run: unsafe fn(*mut SlotBuf),
    /// Takes F out, drops it (containing a panic), puts `Err(msg)` in (the G could not get
    /// a stack). The `u64` is the G's id, for the message.
    fail: unsafe fn(*mut SlotBuf, String, u64),
    /// Drops the `thread::Result<T>` in the slot, containing a panic.
    drop_result: unsafe fn(*mut SlotBuf, u64),
}

unsafe fn run_slot<F: FnOnce() -> T, T>(buf: *mut SlotBuf) {
    // SAFETY: `spawn` put an F in; the result goes where F was.
    unsafe {
        let f = slot_take::<F>(buf);
        let r: thread::Result<T> = panic::catch_unwind(AssertUnwindSafe(f));
        slot_put(buf, r);
    }
}

unsafe fn fail_slot<F: FnOnce() -> T, T>(buf: *mut SlotBuf, msg: String, id: u64) {
    // SAFETY: as in `run_slot`.
    let f = unsafe { slot_take::<F>(buf) };
    // This runs on the M's own stack, in the scheduler: a panicking capture must not unwind
    // into it (see `unwind.rs`). The slot is empty while `f` drops.
    drop_contained(
        f,
        format_args!("green thread #{id} could not start, and its closure"),
    );
    let r: thread::Result<T> = Err(Box::new(msg));
    // SAFETY: the slot is empty (F was taken out above).
    unsafe { slot_put(buf, r) };
}

unsafe fn drop_result<T>(buf: *mut SlotBuf, id: u64) {
    // SAFETY: the caller says a result is in the slot.
    let r = unsafe { slot_take::<thread::Result<T>>(buf) };
    // Nobody owns the result: whoever drops it (the G's last frame, or the handle's owner)
    // must not unwind for it (see `unwind.rs`). `Err(payload)`: the payload may panic too.
    drop_contained(r, format_args!("green thread #{id}'s result"));
}

/// One `SlotOps` table per (F, T), in static memory.
struct OpsFor<F, T>(std::marker::PhantomData<(F, T)>);

impl<F: FnOnce() -> T, T> OpsFor<F, T> {
    const OPS: SlotOps = SlotOps {
        run: run_slot::<F, T>,
        fail: fail_slot::<F, T>,
        drop_result: drop_result::<T>,
    };
}

/// The fields only the G's owner touches: the spawner before the G is published, then the
/// one M running it (an M resumes a G only after taking it from a queue, and a G is in at
/// most one queue or on at most one M at a time), or the G's own code on that M.
///
/// `repr(C)`: the coroutine and its yielder, which every switch reads, come first, beside
/// the G's other per-switch fields (see `G`).
#[repr(C)]
pub(crate) struct GOwned {
    pub(crate) coro: Option<Coro>,
    /// The coroutine's yielder, valid while `coro` runs; set by the coroutine's first frame.
    pub(crate) yielder: *const GYielder,
    /// Class of the stack to bind at first run.
    pub(crate) class: &'static StackClass,
    /// Lowest address of the bound stack (its guard starts there), or 0; for the overflow
    /// handler.
    pub(crate) stack_lo: usize,
    /// The name and the green-local values, if any (a thin pointer: G's with neither, the
    /// common case, pay 8 bytes).
    pub(crate) extra: Option<Box<GExtra>>,
}

/// What few G's have: a name, green-local values.
#[derive(Default)]
pub(crate) struct GExtra {
    pub(crate) name: Option<String>,
    /// Green-local values (`local.rs`).
    pub(crate) locals: crate::local::Locals,
}

impl GOwned {
    pub(crate) fn name(&self) -> Option<&str> {
        self.extra.as_ref()?.name.as_deref()
    }
}

/// One green thread.
///
/// `repr(C)`, in the order below: what a park, a wake-up and a resume touch (the state
/// bytes, the reference count, the wait stamp, the id, the park bound, then the coroutine
/// and its yielder at the head of `owned`) lies in the first 88 bytes: two cache lines for
/// three G's in four wherever malloc puts them (16-aligned), where the compiler's order
/// spread it over three. A server with a thousand connections touches each of these lines
/// once per round trip and finds it cold (cachegrind: BENCHMARKS.md, issue #10).
#[repr(C)]
pub(crate) struct G {
    /// The park state word: ACTIVE, NOTIFIED, PARKED, DEAD (or, for the shrinker, SHRINKING
    /// and SHRINK_WOKEN).
    pub(crate) state: AtomicU8,
    /// The join state word: J_RUNNING, J_WAITING, J_DONE or J_DETACHED.
    join: AtomicU8,
    /// Set by `blocking` when the G came out of it on another P than it went in with (or
    /// none): the M running it must look up its P again. Owner-only, like `owned` (kept
    /// here, beside the state bytes, where it costs no room).
    pub(crate) moved_p: UnsafeCell<bool>,
    /// On the stack shrinker's queue (`shrink.rs`; Relaxed: a hint against queuing twice).
    pub(crate) shrink_queued: AtomicBool,
    /// Why the G waits (`dump::Wait`), set by the primitive before it parks (Relaxed: read
    /// only by the dump, which shows a blurred picture of a busy runtime anyway).
    wait: AtomicU8,
    /// Live `GRef`s.
    refs: AtomicU32,
    /// The coarse clock (`Sched::coarse_now`) when the G last suspended in a park or entered
    /// `blocking` (Relaxed, as `wait`).
    wait_since: AtomicU32,
    /// The G's id, which join handles may read (Relaxed: written before the handle exists,
    /// on the same thread). Read by every resume, for sysmon's hog report.
    id: AtomicU64,
    /// The bound of the live stack at the G's last park: written by the G on its way into
    /// the switch, read by the shrinker while the state word says SHRINKING (ordered by its
    /// Acquire claim) and, as a prefetch hint only, by the poller (`Poller::prefetch`).
    /// Relaxed: the orderings that matter come from the state word.
    pub(crate) park_sp: AtomicUsize,
    owned: UnsafeCell<GOwned>,
    /// The shrink epoch of the G's last park with a disturbed band (`shrink.rs`; written
    /// by the G before its park CAS, read by the shrinker: Relaxed as a hint, then again
    /// after the Acquire that claims the G).
    pub(crate) park_epoch: AtomicU32,
    /// This G struct's place in the dump's registry (guarded by the registry's lock).
    reg_index: UnsafeCell<u32>,
    /// Where the G was spawned (`#[track_caller]`), or null (Relaxed: a pointer to static
    /// data, written before the G is published).
    spawn_site: AtomicPtr<Location<'static>>,
    ops: UnsafeCell<&'static SlotOps>,
    /// The joiner's handle: written by the joiner before J_WAITING, taken by the G after.
    joiner: UnsafeCell<Option<Unparker>>,
    /// The closure (owned by the G until it runs), then the result (owned by the G until
    /// J_DONE, then by the `JoinHandle`).
    slot: UnsafeCell<SlotBuf>,
}

// SAFETY: the atomics are atomic. `owned` and `ops` are reached only by the G's owner (see
// `owned`), with ownership handed over through the run queues (push Release / pop Acquire)
// and the park state word. `slot` and `joiner` follow the join protocol (`complete`,
// `join`, `detach`): each side touches them only after the Acquire half of the hand-over.
// The closure and result in the slot are `Send` (spawn's bounds). What the coroutine's
// stack holds is user data of a `Send` closure; holding a `!Send` value across a blocking
// point is the documented hazard of every stackful runtime (docs/CAVEATS.md).
unsafe impl Send for G {}
// SAFETY: as above.
unsafe impl Sync for G {}

// A G is 216 bytes (with the shrinker's bound and epoch, and the dump's wait reason, wait
// stamp, spawn site and registry index), a 224-byte malloc chunk with the allocator's 8-byte
// header (217 would take 240), and a server holds one per connection: keep it from growing
// by accident (on 64-bit targets).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(mem::size_of::<G>() <= 216, "the G struct grew");
// The per-switch fields end with the yielder, within the first 88 bytes (see `G`).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(
    mem::offset_of!(G, owned) + mem::offset_of!(GOwned, yielder) + mem::size_of::<usize>() <= 88,
    "the G's per-switch fields spread past 88 bytes"
);

/// A counted reference to a G.
pub(crate) struct GRef(NonNull<G>);

// SAFETY: a GRef is a shared reference to a Sync G plus a share of its count.
unsafe impl Send for GRef {}
// SAFETY: as above.
unsafe impl Sync for GRef {}

impl GRef {
    /// Allocates a fresh G (or reuses `recycled`) for closure `f`; returns it with two
    /// references: the runtime's and the join handle's.
    pub(crate) fn new_task<F, T>(
        recycled: Option<NonNull<G>>,
        id: u64,
        name: Option<Box<str>>,
        class: &'static StackClass,
        site: &'static Location<'static>,
        f: F,
    ) -> (GRef, GRef)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let owned = GOwned {
            extra: name.map(|n| {
                Box::new(GExtra {
                    name: Some(String::from(n)),
                    ..GExtra::default()
                })
            }),
            coro: None,
            yielder: ptr::null(),
            class,
            stack_lo: 0,
        };
        let ops: &'static SlotOps = &OpsFor::<F, T>::OPS;
        let g = match recycled {
            Some(g) => {
                // SAFETY: a G on a free list has no references and no contents: we own it.
                unsafe {
                    let r = g.as_ptr();
                    (*r).refs.store(2, Ordering::Relaxed);
                    *(*r).moved_p.get() = false;
                    (*r).shrink_queued.store(false, Ordering::Relaxed);
                    (*r).id.store(id, Ordering::Relaxed);
                    (*r).state.store(ACTIVE, Ordering::Relaxed);
                    (*r).join.store(J_RUNNING, Ordering::Relaxed);
                    (*r).wait.store(0, Ordering::Relaxed);
                    (*r).spawn_site
                        .store(site as *const _ as *mut _, Ordering::Relaxed);
                    *(*r).ops.get() = ops;
                    *(*r).owned.get() = owned;
                }
                g
            }
            None => {
                let b = Box::new(G {
                    refs: AtomicU32::new(2),
                    moved_p: UnsafeCell::new(false),
                    shrink_queued: AtomicBool::new(false),
                    park_epoch: AtomicU32::new(0),
                    park_sp: AtomicUsize::new(0),
                    id: AtomicU64::new(id),
                    state: AtomicU8::new(ACTIVE),
                    join: AtomicU8::new(J_RUNNING),
                    wait: AtomicU8::new(0),
                    wait_since: AtomicU32::new(0),
                    spawn_site: AtomicPtr::new(site as *const _ as *mut _),
                    reg_index: UnsafeCell::new(0),
                    joiner: UnsafeCell::new(None),
                    slot: UnsafeCell::new(SlotBuf([MaybeUninit::uninit(); SLOT_BYTES])),
                    ops: UnsafeCell::new(ops),
                    owned: UnsafeCell::new(owned),
                });
                let g = NonNull::from(Box::leak(b));
                crate::dump::register(g);
                g
            }
        };
        // SAFETY: we own the G (fresh or from a free list); its slot is empty.
        unsafe { slot_put((*g.as_ptr()).slot.get(), f) };
        (GRef(g), GRef(g))
    }

    pub(crate) fn as_ptr(&self) -> *const G {
        self.0.as_ptr()
    }

    /// Gives up this reference as a raw pointer (for `runnext`).
    pub(crate) fn into_raw(self) -> *mut G {
        let p = self.0.as_ptr();
        mem::forget(self);
        p
    }

    /// Takes back a reference given up by `into_raw`.
    ///
    /// # Safety
    /// `p` came from `into_raw`, and this is its only `from_raw`.
    pub(crate) unsafe fn from_raw(p: *mut G) -> GRef {
        // SAFETY: non-null, from `into_raw`.
        GRef(unsafe { NonNull::new_unchecked(p) })
    }

    /// A new reference to the G at `p`.
    ///
    /// # Safety
    /// The G at `p` is alive (some reference to it is held for the duration of the call).
    pub(crate) unsafe fn clone_from_ptr(p: *const G) -> GRef {
        // SAFETY: alive, per the caller.
        let old = unsafe { (*p).refs.fetch_add(1, Ordering::Relaxed) };
        refs_overflow_check(old);
        // SAFETY: non-null: it points at a live G.
        GRef(unsafe { NonNull::new_unchecked(p.cast_mut()) })
    }
}

/// The count is 32 bits (it shares a word with the state bytes: every byte of a G counts
/// when a server holds 10,000 of them). Like `Arc`, abort rather than wrap: two billion
/// handles to one G means a leak in a loop.
#[inline]
fn refs_overflow_check(old: u32) {
    if old > i32::MAX as u32 {
        eprintln!("gort: fatal error: a green thread's reference count overflowed");
        std::process::abort();
    }
}

impl std::ops::Deref for GRef {
    type Target = G;
    fn deref(&self) -> &G {
        // SAFETY: a GRef keeps its G alive.
        unsafe { self.0.as_ref() }
    }
}

impl Clone for GRef {
    fn clone(&self) -> GRef {
        // Relaxed: a new reference is made from an existing one, which keeps the G alive
        // (the same argument as `Arc::clone`).
        let old = self.refs.fetch_add(1, Ordering::Relaxed);
        refs_overflow_check(old);
        GRef(self.0)
    }
}

impl Drop for GRef {
    fn drop(&mut self) {
        // Release: our uses of the G happen before whoever recycles it; the Acquire fence
        // below pairs with the other droppers' Release (the same argument as `Arc::drop`).
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: the count reached zero: nobody else can reach the G.
        unsafe { G::release(self.0) };
    }
}

impl G {
    /// Exclusive access to the owner's fields.
    ///
    /// # Safety
    ///
    /// The caller owns the G: it is the spawner before the G is published, or the M that
    /// took it from a queue (or the G itself, running on that M). No other reference to
    /// the returned fields may be live.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn owned(&self) -> &mut GOwned {
        // SAFETY: exclusivity is the caller's contract.
        unsafe { &mut *self.owned.get() }
    }

    /// The overflow handler's record.
    ///
    /// # Safety
    /// Called on the thread running the G, which is then suspended inside a fault: nothing
    /// writes the record concurrently.
    pub(crate) unsafe fn running(&self) -> Running {
        // SAFETY: see above; plain reads of fields nobody writes meanwhile.
        let o = unsafe { &*self.owned.get() };
        if o.stack_lo == 0 {
            return Running::NONE;
        }
        Running {
            guard_lo: o.stack_lo,
            guard_hi: o.stack_lo + crate::stack::GUARD_SIZE,
            name: o.name().map_or(ptr::null(), |n| n.as_ptr()),
            name_len: o.name().map_or(0, str::len),
            id: self.id(),
        }
    }

    /// Says why the G is about to wait (see `dump`).
    pub(crate) fn set_wait(&self, w: crate::dump::Wait) {
        self.wait.store(w as u8, Ordering::Relaxed);
    }

    pub(crate) fn wait_byte(&self) -> u8 {
        self.wait.load(Ordering::Relaxed)
    }

    /// Stamps the start of a wait with the coarse clock.
    pub(crate) fn stamp_wait(&self, now: u32) {
        self.wait_since.store(now, Ordering::Relaxed);
    }

    pub(crate) fn wait_since(&self) -> u32 {
        self.wait_since.load(Ordering::Relaxed)
    }

    pub(crate) fn spawn_site(&self) -> Option<&'static Location<'static>> {
        // SAFETY: null, or a `&'static Location` stored at spawn.
        unsafe { self.spawn_site.load(Ordering::Relaxed).as_ref() }
    }

    /// # Safety
    /// The caller holds the dump registry's lock.
    pub(crate) unsafe fn set_reg_index(&self, i: usize) {
        // SAFETY: guarded by the registry lock (the caller's contract).
        unsafe { *self.reg_index.get() = i as u32 };
    }

    /// # Safety
    /// As for `set_reg_index`.
    pub(crate) unsafe fn reg_index(&self) -> usize {
        // SAFETY: as above.
        unsafe { *self.reg_index.get() as usize }
    }

    /// The G's id (immutable while any reference to the G exists).
    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// Runs the G's closure and publishes its result. Called once, by the G, on its stack.
    ///
    /// # Safety
    /// The caller is the G itself, running for the first time.
    pub(crate) unsafe fn run_task(&self) {
        // SAFETY: the slot holds the closure; `ops` matches it; the G owns both now.
        unsafe { ((*self.ops.get()).run)(self.slot.get()) };
        // SAFETY: the G itself, still running on its stack.
        unsafe { self.drop_locals() };
        self.forget_name();
        self.complete();
    }

    /// Takes a named G's name out of the dump's table when it ends.
    fn forget_name(&self) {
        // SAFETY: called by the G's owner (the G itself, or the M failing it).
        if unsafe { self.owned() }.name().is_some() {
            crate::dump::forget_name(self.id());
        }
    }

    /// The G's green-local map, made on first use.
    ///
    /// # Safety
    /// The caller is the G's own code (running, or inside `blocking`).
    pub(crate) unsafe fn locals(&self) -> *mut crate::local::Locals {
        // SAFETY: only the G's code touches `locals`: the caller's contract.
        let o = unsafe { self.owned() };
        &mut o.extra.get_or_insert_with(Default::default).locals
    }

    /// Drops the G's green-local values, after its closure and before its result is handed
    /// over (as std drops thread-locals before `join` returns). A value's `Drop` may use
    /// green-locals again (making a new map): those are dropped too, a few rounds at most.
    ///
    /// # Safety
    /// The caller is the G itself.
    unsafe fn drop_locals(&self) {
        for _ in 0..4 {
            // SAFETY: the G's own field (the caller's contract); the borrow ends at once.
            let map = match unsafe { self.owned() }.extra.as_mut() {
                Some(e) if !e.locals.is_empty() => std::mem::take(&mut e.locals),
                _ => return,
            };
            map.drop_values(format_args!("green thread #{}", self.id()));
        }
        // Still more after four rounds: leave them to the G's release (dropped, uncontained
        // by the green thread, with the rest of its state).
    }

    /// Publishes `Err(msg)` as the result without running the closure (no stack for it).
    ///
    /// # Safety
    /// The caller owns the G, which has never run.
    pub(crate) unsafe fn fail_task(&self, msg: String) {
        // SAFETY: as in `run_task`.
        unsafe { ((*self.ops.get()).fail)(self.slot.get(), msg, self.id()) };
        self.forget_name();
        self.complete();
    }

    /// The result is in the slot: count the G finished, then hand the result over.
    fn complete(&self) {
        crate::sched::sched().note_finished();
        // `protocol::join_word` (model-checked in tests/loom.rs).
        match join_word::finish(&self.join) {
            J_WAITING => {
                // SAFETY: the joiner wrote `joiner` before publishing J_WAITING, which we
                // read; it no longer touches it.
                if let Some(w) = unsafe { (*self.joiner.get()).take() } {
                    w.unpark(false);
                }
            }
            J_DETACHED => {
                // Nobody will take the result: drop it here.
                // SAFETY: the slot holds the result; the handle is gone.
                unsafe { ((*self.ops.get()).drop_result)(self.slot.get(), self.id()) };
            }
            _ => {}
        }
    }

    /// Whether the result is ready.
    pub(crate) fn is_finished(&self) -> bool {
        join_word::is_done(&self.join)
    }

    /// Waits for the result and takes it (the join handle's side).
    ///
    /// # Safety
    /// Called once, by the holder of the join handle, whose closure returned T.
    pub(crate) unsafe fn join<T>(&self) -> thread::Result<T> {
        // SAFETY: as the caller's; without a deadline `join_until` always returns `Some`.
        unsafe { self.join_until::<T>(None) }.expect("a join without a deadline returns")
    }

    /// `join`, waiting until `deadline` at most (`None`: no deadline): `None` if the G is
    /// still running then (the join word is back to J_RUNNING and the handle may join again
    /// or detach).
    ///
    /// # Safety
    /// As `join`; on `None` the caller keeps the handle.
    pub(crate) unsafe fn join_until<T>(
        &self,
        deadline: Option<Instant>,
    ) -> Option<thread::Result<T>> {
        if !join_word::is_done(&self.join) {
            // SAFETY: nobody reads `joiner` before we publish J_WAITING.
            unsafe { *self.joiner.get() = Some(Unparker::current()) };
            if join_word::register(&self.join) {
                crate::dump::set_wait(crate::dump::Wait::Join);
                // Spurious wake-ups and stale tokens are possible: loop on the state.
                let mut gave_way = false;
                while !join_word::is_done(&self.join) {
                    match deadline {
                        None => crate::park::park(),
                        Some(d) if crate::park::park_until(d, &mut gave_way) => {}
                        Some(_) => {
                            // SAFETY: our joiner, registered above.
                            if unsafe { self.withdraw_joiner() } {
                                return None;
                            }
                            break; // finished just now: take the result
                        }
                    }
                }
            } else {
                // Finished meanwhile: our Unparker was never published; drop it.
                // SAFETY: still ours: J_WAITING was never published.
                drop(unsafe { (*self.joiner.get()).take() });
            }
        }
        // SAFETY: J_DONE seen with Acquire: the slot holds a `thread::Result<T>`, which is
        // now the handle's; the G will not touch it again.
        Some(unsafe { slot_take::<thread::Result<T>>(self.slot.get()) })
    }

    /// An async joiner's poll: true if the G has finished (take the result with `join`);
    /// else `waker` is registered as the joiner (replacing the one registered by an
    /// earlier poll, if `registered`), to be woken when the G finishes.
    ///
    /// # Safety
    /// Called by the holder of the join handle, which has not joined.
    pub(crate) unsafe fn poll_join(&self, waker: &std::task::Waker, registered: &mut bool) -> bool {
        if *registered {
            // SAFETY: ours to withdraw (see `withdraw_joiner`).
            if !unsafe { self.withdraw_joiner() } {
                return true;
            }
            *registered = false;
        }
        // SAFETY: nobody reads `joiner` before we publish J_WAITING.
        unsafe { *self.joiner.get() = Some(Unparker::Task(Box::new(waker.clone()))) };
        if join_word::register(&self.join) {
            *registered = true;
            false
        } else {
            // SAFETY: still ours: J_WAITING was never published.
            drop(unsafe { (*self.joiner.get()).take() });
            true
        }
    }

    /// Takes back a joiner registered by `poll_join`: back to J_RUNNING. False if the G
    /// finished first (J_DONE: it has taken the joiner to wake it).
    ///
    /// # Safety
    /// Called by the holder of the join handle, after a `poll_join` that registered.
    pub(crate) unsafe fn withdraw_joiner(&self) -> bool {
        if join_word::withdraw(&self.join) {
            // SAFETY: withdrawn before the G swapped in J_DONE: it never read `joiner`.
            drop(unsafe { (*self.joiner.get()).take() });
            true
        } else {
            false
        }
    }

    /// The join handle is dropped without joining.
    ///
    /// # Safety
    /// Called once, by the holder of the join handle, instead of `join`.
    pub(crate) unsafe fn detach(&self) {
        if !join_word::detach(&self.join) {
            // SAFETY: J_DONE: the result is ours to drop.
            unsafe { ((*self.ops.get()).drop_result)(self.slot.get(), self.id()) };
        }
    }

    /// The last reference is gone.
    ///
    /// # Safety
    /// The count of `g` reached zero.
    unsafe fn release(g: NonNull<G>) {
        // SAFETY: nobody else can reach the G.
        let this = unsafe { &mut *g.as_ptr() };
        if *this.state.get_mut() != DEAD || this.owned.get_mut().coro.is_some() {
            // Suspended forever (or never run): leak it with its stack; see module docs.
            return;
        }
        let o = this.owned.get_mut();
        // The name, and green-locals: normally dropped by the G when it ended
        // (`drop_locals`); a `Drop` that kept making green-locals leaves its last values here.
        if let Some(extra) = o.extra.take() {
            let GExtra { name, locals } = *extra;
            drop(name);
            locals.drop_values(format_args!("a finished green thread"));
        }
        o.yielder = ptr::null();
        debug_assert!(this.joiner.get_mut().is_none());
        crate::sched::free_g(g);
    }

    /// Frees a G from a free list for good.
    ///
    /// # Safety
    /// `g` is on no list and has no references.
    pub(crate) unsafe fn dealloc(g: NonNull<G>) {
        crate::dump::unregister(g);
        // SAFETY: allocated by `Box::new` in `new_task`; the slot is empty and `coro` None.
        drop(unsafe { Box::from_raw(g.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    /// Closures and results of every size and alignment reach the G and come back intact:
    /// inline in the slot (up to 64 bytes, 8-aligned) or boxed (larger, or 16- and
    /// 32-aligned), and what they own is dropped exactly once.
    #[test]
    fn closures_and_results_of_any_size_and_alignment() {
        #[derive(Clone, Copy, PartialEq, Debug)]
        #[repr(align(32))]
        struct A32([u64; 4]);
        let owned = Arc::new(());
        let mut handles = Vec::new();
        for i in 0..64u64 {
            let x = u128::MAX - u128::from(i);
            let a = A32([i, i + 1, i + 2, i + 3]);
            let big = [i; 32];
            let o = owned.clone();
            // 16-aligned capture and result; 32-aligned capture and result; 256-byte capture
            // and result; small ones.
            let h1 = crate::spawn(move || x.wrapping_add(1));
            let h2 = crate::spawn(move || A32([a.0[3], a.0[2], a.0[1], a.0[0]]));
            let h3 = crate::spawn(move || {
                let mut b = big;
                b[31] += 1;
                b
            });
            let h4 = crate::spawn(move || {
                let _keep = &o;
                i * 3
            });
            handles.push((i, h1, h2, h3, h4));
        }
        for (i, h1, h2, h3, h4) in handles {
            assert_eq!(
                h1.join().unwrap(),
                (u128::MAX - u128::from(i)).wrapping_add(1)
            );
            assert_eq!(h2.join().unwrap(), A32([i + 3, i + 2, i + 1, i]));
            let b = h3.join().unwrap();
            assert!(b[..31].iter().all(|&v| v == i) && b[31] == i + 1);
            assert_eq!(h4.join().unwrap(), i * 3);
        }
        assert_eq!(Arc::strong_count(&owned), 1);
    }
}
