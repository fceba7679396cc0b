//! gort::net: sockets that park only the green thread. Every scenario runs in child
//! processes under GORT_MAXPROCS 1, 2 and 4 (a blocked M shows as a hang at 1 P), with a
//! deadline that turns a hang into a failure. Counts are checked exactly; nothing asserts
//! on timing.
mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gort::net::{PollFd, TcpListener, TcpStream, UdpSocket};

/// An echo server on a fresh port: a green thread accepts, one per connection echoes.
fn echo_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(gort::go!(move || serve_echo(l)));
    addr
}

fn serve_echo(l: TcpListener) {
    {
        for c in l.incoming() {
            let mut c = match c {
                Ok(c) => c,
                Err(e) => {
                    // Out of fds, say: back off instead of spinning (as Go's http server).
                    eprintln!("echo server: accept: {e}; retrying in 5 ms");
                    gort::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            drop(gort::go!(move || {
                let mut buf = [0u8; 1024];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }));
        }
    }
}

/// Set (to "server") in the grandchild that serves the 10,000-connection test: client and
/// server sockets in one process would need 20,000 fds, the hard limit here.
const ROLE_VAR: &str = "GORT_TEST_NET_ROLE";

/// Starts the echo server for `test` as a process of its own (the test binary again, running
/// `test` with ROLE_VAR=server, with the caller's P count); returns it and its address. The
/// caller kills it.
fn echo_server_child(test: &str) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead;
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, test)
        .env(ROLE_VAR, "server")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        match out.read_line(&mut line) {
            // The test harness prints "test <name> ... " on the same line.
            Ok(n) if n > 0 => {
                if let Some(i) = line.find("listening on ") {
                    break line[i + "listening on ".len()..].trim().parse().ok();
                }
            }
            _ => break None,
        }
    };
    match addr {
        Some(a) => (child, a),
        None => {
            let _ = child.kill();
            let status = child.wait();
            panic!("the echo server did not start: {status:?}, {line:?}");
        }
    }
}

/// 10,000 connections open at once, each a green thread sending ten distinct messages and
/// checking every echoed byte; the totals are exact.
#[test]
fn ten_thousand_connections_every_byte_accounted() {
    if is_child("ten_thousand_connections_every_byte_accounted") {
        if std::env::var(ROLE_VAR).as_deref() == Ok("server") {
            // The server's process: serve until the client's process kills it.
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            println!("listening on {}", l.local_addr().unwrap());
            gort::go!(move || serve_echo(l)).join().unwrap();
            return;
        }
        let (mut server, addr) = echo_server_child("ten_thousand_connections_every_byte_accounted");
        let n = 10_000usize;
        let open = Arc::new(AtomicUsize::new(0));
        let all_open = Arc::new(AtomicBool::new(false));
        let slots = Arc::new(gort::sync::Semaphore::new(256));
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (open, all_open, slots) = (open.clone(), all_open.clone(), slots.clone());
                gort::go!(move || -> u64 {
                    let permit = slots.acquire();
                    let mut c = TcpStream::connect(addr).expect("connect");
                    drop(permit);
                    open.fetch_add(1, Ordering::SeqCst);
                    // Every connection is open before any talks: 10,000 at once.
                    while !all_open.load(Ordering::SeqCst) {
                        gort::sleep(Duration::from_millis(1));
                    }
                    let mut bytes = 0u64;
                    for k in 0..10u32 {
                        let msg: Vec<u8> = (0..(64 + (i + k as usize) % 200))
                            .map(|j| (i as u32 ^ k ^ j as u32) as u8)
                            .collect();
                        c.write_all(&msg).expect("write");
                        let mut back = vec![0u8; msg.len()];
                        c.read_exact(&mut back).expect("read");
                        assert_eq!(back, msg, "connection {i} message {k}");
                        bytes += msg.len() as u64;
                    }
                    bytes
                })
            })
            .collect();
        while open.load(Ordering::SeqCst) < n {
            std::thread::sleep(Duration::from_millis(5));
        }
        all_open.store(true, Ordering::SeqCst);
        let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        let want: u64 = (0..n)
            .map(|i| (0..10).map(|k| 64 + ((i + k) % 200) as u64).sum::<u64>())
            .sum();
        assert_eq!(total, want);
        let _ = server.kill();
        let _ = server.wait();
        println!("child done: {total} bytes echoed over {n} connections");
        return;
    }
    run_procs("ten_thousand_connections_every_byte_accounted", &[]);
}

