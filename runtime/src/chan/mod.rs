//! Channels: Go's `chan T` for green threads and OS threads alike.
//!
//! [`bounded`]`(cap)` makes a buffered channel (`cap == 0`: Go's unbuffered rendezvous, where
//! `send` returns only once a receiver has taken the value) and [`unbounded`] one whose
//! `send` never blocks. Both ends are `Clone`: many producers, many consumers. Messages are
//! delivered in FIFO order, each exactly once.
//!
//! # Closing
//!
//! A channel closes when its last [`Sender`] is dropped or when any sender calls
//! [`Sender::close`]. Receivers then drain what was sent and get [`RecvError`]; sends return
//! the value in [`SendError`]. A channel whose receivers are all gone is *disconnected*:
//! sends fail the same way, since nobody could ever receive (Go would block forever here).
//!
//! # How blocking works
//!
//! Each channel is a short critical section (a buffer and two queues of blocked waiters,
//! Go's `hchan`) under a lock that is never held across a park. A blocked operation puts a
//! `Waiter` in the channel's queue and parks on its `Token`. Whoever completes it (the
//! other side, or `close`) first *claims* the token with a CAS (NONE → case), then moves the
//! value through the waiter's slot, then publishes `done` (Release) and unparks the owner,
//! who reads the outcome after seeing `done` (Acquire). A `select!` registers one waiter per
//! case on several channels, all sharing one token: the CAS makes exactly one case win, and
//! the losers' waiters are removed (or skipped, if a completer finds them first). A timed-out
//! operation cancels by claiming its own token (NONE → CANCELLED); if that CAS fails, a
//! completer got there first and the operation waits for it to finish.
//!
//! # Buffered channels
//!
//! A bounded channel with a buffer (`0 < cap <= 2^20`) keeps its messages in a lock-free
//! ring (`ring.rs`): while the buffer is neither full nor empty, a send or receive claims a
//! slot with one CAS and never takes the channel lock. Only waiting uses the lock and the
//! queues above, and with a different completion: a sender that fills a slot (or a
//! receiver that frees one) wakes one waiter of the other side, if the ring's waiting count
//! says there is one, without handing it a value; the woken operation retries on the ring
//! (and queues again if another got there first). Messages stay FIFO; which of several
//! blocked senders gets the next free slot is not fixed. Unbuffered channels (Go's
//! rendezvous) and unbounded ones keep the hand-off through the waiter's slot.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dump::Wait;
use crate::park::{park, park_g, park_until, Unparker, Waker};
use crate::spin::{SpinGuard, SpinMutex};
use crate::timer::TimerState;

mod ring;
use ring::{PopError, PushError, Ring, Side, MAX_RING};

// The token's protocol: `protocol::token` (model-checked in tests/loom.rs).
use crate::protocol::token::{self as token_word, NONE};

/// The rendezvous point of one blocked operation (or of all the cases of one `select!`).
/// It lives on the blocked caller's stack: see `Waiter` for why that is sound.
pub(crate) struct Token {
    /// NONE, the index of the case that completed, or CANCELLED.
    selected: AtomicUsize,
    /// The completer has finished moving the value (Release), see the module docs.
    done: AtomicBool,
    /// The blocked owner (uncounted: it cannot leave before `done`, and the completer
    /// upgrades it to a counted `Unparker` before setting `done`).
    waker: Waker,
    /// The token has a single waiter and its owner never cancels it (a send or receive
    /// without a deadline). Its one completer, the one that pops the waiter under the
    /// channel lock, needs no CAS to claim it.
    exclusive: bool,
}

impl Token {
    /// A token for the caller; `exclusive` as documented on the field.
    pub(crate) fn new(exclusive: bool) -> Token {
        Token {
            selected: AtomicUsize::new(NONE),
            done: AtomicBool::new(false),
            waker: Waker::current(),
            exclusive,
        }
    }

    /// Claims the token for `case`. Only the winner may complete the operation. (An
    /// exclusive token's one completer, which popped its waiter under the lock, needs no
    /// CAS: nobody else can reach the waiter and nobody cancels it.)
    fn claim(&self, case: usize) -> bool {
        token_word::claim(&self.selected, case, self.exclusive)
    }

    /// Cancels an unclaimed token. False if a completer claimed it first.
    fn cancel(&self) -> bool {
        token_word::cancel(&self.selected)
    }

    fn is_done(&self) -> bool {
        token_word::is_done(&self.done)
    }

    /// Waits until a completer is done, or until `deadline`. False if it timed out (and
    /// cancelled the token): the caller must then take its waiters off their queues.
    fn wait(&self, deadline: Option<Instant>, reason: Wait) -> bool {
        if let Waker::G(g) = self.waker {
            // SAFETY: the token's G is the caller, running on this thread.
            unsafe { (*g).set_wait(reason) };
        }
        let mut gave_way = false;
        loop {
            if self.is_done() {
                return true;
            }
            match deadline {
                None => match self.waker {
                    // SAFETY: the token's G is the caller, running on this thread.
                    Waker::G(g) => unsafe { park_g(g) },
                    Waker::Thread(_) => park(),
                },
                Some(d) if park_until(d, &mut gave_way) => {}
                Some(_) => {
                    if self.cancel() {
                        return false;
                    }
                    // Claimed just now: the completer is mid-way; wait for it.
                    while !self.is_done() {
                        park();
                    }
                    return true;
                }
            }
        }
    }

    fn selected(&self) -> usize {
        token_word::selected(&self.selected)
    }
}

/// One blocked operation on one channel, on its owner's stack (no allocation).
///
/// Queues hold raw pointers to waiters. That is sound because of three rules: (1) every
/// access to a queued waiter (and to its token) by anyone but the owner happens under the
/// channel's lock; (2) a completer touches the waiter and token for the last time when it
/// stores `done` (it clones the unparker first); (3) the owner leaves the frame that holds
/// them only after `done` is set, or after it has cancelled the token and taken every one
/// of its waiters off their queues under each channel's lock. So no completer can reach a
/// waiter whose frame is gone.
pub(crate) struct Waiter<T> {
    token: *const Token,
    case: usize,
    /// A sender's value (taken by the completer), or the value a receiver gets.
    slot: UnsafeCell<Option<T>>,
    /// The outcome was "closed" (written by the completer before `done`).
    closed: AtomicBool,
}

/// A queued waiter.
struct WaiterPtr<T>(NonNull<Waiter<T>>);

// SAFETY: a `WaiterPtr` is only dereferenced under its channel's lock, per the rules on
// `Waiter`; the value it carries is a `T: Send`.
unsafe impl<T: Send> Send for WaiterPtr<T> {}

impl<T> Waiter<T> {
    fn new(token: &Token, case: usize, value: Option<T>) -> Waiter<T> {
        Waiter {
            token,
            case,
            slot: UnsafeCell::new(value),
            closed: AtomicBool::new(false),
        }
    }

