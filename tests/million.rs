//! 1,000,000 G's spawned from the main thread and from inside G's, every result checked,
//! the live count back to 0. One test function: the count is process-wide.

#[test]
fn one_million_from_main_and_from_gs() {
    const N: u64 = 1_000_000;
    // From the main thread.
    let hs: Vec<_> = (0..N).map(|i| gort::go!(move || i * 3)).collect();
    let mut sum = 0u64;
    for (i, h) in hs.into_iter().enumerate() {
        let v = h.join().unwrap();
        assert_eq!(v, i as u64 * 3);
        sum += v;
    }
    assert_eq!(sum, 3 * N * (N - 1) / 2);
    assert_eq!(gort::num_green_threads(), 0);

    // From inside G's: 1,000 parents, 1,000 children each, children of children too.
    let parents: Vec<_> = (0..1000u64)
        .map(|p| {
            gort::go!(move || {
                let kids: Vec<_> = (0..1000u64)
                    .map(|k| {
                        let id = p * 1000 + k;
                        if k % 100 == 0 {
                            // A few spawn a grandchild and join it.
                            gort::go!(move || gort::go!(move || id).join().unwrap())
                        } else {
                            gort::go!(move || id)
                        }
                    })
                    .collect();
                let mut s = 0u64;
                for (k, h) in kids.into_iter().enumerate() {
                    let v = h.join().unwrap();
                    assert_eq!(v, p * 1000 + k as u64);
                    s += v;
                }
                s
            })
        })
        .collect();
    let total: u64 = parents.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, N * (N - 1) / 2);
    assert_eq!(gort::num_green_threads(), 0);
}