/// One green thread writes while another reads the same stream (`&TcpStream`), with the
/// peer echoing: every byte comes back in order.
#[test]
fn reader_and_writer_on_one_stream() {
    if is_child("reader_and_writer_on_one_stream") {
        let addr = echo_server();
        let c = Arc::new(TcpStream::connect(addr).unwrap());
        let total = 2_000_000usize;
        let w = c.clone();
        let writer = gort::go!(move || {
            let mut sent = 0;
            let mut k = 0u8;
            while sent < total {
                let chunk: Vec<u8> = (0..4096).map(|j| k.wrapping_add(j as u8)).collect();
                let n = chunk.len().min(total - sent);
                (&*w).write_all(&chunk[..n]).unwrap();
                sent += n;
                k = k.wrapping_add(n as u8);
            }
        });
        let r = c.clone();
        let reader = gort::go!(move || {
            let mut got = 0usize;
            let mut expect = 0u8;
            let mut buf = [0u8; 8192];
            while got < total {
                let n = (&*r).read(&mut buf).unwrap();
                assert!(n > 0, "early EOF at {got}");
                for &b in &buf[..n] {
                    assert_eq!(b, expect, "byte {got}");
                    expect = expect.wrapping_add(1);
                    got += 1;
                }
            }
            got
        });
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), total);
        println!("child done");
        return;
    }
    run_procs("reader_and_writer_on_one_stream", &[]);
}