    fn ptr(&self) -> WaiterPtr<T> {
        WaiterPtr(NonNull::from(self))
    }

    /// Takes the value out (owner after `done`, or completer after claiming).
    ///
    /// # Safety
    /// The caller has exclusive access to the slot per the protocol above.
    unsafe fn take(&self) -> Option<T> {
        // SAFETY: exclusive access is the caller's contract.
        unsafe { (*self.slot.get()).take() }
    }
}

impl<T> WaiterPtr<T> {
    /// # Safety
    /// Called under the channel's lock, with the waiter still queued or just popped.
    unsafe fn get(&self) -> &Waiter<T> {
        // SAFETY: the rules on `Waiter` keep it alive while it is reachable from a queue
        // and the lock is held.
        unsafe { self.0.as_ref() }
    }

    /// # Safety
    /// As for `get`.
    unsafe fn token(&self) -> &Token {
        // SAFETY: the token outlives its waiters (same rules).
        unsafe { &*self.get().token }
    }

    /// Claims the waiter's token (under the channel lock).
    ///
    /// # Safety
    /// As for `get`.
    unsafe fn claim(&self) -> bool {
        // SAFETY: as for `get`.
        unsafe { self.token().claim(self.get().case) }
    }

    /// Completer's last step: publish the outcome and return the unparker to call (after
    /// unlocking). The waiter may be gone as soon as this returns.
    ///
    /// # Safety
    /// The caller claimed the token, under the channel lock.
    unsafe fn complete(self, closed: bool) -> Unparker {
        // SAFETY: claimed by us and not yet done: the waiter and its token are alive.
        unsafe {
            let w = self.get();
            let t = self.token();
            // The owner is blocked until `done`: it is alive to be counted.
            let u = t.waker.upgrade();
            if closed {
                w.closed.store(true, Ordering::Relaxed);
            }
            token_word::publish_done(&t.done);
            u
        }
    }
}

struct Inner<T> {
    buf: VecDeque<T>,
    /// Closed by `close` or by the last sender's drop.
    closed: bool,
    /// Every receiver is gone.
    disconnected: bool,
    recvq: VecDeque<WaiterPtr<T>>,
    sendq: VecDeque<WaiterPtr<T>>,
    /// `Select::ready` callers watching for a receive (`recv_obs`) or a send (`send_obs`)
    /// to become possible.
    recv_obs: Vec<Observer>,
    send_obs: Vec<Observer>,
}

/// A [`Select::ready`] caller watching one side of a channel. It takes nothing: whoever may
/// have made that side ready claims its token (for `case`) and wakes it, and it looks again.
/// The same lifetime rules as for `Waiter` apply (the token is on the watcher's stack, every
/// access by others is under the channel lock, and the watcher removes its observers before
/// it returns).
struct Observer {
    token: *const Token,
    case: usize,
}

// SAFETY: dereferenced only under the channel's lock, per the rules on `Waiter`.
unsafe impl Send for Observer {}

/// Wakes every observer in `obs` (under the channel lock): claims each token it can and
/// completes it. Returns the unparkers to call after unlocking, with [`wake_watchers`]
/// (`None`, at the cost of one branch, when nobody watches: the common case).
#[inline]
fn notify(obs: &mut Vec<Observer>) -> Option<Vec<Unparker>> {
    if obs.is_empty() {
        None
    } else {
        Some(notify_all(obs))
    }
}

#[cold]
#[inline(never)]
fn notify_all(obs: &mut Vec<Observer>) -> Vec<Unparker> {
    obs.drain(..)
        .filter_map(|o| {
            // SAFETY: queued, under the lock: the token is alive (rules on `Observer`).
            let t = unsafe { &*o.token };
            if !t.claim(o.case) {
                // Claimed through another channel, or cancelled: its owner removes it.
                return None;
            }
            // SAFETY: claimed and not yet done: the watcher is still blocked waiting.
            let u = unsafe { t.waker.upgrade() };
            token_word::publish_done(&t.done);
            Some(u)
        })
        .collect()
}

/// Wakes what [`notify`] returned (after the channel lock is released).
#[inline]
fn wake_watchers(w: Option<Vec<Unparker>>) {
    if let Some(us) = w {
        wake_all(us);
    }
}

/// Drops every value, containing the panics of their drops: the first panic is resumed once
/// all are dropped (the others' payloads are dropped, or leaked if that panics too). A
/// channel dropped with buffered values whose `Drop` panics thus never aborts the process
/// on a second panic, and loses no other value's drop.
pub(crate) fn drop_all<T>(values: impl Iterator<Item = T>) {
    let mut first = None;
    for v in values {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(v))) {
            if first.is_none() {
                first = Some(p);
            } else if let Err(again) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(p)))
            {
                std::mem::forget(again);
            }
        }
    }
    if let Some(p) = first {
        std::panic::resume_unwind(p);
    }
}

impl<T> Drop for Chan<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.inner.get_mut().buf);
        drop_all(buf.into_iter());
    }
}

struct Chan<T> {
    inner: SpinMutex<Inner<T>>,
    /// Buffer capacity; `usize::MAX` for unbounded.
    cap: usize,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// The buffer of a bounded channel with `0 < cap <= MAX_RING`, which then does not use
    /// `inner.buf` (see "Buffered channels" in the module docs).
    ring: Option<Box<Ring<T>>>,
    /// The timer that feeds a `time::after` or `time::tick` channel: cancelled when the last
    /// receiver goes, so that an abandoned timer costs nothing until its deadline.
    timer: Option<Arc<TimerState>>,
    /// Made by `never()`: every such channel is "the same channel" (crossbeam's rule).
    never: bool,
}

impl<T> Chan<T> {
    fn len(&self) -> usize {
        match &self.ring {
            Some(r) => r.len(),
            None => self.lock().buf.len(),
        }
    }

    fn capacity(&self) -> Option<usize> {
        (self.cap != usize::MAX).then_some(self.cap)
    }

    fn is_full(&self) -> bool {
        self.capacity().is_some_and(|cap| self.len() >= cap)
    }

    /// Whether an operation on `side` would complete now (or fail as closed) rather than
    /// wait.
    fn is_ready(&self, side: Side) -> bool {
        if let Some(ring) = &self.ring {
            return ring.ready(side);
        }
        self.lock().ready(side, self.cap)
    }

    /// Queues an observer of `side` for `token`, unless that side is ready now (then
    /// returns false and queues nothing).
    fn watch(&self, side: Side, token: &Token, case: usize) -> bool {
        let mut g = self.lock();
        g.observers(side).push(Observer { token, case });
        match &self.ring {
            Some(ring) => {
                // Publish first, then re-check: the ring's Dekker pair (ring.rs), as for a
                // waiter in `ring_register`.
                publish(ring, &g, side);
                if ring.ready(side) {
                    g.observers(side).pop();
                    publish(ring, &g, side);
                    return false;
                }
                true
            }
            None => {
                let ready = g.ready(side, self.cap);
                if ready {
                    g.observers(side).pop();
                }
                !ready
            }
        }
    }

