//! The `select!` macro: wait on several channel operations, run the arm of the one that
//! completes (crossbeam-channel's syntax, Go's semantics).

/// Waits on several channel operations at once and runs the arm of the one that completes.
///
/// ```
/// # use gort_runtime::{chan, select};
/// # use std::time::Duration;
/// # let (tx, rx) = chan::bounded::<u32>(1);
/// # let value = 1;
/// # let timeout = Duration::from_millis(1);
/// select! {
///     recv(rx) -> msg => { /* msg: Result<T, RecvError> */ },
///     send(tx, value) -> res => { /* res: Result<(), SendError<T>> */ },
///     default => { /* nothing was ready */ },
/// }
/// select! {
///     recv(rx) -> msg => { /* ... */ },
///     default(timeout) => { /* nothing completed within `timeout` */ },
/// }
/// ```
///
/// Every arm form of crossbeam-channel's `select!` is accepted: a block body with or without
/// a trailing comma, an expression body followed by a comma (or ending the select),
/// `default()` for `default`, and trailing commas inside the operands. The channel
/// expressions are evaluated once, before the select, and their temporaries live through it
/// (so `recv(opt.as_ref().unwrap_or(&chan::never()))` works); [`chan::never`] switches an
/// arm off.
///
/// [`chan::never`]: crate::chan::never
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
        $crate::__select_parse!(@cases new [] @default [] $($tokens)*)
    };
}

/// [`select!`], but when several operations are ready the first of them in the order
/// written wins (crossbeam's `select_biased!`; Go has no such form). With no `default`, it
/// still parks on all of them at once.
///
/// # Examples
///
/// ```
/// use gort_runtime::{chan, select_biased};
///
/// let (tx1, rx1) = chan::bounded::<u32>(1);
/// let (tx2, rx2) = chan::bounded::<u32>(1);
/// tx1.send(1).unwrap();
/// tx2.send(2).unwrap();
/// let first = select_biased! {
///     recv(rx2) -> m => m.unwrap(),
///     recv(rx1) -> m => m.unwrap(),
/// };
/// assert_eq!(first, 2);
/// ```
#[macro_export]
macro_rules! select_biased {
    ($($tokens:tt)*) => {
        $crate::__select_parse!(@cases new_biased [] @default [] $($tokens)*)
    };
}