/// Several G's waiting on one socket, as servers do: eight G's accept on one listener while
/// connections arrive in bursts from plain threads (every one accepted exactly once), and
/// four G's read one stream with small buffers while bursts of bytes arrive (every byte read
/// exactly once). Each event must reach every G that got `EAGAIN` before it, not only the
/// first to look (`Since::Edges`); a connection or bytes left behind a parked G would turn
/// into a hang here, which the child's deadline reports.
#[test]
fn many_waiters_on_one_socket() {
    if is_child("many_waiters_on_one_socket") {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let (tx, rx) = gort::chan::unbounded::<TcpStream>();
        let acceptors: Vec<_> = (0..8)
            .map(|_| {
                let (l, tx) = (l.clone(), tx.clone());
                gort::go!(move || {
                    let mut n = 0usize;
                    while let Ok((s, _)) = l.accept() {
                        if tx.send(s).is_err() {
                            break;
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        drop(tx);
        let bursts = 300;
        let clients: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..bursts)
                        .map(|_| std::net::TcpStream::connect(addr).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut accepted = Vec::new();
        for _ in 0..2 * bursts {
            accepted.push(rx.recv().unwrap());
        }
        let clients: Vec<_> = clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        assert_eq!(accepted.len(), clients.len());
        assert!(rx.try_recv().is_err(), "a connection accepted twice");

        drop((clients, accepted));

        // Four readers on one accepted stream; the peer writes bursts of numbered bytes.
        let mut peer = std::net::TcpStream::connect(addr).unwrap();
        let shared = Arc::new(rx.recv().unwrap());
        let total = 200_000usize;
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let s = shared.clone();
                gort::go!(move || {
                    let mut counts = vec![0u32; 256];
                    let mut buf = [0u8; 3];
                    loop {
                        match (&*s).read(&mut buf) {
                            Ok(0) => return counts,
                            Ok(n) => buf[..n].iter().for_each(|&b| counts[b as usize] += 1),
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let burst: Vec<u8> = (0..=255u8).collect();
        let mut sent = 0;
        while sent < total {
            peer.write_all(&burst).unwrap();
            sent += burst.len();
        }
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let mut counts = vec![0u32; 256];
        for r in readers {
            for (c, n) in counts.iter_mut().zip(r.join().unwrap()) {
                *c += n;
            }
        }
        let per_value = (sent / 256) as u32;
        assert!(
            counts.iter().all(|&c| c == per_value),
            "bytes lost or read twice"
        );
        drop(l);
        // Wake the acceptors: a connection each after the listener's last clone goes.
        drop(rx);
        for _ in 0..8 {
            let _ = std::net::TcpStream::connect(addr);
        }
        let n: usize = acceptors.into_iter().map(|a| a.join().unwrap()).sum();
        assert_eq!(n, 2 * bursts + 1, "accepted, in all");
        println!("child done");
        return;
    }
    run_procs("many_waiters_on_one_socket", &[]);
}

/// A G waiting on a socket parks only itself: with one P, other G's keep running and finish
/// while it waits (forced with a channel, not a sleep).
#[test]
fn waiting_parks_only_the_green_thread() {
    if is_child("waiting_parks_only_the_green_thread") {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let waiting = Arc::new(AtomicUsize::new(0));
        let w = waiting.clone();
        let acceptor = gort::go!(move || {
            w.fetch_add(1, Ordering::SeqCst);
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 3];
            c.read_exact(&mut b).unwrap();
            b
        });
        while waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // Others run while it waits in accept: a chain of 1,000 G's passing a token.
        let (tx, mut rx) = gort::chan::bounded::<u64>(0);
        for _ in 0..1000 {
            let (ntx, nrx) = gort::chan::bounded::<u64>(0);
            let prev = rx;
            drop(gort::go!(move || ntx
                .send(prev.recv().unwrap() + 1)
                .unwrap()));
            rx = nrx;
        }
        drop(gort::go!(move || tx.send(0).unwrap()));
        assert_eq!(rx.recv().unwrap(), 1000);
        // Stats count it as waiting on I/O.
        let mut io = 0;
        for _ in 0..1000 {
            io = gort::stats().io_waiting_green_threads;
            if io == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(io, 1, "{:?}", gort::stats());
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"abc").unwrap();
        assert_eq!(&acceptor.join().unwrap(), b"abc");
        println!("child done");
        return;
    }
    run_procs("waiting_parks_only_the_green_thread", &[]);
}

/// The count of G's waiting on I/O (`stats().io_waiting_green_threads`) is exact: it reaches
/// the number of waiters, and comes back to zero however their waits end (readiness, a
/// deadline, or both at once), round after round.
#[test]
fn io_waiting_count_is_exact() {
    if is_child("io_waiting_count_is_exact") {
        const N: usize = 150;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let waiting = || gort::stats().io_waiting_green_threads;
        for round in 0..4u8 {
            let mut peers = Vec::new();
            let mut readers = Vec::new();
            // A third wait with no deadline, a third with one that never comes, a third with
            // a 1 ms one that keeps passing (racing the data at the end).
            let spawn = |i: usize, peers: &mut Vec<TcpStream>| {
                let c = TcpStream::connect(addr).unwrap();
                peers.push(l.accept().unwrap().0);
                gort::go!(move || {
                    let mut c = c;
                    match i % 3 {
                        1 => c.set_read_timeout(Some(Duration::from_secs(3600))).unwrap(),
                        2 => c.set_read_timeout(Some(Duration::from_millis(1))).unwrap(),
                        _ => {}
                    }
                    let mut b = [0u8; 1];
                    loop {
                        match c.read(&mut b) {
                            Ok(1) => return b[0],
                            Err(e) if e.kind() == ErrorKind::TimedOut && i % 3 == 2 => {}
                            r => panic!("reader {i}: {r:?}"),
                        }
                    }
                })
            };
            // First the readers whose waits only readiness can end: the count reaches them.
            let steady: Vec<usize> = (0..N).filter(|i| i % 3 != 2).collect();
            for &i in &steady {
                readers.push((i, spawn(i, &mut peers)));
            }
            let mut seen = 0;
            for _ in 0..60_000 {
                seen = waiting();
                if seen == steady.len() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(seen, steady.len(), "round {round}: {:?}", gort::stats());
            for i in (0..N).filter(|i| i % 3 == 2) {
                readers.push((i, spawn(i, &mut peers)));
            }
            for (k, p) in peers.iter_mut().enumerate() {
                let i = readers[k].0;
                p.write_all(&[i as u8 ^ round]).unwrap();
            }
            for (i, h) in readers {
                assert_eq!(h.join().unwrap(), i as u8 ^ round);
            }
            // Every wait has ended, and was uncounted before its G went on.
            assert_eq!(waiting(), 0, "round {round}: {:?}", gort::stats());
        }
        println!("child done");
        return;
    }
    run_procs("io_waiting_count_is_exact", &[]);
}

/// Read and write timeouts: a G parked past its deadline wakes with `TimedOut`; the stream
/// stays usable afterwards. Zero timeouts are refused, as in std.
#[test]
fn deadlines() {
    if is_child("deadlines") {
        let addr = echo_server();
        let h = gort::go!(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
            assert_eq!(c.read_timeout().unwrap(), Some(Duration::from_millis(30)));
            let mut b = [0u8; 4];
            let e = c.read(&mut b).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
            // Still usable.
            c.write_all(b"ping").unwrap();
            c.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"ping");
            assert_eq!(
                c.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
            // A write that cannot proceed (the peer never reads) times out too.
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let silent = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (_peer, _) = l.accept().unwrap();
            silent
                .set_write_timeout(Some(Duration::from_millis(30)))
                .unwrap();
            let chunk = vec![0u8; 1 << 16];
            let e = loop {
                if let Err(e) = (&silent).write(&chunk) {
                    break e;
                }
            };
            assert_eq!(e.kind(), ErrorKind::TimedOut);
            // UDP receive.
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            u.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            assert_eq!(u.recv_from(&mut b).unwrap_err().kind(), ErrorKind::TimedOut);
        });
        h.join().unwrap();
        // The same from a plain OS thread.
        let c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut b = [0u8; 1];
        assert_eq!((&c).read(&mut b).unwrap_err().kind(), ErrorKind::TimedOut);
        println!("child done");
        return;
    }
    run_procs("deadlines", &[]);
}

/// Shutting a stream down while another G waits to read it wakes that G (end of file); a
/// peer that goes away gives EOF to a reader and an error to a writer (no SIGPIPE death);
/// a refused connect is `ConnectionRefused`.
#[test]
fn shutdown_peer_gone_and_refused() {
    if is_child("shutdown_peer_gone_and_refused") {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = Arc::new(TcpStream::connect(addr).unwrap());
        let (peer, _) = l.accept().unwrap();
        let waiting = Arc::new(AtomicUsize::new(0));
        let (r, w) = (c.clone(), waiting.clone());
        let reader = gort::go!(move || {
            w.fetch_add(1, Ordering::SeqCst);
            let mut b = [0u8; 8];
            (&*r).read(&mut b)
        });
        while waiting.load(Ordering::SeqCst) == 0 || gort::stats().io_waiting_green_threads == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        c.shutdown(std::net::Shutdown::Both).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), 0);
        drop(peer);

        // Peer gone: a reader sees EOF, a writer an error.
        let c2 = TcpStream::connect(addr).unwrap();
        let (p2, _) = l.accept().unwrap();
        let r = gort::go!(move || {
            let mut c2 = c2;
            let mut b = [0u8; 8];
            let eof = c2.read(&mut b).unwrap();
            let mut err = None;
            for _ in 0..1000 {
                if let Err(e) = c2.write_all(&[1u8; 1024]) {
                    err = Some(e);
                    break;
                }
            }
            (eof, err.map(|e| e.kind()))
        });
        drop(p2);
        let (eof, err) = r.join().unwrap();
        assert_eq!(eof, 0);
        assert!(
            matches!(
                err,
                Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
            ),
            "{err:?}"
        );

        // Data and the end of the stream arriving together: a reader that drains the data
        // in short reads still sees the end (the hang-up raises no later edge).
        // (The reader waits first, so that one event may carry both.)
        for size in [1usize, 31, 32, 33, 100, 5000] {
            let c3 = TcpStream::connect(addr).unwrap();
            let (mut p3, _) = l.accept().unwrap();
            let reader = gort::go!(move || {
                let mut c3 = c3;
                let mut all = Vec::new();
                c3.read_to_end(&mut all).unwrap();
                all.len()
            });
            while gort::stats().io_waiting_green_threads == 0 {
                std::thread::yield_now();
            }
            p3.write_all(&vec![9u8; size]).unwrap();
            p3.shutdown(std::net::Shutdown::Write).unwrap();
            assert_eq!(reader.join().unwrap(), size);
        }

        // Refused.
        drop(l);
        let e = gort::go!(move || TcpStream::connect(addr).unwrap_err())
            .join()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        println!("child done");
        return;
    }
    run_procs("shutdown_peer_gone_and_refused", &[]);
}

/// Dropping one handle of a socket (a `try_clone`) while a G waits on the other leaves the
/// waiter alone; the dropped fd's number, reused by new sockets, never reaches the old
/// waiter, nor the old registration the new sockets.
#[test]
fn dropped_handles_and_reused_fds() {
    if is_child("dropped_handles_and_reused_fds") {
        let addr = echo_server();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        let b = a.try_clone().unwrap();
        let waiting = Arc::new(AtomicUsize::new(0));
        let w = waiting.clone();
        let reader = gort::go!(move || {
            let mut a = a;
            w.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 5];
            a.read_exact(&mut buf).map(|_| buf)
        });
        while gort::stats().io_waiting_green_threads == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let old_fd = std::os::fd::AsRawFd::as_raw_fd(&b);
        drop(b);
        // New sockets take the freed fd numbers (kept open, so that the numbers are used up
        // until the dropped one comes round); each carries its own traffic.
        let mut reused = false;
        let mut kept = Vec::new();
        for i in 0..=255u8 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[i; 3]).unwrap();
            let mut back = [0u8; 3];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, [i; 3]);
            kept.push(s);
            // Open again: taken by this client socket or by the server's accepted one, both
            // registered with the poller and carrying traffic.
            // SAFETY: F_GETFD only asks whether the number is an open fd.
            if unsafe { libc::fcntl(old_fd, libc::F_GETFD) } != -1 {
                reused = true;
                break;
            }
        }
        assert!(reused, "the dropped fd number was never reused");
        peer.write_all(b"hello").unwrap();
        assert_eq!(&reader.join().unwrap().unwrap(), b"hello");
        println!("child done");
        return;
    }
    run_procs("dropped_handles_and_reused_fds", &[]);
}

fn set_nofile(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit with a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// `accept` when the process is out of fds returns the error (EMFILE), and the listener
/// works again once fds are freed.
#[test]
fn accept_under_emfile_recovers() {
    if is_child("accept_under_emfile_recovers") {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        gort::go!(|| ()).join().unwrap();
        // Three connections wait in the listener's backlog.
        let mut clients: Vec<std::net::TcpStream> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // Use up every fd the (lowered) limit allows.
        let used = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        set_nofile(used + 16);
        let mut spare = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => spare.push(f),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                    break;
                }
            }
        }
        let l2 = l.clone();
        let err = gort::go!(move || l2.accept().map(|_| ()))
            .join()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
        // Room again: the waiting connections are accepted, and work.
        spare.truncate(spare.len().saturating_sub(4));
        let l3 = l.clone();
        let served = gort::go!(move || {
            for _ in 0..3 {
                let (mut s, _) = l3.accept().unwrap();
                s.write_all(b"ok").unwrap();
            }
        });
        served.join().unwrap();
        for c in &mut clients {
            let mut b = [0u8; 2];
            c.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"ok");
        }
        println!("child done");
        return;
    }
    run_procs(
        "accept_under_emfile_recovers",
        &[("GORT_RAISE_NOFILE", "0")],
    );
}