    /// Takes `token`'s observers of `side` off the channel.
    fn unwatch(&self, side: Side, token: &Token) {
        let mut g = self.lock();
        g.observers(side).retain(|o| !std::ptr::eq(o.token, token));
        if let Some(ring) = &self.ring {
            publish(ring, &g, side);
        }
    }

    fn lock(&self) -> SpinGuard<'_, Inner<T>> {
        // No user code runs under this lock: values are moved, never dropped, inside it.
        self.inner.lock()
    }
}

/// Pops the first waiter of `q` whose token we can claim (skipping `own`, a select's own
/// token, and dropping stale waiters already claimed elsewhere). Call under the lock.
fn claim_first<T>(q: &mut VecDeque<WaiterPtr<T>>, own: Option<&Token>) -> Option<WaiterPtr<T>> {
    let mut i = 0;
    while i < q.len() {
        // SAFETY: queued, and we hold the channel lock.
        if own.is_some_and(|t| std::ptr::eq(t, unsafe { q[i].token() })) {
            i += 1;
            continue;
        }
        let w = if i == 0 { q.pop_front() } else { q.remove(i) }.expect("index in range");
        // SAFETY: just popped, lock held.
        if unsafe { w.claim() } {
            return Some(w);
        }
    }
    None
}

/// Takes the waiters of `token` off `q`. Call under the lock.
fn remove_waiter<T>(q: &mut VecDeque<WaiterPtr<T>>, token: &Token) {
    // SAFETY: queued, lock held.
    q.retain(|w| !std::ptr::eq(unsafe { w.token() }, token));
}

/// The result of trying a send without blocking, under the lock.
enum SendNow<T> {
    /// Delivered; unpark this receiver (after unlocking), if any.
    Done(Option<Unparker>),
    Full(T),
    Closed(T),
}

/// The result of trying a receive without blocking, under the lock.
enum RecvNow<T> {
    Got(T, Option<Unparker>),
    Empty,
    Closed,
}

impl<T> Inner<T> {
    fn send_now(&mut self, v: T, cap: usize, own: Option<&Token>) -> SendNow<T> {
        if self.closed || self.disconnected {
            return SendNow::Closed(v);
        }
        if let Some(w) = claim_first(&mut self.recvq, own) {
            // SAFETY: we claimed the receiver's token under the lock: its slot is ours
            // until `complete`.
            unsafe {
                *w.get().slot.get() = Some(v);
                return SendNow::Done(Some(w.complete(false)));
            }
        }
        if self.buf.len() < cap {
            self.buf.push_back(v);
            return SendNow::Done(None);
        }
        SendNow::Full(v)
    }

    fn recv_now(&mut self, own: Option<&Token>) -> RecvNow<T> {
        if let Some(v) = self.buf.pop_front() {
            // Room in the buffer: a blocked sender's value moves in behind the others.
            let wake = claim_first(&mut self.sendq, own).map(|w| {
                // SAFETY: claimed under the lock: the sender's slot is ours until
                // `complete`.
                unsafe {
                    let sv = w.get().take().expect("a blocked sender holds its value");
                    self.buf.push_back(sv);
                    w.complete(false)
                }
            });
            return RecvNow::Got(v, wake);
        }
        if let Some(w) = claim_first(&mut self.sendq, own) {
            // Rendezvous: take the value straight from the sender.
            // SAFETY: claimed under the lock: the sender's slot is ours until `complete`.
            unsafe {
                let v = w.get().take().expect("a blocked sender holds its value");
                return RecvNow::Got(v, Some(w.complete(false)));
            }
        }
        if self.closed {
            return RecvNow::Closed;
        }
        RecvNow::Empty
    }

    /// Claims every waiter in `q` and completes it as closed; returns their unparkers.
    fn close_waiters(q: &mut VecDeque<WaiterPtr<T>>, out: &mut Vec<Unparker>) {
        for w in q.drain(..) {
            // SAFETY: just popped, under the lock; completed only if we claim it.
            unsafe {
                if w.claim() {
                    out.push(w.complete(true));
                }
            }
        }
    }
}

fn wake_all(us: Vec<Unparker>) {
    for u in us {
        u.unpark(true);
    }
}

/// The sending half of a channel.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half of a channel.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

// A panic in the middle of a channel operation leaves the channel consistent (its state
// changes under its lock or by single atomic steps, and a value in flight is either still
// in the sender's hands or delivered): the ends may be used across `catch_unwind`, as
// crossbeam's are.
impl<T> std::panic::UnwindSafe for Sender<T> {}
impl<T> std::panic::RefUnwindSafe for Sender<T> {}
impl<T> std::panic::UnwindSafe for Receiver<T> {}
impl<T> std::panic::RefUnwindSafe for Receiver<T> {}

/// Creates a channel of capacity `cap`; `cap == 0` is a rendezvous channel.
///
/// # Examples
///
/// ```
/// let (tx, rx) = gort_runtime::chan::bounded(0);
/// let h = gort_runtime::go!(move || tx.send(42).unwrap());
/// assert_eq!(rx.recv(), Ok(42));
/// h.join().unwrap();
/// ```
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    new_chan(cap)
}

/// Creates a channel whose `send` never blocks.
///
/// # Examples
///
/// ```
/// let (tx, rx) = gort_runtime::chan::unbounded();
/// for i in 0..1000 {
///     tx.send(i).unwrap();
/// }
/// drop(tx);
/// assert_eq!(rx.iter().sum::<i32>(), 499_500);
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    new_chan(usize::MAX)
}

fn new_chan<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    new_chan_with(cap, 0, None)
}

/// A receiver that never receives anything and never closes: crossbeam's `never`, Go's nil
/// channel. A `select!` arm on it is never ready, so an arm can be switched off by putting
/// `never()` in place of its channel (say, once that channel has closed).
///
/// # Examples
///
/// ```
/// use gort_runtime::{chan, select};
///
/// let (tx, rx) = chan::bounded::<u32>(1);
/// drop(tx); // closed: a recv arm on it would always be ready
/// let mut rx = Some(rx);
/// let (tx2, rx2) = chan::bounded::<u32>(1);
/// tx2.send(5).unwrap();
/// let off = chan::never();
/// let got = select! {
///     recv(rx.as_ref().filter(|_| false).unwrap_or(&off)) -> _ => 0,
///     recv(rx2) -> m => m.unwrap(),
/// };
/// assert_eq!(got, 5);
/// rx = None;
/// assert!(rx.is_none());
/// ```
pub fn never<T>() -> Receiver<T> {
    // One pinned sender count and no sender handle: nothing can send, and it never closes.
    let (tx, rx) = new_chan_with(0, 1, None);
    drop(tx);
    let mut rx = rx;
    // Still the only handle: the flag can be set in place.
    if let Some(c) = Arc::get_mut(&mut rx.chan) {
        c.never = true;
    }
    rx
}

