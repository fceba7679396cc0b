//! The echo load generator that `compare`'s `net` group and docs/BENCHMARKS.md rely on
//! (`examples/shared/echo.rs`): its histogram (unit tests in that file, run here), and one
//! short run against a gort echo server checking that what it reports adds up.

#[path = "../examples/shared/echo.rs"]
mod echo;

#[test]
fn client_epoll_reports_a_live_servers_round_trips_and_times() {
    let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // The accept loop runs for the rest of the process, as a server does.
    drop(gort::go!(move || echo::server(l)));
    let load = echo::client_epoll(addr, 20, 0.5);
    assert_eq!(load.failed, 0);
    assert!(load.rate > 0.0, "no round trip in 0.5 s");
    assert!(load.p99_us.is_finite() && load.max_us.is_finite());
    assert!(
        load.p99_us <= load.max_us,
        "p99 {} above the longest {}",
        load.p99_us,
        load.max_us
    );
    // No round trip can outlast the run (0.5 s, plus one turn's 10 ms epoll timeout): a
    // longer one would mean times taken from the wrong instant.
    assert!(
        load.max_us < 600_000.0,
        "a round trip longer than the run: {} us",
        load.max_us
    );
    // The line `compare` parses back.
    let line = load.line();
    for key in [
        "round_trips_per_sec=",
        "failed_connections=0",
        "p99_rt_us=",
        "max_rt_us=",
    ] {
        assert!(line.contains(key), "{key} missing from {line:?}");
    }
    let back = echo::Load::parse(&line).expect("the printed line parses");
    assert_eq!(back.failed, 0);
    // Printed to the unit.
    assert!((back.rate - load.rate).abs() <= 0.5);
    assert!((back.p99_us - load.p99_us).abs() <= 0.5);
    assert_eq!(back.max_us, load.max_us);
    assert!(
        echo::Load::parse("round_trips_per_sec=5 failed_connections=0").is_none(),
        "a line without the times is no result"
    );
}