/// The runtime takes no file descriptor behind the program's back once it runs (CAVEATS,
/// "The runtime holds three file descriptors"): with exactly one fd free, a plain thread
/// opens and closes a file every few microseconds while the main thread is parked in a channel and
/// every P is idle (so sysmon's deadlock check looks, again and again, reading
/// `/proc/self/status`). Every open must succeed. (The check used to open that file at each
/// look: then some opens here failed with EMFILE, and CI once saw an `accept` succeed
/// where the process was out of fds.)
#[test]
fn runtime_takes_no_fd_while_the_program_runs() {
    if is_child("runtime_takes_no_fd_while_the_program_runs") {
        // Everything the runtime opens: its threads, sysmon, the poller.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        gort::go!(|| ()).join().unwrap();
        let (tx, rx) = gort::chan::bounded::<(u64, u64)>(0);
        let opener = std::thread::spawn(move || {
            // Let the main thread park first, so that the check has someone to count.
            std::thread::sleep(Duration::from_millis(50));
            let used = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
            set_nofile(used + 8);
            // Take every fd there is, then give one back: exactly one is free.
            let mut spare = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                spare.push(f);
            }
            spare.pop();
            let (mut ok, mut failed) = (0u64, 0u64);
            let end = std::time::Instant::now() + Duration::from_millis(1500);
            loop {
                // Leave the fd free most of the time, trying every few microseconds: an fd
                // taken by someone else for a moment is then seen.
                let next = std::time::Instant::now() + Duration::from_micros(3);
                while std::time::Instant::now() < next {
                    std::hint::spin_loop();
                }
                if next >= end {
                    break;
                }
                match std::fs::File::open("/dev/null") {
                    Ok(f) => {
                        ok += 1;
                        drop(f);
                    }
                    Err(e) => {
                        assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                        failed += 1;
                    }
                }
            }
            tx.send((ok, failed)).unwrap();
        });
        let (ok, failed) = rx.recv().unwrap();
        opener.join().unwrap();
        assert!(ok > 0, "no open succeeded: the limit left no fd free");
        assert_eq!(
            failed,
            0,
            "{failed} of {} opens found no free fd",
            ok + failed
        );
        drop(l);
        println!("child done");
        return;
    }
    run_procs("runtime_takes_no_fd_while_the_program_runs", &[]);
}

