//! `gort::net`: sockets that park only the green thread, on the runtime's netpoller.
//!
//! The types have std's names and signatures — [`TcpListener`], [`TcpStream`],
//! [`UdpSocket`], [`unix::UnixListener`], [`unix::UnixStream`], [`unix::UnixDatagram`] — so
//! that a program written with one OS thread per connection becomes a program with one
//! green thread per connection by changing `std::net` to `gort::net`. A read, write, accept
//! or connect that would block parks the calling green thread; the runtime's poller (epoll)
//! readies it when the socket is ready, and the green thread's M runs other green threads
//! meanwhile. Called from a plain OS thread, the same calls block that thread (in
//! `poll(2)`), so the types work everywhere.
//!
//! [`PollFd`] does the same for any other non-blocking file descriptor (a pipe, an
//! eventfd, inotify, a serial port).
//!
//! Host names given to `bind`/`connect`/`send_to` are resolved inside
//! [`blocking`](crate::blocking), since the system resolver blocks its thread.
//!
//! Every socket is non-blocking and registered with the poller while it is a `gort::net`
//! type; `into_std` (and `From`) give back the std type, deregistered and blocking again.

mod poller;
mod ready;
mod source;
mod tcp;
mod udp;
pub mod unix;

pub use ready::PollFd;
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;

pub use std::net::{
    AddrParseError, IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6,
    ToSocketAddrs,
};

pub(crate) use poller::{poller_if_init, wake_sleeper};

use std::io;

/// `recv(2)` and `send(2)` on a stream socket, as direct system calls.
///
/// glibc's `recv`/`send` wrappers are pthread cancellation points: in a process with more
/// than one thread (a gort program always has several) each call brackets the system call
/// with two atomic read-modify-writes of the thread's cancellation state. gort never uses
/// `pthread_cancel`, and these two calls are on every round trip of every connection, so
/// they go straight to the kernel (as Go's do); std's types would call the wrappers. On
/// x86-64 and AArch64 the call is one instruction inline, and its error comes back as the
/// kernel's negative number: no call into libc's `syscall` and no `errno` (a thread-local,
/// see `errno.rs`). Elsewhere, libc's `syscall`.
mod sys {
    use std::io;
    use std::os::fd::RawFd;

    /// A system call with up to six arguments: the kernel's result (`-errno` on failure).
    ///
    /// # Safety
    /// The arguments must be valid for system call `nr` (as for `libc::syscall`).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn syscall6(nr: libc::c_long, a: [usize; 6]) -> isize {
        let r: isize;
        // The x86-64 Linux convention: number in rax, arguments in rdi, rsi, rdx, r10, r8,
        // r9, result in rax; the instruction clobbers rcx and r11 and nothing else (flags
        // come back restored). The asm may read and write memory.
        // SAFETY: registers as the kernel expects; the caller vouches for the arguments.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => r,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                in("r10") a[3],
                in("r8") a[4],
                in("r9") a[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack, preserves_flags),
            )
        };
        r
    }

    /// As above, for AArch64.
    ///
    /// # Safety
    /// As above.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn syscall6(nr: libc::c_long, a: [usize; 6]) -> isize {
        let r: isize;
        // The AArch64 Linux convention: number in x8, arguments in x0 - x5, result in x0;
        // nothing else is clobbered. The asm may read and write memory.
        // SAFETY: registers as the kernel expects; the caller vouches for the arguments.
        unsafe {
            std::arch::asm!(
                "svc 0",
                in("x8") nr as usize,
                inlateout("x0") a[0] => r,
                in("x1") a[1],
                in("x2") a[2],
                in("x3") a[3],
                in("x4") a[4],
                in("x5") a[5],
                options(nostack, preserves_flags),
            )
        };
        r
    }

    /// Elsewhere: libc's `syscall`, its `errno` turned back into the kernel's convention.
    ///
    /// # Safety
    /// As above.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[inline(never)]
    unsafe fn syscall6(nr: libc::c_long, a: [usize; 6]) -> isize {
        // SAFETY: per the caller.
        let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if r < 0 {
            // Read in this never-inlined frame, on the thread that made the call.
            -(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO) as isize)
        } else {
            r as isize
        }
    }

    fn ret(r: isize) -> io::Result<usize> {
        // The kernel reports an error as -errno, in -4095..=-1.
        if r < 0 {
            Err(io::Error::from_raw_os_error(-r as i32))
        } else {
            Ok(r as usize)
        }
    }

    /// `recv(fd, buf, 0)`.
    pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        // The address arguments of `recvfrom` are null (not wanted); `fd` is owned by the
        // caller's socket, which outlives the call.
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
        ret(unsafe {
            syscall6(
                libc::SYS_recvfrom,
                [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
            )
        })
    }

    /// `send(fd, buf, MSG_NOSIGNAL)`: a peer that has gone is an `EPIPE` error, never a
    /// `SIGPIPE`.
    pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
        // The destination address is null (a connected stream); `fd` is owned by the
        // caller's socket, which outlives the call.
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call.
        ret(unsafe {
            syscall6(
                libc::SYS_sendto,
                [
                    fd as usize,
                    buf.as_ptr() as usize,
                    buf.len(),
                    libc::MSG_NOSIGNAL as usize,
                    0,
                    0,
                ],
            )
        })
    }
}