/// A channel with `pinned` extra sender counts that are never dropped, so it never closes
/// when its senders go (a timer channel, which like Go's never closes), fed by `timer` if
/// any.
pub(crate) fn new_chan_with<T>(
    cap: usize,
    pinned: usize,
    timer: Option<Arc<TimerState>>,
) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        inner: SpinMutex::new(Inner {
            buf: VecDeque::new(),
            closed: false,
            disconnected: false,
            recvq: VecDeque::new(),
            sendq: VecDeque::new(),
            recv_obs: Vec::new(),
            send_obs: Vec::new(),
        }),
        cap,
        senders: AtomicUsize::new(1 + pinned),
        receivers: AtomicUsize::new(1),
        ring: (cap > 0 && cap <= MAX_RING).then(|| Box::new(Ring::new(cap))),
        timer,
        never: false,
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

impl<T> Sender<T> {
    /// Sends `v`, blocking while the buffer is full (for `bounded(0)`: until a receiver takes
    /// it). Fails, giving the value back, if the channel is closed or has no receivers.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        match self.send_inner(v, Blocking::Forever) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Closed(v)) => Err(SendError(v)),
            Err(SendTimeoutError::Timeout(_)) => unreachable!("no deadline"),
        }
    }

    /// Sends without blocking.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        match self.send_inner(v, Blocking::No) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Closed(v)) => Err(TrySendError::Closed(v)),
            Err(SendTimeoutError::Timeout(v)) => Err(TrySendError::Full(v)),
        }
    }

    /// Sends, blocking for at most `timeout`.
    pub fn send_timeout(&self, v: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.send_inner(v, Blocking::Until(d)),
            None => self.send_inner(v, Blocking::Forever),
        }
    }

    fn send_inner(&self, v: T, how: Blocking) -> Result<(), SendTimeoutError<T>> {
        let chan = &*self.chan;
        if let Some(ring) = &chan.ring {
            return ring_send(chan, ring, v, how);
        }
        let mut g = chan.lock();
        let v = match g.send_now(v, chan.cap, None) {
            SendNow::Done(wake) => {
                let watchers = notify(&mut g.recv_obs);
                drop(g);
                if let Some(u) = wake {
                    u.unpark(true);
                }
                wake_watchers(watchers);
                return Ok(());
            }
            SendNow::Closed(v) => return Err(SendTimeoutError::Closed(v)),
            SendNow::Full(v) => v,
        };
        let deadline = match how {
            Blocking::No => return Err(SendTimeoutError::Timeout(v)),
            Blocking::Forever => None,
            Blocking::Until(d) => Some(d),
        };
        let token = Token::new(deadline.is_none());
        let w = Waiter::new(&token, 0, Some(v));
        g.sendq.push_back(w.ptr());
        // A waiting sender makes a rendezvous receive possible.
        let watchers = notify(&mut g.recv_obs);
        drop(g);
        wake_watchers(watchers);
        if token.wait(deadline, Wait::ChanSend) {
            if w.closed.load(Ordering::Relaxed) {
                // SAFETY: `done` seen: the slot is ours again (the closer left the value).
                let v = unsafe { w.take() }.expect("a closed send keeps its value");
                return Err(SendTimeoutError::Closed(v));
            }
            return Ok(());
        }
        remove_waiter(&mut chan.lock().sendq, &token);
        // SAFETY: cancelled before anyone claimed it, and off the queue: the slot is ours.
        let v = unsafe { w.take() }.expect("an unclaimed send keeps its value");
        Err(SendTimeoutError::Timeout(v))
    }

    /// Closes the channel for every sender: receivers drain what was sent, then get
    /// `RecvError`; blocked and later sends fail. Closing twice is harmless.
    pub fn close(&self) {
        close(&self.chan);
    }

    /// Messages in the buffer.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer's capacity; `None` for an unbounded channel.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// Whether the buffer is full (always true for a rendezvous channel, never for an
    /// unbounded one: crossbeam's rule).
    pub fn is_full(&self) -> bool {
        self.chan.is_full()
    }

    /// Whether `self` and `other` are ends of the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    /// Whether the channel is closed (or has no receivers left).
    pub fn is_closed(&self) -> bool {
        if let Some(r) = &self.chan.ring {
            return r.is_closed();
        }
        let g = self.chan.lock();
        g.closed || g.disconnected
    }
}

fn close<T>(chan: &Chan<T>) {
    if let Some(r) = &chan.ring {
        // Mark first: a waiter that queues after our sweep below re-checks and sees it.
        if !r.close() {
            // Closed, or every receiver gone, before: its waiters were woken then.
            return;
        }
    }
    let mut wake = Vec::new();
    {
        let mut g = chan.lock();
        if g.closed {
            return;
        }
        g.closed = true;
        Inner::close_waiters(&mut g.recvq, &mut wake);
        Inner::close_waiters(&mut g.sendq, &mut wake);
        wake.extend(notify(&mut g.recv_obs).into_iter().flatten());
        wake.extend(notify(&mut g.send_obs).into_iter().flatten());
        if let Some(r) = &chan.ring {
            publish(r, &g, Side::Recv);
            publish(r, &g, Side::Send);
        }
    }
    wake_all(wake);
}

#[derive(Clone, Copy)]
enum Blocking {
    No,
    Forever,
    Until(Instant),
}