/// A system call retried after a park reports *its* error. LLVM takes `__errno_location` for
/// a pure function, so a function that read `errno` once, parked (and moved to another OS
/// thread), then failed again read the old thread's `errno` through the pointer it kept: a
/// 30 s soak under 4 P's saw `read: Operation now in progress`, a `connect`'s errno from
/// another thread. Here two green threads read one stream whose bytes come one at a time, so
/// the one that loses each byte retries and fails with `EAGAIN`, while green threads on every
/// P fail `close(-1)` with `EBADF` over and over. A read may only ever return data or the end.
#[test]
fn retried_calls_report_their_own_errno() {
    if is_child("retried_calls_report_their_own_errno") {
        const BYTES: usize = 3_000;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let polluters: Vec<_> = (0..2 * gort::max_procs())
            .map(|_| {
                let stop = stop.clone();
                gort::go!(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // SAFETY: closing an invalid fd only fails (EBADF).
                        unsafe { libc::close(-1) };
                        gort::yield_now();
                    }
                })
            })
            .collect();
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = l.accept().unwrap();
        let server = Arc::new(server);
        let got = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (server, got) = (server.clone(), got.clone());
                gort::go!(move || loop {
                    let mut b = [0u8; 1];
                    match (&*server).read(&mut b) {
                        Ok(0) => return,
                        Ok(_) => {
                            got.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("read failed with {e} ({:?})", e.raw_os_error()),
                    }
                })
            })
            .collect();
        gort::go!(move || {
            let mut client = client;
            for _ in 0..BYTES {
                client.write_all(&[7]).unwrap();
                gort::yield_now();
            }
            client.shutdown(std::net::Shutdown::Write).unwrap();
        })
        .join()
        .unwrap();
        for r in readers {
            r.join().expect("a reader failed");
        }
        stop.store(true, Ordering::Relaxed);
        for p in polluters {
            p.join().unwrap();
        }
        assert_eq!(got.load(Ordering::Relaxed), BYTES);
        println!("child done");
        return;
    }
    run_procs("retried_calls_report_their_own_errno", &[]);
}

