fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    gort::go!(|| ()).join().unwrap();
    let t = std::time::Instant::now();
    match mode.as_str() {
        "yield" => gort::go!(move || for _ in 0..n {
            gort::yield_now()
        })
        .join()
        .unwrap(),
        "seq" => gort::go!(move || for i in 0..n {
            std::hint::black_box(gort::go!(move || i).join().unwrap());
        })
        .join()
        .unwrap(),
        "batch" => gort::go!(move || for _ in 0..n / 1000 {
            let hs: Vec<_> = (0..1000u64).map(|i| gort::go!(move || i)).collect();
            for h in hs {
                std::hint::black_box(h.join().unwrap());
            }
        })
        .join()
        .unwrap(),
        "mbatch" => {
            for _ in 0..n / 1000 {
                let hs: Vec<_> = (0..1000u64).map(|i| gort::go!(move || i)).collect();
                for h in hs {
                    std::hint::black_box(h.join().unwrap());
                }
            }
        }
        "main1m3" => {
            for _ in 0..3 {
                let t = std::time::Instant::now();
                let hs: Vec<_> = (0..n).map(|i| gort::go!(move || i)).collect();
                let t1 = t.elapsed();
                for h in hs {
                    std::hint::black_box(h.join().unwrap());
                }
                println!("spawn phase {:?} join phase {:?}", t1, t.elapsed() - t1);
            }
        }
        "main1m" => {
            let hs: Vec<_> = (0..n).map(|i| gort::go!(move || i)).collect();
            let t1 = t.elapsed();
            for h in hs {
                std::hint::black_box(h.join().unwrap());
            }
            println!("spawn phase {:?} join phase {:?}", t1, t.elapsed() - t1);
        }
        _ => panic!("mode"),
    }
    println!(
        "{mode}: {:.1} ns/op",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