impl<T> Receiver<T> {
    /// Receives a message, blocking while the channel is empty and open. After the channel
    /// closes and drains, returns `RecvError`.
    pub fn recv(&self) -> Result<T, RecvError> {
        match self.recv_inner(Blocking::Forever) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Closed) => Err(RecvError),
            Err(RecvTimeoutError::Timeout) => unreachable!("no deadline"),
        }
    }

    /// Receives without blocking.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.recv_inner(Blocking::No) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Closed) => Err(TryRecvError::Closed),
            Err(RecvTimeoutError::Timeout) => Err(TryRecvError::Empty),
        }
    }

    /// Receives, blocking for at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.recv_inner(Blocking::Until(d)),
            None => self.recv_inner(Blocking::Forever),
        }
    }

    fn recv_inner(&self, how: Blocking) -> Result<T, RecvTimeoutError> {
        let chan = &*self.chan;
        if let Some(ring) = &chan.ring {
            return ring_recv(chan, ring, how);
        }
        let mut g = chan.lock();
        match g.recv_now(None) {
            RecvNow::Got(v, wake) => {
                let watchers = notify(&mut g.send_obs);
                drop(g);
                if let Some(u) = wake {
                    u.unpark(true);
                }
                wake_watchers(watchers);
                return Ok(v);
            }
            RecvNow::Closed => return Err(RecvTimeoutError::Closed),
            RecvNow::Empty => {}
        }
        let deadline = match how {
            Blocking::No => return Err(RecvTimeoutError::Timeout),
            Blocking::Forever => None,
            Blocking::Until(d) => Some(d),
        };
        let token = Token::new(deadline.is_none());
        let w = Waiter::new(&token, 0, None);
        g.recvq.push_back(w.ptr());
        // A waiting receiver makes a rendezvous send possible.
        let watchers = notify(&mut g.send_obs);
        drop(g);
        wake_watchers(watchers);
        if token.wait(deadline, Wait::ChanRecv) {
            if w.closed.load(Ordering::Relaxed) {
                return Err(RecvTimeoutError::Closed);
            }
            // SAFETY: `done` seen: the completer put the value and is finished with it.
            return Ok(unsafe { w.take() }.expect("a completed receive has its value"));
        }
        remove_waiter(&mut chan.lock().recvq, &token);
        Err(RecvTimeoutError::Timeout)
    }

    /// Messages in the buffer.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer's capacity; `None` for an unbounded channel.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// Whether the buffer is full (always true for a rendezvous channel, never for an
    /// unbounded one: crossbeam's rule).
    pub fn is_full(&self) -> bool {
        self.chan.is_full()
    }

    /// Whether `self` and `other` are ends of the same channel (every [`never()`] receiver is
    /// the same channel as every other, as in crossbeam).
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan) || (self.chan.never && other.chan.never)
    }

    /// Whether the channel is closed (it may still hold messages to drain).
    pub fn is_closed(&self) -> bool {
        // A ring's mark also means "no receivers", which cannot be while this one exists.
        match &self.chan.ring {
            Some(r) => r.is_closed(),
            None => self.chan.lock().closed,
        }
    }

    /// A blocking iterator over messages; it ends when the channel is closed and drained.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the messages available now; it never blocks.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // AcqRel: the last dropper sees every other sender's sends (they happened before
        // their drops) before it closes.
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            close(&self.chan);
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // AcqRel: as for senders.
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(r) = &self.chan.ring {
                // Sends fail from now on (the mark means "closed" to senders).
                r.close();
            }
            let mut wake = Vec::new();
            {
                let mut g = self.chan.lock();
                g.disconnected = true;
                Inner::close_waiters(&mut g.sendq, &mut wake);
                wake.extend(notify(&mut g.send_obs).into_iter().flatten());
                if let Some(r) = &self.chan.ring {
                    publish(r, &g, Side::Send);
                }
            }
            wake_all(wake);
            if let Some(t) = &self.chan.timer {
                if t.cancel() {
                    crate::sched::sched().timers.note_cancelled();
                }
            }
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Sender { .. }")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Receiver { .. }")
    }
}

/// Blocking iterator of [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator of [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// Owning blocking iterator of `Receiver`'s `IntoIterator`.
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

// ---- errors -------------------------------------------------------------------------

/// `send` on a closed (or disconnected) channel; the value comes back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

/// `recv` on a channel that is closed and drained.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct RecvError;

/// Why `try_send` failed; the value comes back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The buffer is full (for `bounded(0)`: no receiver is waiting).
    Full(T),
    /// The channel is closed or has no receivers.
    Closed(T),
}

/// Why `try_recv` failed.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum TryRecvError {
    /// Nothing to receive now.
    Empty,
    /// Closed and drained.
    Closed,
}

/// Why `send_timeout` failed; the value comes back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// The timeout passed with the buffer still full.
    Timeout(T),
    /// The channel is closed or has no receivers.
    Closed(T),
}

/// Why `recv_timeout` failed.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum RecvTimeoutError {
    /// The timeout passed with nothing to receive.
    Timeout,
    /// Closed and drained.
    Closed,
}

macro_rules! value_error_fmt {
    ($ty:ident, $($variant:ident => $msg:literal),+) => {
        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $($ty::$variant(_) => f.write_str(concat!(stringify!($ty), "::", stringify!($variant), "(..)")),)+ }
            }
        }
        impl<T> fmt::Display for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $($ty::$variant(_) => f.write_str($msg),)+ }
            }
        }
        impl<T> std::error::Error for $ty<T> {}
    };
}

value_error_fmt!(TrySendError, Full => "sending on a full channel", Closed => "sending on a closed channel");
value_error_fmt!(SendTimeoutError, Timeout => "timed out sending on a full channel", Closed => "sending on a closed channel");

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}
impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a closed channel")
    }
}
impl<T> std::error::Error for SendError<T> {}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on a closed and empty channel")
    }
}
impl std::error::Error for RecvError {}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Closed => f.write_str("receiving on a closed and empty channel"),
        }
    }
}
impl std::error::Error for TryRecvError {}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out receiving on an empty channel"),
            RecvTimeoutError::Closed => f.write_str("receiving on a closed and empty channel"),
        }
    }
}
impl std::error::Error for RecvTimeoutError {}

// ---- buffered channels: the ring --------------------------------------------------------

impl<T> Inner<T> {
    fn queue(&mut self, side: Side) -> &mut VecDeque<WaiterPtr<T>> {
        match side {
            Side::Recv => &mut self.recvq,
            Side::Send => &mut self.sendq,
        }
    }

    /// Whether an operation on `side` of this (lock-based) channel would not wait.
    fn ready(&self, side: Side, cap: usize) -> bool {
        match side {
            Side::Recv => !self.buf.is_empty() || self.closed || has_live(&self.sendq, None),
            Side::Send => {
                self.closed
                    || self.disconnected
                    || self.buf.len() < cap
                    || has_live(&self.recvq, None)
            }
        }
    }

    fn observers(&mut self, side: Side) -> &mut Vec<Observer> {
        match side {
            Side::Recv => &mut self.recv_obs,
            Side::Send => &mut self.send_obs,
        }
    }
}

/// Publishes the length of a queue to its waiting count. Call under the lock, after every
/// change to a ring channel's queue.
fn publish<T>(ring: &Ring<T>, g: &Inner<T>, side: Side) {
    // Observers count too: a push or pop must take the lock to wake them.
    let len = match side {
        Side::Recv => g.recvq.len() + g.recv_obs.len(),
        Side::Send => g.sendq.len() + g.send_obs.len(),
    };
    // SeqCst: the waiter's half of the Dekker pair in ring.rs (before its re-check).
    ring.count(side).store(len, Ordering::SeqCst);
}

/// After a push (`side` = Recv) or a pop (`side` = Send): wakes one waiter of `side`, if
/// any, to retry. The woken waiter is not handed a value: another operation may take the
/// value or slot first, and the waiter then queues again (crossbeam-channel's rule; FIFO of
/// messages holds, the order in which blocked operations complete is not guaranteed).
fn wake_one<T>(chan: &Chan<T>, ring: &Ring<T>, side: Side) {
    // SeqCst: pairs with `publish`, per ring.rs.
    if ring.count(side).load(Ordering::SeqCst) == 0 {
        return;
    }
    let (u, watchers) = {
        let mut g = chan.lock();
        let w = claim_first(g.queue(side), None);
        let watchers = notify(g.observers(side));
        publish(ring, &g, side);
        // SAFETY: claimed under the lock.
        (w.map(|w| unsafe { w.complete(false) }), watchers)
    };
    if let Some(u) = u {
        u.unpark(true);
    }
    wake_watchers(watchers);
}