/// UDP between green threads: every datagram arrives once, with `connect`ed and
/// unconnected sends.
#[test]
fn udp_datagrams() {
    if is_child("udp_datagrams") {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let n = 2_000u32;
        let recv = gort::go!(move || {
            let mut seen = vec![false; n as usize];
            let mut buf = [0u8; 16];
            for _ in 0..n {
                let (len, from) = b.recv_from(&mut buf).unwrap();
                assert_eq!(len, 4);
                assert_eq!(from, aa);
                let k = u32::from_le_bytes(buf[..4].try_into().unwrap());
                assert!(!std::mem::replace(&mut seen[k as usize], true), "dup {k}");
                // Ack, so that the sender never overruns the socket buffer.
                b.send_to(&buf[..4], from).unwrap();
            }
            seen.iter().all(|&s| s)
        });
        let send = gort::go!(move || {
            a.connect(ba).unwrap();
            let mut buf = [0u8; 4];
            for k in 0..n {
                a.send(&k.to_le_bytes()).unwrap();
                assert_eq!(a.recv(&mut buf).unwrap(), 4);
                assert_eq!(u32::from_le_bytes(buf), k);
            }
        });
        send.join().unwrap();
        assert!(recv.join().unwrap());
        println!("child done");
        return;
    }
    run_procs("udp_datagrams", &[]);
}

