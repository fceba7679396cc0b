//! An echo server with one green thread per connection, and a load generator.
//!
//! ```sh
//! cargo run --release --example echo                          # demo: server + 100 clients, 2 s
//! cargo run --release --example echo -- server 127.0.0.1:7000
//! cargo run --release --example echo -- client 127.0.0.1:7000 1000 5   # 1,000 conns, 5 s
//! ```
//!
//! Other modes, for `compare`'s `net` group: `std-server ADDR` (a thread per connection, the
//! baseline), and `--cpu N` before the mode pins the process to CPU N.
//!
//! The client opens N connections (at most 256 connects in flight), then each connection's
//! green thread writes a 64-byte message and reads the echo, over and over, for S seconds,
//! and prints `round_trips_per_sec=<n> failed_connections=<n>`.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::net::{TcpListener, TcpStream};

const MSG: usize = 64;

/// Echoes everything back until the peer closes.
fn serve_conn(mut c: TcpStream) {
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
}

/// The gort server: a green thread accepts, a green thread per connection echoes.
fn server(listener: TcpListener) -> io::Result<()> {
    loop {
        let (c, _) = listener.accept()?;
        let _ = c.set_nodelay(true);
        drop(gort::go!(move || serve_conn(c)));
    }
}

/// The baseline: a std thread per connection.
fn std_server(addr: &str) -> io::Result<()> {
    raise_nofile_std();
    let listener = std::net::TcpListener::bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    for c in listener.incoming() {
        let mut c = c?;
        let _ = c.set_nodelay(true);
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
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
            });
        if let Err(e) = spawned {
            eprintln!("std-server: cannot start a thread: {e}");
        }
    }
    Ok(())
}

/// The std baseline has no runtime to raise the open-file limit: do what `ulimit -n` would.
fn raise_nofile_std() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Opens `n` connections and drives round trips on all of them for `secs` seconds. Returns
/// (round trips per second, connections that failed).
fn client(addr: std::net::SocketAddr, n: usize, secs: f64) -> (f64, usize) {
    let failed = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    // At most this many connects in flight, so that the listener's backlog never overflows.
    let slots = gort::sync::Semaphore::new(256);
    let slots = Arc::new(slots);
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let (failed, connected, go, stop, total, slots) = (
                failed.clone(),
                connected.clone(),
                go.clone(),
                stop.clone(),
                total.clone(),
                slots.clone(),
            );
            gort::go!(move || {
                let permit = slots.acquire();
                let c = TcpStream::connect(addr);
                drop(permit);
                let mut c = match c {
                    Ok(c) => c,
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        connected.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let _ = c.set_nodelay(true);
                connected.fetch_add(1, Ordering::Relaxed);
                while !go.load(Ordering::Relaxed) {
                    gort::sleep(Duration::from_millis(1));
                }
                let msg = [7u8; MSG];
                let mut buf = [0u8; MSG];
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if c.write_all(&msg).is_err() || c.read_exact(&mut buf).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    done += 1;
                }
                total.fetch_add(done, Ordering::Relaxed);
            })
        })
        .collect();
    while connected.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    go.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    for h in hs {
        h.join().unwrap();
    }
    (
        total.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity with it are too.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("cannot pin to CPU {cpu}: {}", io::Error::last_os_error());
        }
    }
}

fn main() -> io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--cpu") {
        let cpu: usize = args[1].parse().expect("--cpu N");
        pin_to_cpu(cpu);
        args.drain(..2);
    }
    match args.first().map(String::as_str) {
        Some("server") => {
            let l = TcpListener::bind(args.get(1).map_or("127.0.0.1:7000", String::as_str))?;
            println!("listening on {}", l.local_addr()?);
            server(l)
        }
        Some("std-server") => std_server(args.get(1).map_or("127.0.0.1:7000", String::as_str)),
        Some("client") => {
            let addr = args[1].parse().expect("client ADDR N SECS");
            let n: usize = args[2].parse().expect("client ADDR N SECS");
            let secs: f64 = args[3].parse().expect("client ADDR N SECS");
            let (rate, failed) = client(addr, n, secs);
            println!("round_trips_per_sec={rate:.0} failed_connections={failed}");
            Ok(())
        }
        None => {
            // Demo: both in this process.
            let l = TcpListener::bind("127.0.0.1:0")?;
            let addr = l.local_addr()?;
            drop(gort::go!(move || server(l)));
            let (rate, failed) = client(addr, 100, 2.0);
            println!("100 connections, 2 s: {rate:.0} round trips/s, {failed} failed");
            Ok(())
        }
        Some(other) => {
            eprintln!("unknown mode {other:?}: server | std-server | client | (none)");
            std::process::exit(2);
        }
    }
}
