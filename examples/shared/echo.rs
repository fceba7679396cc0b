//! The echo server and load generator shared by `examples/echo.rs` and the `net` group of
//! `examples/compare.rs` (included with `#[path]`), so that both sides of a comparison are
//! driven by the very same client.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::net::{TcpListener, TcpStream};

/// Bytes per message.
pub const MSG: usize = 64;

/// Echoes everything back until the peer closes (a gort or a std stream).
pub fn serve_conn<S: Read + Write>(mut c: S) {
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
pub fn server(listener: TcpListener) -> io::Result<()> {
    loop {
        let c = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) => {
                // Out of fds, say: back off instead of spinning (as Go's http server).
                eprintln!("echo server: accept: {e}; retrying in 5 ms");
                gort::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let _ = c.set_nodelay(true);
        drop(gort::go!(move || serve_conn(c)));
    }
}

/// The baseline: a std thread per connection.
pub fn std_server(addr: &str) -> io::Result<()> {
    raise_nofile_std();
    let listener = std::net::TcpListener::bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    for c in listener.incoming() {
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                eprintln!("std-server: accept: {e}; retrying in 5 ms");
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let _ = c.set_nodelay(true);
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve_conn(c));
        if let Err(e) = spawned {
            eprintln!("std-server: cannot start a thread: {e}");
        }
    }
    Ok(())
}

/// The std baseline has no runtime to raise the open-file limit: do what `ulimit -n` would.
pub fn raise_nofile_std() {
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
pub fn client(addr: std::net::SocketAddr, n: usize, secs: f64) -> (f64, usize) {
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

pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity with it are too.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("cannot pin to CPU {cpu}: {}", io::Error::last_os_error());
        }
    }
}

/// What `client_epoll` measured.
pub struct Load {
    /// Round trips per second, all connections together.
    pub rate: f64,
    /// Connections that could not connect or broke.
    pub failed: usize,
    /// Round-trip times as the load generator saw them (from the loop turn that sent a
    /// request to the loop turn that found its whole echo; each connection's first round
    /// trip, sent in one burst with all the others, left out): the 99th percentile and the
    /// longest, in microseconds. A server that serves some connections and leaves others
    /// waiting can post more round trips per second; these show what that costs.
    pub p99_us: f64,
    /// The longest of those round trips, in microseconds.
    pub max_us: f64,
}

impl Load {
    /// The line `echo` and `compare` print, and `compare` parses back.
    pub fn line(&self) -> String {
        format!(
            "round_trips_per_sec={:.0} failed_connections={} p99_rt_us={:.0} max_rt_us={:.0}",
            self.rate, self.failed, self.p99_us, self.max_us
        )
    }

    /// Reads back what `line` printed (anywhere in `text`); `None` if a field is missing.
    pub fn parse(text: &str) -> Option<Load> {
        let field = |k: &str| -> Option<f64> {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
        };
        Some(Load {
            rate: field("round_trips_per_sec=")?,
            failed: field("failed_connections=")? as usize,
            p99_us: field("p99_rt_us=")?,
            max_us: field("max_rt_us=")?,
        })
    }
}

/// Round-trip times in buckets of an eighth of an octave of microseconds (under 10% wide),
/// from 1 µs to 2^32 µs (longer times, over an hour, land in the last bucket).
struct Histogram {
    counts: Vec<u64>,
    max_us: u64,
}

impl Histogram {
    const PER_OCTAVE: u32 = 8;

    fn new() -> Self {
        Histogram {
            counts: vec![0; (32 * Self::PER_OCTAVE) as usize + 1],
            max_us: 0,
        }
    }

    fn bucket(us: u64) -> usize {
        if us < 2 {
            return 0;
        }
        // floor(log2(us)), at least 1; the three bits below the leading one pick the
        // eighth of the octave.
        let octave = 63 - us.leading_zeros();
        let frac = ((us << 3) >> octave) & 7;
        ((octave * Self::PER_OCTAVE) as usize + frac as usize).min(32 * Self::PER_OCTAVE as usize)
    }

    /// The upper edge of bucket `b`, in microseconds.
    fn upper(b: usize) -> f64 {
        let octave = b as u32 / Self::PER_OCTAVE;
        let frac = b as u32 % Self::PER_OCTAVE;
        (1u64 << octave) as f64 * (1.0 + (frac + 1) as f64 / Self::PER_OCTAVE as f64)
    }

    fn record(&mut self, us: u64) {
        self.counts[Self::bucket(us)] += 1;
        self.max_us = self.max_us.max(us);
    }

    /// The smallest bucket edge that at least `q` of the samples are at or below (capped
    /// at the longest sample).
    fn quantile(&self, q: f64) -> f64 {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let want = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::upper(b).min(self.max_us as f64);
            }
        }
        self.max_us as f64
    }
}