/// Unix-domain streams and datagrams.
#[test]
fn unix_sockets() {
    if is_child("unix_sockets") {
        use gort::net::unix::{UnixDatagram, UnixListener, UnixStream};
        let dir = std::env::temp_dir().join(format!("gort-unix-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let server = gort::go!(move || {
            let mut total = 0;
            for _ in 0..100 {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = Vec::new();
                c.read_to_end(&mut buf).unwrap();
                c.write_all(&buf).unwrap();
                total += buf.len();
            }
            total
        });
        let clients: Vec<_> = (0..100usize)
            .map(|i| {
                let path = path.clone();
                gort::go!(move || {
                    let mut c = UnixStream::connect(&path).unwrap();
                    let msg = vec![i as u8; i + 1];
                    c.write_all(&msg).unwrap();
                    c.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut back = Vec::new();
                    c.read_to_end(&mut back).unwrap();
                    assert_eq!(back, msg);
                    msg.len()
                })
            })
            .collect();
        let sent: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(server.join().unwrap(), sent);
        let (x, y) = UnixDatagram::pair().unwrap();
        let h = gort::go!(move || {
            let mut buf = [0u8; 8];
            let mut sum = 0u64;
            for _ in 0..500 {
                let n = y.recv(&mut buf).unwrap();
                sum += u64::from_le_bytes(buf[..n].try_into().unwrap());
            }
            sum
        });
        for k in 0..500u64 {
            x.send(&k.to_le_bytes()).unwrap();
        }
        assert_eq!(h.join().unwrap(), 499 * 500 / 2);
        let (p, q) = UnixStream::pair().unwrap();
        let h = gort::go!(move || {
            let mut b = [0u8; 2];
            (&q).read_exact(&mut b).unwrap();
            b
        });
        (&p).write_all(b"hi").unwrap();
        assert_eq!(&h.join().unwrap(), b"hi");
        let _ = std::fs::remove_dir_all(&dir);
        println!("child done");
        return;
    }
    run_procs("unix_sockets", &[]);
}

/// The same types from plain OS threads (blocking them), talking to green threads and to
/// each other; and the conversions to and from std.
#[test]
fn plain_threads_and_conversions() {
    if is_child("plain_threads_and_conversions") {
        let addr = echo_server();
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    for k in 0..100u8 {
                        c.write_all(&[i, k]).unwrap();
                        let mut b = [0u8; 2];
                        c.read_exact(&mut b).unwrap();
                        assert_eq!(b, [i, k]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // std -> gort -> std.
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a2 = std_l.local_addr().unwrap();
        let l: TcpListener = std_l.into();
        let h = gort::go!(move || {
            let (c, _) = l.accept().unwrap();
            let mut s: std::net::TcpStream = c.into();
            // Blocking again: a plain blocking read works.
            let mut b = [0u8; 3];
            s.read_exact(&mut b).unwrap();
            b
        });
        let mut c = std::net::TcpStream::connect(a2).unwrap();
        c.write_all(b"xyz").unwrap();
        assert_eq!(&h.join().unwrap(), b"xyz");
        let g: TcpStream = TcpStream::from(c);
        assert_eq!(g.peer_addr().unwrap(), a2);
        println!("child done");
        return;
    }
    run_procs("plain_threads_and_conversions", &[]);
}

/// `PollFd` over a pipe: a G waits to read, another writes; a waiting write on a full pipe
/// parks and resumes when drained.
#[test]
fn pollfd_pipe() {
    if is_child("pollfd_pipe") {
        let (r, w) = pipe();
        let r = PollFd::new(r).unwrap();
        let w = PollFd::new(w).unwrap();
        let total = 1_000_000usize;
        let reader = gort::go!(move || {
            let mut got = 0usize;
            let mut sum = 0u64;
            let mut buf = [0u8; 4096];
            while got < total {
                let n = r.read_with(|mut f| f.read(&mut buf)).unwrap();
                assert!(n > 0);
                sum += buf[..n].iter().map(|&b| b as u64).sum::<u64>();
                got += n;
            }
            (got, sum)
        });
        let writer = gort::go!(move || {
            let chunk = [3u8; 8192];
            let mut sent = 0;
            while sent < total {
                let n = chunk.len().min(total - sent);
                sent += w.write_with(|mut f| f.write(&chunk[..n])).unwrap();
            }
        });
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), (total, 3 * total as u64));
        // A timeout on an idle pipe.
        let (r2, _w2) = pipe();
        let r2 = PollFd::new(r2).unwrap();
        let e = gort::go!(move || r2.readable_timeout(Duration::from_millis(20)))
            .join()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        println!("child done");
        return;
    }
    run_procs("pollfd_pipe", &[]);
}