/// Queues `w` on `side` and re-checks the ring: if the operation could proceed now, takes
/// `w` off again (nobody can have claimed it: completers hold the lock) and returns false.
fn ring_register<T>(chan: &Chan<T>, ring: &Ring<T>, side: Side, w: &Waiter<T>) -> bool {
    let mut g = chan.lock();
    g.queue(side).push_back(w.ptr());
    publish(ring, &g, side);
    if ring.ready(side) {
        g.queue(side).pop_back();
        publish(ring, &g, side);
        return false;
    }
    true
}

/// Takes the waiters of `token` off `side`'s queue.
fn ring_unregister<T>(chan: &Chan<T>, ring: &Ring<T>, side: Side, token: &Token) {
    let mut g = chan.lock();
    remove_waiter(g.queue(side), token);
    publish(ring, &g, side);
}

/// The deadline of one more wait, or the error to give up with (`None`).
fn next_deadline(how: Blocking) -> Option<Option<Instant>> {
    match how {
        Blocking::No => None,
        Blocking::Forever => Some(None),
        Blocking::Until(d) if Instant::now() >= d => None,
        Blocking::Until(d) => Some(Some(d)),
    }
}

fn ring_send<T>(
    chan: &Chan<T>,
    ring: &Ring<T>,
    mut v: T,
    how: Blocking,
) -> Result<(), SendTimeoutError<T>> {
    let mut gave_way = false;
    loop {
        match ring.try_push(v) {
            Ok(()) => {
                wake_one(chan, ring, Side::Recv);
                return Ok(());
            }
            Err(PushError::Closed(x)) => return Err(SendTimeoutError::Closed(x)),
            Err(PushError::Full(x)) => v = x,
        }
        let Some(deadline) = next_deadline(how) else {
            // Past the deadline before queueing: give way once, then try again.
            if let Blocking::Until(d) = how {
                if park_until(d, &mut gave_way) {
                    continue;
                }
            }
            return Err(SendTimeoutError::Timeout(v));
        };
        let token = Token::new(deadline.is_none());
        let w = Waiter::new(&token, 0, None);
        if ring_register(chan, ring, Side::Send, &w) {
            if !token.wait(deadline, Wait::ChanSend) {
                ring_unregister(chan, ring, Side::Send, &token);
            }
            // The wait parked, gave way itself past its deadline, or found the peer done.
            gave_way = true;
        }
        // Woken (a slot freed, or closed), withdrawn, or timed out: try again.
    }
}

fn ring_recv<T>(chan: &Chan<T>, ring: &Ring<T>, how: Blocking) -> Result<T, RecvTimeoutError> {
    let mut gave_way = false;
    loop {
        match ring.try_pop() {
            Ok(v) => {
                wake_one(chan, ring, Side::Send);
                return Ok(v);
            }
            Err(PopError::Closed) => return Err(RecvTimeoutError::Closed),
            Err(PopError::Empty) => {}
        }
        let Some(deadline) = next_deadline(how) else {
            // Past the deadline before queueing: give way once, then try again.
            if let Blocking::Until(d) = how {
                if park_until(d, &mut gave_way) {
                    continue;
                }
            }
            return Err(RecvTimeoutError::Timeout);
        };
        let token = Token::new(deadline.is_none());
        let w = Waiter::new(&token, 0, None);
        if ring_register(chan, ring, Side::Recv, &w) {
            if !token.wait(deadline, Wait::ChanRecv) {
                ring_unregister(chan, ring, Side::Recv, &token);
            }
            // The wait parked, gave way itself past its deadline, or found the peer done.
            gave_way = true;
        }
    }
}

// ---- select -------------------------------------------------------------------------

/// One case of a [`Select`], type-erased.
trait Case {
    /// Completes the operation now if it can (ready, or closed). True if it did.
    fn try_now(&mut self) -> bool;
    /// Queues a waiter with `token` for this case, unless the operation could complete
    /// now (then returns false and queues nothing: the select starts over).
    ///
    /// The waiter lives inside the case (boxed, so it does not move) until `unregister` or
    /// `finish`.
    fn register(&mut self, token: &Token, case: usize) -> bool;
    /// Removes this case's waiter if it is still queued (it was not chosen).
    fn unregister(&mut self, token: &Token);
    /// A completer chose this case: collect the outcome. False if the case was only woken to
    /// retry (a ring channel) and the retry found it not ready: the select starts over.
    fn finish(&mut self) -> bool;
    /// Whether the operation would complete now (or fail as closed) rather than wait.
    fn is_ready(&self) -> bool;
    /// Watches the case's channel until the operation may have become possible (for
    /// `Select::ready`), unless it is ready now (then returns false and watches nothing).
    fn watch(&self, token: &Token, case: usize) -> bool;
    /// Stops watching (harmless if the observer was already woken and removed).
    fn unwatch(&self, token: &Token);
}

/// Whether `q` holds a waiter someone could complete now (not ours, not yet claimed).
fn has_live<T>(q: &VecDeque<WaiterPtr<T>>, own: Option<&Token>) -> bool {
    q.iter().any(|w| {
        // SAFETY: queued, and the caller holds the channel lock.
        let t = unsafe { w.token() };
        !own.is_some_and(|own| std::ptr::eq(own, t)) && t.selected.load(Ordering::Relaxed) == NONE
    })
}

struct RecvCase<'a, T> {
    rx: &'a Receiver<T>,
    out: &'a mut Option<Result<T, RecvError>>,
    waiter: Option<Waiter<T>>,
}

struct SendCase<'a, T> {
    tx: &'a Sender<T>,
    value: Option<T>,
    out: &'a mut Option<Result<(), SendError<T>>>,
    waiter: Option<Waiter<T>>,
}

