//! The smallest gort program: spawn green threads, join them.
fn main() {
    let handles: Vec<_> = (0..10)
        .map(|i| gort::go!(move || format!("hello from green thread {i}")))
        .collect();
    for h in handles {
        println!("{}", h.join().unwrap());
    }
    println!("P's: {}", gort::max_procs());
}