/// `PollFd` over a regular file, which epoll refuses (`EPERM`): not registered, its waits go
/// to `poll(2)` inside `blocking` (`Source::wait_since`'s out-of-line path), from a G and
/// from a plain thread, and reads and writes go through.
#[test]
fn pollfd_on_a_file_epoll_refuses() {
    if is_child("pollfd_on_a_file_epoll_refuses") {
        let path = std::env::temp_dir().join(format!("gort-pollfd-file-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let f = std::sync::Arc::new(PollFd::new(f).unwrap());
        let g = {
            let f = f.clone();
            gort::go!(move || {
                f.readable().unwrap();
                f.writable().unwrap();
                f.readable_timeout(Duration::from_secs(30)).unwrap();
                let mut buf = [0u8; 64];
                let n = f.read_with(|mut file| file.read(&mut buf)).unwrap();
                let w = f.write_with(|mut file| file.write(b"ab")).unwrap();
                (buf[..n].to_vec(), w)
            })
        };
        let (got, wrote) = g.join().unwrap();
        assert_eq!(got, b"0123456789");
        assert_eq!(wrote, 2);
        // From the main thread, outside the runtime.
        f.readable().unwrap();
        f.writable_timeout(Duration::from_secs(30)).unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789ab");
        std::fs::remove_file(&path).unwrap();
        println!("child done");
        return;
    }
    run_procs("pollfd_on_a_file_epoll_refuses", &[]);
}

/// A pipe, as two files (`std::io::pipe` is newer than the supported Rust).
/// The runtime raises the soft open-file limit to the hard one at start, unless told not
/// to.
#[test]
fn nofile_limit_raised() {
    if is_child("nofile_limit_raised") {
        // Lower the soft limit before the runtime starts, then start it.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid struct.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            let low = libc::rlimit {
                rlim_cur: 256.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &low);
        }
        gort::go!(|| ()).join().unwrap();
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) };
        println!("child done: soft={} hard={}", now.rlim_cur, now.rlim_max);
        return;
    }
    let o = run_child("nofile_limit_raised", &[]);
    assert_success(&o);
    let out = stdout(&o);
    let (soft, hard) = parse_limits(&out);
    assert_eq!(soft, hard, "{out}");
    let o = run_child("nofile_limit_raised", &[("GORT_RAISE_NOFILE", "0")]);
    assert_success(&o);
    let (soft, hard) = parse_limits(&stdout(&o));
    assert!(soft <= 256 && soft < hard || hard <= 256, "{}", stdout(&o));
}

fn parse_limits(out: &str) -> (u64, u64) {
    let l = out.lines().find(|l| l.contains("soft=")).expect(out);
    let soft = l.split("soft=").nth(1).unwrap().split(' ').next().unwrap();
    let hard = l.split("hard=").nth(1).unwrap().trim();
    (soft.parse().unwrap(), hard.parse().unwrap())
}

/// An idle server with many open connections (every server green thread parked in a read)
/// uses no CPU: after one short poll the M sleeps in the poller.
#[test]
fn idle_server_with_open_connections_uses_no_cpu() {
    if is_child("idle_server_with_open_connections_uses_no_cpu") {
        let addr = echo_server();
        let (done_tx, done_rx) = gort::chan::bounded::<()>(0);
        let ready = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        // Connects in flight bounded, as a real client pool would (a burst far beyond the
        // listen backlog has its SYNs dropped and retried seconds later).
        let slots = Arc::new(gort::sync::Semaphore::new(64));
        let clients: Vec<_> = (0..1000)
            .map(|_| {
                let (done_rx, ready, failed, slots) = (
                    done_rx.clone(),
                    ready.clone(),
                    failed.clone(),
                    slots.clone(),
                );
                gort::go!(move || {
                    let permit = slots.acquire();
                    let c = TcpStream::connect(addr);
                    drop(permit);
                    let Ok(mut c) = c else {
                        // Counted (and checked below), so the main thread never waits forever.
                        failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    c.write_all(b"ping").unwrap();
                    let mut b = [0u8; 4];
                    c.read_exact(&mut b).unwrap();
                    ready.fetch_add(1, Ordering::SeqCst);
                    // Keep the connection open, idle, until told.
                    let _ = done_rx.recv();
                })
            })
            .collect();
        while ready.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst) < 1000 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ready.load(Ordering::SeqCst), 1000, "some connects failed");
        std::thread::sleep(Duration::from_millis(200));
        let t0 = cpu_ticks();
        std::thread::sleep(Duration::from_secs(1));
        let used = (cpu_ticks() - t0) * 1000 / ticks_per_second();
        println!("CPU over 1 s with 1,000 idle connections: {used} ms");
        assert!(used < 50, "an idle server used {used} ms of CPU in 1 s");
        assert!(
            gort::stats().io_waiting_green_threads >= 1000,
            "{:?}",
            gort::stats()
        );
        drop(done_tx);
        for c in clients {
            c.join().unwrap();
        }
        println!("child done");
        return;
    }
    run_procs("idle_server_with_open_connections_uses_no_cpu", &[]);
}