/// A cheaper load generator than `client`, so that the server, not the generator, is what
/// saturates: one OS thread, `n` non-blocking connections on a level-triggered epoll, each
/// with one 64-byte message in flight. The clock is read once per loop turn (an
/// `epoll_wait` and the events it returned), not per round trip.
pub fn client_epoll(addr: std::net::SocketAddr, n: usize, secs: f64) -> Load {
    use std::os::fd::AsRawFd;
    // SAFETY: plain system calls; results checked.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1: {}", io::Error::last_os_error());
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0;
    for i in 0..n {
        match std::net::TcpStream::connect(addr) {
            Ok(c) => {
                let _ = c.set_nodelay(true);
                c.set_nonblocking(true).unwrap();
                let mut ev = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: i as u64,
                };
                // SAFETY: a valid epoll fd, socket fd and event.
                let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.as_raw_fd(), &mut ev) };
                assert_eq!(r, 0, "epoll_ctl: {}", io::Error::last_os_error());
                conns.push((Some(c), 0usize));
            }
            Err(_) => {
                failed += 1;
                conns.push((None, 0));
            }
        }
    }
    let msg = [7u8; MSG];
    for (c, _) in conns.iter_mut() {
        if let Some(s) = c {
            if s.write_all(&msg).is_err() {
                *c = None;
                failed += 1;
            }
        }
    }
    // SAFETY: an all-zero epoll_event array is valid.
    let mut evs: Vec<libc::epoll_event> = vec![unsafe { std::mem::zeroed() }; 1024];
    let mut buf = [0u8; MSG];
    let mut total = 0u64;
    let mut hist = Histogram::new();
    let t0 = Instant::now();
    // When each connection's request in flight was sent (by the loop turn's clock); `None`
    // for the first, sent by every connection at once before the clock started: that burst
    // measures how long a server takes to get through all its connections once, not what
    // a round trip costs, so it is left out of the times (it is counted in the rate).
    let mut sent: Vec<Option<Instant>> = vec![None; conns.len()];
    let end = t0 + Duration::from_secs_f64(secs);
    let mut now = t0;
    while now < end {
        // SAFETY: `evs` has room for its length in events.
        let k = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as i32, 10) };
        // One clock read per turn: the time the events were found, and the loop's own check.
        now = Instant::now();
        for e in evs.iter().take(k.max(0) as usize) {
            let i = e.u64 as usize;
            let (c, got) = &mut conns[i];
            let Some(s) = c else { continue };
            match s.read(&mut buf[..MSG - *got]) {
                Ok(0) => {
                    *c = None;
                    failed += 1;
                }
                Ok(m) => {
                    *got += m;
                    if *got == MSG {
                        *got = 0;
                        total += 1;
                        if let Some(at) = sent[i] {
                            hist.record(now.saturating_duration_since(at).as_micros() as u64);
                        }
                        sent[i] = Some(now);
                        if s.write_all(&msg).is_err() {
                            *c = None;
                            failed += 1;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    *c = None;
                    failed += 1;
                }
            }
        }
    }
    let rate = total as f64 / t0.elapsed().as_secs_f64();
    // SAFETY: our epoll fd, closed once.
    unsafe { libc::close(ep) };
    Load {
        rate,
        failed,
        p99_us: hist.quantile(0.99),
        max_us: hist.max_us as f64,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn buckets_hold_their_values_and_are_under_an_eighth_of_an_octave_wide() {
        for us in (0..5_000u64).chain((12..32).map(|k| (1u64 << k) + 12_345)) {
            let b = super::Histogram::bucket(us);
            assert!(
                us as f64 <= super::Histogram::upper(b),
                "{us} us above its bucket's edge"
            );
            if b > 0 {
                assert!(
                    us as f64 >= super::Histogram::upper(b - 1),
                    "{us} us belongs to an earlier bucket"
                );
                assert!(
                    super::Histogram::upper(b) / super::Histogram::upper(b - 1) <= 1.125 + 1e-9
                );
            }
        }
    }

    #[test]
    fn quantiles_are_the_bucket_edge_at_or_above_the_true_value() {
        let mut h = super::Histogram::new();
        assert!(h.quantile(0.99).is_nan(), "no samples, no quantile");
        for us in 1..=1_000 {
            h.record(us);
        }
        let p99 = h.quantile(0.99);
        assert!((990.0..=990.0 * 1.125).contains(&p99), "p99 {p99}");
        let p50 = h.quantile(0.5);
        assert!((500.0..=500.0 * 1.125).contains(&p50), "p50 {p50}");
        assert_eq!(h.max_us, 1_000);
        assert_eq!(h.quantile(1.0), 1_000.0, "capped at the longest sample");
        // Exactly 99% at 10 µs: the p99 is their bucket, not the one slow sample's.
        let mut edge = super::Histogram::new();
        for _ in 0..99 {
            edge.record(10);
        }
        edge.record(1_000);
        assert!(
            (10.0..=11.25).contains(&edge.quantile(0.99)),
            "{}",
            edge.quantile(0.99)
        );
        // One outlier among many fast round trips moves the maximum, not the p99.
        for _ in 0..1_000 {
            h.record(3);
        }
        h.record(250_000);
        assert!(h.quantile(0.99) < 1_200.0);
        assert_eq!(h.max_us, 250_000);
    }
}
