//! The `select!` macro: wait on several channel operations, run the arm of the one that
//! completes (crossbeam-channel's syntax, Go's semantics).

/// Waits on several channel operations at once and runs the arm of the one that completes.
///
/// ```text
/// select! {
///     recv(rx) -> msg => { /* msg: Result<T, RecvError> */ },
///     send(tx, value) -> res => { /* res: Result<(), SendError<T>> */ },
///     default => { /* nothing was ready */ },
///     // or: default(timeout) => { /* nothing completed within `timeout` */ },
/// }
/// ```
///
/// - When several operations are ready, one is chosen uniformly at random (Go's rule).
/// - With no ready operation and no `default`, the green thread parks once, on all the
///   channels, until one operation completes. `default` makes the select non-blocking;
///   `default(timeout)` waits at most `timeout`.
/// - An operation on a closed channel is ready: `recv` yields `Err(RecvError)` once the
///   channel is drained, `send` yields `Err(SendError(value))`.
/// - Send values are evaluated before the select starts, as in Go; the value of a send arm
///   that is not chosen is dropped.
///
/// # Examples
///
/// ```
/// use gort_runtime::{chan, select};
/// use std::time::Duration;
///
/// let (tx, rx) = chan::bounded::<u32>(1);
/// let (_tx2, rx2) = chan::bounded::<u32>(1);
/// tx.send(7).unwrap();
/// let got = select! {
///     recv(rx) -> m => m.unwrap(),
///     recv(rx2) -> m => m.unwrap() + 100,
///     default(Duration::from_millis(10)) => 0,
/// };
/// assert_eq!(got, 7);
/// ```
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__select_parse!(@cases [] @default [] $($tokens)*)
    };
}

/// Internal: parses `select!` arms one at a time, collecting
/// `[kind (args) out_slot index_var pattern body]` entries, then expands.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    // recv arm, block body with optional comma
    (@cases [$($c:tt)*] @default [$($d:tt)*]
        recv($r:expr) -> $p:pat => $body:block $(,)? $($rest:tt)*) => {
        $crate::__select_parse!(@cases [$($c)* [recv ($r) __out __idx __ch ($p) $body]] @default [$($d)*] $($rest)*)
    };
    // recv arm, expression body followed by a comma
    (@cases [$($c:tt)*] @default [$($d:tt)*]
        recv($r:expr) -> $p:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(@cases [$($c)* [recv ($r) __out __idx __ch ($p) $body]] @default [$($d)*] $($rest)*)
    };
    // recv arm, last, expression body
    (@cases [$($c:tt)*] @default [$($d:tt)*]
        recv($r:expr) -> $p:pat => $body:expr) => {
        $crate::__select_parse!(@cases [$($c)* [recv ($r) __out __idx __ch ($p) $body]] @default [$($d)*])
    };
    (@cases [$($c:tt)*] @default [$($d:tt)*]
        send($s:expr, $v:expr) -> $p:pat => $body:block $(,)? $($rest:tt)*) => {
        $crate::__select_parse!(@cases [$($c)* [send ($s, $v) __out __idx __ch ($p) $body]] @default [$($d)*] $($rest)*)
    };
    (@cases [$($c:tt)*] @default [$($d:tt)*]
        send($s:expr, $v:expr) -> $p:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(@cases [$($c)* [send ($s, $v) __out __idx __ch ($p) $body]] @default [$($d)*] $($rest)*)
    };
    (@cases [$($c:tt)*] @default [$($d:tt)*]
        send($s:expr, $v:expr) -> $p:pat => $body:expr) => {
        $crate::__select_parse!(@cases [$($c)* [send ($s, $v) __out __idx __ch ($p) $body]] @default [$($d)*])
    };
    // default arms (at most one)
    (@cases [$($c:tt)*] @default []
        default => $body:block $(,)? $($rest:tt)*) => {
        $crate::__select_parse!(@cases [$($c)*] @default [now $body] $($rest)*)
    };
    (@cases [$($c:tt)*] @default []
        default => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(@cases [$($c)*] @default [now $body] $($rest)*)
    };
    (@cases [$($c:tt)*] @default []
        default => $body:expr) => {
        $crate::__select_parse!(@cases [$($c)*] @default [now $body])
    };
    (@cases [$($c:tt)*] @default []
        default($t:expr) => $body:block $(,)? $($rest:tt)*) => {
        $crate::__select_parse!(@cases [$($c)*] @default [($t) $body] $($rest)*)
    };
    (@cases [$($c:tt)*] @default []
        default($t:expr) => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(@cases [$($c)*] @default [($t) $body] $($rest)*)
    };
    (@cases [$($c:tt)*] @default []
        default($t:expr) => $body:expr) => {
        $crate::__select_parse!(@cases [$($c)*] @default [($t) $body])
    };
    (@cases [$($c:tt)*] @default [$($d:tt)+] default $($rest:tt)*) => {
        compile_error!("select! takes at most one `default` arm")
    };
    // everything parsed
    (@cases [$([$kind:ident ($($args:tt)*) $out:ident $idx:ident $ch:ident ($p:pat) $body:expr])*] @default [$($d:tt)*]) => {
        $crate::__select_expand!([$([$kind ($($args)*) $out $idx $ch ($p) $body])*] [$($d)*])
    };
}