/// Resolves `addr`, inside `blocking` (a host name means a DNS look-up).
fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    crate::blocking(|| addr.to_socket_addrs().map(Iterator::collect))
}

/// Tries `f` on each address in turn, as std does: the first success, else the last error.
fn each_addr<T>(
    addrs: &[SocketAddr],
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addrs {
        match f(*a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// `addr` as a C socket address and its length.
fn socket_addr_raw(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The fd traits and the conversions to and from the std type, for a type whose field
/// `src` is a `Source<$std>`.
macro_rules! impl_fd_traits {
    ($t:ty, $std:ty) => {
        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.src.get().as_fd()
            }
        }
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.src.get().as_raw_fd()
            }
        }
        impl std::os::fd::IntoRawFd for $t {
            /// The fd, deregistered and blocking again.
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                std::os::fd::IntoRawFd::into_raw_fd(self.into_std())
            }
        }
        impl std::os::fd::FromRawFd for $t {
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> Self {
                // SAFETY: the caller's contract: `fd` is an open socket of this kind that
                // nobody else owns.
                <$t>::from(unsafe { <$std as std::os::fd::FromRawFd>::from_raw_fd(fd) })
            }
        }
        impl From<$std> for $t {
            /// Makes the socket non-blocking and registers it with the runtime's poller.
            fn from(s: $std) -> Self {
                // Fails only for an fd that is not open, whose every use then fails anyway.
                let _ =
                    $crate::net::source::set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(&s), true);
                Self {
                    src: $crate::net::source::Source::new(s),
                }
            }
        }
        impl From<$t> for $std {
            fn from(s: $t) -> $std {
                s.into_std()
            }
        }
        impl From<std::os::fd::OwnedFd> for $t {
            fn from(fd: std::os::fd::OwnedFd) -> Self {
                <$t>::from(<$std>::from(fd))
            }
        }
        impl From<$t> for std::os::fd::OwnedFd {
            fn from(s: $t) -> std::os::fd::OwnedFd {
                std::os::fd::OwnedFd::from(s.into_std())
            }
        }
    };
}
use impl_fd_traits;

/// `Read` and `Write` for a stream type and for a shared reference to it (one green thread
/// reads while another writes), for a type whose field `src` is a `Source`.
macro_rules! impl_stream_io {
    ($t:ty) => {
        impl std::io::Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::io::Read::read(&mut &*self, buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                std::io::Read::read_vectored(&mut &*self, bufs)
            }
        }

        impl std::io::Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let len = buf.len();
                self.src.read_stream(len, |s| {
                    $crate::net::sys::recv(std::os::fd::AsRawFd::as_raw_fd(s), buf)
                })
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.src
                    .read_stream(len, |mut s| std::io::Read::read_vectored(&mut s, bufs))
            }
        }

        impl std::io::Write for $t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::io::Write::write(&mut &*self, buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                std::io::Write::write_vectored(&mut &*self, bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for &$t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.src.io($crate::net::poller::Dir::Write, |s| {
                    $crate::net::sys::send(std::os::fd::AsRawFd::as_raw_fd(s), buf)
                })
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.src.io($crate::net::poller::Dir::Write, |mut s| {
                    std::io::Write::write_vectored(&mut s, bufs)
                })
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}
use impl_stream_io;

/// The per-call timeouts of a socket type whose field `src` is a `Source`: std's
/// `set_read_timeout`/`set_write_timeout`/`read_timeout`/`write_timeout`.
macro_rules! impl_timeouts {
    ($t:ty) => {
        impl $t {
            /// Sets the timeout of each read or receive (`None`: wait forever); a call that
            /// waits longer fails with `ErrorKind::TimedOut`. `Some(ZERO)` is `InvalidInput`,
            /// as in std.
            pub fn set_read_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
                self.src.set_timeout($crate::net::poller::Dir::Read, t)
            }

            /// Sets the timeout of each write or send, as `set_read_timeout`.
            pub fn set_write_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
                self.src.set_timeout($crate::net::poller::Dir::Write, t)
            }

            /// The read timeout.
            pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.src.timeout($crate::net::poller::Dir::Read))
            }

            /// The write timeout.
            pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.src.timeout($crate::net::poller::Dir::Write))
            }
        }
    };
}
use impl_timeouts;
