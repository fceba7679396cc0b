use std::time::Instant;
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n = 1_000_000u64;
    gort::go!(|| ()).join().unwrap();
    if mode.is_empty() || mode == "main" {
        let t = Instant::now();
        let hs: Vec<_> = (0..n).map(|i| gort::go!(move || i * 2)).collect();
        let mut sum = 0;
        for h in hs {
            sum += h.join().unwrap();
        }
        let e = t.elapsed();
        assert_eq!(sum, n * (n - 1));
        println!(
            "main spawn+join: {:.1} ns/G",
            e.as_nanos() as f64 / n as f64
        );
    }
    if mode.is_empty() || mode == "ing" {
        let t = Instant::now();
        let s = gort::go!(move || {
            let hs: Vec<_> = (0..n).map(|i| gort::go!(move || i * 2)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        })
        .join()
        .unwrap();
        let e = t.elapsed();
        assert_eq!(s, n * (n - 1));
        println!(
            "in-G spawn+join: {:.1} ns/G",
            e.as_nanos() as f64 / n as f64
        );
    }
    if mode.is_empty() || mode == "yield" {
        let y = 10_000_000u64;
        let t = Instant::now();
        gort::go!(move || for _ in 0..y {
            gort::yield_now()
        })
        .join()
        .unwrap();
        println!("yield: {:.1} ns", t.elapsed().as_nanos() as f64 / y as f64);
    }
    if mode.is_empty() || mode == "seq" {
        let t = Instant::now();
        let s = gort::go!(move || {
            let mut s = 0;
            for i in 0..n {
                s += gort::go!(move || i * 2).join().unwrap();
            }
            s
        })
        .join()
        .unwrap();
        assert_eq!(s, n * (n - 1));
        println!(
            "in-G seq spawn+join: {:.1} ns/G",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
    if mode.is_empty() || mode == "batch" {
        let t = Instant::now();
        let s = gort::go!(move || {
            let mut s = 0;
            for b in 0..n / 1000 {
                let hs: Vec<_> = (0..1000)
                    .map(|i| gort::go!(move || (b * 1000 + i) * 2))
                    .collect();
                s += hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
            }
            s
        })
        .join()
        .unwrap();
        assert_eq!(s, n * (n - 1));
        println!(
            "in-G batch1000 spawn+join: {:.1} ns/G",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
    println!("live: {}", gort::num_green_threads());
}
#[allow(dead_code)]
fn _x() {}
