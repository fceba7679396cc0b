//! Criterion benches of gort::net: one echo round trip (64 bytes) over loopback TCP, a
//! green-thread client and a green-thread server, against two std threads doing the same, in
//! the same run. `cargo bench --bench net`; `GORT_MAXPROCS` sets the P count.
//!
//! (The many-connection figures, with the server and the load generator on separate
//! cores, are `compare`'s `net` group.)

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "../examples/shared/echo.rs"]
mod echo;
use echo::{serve_conn as echo, MSG};

/// `n` round trips on `c`.
fn round_trips<S: Read + Write>(c: &mut S, n: u64) -> Duration {
    let msg = [5u8; MSG];
    let mut buf = [0u8; MSG];
    let t = Instant::now();
    for _ in 0..n {
        c.write_all(&msg).unwrap();
        c.read_exact(&mut buf).unwrap();
    }
    t.elapsed()
}

fn echo_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("echo_round_trip");
    g.throughput(Throughput::Elements(1));

    // gort: a server G per connection, the client a G too.
    let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(gort::go!(move || {
        for c in l.incoming().flatten() {
            let _ = c.set_nodelay(true);
            drop(gort::go!(move || echo(c)));
        }
    }));
    let (tx, rx) = gort::chan::bounded::<u64>(0);
    let (dtx, drx) = gort::chan::bounded::<Duration>(0);
    drop(gort::go!(move || {
        let mut c = gort::net::TcpStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        for n in rx.iter() {
            dtx.send(round_trips(&mut c, n)).unwrap();
        }
    }));
    g.bench_function(BenchmarkId::new("gort", "g_client_g_server"), |b| {
        b.iter_custom(|iters| {
            tx.send(iters).unwrap();
            drx.recv().unwrap()
        })
    });

    // std: a server thread per connection, the client a thread.
    let sl = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let saddr = sl.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in sl.incoming().flatten() {
            let _ = c.set_nodelay(true);
            std::thread::spawn(move || echo(c));
        }
    });
    let mut sc = std::net::TcpStream::connect(saddr).unwrap();
    sc.set_nodelay(true).unwrap();
    g.bench_function(
        BenchmarkId::new("std", "thread_client_thread_server"),
        |b| b.iter_custom(|iters| round_trips(&mut sc, iters)),
    );
    g.finish();
}

criterion_group!(benches, echo_round_trip);
criterion_main!(benches);