impl<T> Case for RecvCase<'_, T> {
    fn is_ready(&self) -> bool {
        self.rx.chan.is_ready(Side::Recv)
    }

    fn watch(&self, token: &Token, case: usize) -> bool {
        self.rx.chan.watch(Side::Recv, token, case)
    }

    fn unwatch(&self, token: &Token) {
        self.rx.chan.unwatch(Side::Recv, token);
    }

    fn try_now(&mut self) -> bool {
        let chan = &*self.rx.chan;
        if let Some(ring) = &chan.ring {
            *self.out = match ring.try_pop() {
                Ok(v) => {
                    wake_one(chan, ring, Side::Send);
                    Some(Ok(v))
                }
                Err(PopError::Closed) => Some(Err(RecvError)),
                Err(PopError::Empty) => return false,
            };
            return true;
        }
        let mut g = chan.lock();
        match g.recv_now(None) {
            RecvNow::Got(v, wake) => {
                let watchers = notify(&mut g.send_obs);
                drop(g);
                *self.out = Some(Ok(v));
                if let Some(u) = wake {
                    u.unpark(true);
                }
                wake_watchers(watchers);
                true
            }
            RecvNow::Closed => {
                *self.out = Some(Err(RecvError));
                true
            }
            RecvNow::Empty => false,
        }
    }

    fn register(&mut self, token: &Token, case: usize) -> bool {
        let chan = &*self.rx.chan;
        if let Some(ring) = &chan.ring {
            let w = self.waiter.insert(Waiter::new(token, case, None));
            if ring_register(chan, ring, Side::Recv, w) {
                return true;
            }
            self.waiter = None;
            return false;
        }
        let mut g = chan.lock();
        if !g.buf.is_empty() || g.closed || has_live(&g.sendq, Some(token)) {
            return false;
        }
        let w = self.waiter.insert(Waiter::new(token, case, None));
        g.recvq.push_back(w.ptr());
        let watchers = notify(&mut g.send_obs);
        drop(g);
        wake_watchers(watchers);
        true
    }

    fn unregister(&mut self, token: &Token) {
        if self.waiter.is_some() {
            let chan = &*self.rx.chan;
            match &chan.ring {
                Some(ring) => ring_unregister(chan, ring, Side::Recv, token),
                None => remove_waiter(&mut chan.lock().recvq, token),
            }
            self.waiter = None;
        }
    }

    fn finish(&mut self) -> bool {
        let w = self.waiter.take().expect("a chosen case was queued");
        if self.rx.chan.ring.is_some() {
            // Woken to retry.
            return self.try_now();
        }
        *self.out = Some(if w.closed.load(Ordering::Relaxed) {
            Err(RecvError)
        } else {
            // SAFETY: our token is done: the completer put the value and left.
            Ok(unsafe { w.take() }.expect("a completed receive has its value"))
        });
        true
    }
}

impl<T> Case for SendCase<'_, T> {
    fn is_ready(&self) -> bool {
        self.tx.chan.is_ready(Side::Send)
    }

    fn watch(&self, token: &Token, case: usize) -> bool {
        self.tx.chan.watch(Side::Send, token, case)
    }

    fn unwatch(&self, token: &Token) {
        self.tx.chan.unwatch(Side::Send, token);
    }

    fn try_now(&mut self) -> bool {
        let chan = &*self.tx.chan;
        let v = self
            .value
            .take()
            .expect("a send case keeps its value until chosen");
        if let Some(ring) = &chan.ring {
            *self.out = match ring.try_push(v) {
                Ok(()) => {
                    wake_one(chan, ring, Side::Recv);
                    Some(Ok(()))
                }
                Err(PushError::Closed(v)) => Some(Err(SendError(v))),
                Err(PushError::Full(v)) => {
                    self.value = Some(v);
                    return false;
                }
            };
            return true;
        }
        let mut g = chan.lock();
        match g.send_now(v, chan.cap, None) {
            SendNow::Done(wake) => {
                let watchers = notify(&mut g.recv_obs);
                drop(g);
                *self.out = Some(Ok(()));
                if let Some(u) = wake {
                    u.unpark(true);
                }
                wake_watchers(watchers);
                true
            }
            SendNow::Closed(v) => {
                *self.out = Some(Err(SendError(v)));
                true
            }
            SendNow::Full(v) => {
                self.value = Some(v);
                false
            }
        }
    }

    fn register(&mut self, token: &Token, case: usize) -> bool {
        let chan = &*self.tx.chan;
        if let Some(ring) = &chan.ring {
            // The value stays in the case: a woken sender retries with it.
            let w = self.waiter.insert(Waiter::new(token, case, None));
            if ring_register(chan, ring, Side::Send, w) {
                return true;
            }
            self.waiter = None;
            return false;
        }
        let mut g = chan.lock();
        if g.closed || g.disconnected || g.buf.len() < chan.cap || has_live(&g.recvq, Some(token)) {
            return false;
        }
        let v = self
            .value
            .take()
            .expect("a send case keeps its value until chosen");
        let w = self.waiter.insert(Waiter::new(token, case, Some(v)));
        g.sendq.push_back(w.ptr());
        let watchers = notify(&mut g.recv_obs);
        drop(g);
        wake_watchers(watchers);
        true
    }

    fn unregister(&mut self, token: &Token) {
        if self.waiter.is_some() {
            let chan = &*self.tx.chan;
            if let Some(ring) = &chan.ring {
                ring_unregister(chan, ring, Side::Send, token);
                self.waiter = None;
                return;
            }
            remove_waiter(&mut chan.lock().sendq, token);
            // Not chosen, so never claimed for this case: the value is ours again (kept for
            // a retry of the select).
            let w = self.waiter.take().expect("checked above");
            // SAFETY: off every queue, and no completer claimed the token for this case.
            self.value = unsafe { w.take() };
        }
    }

    fn finish(&mut self) -> bool {
        let w = self.waiter.take().expect("a chosen case was queued");
        if self.tx.chan.ring.is_some() {
            // Woken to retry, with the value the case kept.
            return self.try_now();
        }
        *self.out = Some(if w.closed.load(Ordering::Relaxed) {
            // SAFETY: our token is done: the closer left the value in the slot.
            let v = unsafe { w.take() };
            Err(SendError(v.expect("a closed send keeps its value")))
        } else {
            Ok(())
        });
        true
    }
}

/// The machinery behind [`select!`](crate::select): a set of channel operations of which
/// exactly one completes.
///
/// Each operation writes its outcome to the `out` slot given when it was added. Send
/// values are moved in when the case is added (as Go evaluates them before the select);
/// the value of a send case that is not chosen is dropped.
pub struct Select<'a> {
    cases: Vec<Box<dyn Case + 'a>>,
    /// The first ready case in the order added wins (else a uniformly random one).
    biased: bool,
}

impl Default for Select<'_> {
    fn default() -> Self {
        Select::new()
    }
}

impl fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("cases", &self.cases.len())
            .finish()
    }
}