/// Internal: parses `select!` arms one at a time, collecting
/// `[kind (args) out_slot index_var pattern body]` entries, then expands. An arm's head is
/// parsed first (`@cases`), then its body (`@body`/`@dbody`): a block body with or without a
/// trailing comma, or an expression body followed by a comma or ending the select. (One rule
/// per form: an optional comma followed by the rest of the arms would be ambiguous.)
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    // Heads.
    (@cases $new:ident [$($c:tt)*] @default [$($d:tt)*]
        recv($r:expr $(,)?) -> $p:pat => $($rest:tt)*) => {
        $crate::__select_parse!(@body $new [$($c)*] [$($d)*] [recv ($r) ($p)] $($rest)*)
    };
    (@cases $new:ident [$($c:tt)*] @default [$($d:tt)*]
        send($s:expr, $v:expr $(,)?) -> $p:pat => $($rest:tt)*) => {
        $crate::__select_parse!(@body $new [$($c)*] [$($d)*] [send ($s, $v) ($p)] $($rest)*)
    };
    (@cases $new:ident [$($c:tt)*] @default []
        default $(())? => $($rest:tt)*) => {
        $crate::__select_parse!(@dbody $new [$($c)*] [now] $($rest)*)
    };
    (@cases $new:ident [$($c:tt)*] @default []
        default($t:expr $(,)?) => $($rest:tt)*) => {
        $crate::__select_parse!(@dbody $new [$($c)*] [($t)] $($rest)*)
    };
    (@cases $new:ident [$($c:tt)*] @default [$($d:tt)+] default $($rest:tt)*) => {
        ::core::compile_error!("select! takes at most one `default` arm")
    };
    // Bodies of recv and send arms.
    (@body $new:ident [$($c:tt)*] [$($d:tt)*] [$kind:ident ($($args:tt)*) ($p:pat)]
        $body:block, $($rest:tt)*) => {
        $crate::__select_parse!(@cases $new [$($c)* [$kind ($($args)*) __out __idx __ch ($p) $body]] @default [$($d)*] $($rest)*)
    };
    (@body $new:ident [$($c:tt)*] [$($d:tt)*] [$kind:ident ($($args:tt)*) ($p:pat)]
        $body:block $($rest:tt)*) => {
        $crate::__select_parse!(@cases $new [$($c)* [$kind ($($args)*) __out __idx __ch ($p) $body]] @default [$($d)*] $($rest)*)
    };
    (@body $new:ident [$($c:tt)*] [$($d:tt)*] [$kind:ident ($($args:tt)*) ($p:pat)]
        $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(@cases $new [$($c)* [$kind ($($args)*) __out __idx __ch ($p) $body]] @default [$($d)*] $($rest)*)
    };
    (@body $new:ident [$($c:tt)*] [$($d:tt)*] [$kind:ident ($($args:tt)*) ($p:pat)]
        $body:expr) => {
        $crate::__select_parse!(@cases $new [$($c)* [$kind ($($args)*) __out __idx __ch ($p) $body]] @default [$($d)*])
    };
    // Bodies of the default arm.
    (@dbody $new:ident [$($c:tt)*] [$($d:tt)*] $body:block, $($rest:tt)*) => {
        $crate::__select_parse!(@cases $new [$($c)*] @default [$($d)* $body] $($rest)*)
    };
    (@dbody $new:ident [$($c:tt)*] [$($d:tt)*] $body:block $($rest:tt)*) => {
        $crate::__select_parse!(@cases $new [$($c)*] @default [$($d)* $body] $($rest)*)
    };
    (@dbody $new:ident [$($c:tt)*] [$($d:tt)*] $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!(@cases $new [$($c)*] @default [$($d)* $body] $($rest)*)
    };
    (@dbody $new:ident [$($c:tt)*] [$($d:tt)*] $body:expr) => {
        $crate::__select_parse!(@cases $new [$($c)*] @default [$($d)* $body])
    };
    // Everything parsed.
    (@cases $new:ident [$([$kind:ident ($($args:tt)*) $out:ident $idx:ident $ch:ident ($p:pat) $body:expr])*] @default [$($d:tt)*]) => {
        $crate::__select_expand!($new [$([$kind ($($args)*) $out $idx $ch ($p) $body])*] [$($d)*])
    };
    // Anything else.
    (@cases $new:ident [$($c:tt)*] @default [$($d:tt)*] $($rest:tt)+) => {
        ::core::compile_error!(::core::concat!(
            "select!: expected `recv(r) -> pat => body`, `send(s, v) -> pat => body`, ",
            "`default => body` or `default(timeout) => body`, found `",
            ::core::stringify!($($rest)+), "`"
        ))
    };
}

/// Internal: expands parsed `select!` arms.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_expand {
    ($new:ident [$([$kind:ident ($($args:tt)*) $out:ident $idx:ident $ch:ident ($p:pat) $body:expr])*] [$($d:tt)*]) => {{
        // Channels (and send values) are evaluated first, in order, as Go does, as the
        // scrutinee of one `match`: the temporaries of those expressions (a `time::after(..)`
        // channel, the `never()` in `opt.as_ref().unwrap_or(&never())`) live until the end of
        // the match, through the whole select.
        match ($( $crate::__select_operand!($kind ($($args)*)), )*) {
            ($( $ch, )*) => {
                $( let mut $out = ::core::option::Option::None; )*
                let __chosen: ::core::option::Option<usize>;
                $( let $idx: usize; )*
                {
                    let mut __sel = $crate::chan::Select::$new();
                    $( $idx = $crate::__select_add!(__sel, $ch, $kind ($($args)*), &mut $out); )*
                    __chosen = $crate::__select_wait!(__sel, $($d)*);
                }
                $crate::__select_dispatch!(__chosen, [$( [$idx $out ($p) $body] )*], $($d)*)
            }
        }
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_operand {
    (recv ($r:expr)) => {
        &$r
    };
    (send ($s:expr, $v:expr)) => {
        (&$s, $v)
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
