//! Criterion benches of the blocking primitives: channel ping-pong, skynet, a contended
//! mutex and channel throughput, gort against std in the same run. `GORT_MAXPROCS=1 cargo
//! bench --bench chan` for the one-P figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gort::chan;

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("gort", "bounded0"), |b| {
        b.iter_custom(|n| {
            gort::go!(move || {
                let (ping_tx, ping_rx) = chan::bounded::<u64>(0);
                let (pong_tx, pong_rx) = chan::bounded::<u64>(0);
                let echo = gort::go!(move || {
                    for v in ping_rx.iter() {
                        pong_tx.send(v).unwrap();
                    }
                });
                let t = Instant::now();
                for i in 0..n {
                    ping_tx.send(i).unwrap();
                    pong_rx.recv().unwrap();
                }
                let d = t.elapsed();
                drop(ping_tx);
                echo.join().unwrap();
                d
            })
            .join()
            .unwrap()
        })
    });
    g.bench_function(BenchmarkId::new("std_thread", "sync_channel0"), |b| {
        b.iter_custom(|n| {
            let (ping_tx, ping_rx) = std::sync::mpsc::sync_channel::<u64>(0);
            let (pong_tx, pong_rx) = std::sync::mpsc::sync_channel::<u64>(0);
            let echo = std::thread::spawn(move || {
                for v in ping_rx.iter() {
                    pong_tx.send(v).unwrap();
                }
            });
            let t = Instant::now();
            for i in 0..n {
                ping_tx.send(i).unwrap();
                pong_rx.recv().unwrap();
            }
            let d = t.elapsed();
            drop(ping_tx);
            echo.join().unwrap();
            d
        })
    });
    g.finish();
}

fn gort_skynet(num: u64, size: u64, out: chan::Sender<u64>) {
    if size == 1 {
        out.send(num).unwrap();
        return;
    }
    let (tx, rx) = chan::bounded(0);
    let step = size / 10;
    for i in 0..10 {
        let tx = tx.clone();
        gort::go!(move || gort_skynet(num + i * step, step, tx));
    }
    drop(tx);
    out.send(rx.iter().sum()).unwrap();
}

fn std_skynet(num: u64, size: u64, out: std::sync::mpsc::SyncSender<u64>) {
    if size == 1 {
        out.send(num).unwrap();
        return;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(0);
    let step = size / 10;
    let hs: Vec<_> = (0..10)
        .map(|i| {
            let tx = tx.clone();
            std::thread::spawn(move || std_skynet(num + i * step, step, tx))
        })
        .collect();
    drop(tx);
    out.send(rx.iter().sum()).unwrap();
    for h in hs {
        h.join().unwrap();
    }
}

fn skynet(c: &mut Criterion) {
    let mut g = c.benchmark_group("skynet");
    g.sample_size(10);
    for leaves in [1_000u64, 100_000] {
        g.throughput(Throughput::Elements(leaves));
        g.bench_function(BenchmarkId::new("gort", leaves), |b| {
            b.iter(|| {
                let (tx, rx) = chan::bounded(0);
                gort::go!(move || gort_skynet(0, leaves, tx));
                assert_eq!(rx.recv().unwrap(), leaves * (leaves - 1) / 2);
            })
        });
    }
    g.throughput(Throughput::Elements(1_000));
    g.bench_function(BenchmarkId::new("std_thread", 1_000), |b| {
        b.iter(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel(0);
            let h = std::thread::spawn(move || std_skynet(0, 1_000, tx));
            assert_eq!(rx.recv().unwrap(), 1_000 * 999 / 2);
            h.join().unwrap();
        })
    });
    g.finish();
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("gort_mutex", "16_gs"), |b| {
        b.iter_custom(|n| {
            let m = Arc::new(gort::sync::Mutex::new(0u64));
            let per = n / 16 + 1;
            let t = Instant::now();
            let hs: Vec<_> = (0..16)
                .map(|_| {
                    let m = m.clone();
                    gort::go!(move || {
                        for _ in 0..per {
                            *m.lock() += 1;
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            t.elapsed()
        })
    });
    g.bench_function(BenchmarkId::new("std_mutex", "4_threads"), |b| {
        b.iter_custom(|n| {
            let m = Arc::new(std::sync::Mutex::new(0u64));
            let per = n / 4 + 1;
            let t = Instant::now();
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let m = m.clone();
                    std::thread::spawn(move || {
                        for _ in 0..per {
                            *m.lock().unwrap() += 1;
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            t.elapsed()
        })
    });
    g.bench_function(BenchmarkId::new("gort_chan", "bounded64_4x4"), |b| {
        b.iter_custom(|n| {
            let (tx, rx) = chan::bounded::<u64>(64);
            let per = n / 4 + 1;
            let t = Instant::now();
            let ps: Vec<_> = (0..4)
                .map(|_| {
                    let tx = tx.clone();
                    gort::go!(move || (0..per).for_each(|i| tx.send(i).unwrap()))
                })
                .collect();
            drop(tx);
            let cs: Vec<_> = (0..4)
                .map(|_| {
                    let rx = rx.clone();
                    gort::go!(move || rx.iter().count())
                })
                .collect();
            ps.into_iter().for_each(|h| h.join().unwrap());
            cs.into_iter().for_each(|h| {
                h.join().unwrap();
            });
            t.elapsed()
        })
    });
    g.bench_function(BenchmarkId::new("std_chan", "sync_channel64_4x1"), |b| {
        b.iter_custom(|n| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(64);
            let per = n / 4 + 1;
            let t = Instant::now();
            let ps: Vec<_> = (0..4)
                .map(|_| {
                    let tx = tx.clone();
                    std::thread::spawn(move || (0..per).for_each(|i| tx.send(i).unwrap()))
                })
                .collect();
            drop(tx);
            let c = std::thread::spawn(move || rx.iter().count());
            ps.into_iter().for_each(|h| h.join().unwrap());
            c.join().unwrap();
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = ping_pong, skynet, contended
}
criterion_main!(benches);