impl<'a> Select<'a> {
    /// An empty selection.
    pub fn new() -> Select<'a> {
        Select {
            cases: Vec::new(),
            biased: false,
        }
    }

    /// An empty selection in which, of several ready cases, the first added wins
    /// (`select_biased!`).
    pub fn new_biased() -> Select<'a> {
        Select {
            cases: Vec::new(),
            biased: true,
        }
    }

    /// Adds a receive case; returns its index.
    pub fn recv<T: 'a>(
        &mut self,
        rx: &'a Receiver<T>,
        out: &'a mut Option<Result<T, RecvError>>,
    ) -> usize {
        self.cases.push(Box::new(RecvCase {
            rx,
            out,
            waiter: None,
        }));
        self.cases.len() - 1
    }

    /// Adds a send case; returns its index.
    pub fn send<T: 'a>(
        &mut self,
        tx: &'a Sender<T>,
        value: T,
        out: &'a mut Option<Result<(), SendError<T>>>,
    ) -> usize {
        self.cases.push(Box::new(SendCase {
            tx,
            value: Some(value),
            out,
            waiter: None,
        }));
        self.cases.len() - 1
    }

    /// Waits until one case completes; returns its index.
    pub fn wait(self) -> usize {
        self.run(Blocking::Forever)
            .expect("a select with no deadline completes a case")
    }

    /// Completes a case that is ready now, if any.
    pub fn try_wait(self) -> Option<usize> {
        self.run(Blocking::No)
    }

    /// Waits at most `timeout` for a case to complete.
    pub fn wait_timeout(self, timeout: Duration) -> Option<usize> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.run(Blocking::Until(d)),
            None => self.run(Blocking::Forever),
        }
    }

    /// Waits until one case's operation can proceed (or fail as closed) and returns its
    /// index, without performing it (crossbeam's `Select::ready`): the caller then does the
    /// operation itself, say with `try_recv`, which can still find the channel empty if
    /// another thread got there first. Send cases keep their values. Of several ready cases
    /// one is picked uniformly (the first added, for [`Select::new_biased`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use gort_runtime::chan::{self, Select};
    ///
    /// let (tx1, rx1) = chan::unbounded::<u32>();
    /// let (_tx2, rx2) = chan::unbounded::<u32>();
    /// tx1.send(3).unwrap();
    /// let (mut o1, mut o2) = (None, None);
    /// let mut sel = Select::new();
    /// let i1 = sel.recv(&rx1, &mut o1);
    /// sel.recv(&rx2, &mut o2);
    /// assert_eq!(sel.ready(), i1);
    /// assert_eq!(rx1.try_recv(), Ok(3));
    /// ```
    pub fn ready(&mut self) -> usize {
        self.run_ready(Blocking::Forever)
            .expect("a ready with no deadline finds a case")
    }

    /// The index of a case that is ready now, if any (as [`Select::ready`], without waiting).
    pub fn try_ready(&mut self) -> Option<usize> {
        self.run_ready(Blocking::No)
    }

    /// As [`Select::ready`], waiting at most `timeout`.
    pub fn ready_timeout(&mut self, timeout: Duration) -> Option<usize> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.run_ready(Blocking::Until(d)),
            None => self.run_ready(Blocking::Forever),
        }
    }

    fn run_ready(&mut self, how: Blocking) -> Option<usize> {
        let n = self.cases.len();
        let deadline = match how {
            Blocking::Until(d) => Some(d),
            _ => None,
        };
        if n == 0 {
            return empty_select(how);
        }
        loop {
            let order = self.order();
            if let Some(&i) = order.iter().find(|&&i| self.cases[i].is_ready()) {
                return Some(i);
            }
            if matches!(how, Blocking::No) {
                return None;
            }
            // Watch every case's channel, all sharing one token; whoever may have made one
            // ready claims the token and wakes us, and we look again.
            let token = Token::new(false);
            let (watched, became_ready) = self.queue_all(&order, |c, i| c.watch(&token, i));
            let woken = if became_ready {
                if !token.cancel() {
                    // Claimed meanwhile: let the waker finish with the token.
                    token.wait(None, Wait::Select);
                }
                None
            } else if token.wait(deadline, Wait::Select) {
                Some(token.selected())
            } else {
                for &i in &watched {
                    self.cases[i].unwatch(&token);
                }
                return None;
            };
            for &i in &watched {
                self.cases[i].unwatch(&token);
            }
            if let Some(c) = woken {
                if self.cases[c].is_ready() {
                    return Some(c);
                }
            }
            // Beaten to it, or something else became ready: look again.
        }
    }

    /// Queues a waiter (or an observer) for each case in `order` with `queue`, stopping at
    /// the first case that turns out to be ready (`queue` returned false). Returns the cases
    /// queued and whether one was ready.
    fn queue_all(
        &mut self,
        order: &[usize],
        mut queue: impl FnMut(&mut dyn Case, usize) -> bool,
    ) -> (Vec<usize>, bool) {
        let mut queued = Vec::with_capacity(order.len());
        for &i in order {
            if !queue(&mut *self.cases[i], i) {
                return (queued, true);
            }
            queued.push(i);
        }
        (queued, false)
    }

    /// The order in which to try the cases: uniformly random, or as added when biased.
    fn order(&self) -> Vec<usize> {
        let n = self.cases.len();
        if self.biased {
            (0..n).collect()
        } else {
            shuffled(n)
        }
    }

    fn run(mut self, how: Blocking) -> Option<usize> {
        let n = self.cases.len();
        let deadline = match how {
            Blocking::Until(d) => Some(d),
            _ => None,
        };
        if n == 0 {
            return empty_select(how);
        }
        loop {
            let order = self.order();
            // Pass 1: the first ready case in a uniformly random order (Go's rule), or in
            // the order added (`select_biased!`).
            for &i in &order {
                if self.cases[i].try_now() {
                    return Some(i);
                }
            }
            if matches!(how, Blocking::No) {
                return None;
            }
            // Pass 2: a waiter on every channel, all sharing one token.
            let token = Token::new(false);
            let (queued, became_ready) = self.queue_all(&order, |c, i| c.register(&token, i));
            let chosen = if became_ready {
                // A case became ready after pass 1: withdraw and start over, unless a
                // completer already chose one of the cases queued so far.
                if token.cancel() {
                    None
                } else {
                    token.wait(None, Wait::Select);
                    Some(token.selected())
                }
            } else if token.wait(deadline, Wait::Select) {
                Some(token.selected())
            } else {
                // Timed out (the token is cancelled).
                for &i in &queued {
                    self.cases[i].unregister(&token);
                }
                return None;
            };
            match chosen {
                Some(c) => {
                    let done = self.cases[c].finish();
                    for &i in &queued {
                        if i != c {
                            self.cases[i].unregister(&token);
                        }
                    }
                    if done {
                        return Some(c);
                    }
                    // Woken to retry a ring channel, and beaten to it: start over.
                }
                None => {
                    for &i in &queued {
                        self.cases[i].unregister(&token);
                    }
                }
            }
        }
    }
}

/// A select with no cases: Go's empty select blocks forever; with a deadline it times out.
fn empty_select(how: Blocking) -> Option<usize> {
    let d = match how {
        Blocking::No => return None,
        Blocking::Forever => None,
        Blocking::Until(d) => Some(d),
    };
    crate::dump::set_wait(Wait::Select);
    let mut gave_way = false;
    loop {
        match d {
            None => park(),
            Some(d) => {
                if !park_until(d, &mut gave_way) {
                    return None;
                }
            }
        }
    }
}

/// 0..n in a uniformly random order.
fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rand() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// A cheap thread-local xorshift generator (not inlined: see `sched.rs` on thread-locals).
#[inline(never)]
fn rand() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            // Seed from the address of the slot and the clock.
            x = (s as *const Cell<u64> as u64)
                ^ Instant::now().elapsed().as_nanos() as u64
                ^ 0x9E37_79B9_7F4A_7C15;
            x |= 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}