/// Internal: expands parsed `select!` arms.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_expand {
    ([$([$kind:ident ($($args:tt)*) $out:ident $idx:ident $ch:ident ($p:pat) $body:expr])*] [$($d:tt)*]) => {{
        // Channels (and send values) are evaluated first, in order, as Go does; `let x =
        // &expr;` keeps a temporary channel (such as `time::after(..)`) alive.
        $( $crate::__select_bind!($ch, $kind ($($args)*)); )*
        $( let mut $out = ::core::option::Option::None; )*
        let __chosen: ::core::option::Option<usize>;
        $( let $idx: usize; )*
        {
            let mut __sel = $crate::chan::Select::new();
            $( $idx = $crate::__select_add!(__sel, $ch, $kind ($($args)*), &mut $out); )*
            __chosen = $crate::__select_wait!(__sel, $($d)*);
        }
        $crate::__select_dispatch!(__chosen, [$( [$idx $out ($p) $body] )*], $($d)*)
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_bind {
    ($ch:ident, recv ($r:expr)) => {
        let $ch = &$r;
    };
    ($ch:ident, send ($s:expr, $v:expr)) => {
        let $ch = (&$s, $v);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_add {
    ($sel:ident, $ch:ident, recv ($r:expr), $out:expr) => {
        $sel.recv($ch, $out)
    };
    ($sel:ident, $ch:ident, send ($s:expr, $v:expr), $out:expr) => {
        $sel.send($ch.0, $ch.1, $out)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_wait {
    ($sel:ident, ) => {
        ::core::option::Option::Some($sel.wait())
    };
    ($sel:ident, now $body:expr) => {
        $sel.try_wait()
    };
    ($sel:ident, ($t:expr) $body:expr) => {
        $sel.wait_timeout($t)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_dispatch {
    ($chosen:ident, [$( [$idx:ident $out:ident ($p:pat) $body:expr] )*], $($d:tt)*) => {
        match $chosen {
            $(
                ::core::option::Option::Some(__i) if __i == $idx => {
                    let $p = $out.take().expect("the chosen arm has its outcome");
                    $body
                }
            )*
            ::core::option::Option::Some(_) => ::core::unreachable!("select! chose an unknown arm"),
            ::core::option::Option::None => $crate::__select_default!($($d)*),
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_default {
    () => {
        ::core::unreachable!("a blocking select! always chooses an arm")
    };
    (now $body:expr) => {
        $body
    };
    (($t:expr) $body:expr) => {
        $body
    };
}
