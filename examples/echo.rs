//! An echo server with one green thread per connection, and a load generator.
//!
//! ```sh
//! cargo run --release --example echo                          # demo: server + 100 clients, 2 s
//! cargo run --release --example echo -- server 127.0.0.1:7000
//! cargo run --release --example echo -- client 127.0.0.1:7000 1000 5   # 1,000 conns, 5 s
//! ```
//!
//! Other modes, for `compare`'s `net` group: `std-server ADDR` (a thread per connection, the
//! baseline), `client-epoll ADDR N SECS` (the same load from one OS thread on a raw epoll
//! loop: cheaper than a green thread per connection, so that the server saturates first),
//! and `--cpu N` before the mode pins the process to CPU N.
//!
//! The client opens N connections (at most 256 connects in flight), then each connection's
//! green thread writes a 64-byte message and reads the echo, over and over, for S seconds,
//! and prints `round_trips_per_sec=<n> failed_connections=<n>`; `client-epoll` adds the 99th
//! percentile and the longest of the round-trip times it saw (`p99_rt_us=<n> max_rt_us=<n>`).

use std::io;

use gort::net::TcpListener;

#[path = "shared/echo.rs"]
mod echo;
use echo::{client, pin_to_cpu, server, std_server};

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
        Some("client-epoll") => {
            let addr = args[1].parse().expect("client-epoll ADDR N SECS");
            let n: usize = args[2].parse().expect("client-epoll ADDR N SECS");
            let secs: f64 = args[3].parse().expect("client-epoll ADDR N SECS");
            echo::raise_nofile_std();
            println!("{}", echo::client_epoll(addr, n, secs).line());
            Ok(())
        }
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
